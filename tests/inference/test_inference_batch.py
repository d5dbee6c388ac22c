"""Batch classification of folders: mixed inputs, kill + resume, row files, shards, hostile
names, heatmaps, a tampered model (issue 12 and finding 8 of issue 16).

Real TIFF/PNG files, the real CLI (in process, and as a subprocess killed with SIGKILL),
the tiny random ResNet-18 bundle: these tests check plumbing, never the model's answers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import inference_testkit as kit
import numpy as np
import pytest
import tifffile
from PIL import Image
from rcm_test_helpers import REPO_DIR

from rcm_viewer.cli import main
from rcm_viewer.inference import FileScan, ModelBundle, RowWriter, classify_paths, read_rows
from rcm_viewer.inference.batch import neutralise_cell, one_line_reason, printable, row_columns
from rcm_viewer.inference.manifest import manifest_seal

CLASSES = ("melanoma", "bcc", "naevus")
COLUMNS = row_columns(CLASSES)


def _texture(seed: int, side: int = 384) -> np.ndarray:
    """A textured (tissue-like) image; each seed gives other bytes, so another sha256."""
    rng = np.random.default_rng(seed)
    return (rng.random((side, side)) * 180 + 40).astype(np.uint8)


def _good(path: Path, seed: int, side: int = 384) -> Path:
    return kit.write_tiff(path, _texture(seed, side))


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("rcm-viewer: error:")]


def test_mixed_folder_completes_with_each_error_listed_and_exit_3(
    random_bundle: ModelBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "day"
    folder.mkdir()
    _good(folder / "a_good.tif", 1)
    Image.fromarray(_texture(2)).save(
        folder / "b_png_named.tif", format="PNG", dpi=(25400, 25400)
    )  # 1 µm/px
    (folder / "c_empty.tif").write_bytes(b"")
    (folder / "d_corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 60)
    (folder / "e_unsupported.tif").write_bytes(b"GIF89a" + b"\x00" * 200)
    (folder / "notes.txt").write_text("not a mosaic")  # wrong extension: left out, counted
    text_named_jpg = tmp_path / "letter.jpg"  # named on the command line: gets its row
    text_named_jpg.write_text("Dear colleague, ...")
    out = tmp_path / "out.csv"
    code = main(
        [
            "classify",
            str(folder),
            str(text_named_jpg),
            "--model",
            str(random_bundle.path),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 3
    rows = read_rows(out)
    names = [Path(r["path"]).name for r in rows]
    assert names == [
        "a_good.tif",
        "b_png_named.tif",
        "c_empty.tif",
        "d_corrupt.tif",
        "e_unsupported.tif",
        "letter.jpg",
    ]
    status = {Path(r["path"]).name: r["status"] for r in rows}
    assert status["a_good.tif"] == "ok" and status["b_png_named.tif"] == "ok"
    assert "empty" in status["c_empty.tif"]
    assert "d_corrupt.tif" in status["d_corrupt.tif"] and status["d_corrupt.tif"] != "ok"
    assert "GIF" in status["e_unsupported.tif"]
    assert "letter.jpg" in status["letter.jpg"] and status["letter.jpg"] != "ok"
    err = capsys.readouterr().err
    errors = _errors(err)
    assert len(errors) == 4
    for name in ("c_empty.tif", "d_corrupt.tif", "e_unsupported.tif", "letter.jpg"):
        assert sum(name in line for line in errors) == 1
    assert "4 of 6 file(s) could not be classified" in err
    assert "1 file(s) in the folder(s) are not mosaic images" in err
    # the errors are listed at the end, after the progress lines
    assert err.rstrip().splitlines()[-1].startswith("rcm-viewer: 4 of 6")


def _kill_after_first_row(args: list[str], out: Path) -> int:
    env = dict(os.environ, RCM_VIEWER_TORCH_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rcm_viewer", *args],
        cwd=REPO_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and read_rows(out):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the batch ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    return len(read_rows(out))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_sigkill_then_resume_gives_no_duplicate_and_no_missing_row(
    random_bundle: ModelBundle, tmp_path: Path, suffix: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    files = [_good(folder / f"m{i:02d}.tif", 100 + i, side=512) for i in range(4)]
    (folder / "zz_broken.tif").write_bytes(b"nonsense")
    out = tmp_path / f"rows{suffix}"
    args = [
        "classify",
        str(folder),
        "--model",
        str(random_bundle.path),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--quiet",
    ]
    first = _kill_after_first_row(args, out)
    assert 1 <= first < len(files)
    if suffix == ".json":
        assert isinstance(json.loads(out.read_text(encoding="utf-8")), list)  # still valid
    else:
        with out.open(newline="", encoding="utf-8") as fh:
            assert next(csv.reader(fh)) == COLUMNS
    before = {r["sha256"]: r for r in read_rows(out)}
    result = subprocess.run(
        [sys.executable, "-m", "rcm_viewer", *args, "--resume"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, RCM_VIEWER_TORCH_THREADS="1"),
    )
    assert result.returncode == 3, result.stderr  # zz_broken.tif
    rows = read_rows(out)
    paths = [Path(r["path"]).name for r in rows]
    assert sorted(paths) == sorted([f.name for f in files] + ["zz_broken.tif"])
    assert len(paths) == len(set(paths))  # no duplicate
    for row in rows:  # rows written before the kill are kept as they were
        if before.get(row["sha256"], {}).get("status") == "ok":
            assert row == before[row["sha256"]]
    if suffix == ".json":
        assert len(json.loads(out.read_text(encoding="utf-8"))) == len(rows)
    assert "already there" in result.stdout


def test_row_schema_in_csv_json_and_jsonl(random_bundle: ModelBundle, tmp_path: Path) -> None:
    image = _good(tmp_path / "lesion.tif", 5)
    sidecar_image = _good(tmp_path / "side.tif", 6)
    (tmp_path / "side.tif.json").write_text(json.dumps({"pixel_size_um": 0.8}))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"nope")
    rows_by_format = {}
    for suffix in (".csv", ".json", ".jsonl"):
        out = tmp_path / f"r{suffix}"
        code = main(
            [
                "classify",
                str(image),
                str(sidecar_image),
                str(broken),
                "--model",
                str(random_bundle.path),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        assert code == 3
        rows_by_format[suffix] = read_rows(out)
        for row in rows_by_format[suffix]:
            assert list(row) == COLUMNS
    with (tmp_path / "r.csv").open(newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == COLUMNS
    assert len((tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert [r["path"] for r in json.loads((tmp_path / "r.json").read_text("utf-8"))] == [
        str(image),
        str(sidecar_image),
        str(broken),
    ]
    for rows in rows_by_format.values():
        good, side, bad = rows
        assert good["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        assert good["status"] == "ok" and good["top_class"] in CLASSES
        assert (good["width"], good["height"]) == (384, 384)
        assert good["pixel_size_um"] == 1.0 and good["pixel_size_source"] == "tiff-resolution"
        assert side["pixel_size_um"] == 0.8 and side["pixel_size_source"] == "sidecar"
        assert sum(good[f"p_{c}"] for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
        assert good["model"] == "test-model" and good["model_version"] == "0.0.1"
        assert good["weights_sha256"] == random_bundle.manifest.weights_sha256
        assert isinstance(good["seconds"], float)
        assert bad["status"] != "ok" and bad["top_class"] is None and bad["p_bcc"] is None
        assert bad["width"] is None and bad["pixel_size_source"] is None
    # --pixel-size-um is used for every file and says so
    out = tmp_path / "given.jsonl"
    assert (
        main(
            [
                "classify",
                str(sidecar_image),
                "--pixel-size-um",
                "0.6",
                "--model",
                str(random_bundle.path),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    (row,) = read_rows(out)
    assert row["pixel_size_um"] == 0.6 and row["pixel_size_source"] == "given"


def test_shards_cover_every_file_exactly_once(tmp_path: Path) -> None:
    names = []
    for folder in ("a", "b/c", "b/d", "e"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            path = tmp_path / folder / f"{i}_{folder.replace('/', '_')}.tif"
            path.write_bytes(b"")
            names.append(path)
    (tmp_path / "b" / "readme.md").write_text("x")
    everything = list(FileScan([tmp_path], recursive=True))
    assert everything == sorted(names)  # sorted order, every mosaic name, nothing else
    assert len(list(FileScan([tmp_path]))) == 0  # not recursive: no file at the top
    for n in (1, 3, 5):
        shards = [list(FileScan([tmp_path], recursive=True, shard=(i, n))) for i in range(1, n + 1)]
        flat = [p for shard in shards for p in shard]
        assert sorted(flat) == everything and len(flat) == len(set(flat))
        assert shards[0][0] == everything[0]
        if n > 1:
            assert shards[1][0] == everything[1]
    scan = FileScan([tmp_path], recursive=True, include=["*_b_*"], exclude=["b/d/*"])
    assert [p.name for p in scan] == [f"{i}_b_c.tif" for i in range(4)]
    scan = FileScan([tmp_path / "a", tmp_path / "a" / "0_a.tif"])  # named twice: once
    assert len(list(scan)) == 4


def test_shard_option_on_the_command_line(
    random_bundle: ModelBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.tif").write_bytes(b"x")  # quick failures: the shard is what counts
    seen = []
    for i in (1, 2):
        out = tmp_path / f"s{i}.jsonl"
        assert (
            main(
                [
                    "classify",
                    str(folder),
                    "--shard",
                    f"{i}/2",
                    "--model",
                    str(random_bundle.path),
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 3
        )
        seen += [Path(r["path"]).name for r in read_rows(out)]
    assert sorted(seen) == ["0.tif", "1.tif", "2.tif"]
    assert main(["classify", str(folder), "--shard", "3/2"]) == 2
    assert "--shard 3/2" in capsys.readouterr().err


def test_csv_cells_are_neutralised_and_newlines_escaped(
    random_bundle: ModelBundle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    formula = '=HYPERLINK("x.example","open").tif'
    _good(tmp_path / formula, 7)
    (tmp_path / "@bad\nname.tif").write_bytes(b"broken")
    assert (
        main(
            [
                "classify",
                formula,
                "@bad\nname.tif",
                "--model",
                str(random_bundle.path),
                "--out",
                "r.csv",
                "--quiet",
            ]
        )
        == 3
    )
    text = (tmp_path / "r.csv").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 3  # header + one line per file, whatever the names
    with (tmp_path / "r.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["path"] == "'" + formula and rows[0]["status"] == "ok"
    assert rows[1]["path"] == "'@bad\\nname.tif"
    assert rows[1]["status"].startswith("'@bad\\nname.tif")  # the message names it, escaped
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    err = capsys.readouterr().err
    (error,) = _errors(err)
    assert "@bad\\nname.tif" in error
    assert all("name.tif" not in line or "\\n" in line for line in err.splitlines())
    # JSON keeps the exact name (it escapes newlines itself)
    assert (
        main(
            [
                "classify",
                "@bad\nname.tif",
                "--model",
                str(random_bundle.path),
                "--out",
                "r.json",
                "--quiet",
            ]
        )
        == 3
    )
    assert json.loads((tmp_path / "r.json").read_text("utf-8"))[0]["path"] == "@bad\nname.tif"
    assert neutralise_cell("-2+3") == "'-2+3" and neutralise_cell(0.5) == 0.5
    assert printable("a\tb\x1bc") == "a\\tb\\x1bc"


def test_out_pointing_at_a_folder_fails_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    mosaic = _good(tmp_path / "m.tif", 8)
    # the model does not even exist: the --out check comes before any other work
    assert (
        main(["classify", str(mosaic), "--out", str(folder), "--model", str(tmp_path / "no-model")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0] and "does not exist" not in err[0]
    assert main(["classify", str(mosaic), "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_heatmaps_png_overlay_and_float_tiff_in_mosaic_coordinates(
    random_bundle: ModelBundle, tmp_path: Path
) -> None:
    mosaic = _good(tmp_path / "lesion.tif", 9, side=512)
    heat = tmp_path / "heat"
    rows = list(classify_paths([mosaic], random_bundle, device="cpu", heatmaps_dir=heat))
    (row,) = rows
    assert row.ok and row.prediction is not None
    prediction = row.prediction
    stem = f"lesion.tif-{row.sha256[:8]}"
    with tifffile.TiffFile(heat / f"{stem}.heatmap.tif") as tif:
        planes = tif.asarray()
        meta = json.loads(tif.pages[0].description)
    assert planes.dtype == np.float32
    np.testing.assert_array_equal(planes, prediction.heatmap)
    assert meta["class_ids"] == list(CLASSES)
    assert meta["heatmap_cell_px"] == prediction.heatmap_cell_px
    assert meta["mosaic_size"] == [512, 512]
    overlay = Image.open(heat / f"{stem}.heatmap.png")
    assert overlay.mode == "RGB" and overlay.size == (512, 512)


def _resealed(bundle: ModelBundle, directory: Path, weights: bytes) -> Path:
    """A copy of ``bundle`` with other weights bytes, resealed as a tamperer would."""
    import shutil

    shutil.copytree(bundle.path, directory)
    (directory / "weights.pt").write_bytes(weights)
    manifest = json.loads((directory / "manifest.json").read_text("utf-8"))
    manifest["weights"]["sha256"] = hashlib.sha256(weights).hexdigest()
    manifest["manifest_sha256"] = manifest_seal(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    return directory


def test_a_refused_pickle_is_one_line(random_bundle: ModelBundle, tmp_path: Path) -> None:
    import fractions
    import pickle

    evil = _resealed(
        random_bundle, tmp_path / "evil", pickle.dumps({"conv1.weight": fractions.Fraction(1, 3)})
    )
    mosaic = _good(tmp_path / "m.tif", 10)
    result = subprocess.run(
        [sys.executable, "-m", "rcm_viewer", "classify", str(mosaic), "--model", str(evil)],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "note:" not in line]
    assert len(lines) == 1, result.stderr
    assert "weights.pt" in lines[0] and "refused" in lines[0]
    assert one_line_reason("first line\n\n(1) advice\n(2) more") == "first line"


def test_resume_drops_a_row_cut_mid_write_and_earlier_failures(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    ok = {c: None for c in COLUMNS} | {
        "path": "a.tif",
        "sha256": "a" * 64,
        "status": "ok",
        "weights_sha256": "w" * 64,
    }
    failed = ok | {"path": "b.tif", "sha256": "b" * 64, "status": "b.tif is empty"}
    out.write_text(
        json.dumps(ok) + "\n" + json.dumps(failed) + "\n" + '{"path": "c.t', encoding="utf-8"
    )
    with RowWriter(out, CLASSES, weights_sha256="w" * 64, resume=True) as writer:
        assert writer.done == {"a" * 64}
    assert read_rows(out) == [ok]
    with RowWriter(out, CLASSES, weights_sha256="other", resume=True) as writer:
        assert writer.done == set()  # another model's rows do not count as done
    assert read_rows(out) == [ok]
