"""The out-of-distribution check: maths, fitting through the engine, the bundle seal, CLI."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import inference_testkit as kit
import numpy as np
import pytest
from rcm_test_helpers import run_cli

from rcm_viewer.errors import ModelBundleError
from rcm_viewer.inference import ModelBundle, load_bundle
from rcm_viewer.inference.bundle import attach_ood
from rcm_viewer.inference.engine import classify_mosaic
from rcm_viewer.inference.ood import LEGACY_METHOD, OOD_FILE, OodModel, fit_ood
from rcm_viewer.inference.ood import assess_scores as ood_assess
from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.training.ood_fit import fit_from_items


def test_mahalanobis_scores_foreign_features_higher_and_thresholds_come_from_heldout() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, size=(3, 40))
    labels = np.repeat(np.arange(3), 200)
    train = centres[labels] + rng.normal(0, 1, size=(600, 40))
    held_labels = np.repeat(np.arange(3), 100)
    held = centres[held_labels] + rng.normal(0, 1, size=(300, 40))
    groups = np.arange(300) // 10  # 30 held-out "mosaics" of 10 tiles
    model = fit_ood(train, labels, held, groups, n_classes=3, max_components=16)
    held_scores = model.tile_scores(held)
    assert model.tile_threshold == pytest.approx(np.percentile(held_scores, 99), rel=1e-4)
    assert (held_scores > model.tile_threshold).mean() == pytest.approx(0.01, abs=0.005)
    foreign = rng.normal(0, 1, size=(50, 40)) + 6.0  # far from every class
    assert model.tile_scores(foreign).min() > model.tile_threshold
    assert not model.assess(foreign).in_distribution
    flagged_held = [not model.assess(held[groups == g]).in_distribution for g in range(30)]
    assert sum(flagged_held) <= 1  # the 99th percentile of 30 held-out mosaics
    # round trip through the sealed file format
    again = OodModel.from_bytes(model.to_bytes())
    np.testing.assert_allclose(again.tile_scores(foreign), model.tile_scores(foreign), rtol=1e-4)


def test_fit_ood_refuses_too_little_data() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        fit_ood(np.zeros((3, 4)), [0, 1, 2], np.zeros((10, 4)), np.zeros(10), n_classes=3)


@pytest.fixture(scope="module")
def ood_bundle(
    tmp_path_factory: pytest.TempPathFactory,
    random_bundle: ModelBundle,
    sources: dict[str, np.ndarray],
) -> ModelBundle:
    """The random-weight bundle with OOD statistics fitted on halves of three mosaics.

    Random ResNet features still tell tissue from noise: the check needs no trained head.
    """
    root = tmp_path_factory.mktemp("ood")
    directory = root / "bundle"
    shutil.copytree(random_bundle.path, directory)
    fit, held = [], []
    for cls, image in sources.items():
        top, bottom = image[:512], image[512:]
        fit.append((kit.write_tiff(root / f"{cls}_fit.tif", top), cls))
        held.append((kit.write_tiff(root / f"{cls}_held.tif", bottom), cls))
    bundle = load_bundle(directory)
    return attach_ood(directory, fit_from_items(bundle, fit, held, device="cpu"))


def _noise_tiff(path: Path) -> Path:
    rng = np.random.default_rng(3)
    return kit.write_tiff(path, rng.integers(40, 256, size=(512, 512), dtype=np.uint8))


def test_foreign_input_scores_higher_than_in_distribution(
    ood_bundle: ModelBundle, sources: dict, tmp_path: Path
) -> None:
    assert ood_bundle.manifest.ood_file == OOD_FILE
    assert (ood_bundle.path / OOD_FILE).stat().st_size < 1_000_000
    inside = kit.write_tiff(tmp_path / "naevus.tif", sources["naevus"][256:768, 256:768])
    foreign = _noise_tiff(tmp_path / "noise.tif")
    with open_mosaic(inside) as mosaic:
        p_in = classify_mosaic(mosaic, ood_bundle, device="cpu")
    with open_mosaic(foreign) as mosaic:
        p_out = classify_mosaic(mosaic, ood_bundle, device="cpu")
    assert p_in.ood_score is not None and p_out.ood_score is not None
    assert p_out.ood_score > 1.3 * p_in.ood_score
    assert p_out.ood_tile_share >= p_in.ood_tile_share
    assert p_out.in_distribution is False
    assert p_out.ood_heatmap is not None
    assert (p_out.ood_heatmap.max() > 0) == (p_out.ood_tile_share > 0)
    assert p_out.ood_heatmap.shape == p_out.heatmap.shape[1:]
    assert p_out.tile_ood_scores.shape == (p_out.n_tiles,)
    assert p_out.summary()["in_distribution"] is False


def test_a_bundle_without_statistics_says_so(
    random_bundle: ModelBundle, mosaic_files: dict
) -> None:
    with open_mosaic(mosaic_files["gray_512"]) as mosaic:
        prediction = classify_mosaic(mosaic, random_bundle, device="cpu")
    assert prediction.ood_score is None and prediction.in_distribution is None
    assert "no out-of-distribution statistics" in prediction.ood_note


def test_a_changed_byte_of_the_statistics_is_refused(
    ood_bundle: ModelBundle, tmp_path: Path
) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(ood_bundle.path, copy)
    data = bytearray((copy / OOD_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / OOD_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelBundleError, match="ood.npz .* does not match its checksum"):
        load_bundle(copy)
    result = run_cli(
        "classify", str(_noise_tiff(tmp_path / "n.tif")), "--model", str(copy), "--device", "cpu"
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "ood.npz" in errors[0]


def test_cli_rows_carry_ood_columns(ood_bundle: ModelBundle, tmp_path: Path) -> None:
    out = tmp_path / "rows.csv"
    result = run_cli(
        "classify",
        str(_noise_tiff(tmp_path / "noise.tif")),
        "--model",
        str(ood_bundle.path),
        "--out",
        str(out),
        "--device",
        "cpu",
        env_extra={"RCM_VIEWER_TORCH_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert "ood_score" in rows[0] and "in_distribution" in rows[0]
    assert float(rows[0]["ood_score"]) > 1.0
    assert rows[0]["in_distribution"] == "False"


def _blobs(
    rng: np.random.Generator, n_per: int, centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(centres)), n_per)
    # positive, ReLU-like features whose length varies a lot from tile to tile (as layer-4
    # averages do): the direction carries the class, the norm mostly the contrast
    scale = rng.lognormal(0.0, 0.6, size=(len(labels), 1))
    x = np.abs(centres[labels] + rng.normal(0, 0.3, size=(len(labels), centres.shape[1])))
    return x * scale, labels


def test_unit_length_features_make_the_score_blind_to_feature_scale() -> None:
    """Mahalanobis++: a tile's score does not change when its features are scaled."""
    rng = np.random.default_rng(1)
    centres = np.abs(rng.normal(1, 1, size=(3, 32)))
    train, labels = _blobs(rng, 150, centres)
    held, _ = _blobs(rng, 60, centres)
    model = fit_ood(train, labels, held, np.arange(len(held)) // 6, n_classes=3, max_components=16)
    assert model.normalise
    np.testing.assert_allclose(model.tile_scores(held * 7.0), model.tile_scores(held), rtol=1e-6)
    raw = fit_ood(
        train,
        labels,
        held,
        np.arange(len(held)) // 6,
        n_classes=3,
        max_components=16,
        normalise=False,
    )
    assert not np.allclose(raw.tile_scores(held * 7.0), raw.tile_scores(held), rtol=0.1)
    again = OodModel.from_bytes(model.to_bytes())
    assert again.normalise and again.mosaic_statistic == model.mosaic_statistic
    np.testing.assert_allclose(again.tile_scores(held), model.tile_scores(held), rtol=1e-4)


def test_the_median_mosaic_score_ignores_a_few_outlier_tiles() -> None:
    threshold = 10.0
    normal = np.full(20, 2.0)
    with_outliers = normal.copy()
    with_outliers[:2] = 500.0  # two odd tiles (a seam, a bubble) of an ordinary mosaic
    assert ood_assess(with_outliers, threshold, threshold).in_distribution
    assert not ood_assess(with_outliers, threshold, threshold, statistic="mean").in_distribution
    assert not ood_assess(np.full(20, 30.0), threshold, threshold).in_distribution
    # a foreign patch: a third of the tiles over the tile threshold flags the mosaic
    patch = normal.copy()
    patch[:7] = 50.0
    assert not ood_assess(patch, threshold, threshold).in_distribution


def test_first_version_statistics_still_load_with_their_own_rules() -> None:
    rng = np.random.default_rng(2)
    centres = np.abs(rng.normal(1, 1, size=(3, 16)))
    train, labels = _blobs(rng, 50, centres)
    model = fit_ood(
        train,
        labels,
        train[:30],
        np.arange(30) // 5,
        n_classes=3,
        max_components=8,
        normalise=False,
        statistic="mean",
    )
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        method=np.array(LEGACY_METHOD),
        mean=model.mean,
        components=model.components,
        class_means=model.class_means,
        precision=model.precision,
        residual_var=np.float32(model.residual_var),
        tile_threshold=np.float32(model.tile_threshold),
        mosaic_threshold=np.float32(model.mosaic_threshold),
        counts=np.array([1, 2, 3]),
    )
    old = OodModel.from_bytes(buffer.getvalue())
    assert not old.normalise and old.mosaic_statistic == "mean" and old.residual_weight == 1
    np.testing.assert_allclose(old.tile_scores(train), model.tile_scores(train), rtol=1e-4)


