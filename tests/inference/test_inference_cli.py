"""``rcm-viewer classify``: one row per input, JSON/CSV/table, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from rcm_test_helpers import run_cli

from rcm_viewer.cli import main
from rcm_viewer.inference import ModelBundle, classify_paths
from rcm_viewer.inference.batch import row_columns

COLUMNS = row_columns(("melanoma", "bcc", "naevus"))


def test_json_rows_with_a_bad_file_among_good_ones(
    random_bundle: ModelBundle,
    mosaic_files: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "results.json"
    inputs = [
        mosaic_files["gray_512"],
        mosaic_files["broken"],
        mosaic_files["no_pixel_size"],
        mosaic_files["black"],
        tmp_path / "missing.tif",
        mosaic_files["rgb"],
    ]
    code = main(
        [
            "classify",
            *map(str, inputs),
            "--model",
            str(random_bundle.path),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 3
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [Path(r["path"]).name for r in rows] == [p.name for p in inputs]
    assert all(list(r) == COLUMNS for r in rows)
    good, broken, no_size, black, missing, rgb = rows
    for row in (good, rgb):
        assert row["status"] == "ok" and row["top_class"] in ("melanoma", "bcc", "naevus")
        assert row["p_melanoma"] + row["p_bcc"] + row["p_naevus"] == pytest.approx(1.0, abs=1e-5)
        assert row["model"] == "test-model" and row["model_version"] == "0.0.1"
        assert row["weights_sha256"] == random_bundle.manifest.weights_sha256
        assert row["backend"] == "torch"  # auto: this bundle has no ONNX export
        assert row["model_trust"] == "unverified: unsigned"  # issue 16: said on every row
    assert "broken.tif is not a supported image" in broken["status"]
    assert "pixel size is unknown" in no_size["status"]
    assert black["status"] == "no assessable tissue"
    assert "missing.tif does not exist" in missing["status"]
    for row in (broken, no_size, black, missing):
        assert row["top_class"] is None and row["p_bcc"] is None
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("rcm-viewer: error")]
    assert len(errors) == 4 and "demonstration model" in captured.err
    assert "unverified model (unsigned)" in captured.err
    assert "wrote" in captured.out


def test_csv_rows_and_exit_code_zero_when_all_are_classified(
    random_bundle: ModelBundle, mosaic_files: dict, tmp_path: Path
) -> None:
    out = tmp_path / "results.csv"
    code = main(
        [
            "classify",
            str(mosaic_files["composite_flat"]),
            str(mosaic_files["no_pixel_size"]),
            "--pixel-size-um",
            "1.0",
            "--model",
            str(random_bundle.path),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    with out.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS and len(rows) == 2
    assert all(r["status"] == "ok" for r in rows)
    # same pixels, same pixel size: same numbers whether the file knew its pixel size or not
    assert rows[0]["p_bcc"] == rows[1]["p_bcc"]
    assert 0 <= float(rows[0]["p_naevus"]) <= 1


def test_table_on_stdout_without_out(
    random_bundle: ModelBundle, mosaic_files: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "classify",
            str(mosaic_files["gray_512"]),
            str(mosaic_files["blank"]),
            "--model",
            str(random_bundle.path),
        ]
    )
    assert code == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "file",
        "top_class",
        "p_melanoma",
        "p_bcc",
        "p_naevus",
        "seconds",
        "status",
    ]
    assert lines[1].startswith("gray_512.tif") and lines[1].endswith("ok")
    assert lines[2].startswith("blank.tif") and lines[2].endswith("no assessable tissue")


def test_model_problems_stop_before_any_row(
    mosaic_files: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["classify", str(mosaic_files["composite"]), "--model", str(tmp_path / "nope")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.delenv("RCM_VIEWER_MODEL_DIR", raising=False)
    monkeypatch.setattr("rcm_viewer.paths.MODELS_DIR", tmp_path)
    assert main(["classify", str(mosaic_files["composite"])]) == 2
    assert "no classifier model is installed" in capsys.readouterr().err
    assert main(["classify", str(mosaic_files["composite"]), "--out", "x.txt"]) == 2
    assert "--out must end in .csv, .json or .jsonl" in capsys.readouterr().err


def test_classify_paths_reports_progress_per_file(
    random_bundle: ModelBundle, mosaic_files: dict
) -> None:
    seen: list[tuple[int, int, int, int]] = []
    rows = list(
        classify_paths(
            [mosaic_files["gray_512"], mosaic_files["broken"], mosaic_files["gray_512"]],
            random_bundle,
            device="cpu",
            progress=lambda *a: seen.append(a),
        )
    )
    assert [r.ok for r in rows] == [True, False, True]
    assert rows[0].probabilities == rows[2].probabilities
    assert rows[0].prediction is not None and rows[0].prediction.heatmap is not None
    assert {s[0] for s in seen} == {0, 2} and all(s[1] == 3 for s in seen)
    assert seen[-1][2] == seen[-1][3] > 0


def test_real_entry_point(random_bundle: ModelBundle, mosaic_files: dict, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = run_cli(
        "classify",
        str(mosaic_files["gray_512"]),
        "--model",
        str(random_bundle.path),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text(encoding="utf-8"))[0]["status"] == "ok"
