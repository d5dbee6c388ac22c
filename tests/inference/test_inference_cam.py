"""The forward-pass class activation map is Grad-CAM of layer 4 (pytorch-grad-cam).

Pure arithmetic, so randomly initialised weights are fine here.
"""

from __future__ import annotations

import inference_testkit as kit
import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from rcm_viewer.inference import ModelBundle, classify_mosaic
from rcm_viewer.inference.engine import read_model_pixels, to_model_input
from rcm_viewer.inference.network import forward_with_cam, load_network
from rcm_viewer.mosaic import open_mosaic


def _gradcam(network: torch.nn.Module, x: torch.Tensor, class_index: int) -> np.ndarray:
    with torch.enable_grad(), GradCAM(model=network, target_layers=[network.layer4[-1]]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(class_index)] * len(x))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def tiles(sources: dict[str, np.ndarray]) -> np.ndarray:
    """Six 96 px tiles of real synthetic texture, gray in 0-1."""
    out = []
    for image in sources.values():
        for y, x in ((100, 200), (600, 500)):
            out.append(image[y : y + 96, x : x + 96].astype(np.float32) / 255)
    return np.stack(out)


def test_logits_are_the_mean_of_the_map_plus_bias(
    random_bundle: ModelBundle, tiles: np.ndarray
) -> None:
    network = load_network(random_bundle, torch.device("cpu"), purpose="explain")
    x = to_model_input(tiles, random_bundle.manifest, torch.device("cpu"))
    with torch.inference_mode():
        logits, cam = forward_with_cam(network, x)
        reference = network(x)
    assert cam.shape == (6, 3, 3, 3)
    assert torch.allclose(logits, reference, atol=1e-5)
    assert torch.allclose(cam.mean(dim=(2, 3)) + network.fc.bias, logits, atol=1e-4)


def test_map_equals_gradcam_of_layer4(random_bundle: ModelBundle, tiles: np.ndarray) -> None:
    network = load_network(random_bundle, torch.device("cpu"), purpose="explain")
    x = to_model_input(tiles, random_bundle.manifest, torch.device("cpu"))
    with torch.inference_mode():
        _, cam = forward_with_cam(network, x)
    compared = 0
    for class_index in range(3):
        reference = _gradcam(network, x.clone(), class_index)
        ours = scale_cam_image(np.maximum(cam[:, class_index].numpy(), 0), (96, 96))
        for tile in range(len(tiles)):
            if reference[tile].std() < 1e-6:  # ReLU left nothing: no map to compare
                continue
            # the same map; only grad-cam's 1e-7 in its min-max normalisation differs
            assert _correlation(ours[tile], reference[tile]) > 0.999
            compared += 1
    assert compared >= 9


def test_mosaic_heatmap_cells_are_gradcam_of_each_tile(
    random_bundle: ModelBundle, mosaic_files: dict
) -> None:
    """Heatmap cells under a tile box == Grad-CAM of that tile, read back independently."""
    manifest = random_bundle.manifest
    with open_mosaic(mosaic_files["composite_flat"]) as mosaic:
        prediction = classify_mosaic(mosaic, random_bundle, device="cpu")
        factor = manifest.pixel_size_um / kit.MOSAIC_UM
        cell = prediction.heatmap_cell_px
        assert cell == 32 * factor
        network = load_network(random_bundle, torch.device("cpu"), purpose="explain")
        class_index = int(np.argmax([h.sum() for h in prediction.heatmap]))
        checked = 0
        for box in prediction.tile_boxes[[0, 7, 20]]:
            x, y, w, h = (int(v) for v in box)
            pixels, _ = read_model_pixels(
                mosaic, 0, factor, round(x / factor), round(y / factor), 96, 96, 255.0
            )
            tensor = to_model_input(pixels[None], manifest, torch.device("cpu"))
            reference = _gradcam(network, tensor, class_index)[0]
            if reference.std() < 1e-6:
                continue
            cells = prediction.heatmap[
                class_index,
                round(y / cell) : round((y + h) / cell),
                round(x / cell) : round((x + w) / cell),
            ]
            ours = scale_cam_image(cells[None], (96, 96))[0]
            assert _correlation(ours, reference) > 0.99
            checked += 1
        assert checked >= 2