def test_obviously_foreign_inputs_are_flagged_and_fresh_tissue_is_not(
    ood_bundle: ModelBundle, sources: dict, tmp_path: Path
) -> None:
    """The end-to-end guard: if the check stopped flagging these, this fails."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:512, 0:512]
    foreign = {
        "uniform_noise": rng.integers(0, 256, size=(512, 512), dtype=np.uint8),
        "checkerboard": (((y // 32 + x // 32) % 2) * 200 + 30).astype(np.uint8),
        "stripes": (127 + 100 * np.sin(x / 3.0)).astype(np.uint8),
    }
    for name, image in foreign.items():
        with open_mosaic(kit.write_tiff(tmp_path / f"{name}.tif", image)) as mosaic:
            p = classify_mosaic(mosaic, ood_bundle, device="cpu")
        assert p.in_distribution is False, (name, p.ood_score, p.ood_tile_share)
    for cls, image in sources.items():  # tissue like the fitting data, another crop
        crop = image[128:640, 256:768]
        with open_mosaic(kit.write_tiff(tmp_path / f"{cls}.tif", crop)) as mosaic:
            p = classify_mosaic(mosaic, ood_bundle, device="cpu")
        assert p.ood_score is not None and p.ood_score < 1.5, (cls, p.ood_score)
