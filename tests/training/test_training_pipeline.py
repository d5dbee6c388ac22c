"""Train a tiny model end to end: learning, resume, export, classify, evaluate, baseline.

One small synthetic set (8 mosaics per class, 384 px) is made once for the module; the
network is a ResNet-18 on 64 px tiles, so each run takes seconds on two cores.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rcm_viewer.cli import main as cli_main
from rcm_viewer.inference import classify_mosaic, load_bundle
from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.synthetic import write_dataset
from rcm_viewer.training import TrainingConfig, evaluate, train
from rcm_viewer.training.trainer import CHECKPOINT_NAME

EPOCHS = 4
#: A ceiling, not a target: about a minute per training run on two idle cores, several
#: times that when the cores are shared.
pytestmark = pytest.mark.timeout(900)


def _config(data: Path, out: Path, **changes) -> TrainingConfig:
    base = TrainingConfig(
        data_dir=data,
        out_dir=out,
        architecture="resnet18",
        tile_px=64,
        pixel_size_um=2.0,
        epochs=EPOCHS,
        crops_per_mosaic=16,
        batch_size=8,
        seed=0,
        workers=0,
        patience=10,
        learning_rate=1e-3,
        split="50/25/25",
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-data")
    write_dataset(root, per_class=8, width=384, height=384, seed=21)
    return root


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("models") / "tiny-resnet18"
    result = train(_config(data_dir, out), progress=None)
    return result


def test_loss_falls_and_the_bundle_is_exported(trained):
    history = trained.history
    assert len(history) == EPOCHS and trained.finished
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    bundle = load_bundle(trained.bundle_dir)
    m = bundle.manifest
    assert (m.architecture, m.tile_px, m.pixel_size_um) == ("resnet18", 64, 2.0)
    assert m.synthetic and m.temperature == pytest.approx(trained.temperature)
    counts = m.training["counts_per_class"]
    assert counts["train"] == {"bcc": 4, "melanoma": 4, "naevus": 4}
    assert m.training["pretrained"].startswith("none")
    card = bundle.model_card().lower()
    assert "trained on synthetic images, no patient data, not for diagnosis" in card
    assert "87% test accuracy on 429" in card
    assert (trained.bundle_dir / "split.json").is_file()


def test_exported_bundle_classifies_with_the_app_path(trained, data_dir: Path):
    bundle = load_bundle(trained.bundle_dir)
    path = next((data_dir / "naevus").glob("*.tif"))
    with open_mosaic(path) as mosaic:
        prediction = classify_mosaic(mosaic, bundle, device="cpu")
    assert prediction.n_tiles > 0
    assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-6)


def test_evaluate_beats_chance_and_writes_the_report(trained, data_dir: Path, tmp_path: Path):
    result = evaluate(data_dir, trained.bundle_dir, split="all", out_dir=tmp_path, progress=None)
    assert result.metrics["n"] == 24
    assert result.metrics["accuracy"] >= 0.6  # chance is 1/3
    names = {p.name for p in result.files}
    assert {
        "metrics.json",
        "metrics.md",
        "roc.png",
        "reliability.png",
        "confusion.png",
        "predictions.csv",
    } <= names
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["confusion_matrix"] == result.metrics["confusion_matrix"]
    test_only = evaluate(
        data_dir, trained.bundle_dir, split="test", out_dir=tmp_path / "t", progress=None
    )
    assert test_only.metrics["n"] == 6


@pytest.mark.slow
def test_resume_repeats_the_uninterrupted_run(trained, data_dir: Path, tmp_path: Path):
    config = _config(data_dir, tmp_path / "resumed", stop_after_epochs=2)
    first = train(config, progress=None)
    assert not first.finished and first.epochs_run == 2
    state = torch.load(first.work_dir / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 2
    second = train(dataclasses.replace(config, stop_after_epochs=None, resume=True), progress=None)
    assert second.finished and second.epochs_run == EPOCHS
    assert [h["train_loss"] for h in second.history] == pytest.approx(
        [h["train_loss"] for h in trained.history], rel=1e-6
    )
    a = torch.load(trained.work_dir / CHECKPOINT_NAME, weights_only=True)["model"]
    b = torch.load(second.work_dir / CHECKPOINT_NAME, weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_whole_mosaic_baseline_trains_and_evaluates(data_dir: Path, tmp_path: Path):
    config = _config(
        data_dir, tmp_path / "baseline", whole_mosaic=True, tile_px=96, epochs=2, crops_per_mosaic=4
    )
    result = train(config, progress=None)
    bundle = load_bundle(result.bundle_dir)
    assert bundle.manifest.training["input"] == "whole_mosaic"
    assert "Baseline for comparison" in bundle.model_card()
    report = evaluate(
        data_dir, result.bundle_dir, split="test", out_dir=tmp_path / "ev", progress=None
    )
    assert report.metrics["n"] == 6
    assert np.isfinite(report.metrics["accuracy"])


def test_cli_single_class_is_one_line_and_nonzero(tmp_path: Path, capsys):
    write_dataset(
        tmp_path / "data", per_class=3, width=96, height=96, seed=1, classes=("melanoma",)
    )
    code = cli_main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.count("\n") == 0 and "only one class" in err
    assert not (tmp_path / "m").exists()


def test_missing_pretrained_file_fails_clearly(data_dir: Path, tmp_path: Path):
    from rcm_viewer.errors import TrainingError

    config = _config(data_dir, tmp_path / "m", pretrained=tmp_path / "resnet18.pth")
    with pytest.raises(TrainingError, match="never downloads"):
        train(config, progress=None)


def test_cli_train_signs_the_bundle_with_sign_key(data_dir: Path, tmp_path: Path, capsys):
    """Issue 16: ``train --sign-key`` signs the exported bundle; a bad key fails at once."""
    from rcm_viewer.inference.signing import SIGNATURE_NAME, generate_key_pair

    args = [
        "train",
        str(data_dir),
        "--out",
        str(tmp_path / "m"),
        "--arch",
        "resnet18",
        "--tile-px",
        "64",
        "--pixel-size-um",
        "2.0",
        "--epochs",
        "1",
        "--crops-per-mosaic",
        "2",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--split",
        "50/25/25",
    ]
    (tmp_path / "not-a-key.pem").write_text("nonsense", encoding="utf-8")
    assert cli_main([*args, "--sign-key", str(tmp_path / "not-a-key.pem")]) != 0
    assert "not an unencrypted PEM private key" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # refused before any training
    private, _ = generate_key_pair(tmp_path / "keys" / "clinic-a")
    assert cli_main([*args, "--sign-key", str(private)]) == 0
    assert (tmp_path / "m" / SIGNATURE_NAME).is_file()
    assert load_bundle(tmp_path / "m").trust.startswith("unverified: unknown key")
