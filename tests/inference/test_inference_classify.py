"""Whole-mosaic classification: heatmap alignment, bad input, progress, cancel, determinism."""

from __future__ import annotations

import inference_testkit as kit
import numpy as np
import pytest
import torch

from rcm_viewer.inference import (
    STATUS_NO_TISSUE,
    ClassificationCancelled,
    InferenceError,
    ModelBundle,
    Prediction,
    classify_mosaic,
    explain_region,
)
from rcm_viewer.inference.network import load_network
from rcm_viewer.inference.prediction import (
    FLAG_PIXEL_SIZE_CONFIRMED,
    FLAG_PIXEL_SIZE_GIVEN,
    FLAG_RGB_CONVERTED,
    FLAG_SYNTHETIC_MODEL,
)
from rcm_viewer.mosaic import open_mosaic


def _classify(path, bundle: ModelBundle, **kwargs) -> Prediction:
    with open_mosaic(path) as mosaic:
        return classify_mosaic(mosaic, bundle, device="cpu", **kwargs)


def _patch_cells(prediction: Prediction) -> np.ndarray:
    """Boolean (H, W): heatmap cells whose centre lies in the bcc patch."""
    _, height, width = prediction.heatmap.shape
    cell = prediction.heatmap_cell_px
    ys, xs = np.mgrid[0:height, 0:width]
    x, y, w, h = kit.PATCH
    cx, cy = (xs + 0.5) * cell, (ys + 0.5) * cell
    return (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)


@pytest.mark.parametrize("name", ["composite", "composite_flat"])
def test_bcc_heatmap_sits_on_the_bcc_patch(
    trained_bundle: ModelBundle, mosaic_files: dict, name: str
) -> None:
    """A naevus mosaic with a bcc corner: the bcc evidence is in that corner, nowhere else.

    ``composite`` has a 2x pyramid level (read as is); ``composite_flat`` has none (2x
    resampled on the fly): both must land in the same place.
    """
    prediction = _classify(mosaic_files[name], trained_bundle)
    assert prediction.ok and prediction.top_class == "naevus"
    assert FLAG_SYNTHETIC_MODEL in prediction.flags
    bcc = prediction.class_heatmap("bcc")
    inside = _patch_cells(prediction)
    assert bcc[inside].mean() > 10 * max(bcc[~inside].mean(), 1e-6)
    assert bcc[inside].sum() > 0.9 * bcc.sum()  # nearly all bcc evidence is in the patch
    assert inside.ravel()[np.argmax(bcc)]  # and the hottest cell
    # the tile the model finds most bcc-like lies in the patch as well
    best = prediction.tile_boxes[np.argmax(prediction.tile_probabilities[:, 1])]
    x, y, w, h = kit.PATCH
    assert x <= best[0] and best[0] + best[2] <= x + w
    assert y <= best[1] and best[1] + best[3] <= y + h


def test_flat_and_pyramidal_files_give_the_model_the_same_pixels(
    trained_bundle: ModelBundle, mosaic_files: dict
) -> None:
    pyramid = _classify(mosaic_files["composite"], trained_bundle)
    flat = _classify(mosaic_files["composite_flat"], trained_bundle)
    assert np.allclose(pyramid.tile_probabilities, flat.tile_probabilities, atol=0.02)


def test_heatmap_geometry(trained_bundle: ModelBundle, mosaic_files: dict) -> None:
    prediction = _classify(mosaic_files["composite"], trained_bundle)
    classes, height, width = prediction.heatmap.shape
    assert classes == 3 and prediction.heatmap.dtype == np.float32
    assert prediction.heatmap_cell_px * prediction.pixel_size_um <= 100  # µm per value
    assert width * prediction.heatmap_cell_px >= kit.SIDE > (width - 1) * prediction.heatmap_cell_px
    assert height * prediction.heatmap_cell_px >= kit.SIDE
    assert prediction.heatmap.min() >= 0.0 and prediction.heatmap.max() == pytest.approx(1.0)
    assert prediction.heatmap_scale > 0
    boxes = prediction.tile_boxes
    assert boxes.shape == (prediction.n_tiles, 4) and prediction.n_tiles == 64
    assert (boxes[:, 2:] == 128).all()  # 64 model px at 2 µm/px = 128 mosaic px at 1 µm/px
    assert boxes[:, :2].min() == 0 and boxes[:, :2].max() == kit.SIDE - 128
    assert prediction.tile_probabilities.shape == (64, 3)
    assert np.allclose(prediction.tile_probabilities.sum(axis=1), 1, atol=1e-5)
    assert sum(prediction.probabilities) == pytest.approx(1.0)
    assert prediction.model_pixel_size_um == 2.0 and prediction.pixel_size_um == 1.0
    summary = prediction.summary()
    assert summary["top_class"] == "naevus" and summary["model_name"] == "tiny-test-model"


