"""`rcm-viewer synth` as a user runs it: files, metadata, exit codes, one-line errors."""

from __future__ import annotations

import csv
import json

import pytest
import tifffile
from rcm_test_helpers import run_cli

from rcm_viewer import __version__


def test_version_help_and_module_entry_point() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"rcm-viewer {__version__}"
    result = run_cli("--help")
    assert result.returncode == 0
    assert "synth" in result.stdout and "Not a diagnostic" in result.stdout
    result = run_cli("synth", "--help")
    assert result.returncode == 0 and "--per-class" in result.stdout


def test_synth_writes_a_class_per_folder_dataset(tmp_path) -> None:
    out = tmp_path / "ds"
    result = run_cli(
        "synth",
        str(out),
        "--per-class",
        "2",
        "--size",
        "300",
        "--seed",
        "4",
        "--bits",
        "16",
        "--pixel-size-um",
        "0.8",
    )
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*/*.ome.tif"))
    assert len(files) == 6
    assert {f.parent.name for f in files} == {"melanoma", "bcc", "naevus"}
    for path in files:
        with tifffile.TiffFile(path) as tif:
            description = json.loads(
                tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Description"]
            )
            assert description["lesion_class"] == path.parent.name
            assert description["pixel_size_um"] == pytest.approx(0.8)
            assert tif.pages[0].dtype.itemsize == 2 and tif.pages[0].shape == (300, 300)
    rows = list(csv.DictReader((out / "dataset.csv").open()))
    assert len(rows) == 6 and {r["lesion_class"] for r in rows} == {"melanoma", "bcc", "naevus"}
    # same seed, same bytes, in a second run
    again = tmp_path / "again"
    assert (
        run_cli(
            "synth",
            str(again),
            "--per-class",
            "2",
            "--size",
            "300",
            "--seed",
            "4",
            "--bits",
            "16",
            "--pixel-size-um",
            "0.8",
            "--quiet",
        ).returncode
        == 0
    )
    for path in files:
        assert path.read_bytes() == (again / path.relative_to(out)).read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "10"], "outside"),
        (["--classes", "lentigo"], "unknown class"),
        (["--pixel-size-um", "9"], "pixel size"),
        (["--per-class", "0"], "at least 1"),
        (["--bits", "16", "--compression", "jpeg"], "8-bit"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, args, message) -> None:
    result = run_cli("synth", str(tmp_path / "ds"), "--size", "128", "--per-class", "1", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_output_path_that_is_a_file_is_refused(tmp_path) -> None:
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    result = run_cli("synth", str(target), "--size", "128", "--per-class", "1")
    assert result.returncode == 2 and "not a folder" in result.stderr


def test_unknown_option_is_a_usage_error() -> None:
    result = run_cli("synth", "--no-such-flag")
    assert result.returncode == 2 and "usage" in result.stderr


def test_info_reads_back_what_synth_wrote(tmp_path) -> None:
    out = tmp_path / "ds"
    assert (
        run_cli(
            "synth",
            str(out),
            "--per-class",
            "1",
            "--size",
            "256",
            "--classes",
            "bcc",
            "--pixel-size-um",
            "0.6",
            "--quiet",
        ).returncode
        == 0
    )
    result = run_cli("info", str(out / "bcc" / "bcc_0000.ome.tif"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["lesion_class"] == "bcc"
    assert info["pixel_size_um"] == pytest.approx(0.6)
