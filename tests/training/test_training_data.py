"""Data discovery, the stratified patient-disjoint split, and bad-data errors (no training)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from rcm_viewer.errors import TrainingError
from rcm_viewer.synthetic import write_dataset
from rcm_viewer.training.data import (
    SPLIT_CSV,
    SPLIT_JSON,
    class_weights,
    load_split,
    parse_split_fractions,
    save_split,
    scan_data_dir,
    split_dataset,
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("split-data")
    write_dataset(root, per_class=10, width=128, height=128, seed=11)
    return root


def test_scan_finds_every_class_and_skips_unreadable_files(data_dir: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    (copy / "bcc" / "broken.tif").write_bytes(b"II*\x00garbage")
    (copy / "naevus" / "notes.txt").write_text("not an image")  # ignored silently
    data = scan_data_dir(copy)
    assert data.class_ids == ("bcc", "melanoma", "naevus")
    assert data.counts() == {"bcc": 10, "melanoma": 10, "naevus": 10}
    assert [s.path for s in data.skipped] == ["bcc/broken.tif"]
    assert "broken.tif" in data.skipped[0].reason


def test_split_is_stratified_seeded_and_saved(data_dir: Path, tmp_path: Path):
    data = split_dataset(scan_data_dir(data_dir), parse_split_fractions("70/15/15"), seed=3)
    for split, expected in (("train", 6), ("validation", 2), ("test", 2)):
        assert set(data.counts(split).values()) == {expected}, split
    again = split_dataset(scan_data_dir(data_dir), (0.7, 0.15, 0.15), seed=3)
    assert again.records == data.records
    other = split_dataset(scan_data_dir(data_dir), (0.7, 0.15, 0.15), seed=4)
    assert other.records != data.records
    save_split(data, tmp_path, seed=3, fractions=(0.7, 0.15, 0.15))
    assert (tmp_path / SPLIT_CSV).read_text().startswith("path,class_id,patient_id,split")
    loaded = load_split(tmp_path / SPLIT_JSON, data_dir)
    assert loaded.records == data.records
    assert json.loads((tmp_path / SPLIT_JSON).read_text())["seed"] == 3


def test_patients_never_span_two_splits(data_dir: Path, tmp_path: Path):
    data = scan_data_dir(data_dir)
    csv_path = tmp_path / "patients.csv"
    # two or three mosaics per patient, patients of mixed classes included
    rows = ["path,patient_id"]
    for i, record in enumerate(data.records):
        rows.append(f"{record.path},P{i // 3:02d}")
    csv_path.write_text("\n".join(rows) + "\n")
    with_patients = scan_data_dir(data_dir, patients_csv=csv_path)
    split = split_dataset(with_patients, (0.6, 0.2, 0.2), seed=1)
    splits_of = defaultdict(set)
    for r in split.records:
        splits_of[r.patient_id].add(r.split)
    assert all(len(s) == 1 for s in splits_of.values())
    for name in ("train", "validation"):
        assert all(n > 0 for n in split.counts(name).values())


def test_single_class_stops_before_training(tmp_path: Path):
    write_dataset(tmp_path, per_class=4, width=96, height=96, seed=1, classes=("bcc",))
    with pytest.raises(TrainingError, match="only one class"):
        split_dataset(scan_data_dir(tmp_path), (0.7, 0.15, 0.15), seed=0)


def test_too_few_mosaics_in_a_class_stops_with_one_line(tmp_path: Path):
    write_dataset(tmp_path, per_class=4, width=96, height=96, seed=1, classes=("bcc",))
    write_dataset(tmp_path / "tmp", per_class=2, width=96, height=96, seed=2, classes=("naevus",))
    (tmp_path / "tmp" / "naevus").rename(tmp_path / "naevus")
    import shutil

    shutil.rmtree(tmp_path / "tmp")
    with pytest.raises(TrainingError) as info:
        split_dataset(scan_data_dir(tmp_path), (0.7, 0.15, 0.15), seed=0)
    message = str(info.value)
    assert "naevus" in message and "at least 3" in message and "\n" not in message


def test_bad_split_text_and_empty_folder(tmp_path: Path):
    with pytest.raises(TrainingError, match="70/15/15"):
        parse_split_fractions("70-30")
    with pytest.raises(TrainingError, match="no class folders"):
        scan_data_dir(tmp_path)


def test_class_weights_balance_the_classes():
    weights = class_weights({"a": 30, "b": 10}, ["a", "b"])
    assert weights[0] * 30 == pytest.approx(weights[1] * 10)
    assert (weights[0] * 30 + weights[1] * 10) / 40 == pytest.approx(1.0)


def test_importing_the_training_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, rcm_viewer.training, rcm_viewer.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