def test_black_margin_is_not_classified(trained_bundle: ModelBundle, mosaic_files: dict) -> None:
    prediction = _classify(mosaic_files["half_black"], trained_bundle)
    assert prediction.ok and prediction.n_tiles == 32 and prediction.n_tiles_grid == 64
    assert (prediction.tile_boxes[:, 0] >= kit.SIDE // 2).all()
    left = prediction.heatmap[:, :, : prediction.heatmap.shape[2] // 2]
    assert not left.any()


@pytest.mark.parametrize("name", ["black", "blank", "saturated"])
def test_no_assessable_tissue(random_bundle: ModelBundle, mosaic_files: dict, name: str) -> None:
    steps = []
    prediction = _classify(
        mosaic_files[name], random_bundle, progress=lambda done, total: steps.append((done, total))
    )
    assert prediction.status == STATUS_NO_TISSUE == "no assessable tissue"
    assert not prediction.ok
    assert prediction.probabilities is None and prediction.top_class is None
    assert prediction.heatmap is None and prediction.n_tiles == 0
    assert steps == [(0, 0)]


def test_unknown_pixel_size_must_be_confirmed(
    random_bundle: ModelBundle, mosaic_files: dict
) -> None:
    with pytest.raises(InferenceError) as caught:
        _classify(mosaic_files["no_pixel_size"], random_bundle)
    message = str(caught.value)
    assert "no_pixel_size.tif" in message and "pixel size is unknown" in message
    assert "--pixel-size-um" in message
    given = _classify(mosaic_files["no_pixel_size"], random_bundle, pixel_size_um=1.0)
    assert given.ok and FLAG_PIXEL_SIZE_GIVEN in given.flags
    same = _classify(mosaic_files["composite_flat"], random_bundle)
    assert given.probabilities == pytest.approx(same.probabilities, abs=1e-6)
    with pytest.raises(InferenceError, match="not plausible"):
        _classify(mosaic_files["composite"], random_bundle, pixel_size_um=400.0)


def test_pixel_size_confirmed_in_the_viewer_is_flagged(
    random_bundle: ModelBundle, mosaic_files: dict
) -> None:
    with open_mosaic(mosaic_files["no_pixel_size"]) as mosaic:
        mosaic.set_pixel_size(1.0)
        prediction = classify_mosaic(mosaic, random_bundle, device="cpu")
    assert FLAG_PIXEL_SIZE_CONFIRMED in prediction.flags


def test_rgb_is_converted_and_flagged(random_bundle: ModelBundle, mosaic_files: dict) -> None:
    rgb = _classify(mosaic_files["rgb"], random_bundle)
    gray = _classify(mosaic_files["gray_512"], random_bundle)
    assert rgb.ok and FLAG_RGB_CONVERTED in rgb.flags
    assert FLAG_RGB_CONVERTED not in gray.flags
    assert rgb.probabilities == pytest.approx(gray.probabilities, abs=1e-4)


def test_progress_counts_up_to_the_total(random_bundle: ModelBundle, mosaic_files: dict) -> None:
    steps: list[tuple[int, int]] = []
    prediction = _classify(
        mosaic_files["composite"],
        random_bundle,
        batch_size=5,
        progress=lambda done, total: steps.append((done, total)),
    )
    total = prediction.n_tiles
    # 512 model px: 6 x 6 tiles of 96, the last row and column mostly outside the mosaic
    assert total == 25 and prediction.n_tiles_grid == 36
    assert steps[0] == (0, total) and steps[-1] == (total, total)
    assert all(t == total for _, t in steps)
    done = [d for d, _ in steps]
    assert done == sorted(done) and len(done) == 1 + 5  # 25 tiles in batches of 5


def test_cancel_stops_early_and_carries_the_partial_result(
    random_bundle: ModelBundle, mosaic_files: dict
) -> None:
    steps: list[int] = []
    with pytest.raises(ClassificationCancelled) as caught:
        _classify(
            mosaic_files["composite"],
            random_bundle,
            batch_size=4,
            progress=lambda done, total: steps.append(done),
            cancel=lambda: len(steps) >= 3,
        )
    assert steps == [0, 4, 8]
    partial = caught.value.partial
    assert partial is not None and partial.partial and partial.n_tiles == 8
    assert any("cancelled" in flag for flag in partial.flags)
    with pytest.raises(ClassificationCancelled) as immediately:
        _classify(mosaic_files["composite"], random_bundle, cancel=lambda: True)
    assert immediately.value.partial is None


def test_partial_results_stream_in(random_bundle: ModelBundle, mosaic_files: dict) -> None:
    partials: list[Prediction] = []
    final = _classify(
        mosaic_files["composite"], random_bundle, batch_size=8, on_partial=partials.append
    )
    assert [p.n_tiles for p in partials] == [8, 16, 24]
    assert all(p.partial and p.heatmap is not None for p in partials)
    assert not final.partial and final.n_tiles == 25
    covered = [int((p.heatmap.sum(axis=0) > 0).sum()) for p in partials]
    assert covered == sorted(covered)


def test_same_input_gives_identical_results(random_bundle: ModelBundle, mosaic_files: dict) -> None:
    first = _classify(mosaic_files["composite"], random_bundle)
    second = _classify(mosaic_files["composite"], random_bundle)
    assert first.probabilities == second.probabilities
    assert np.array_equal(first.heatmap, second.heatmap)
    assert np.array_equal(first.tile_probabilities, second.tile_probabilities)


def test_explain_region(trained_bundle: ModelBundle, mosaic_files: dict) -> None:
    x, y, w, h = kit.PATCH
    region = (x - 128, y - 128, w + 128, h + 128)  # the patch plus naevus above and left
    with open_mosaic(mosaic_files["composite"]) as mosaic:
        explanation = explain_region(
            mosaic, trained_bundle, region, target_class="bcc", device="cpu"
        )
        finer = explain_region(
            mosaic, trained_bundle, region, method="gradcam++", layer="layer3", device="cpu"
        )
        with pytest.raises(InferenceError, match="unknown method"):
            explain_region(mosaic, trained_bundle, region, method="magic")
        with pytest.raises(InferenceError, match="too large"):
            explain_region(mosaic, trained_bundle, (0, 0, 4096, 4096), max_side_px=512)
    assert explanation.rect == region and explanation.pixel_px == 2.0
    assert explanation.heatmap.shape == (256, 256)  # 512 px at 1 µm/px, model at 2 µm/px
    assert explanation.target_class == "bcc" and explanation.method == "gradcam"
    heat = explanation.heatmap
    patch, margin = heat[64:, 64:], np.concatenate([heat[:64].ravel(), heat[64:, :64].ravel()])
    assert patch.mean() > 10 * max(margin.mean(), 1e-6)
    # without a target the explanation is of the region's own top class
    assert finer.target_class == finer.class_ids[int(np.argmax(finer.probabilities))]
    assert finer.heatmap.shape == (256, 256) and finer.layer == "layer3"
    assert sum(finer.probabilities) == pytest.approx(1.0)
    network = load_network(trained_bundle, torch.device("cpu"), purpose="explain")
    assert not any(m._forward_hooks for m in network.modules())  # hooks released


@pytest.mark.parametrize(
    ("pixel_size_um", "reads"),
    [
        (0.5, "2x level or 4x4 mean"),
        (1.5, "antialiased bilinear"),
        (4.0, "upsampled"),
    ],
)
def test_any_scale_maps_back_to_mosaic_pixels(
    random_bundle: ModelBundle, mosaic_files: dict, pixel_size_um: float, reads: str
) -> None:
    """Mosaic pixel sizes finer, a bit finer and coarser than the model's 2 µm/px."""
    prediction = _classify(mosaic_files["gray_512"], random_bundle, pixel_size_um=pixel_size_um)
    factor = 2.0 / pixel_size_um  # mosaic pixels per model pixel
    assert prediction.ok and prediction.n_tiles > 0, reads
    assert prediction.heatmap_cell_px == pytest.approx(32 * factor)
    assert (prediction.tile_boxes[:, 2] == round(96 * factor)).all()
    _, height, width = prediction.heatmap.shape
    assert width * prediction.heatmap_cell_px >= 512 > (width - 1) * prediction.heatmap_cell_px
    assert ("upsampled" in " ".join(prediction.flags)) == (factor < 1)


def test_mean_probabilities_aggregation(mosaic_files: dict, tmp_path) -> None:
    bundle = kit.random_bundle(tmp_path / "b", aggregation="mean_probabilities")
    prediction = _classify(mosaic_files["gray_512"], bundle)
    assert prediction.probabilities == pytest.approx(
        tuple(prediction.tile_probabilities.mean(axis=0)), abs=1e-6
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error(
    random_bundle: ModelBundle, mosaic_files: dict
) -> None:
    with (
        pytest.raises(InferenceError, match="no CUDA GPU"),
        open_mosaic(mosaic_files["composite"]) as mosaic,
    ):
        classify_mosaic(mosaic, random_bundle, device="cuda")
