"""``rcm-viewer info``: text, JSON and exit codes, run as a real subprocess."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile
from mosaic_testdata import gradient

from rcm_viewer.cli import main

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RCM_VIEWER_DATA_DIR=str(data_dir), PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "rcm_viewer", "info", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=REPO,
        timeout=60,
    )


@pytest.fixture
def synthetic_tif(tmp_path: Path) -> Path:
    path = tmp_path / "lesion_07.tif"
    image = gradient(600, 800, "uint16")
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            image,
            tile=(128, 128),
            compression="zlib",
            subifds=1,
            metadata={"pixel_size_um": 0.5, "lesion_class": "naevus"},
        )
        tif.write(image[::2, ::2], tile=(128, 128), compression="zlib", subfiletype=1)
    return path


def test_info_text(synthetic_tif: Path, tmp_path: Path) -> None:
    result = _run(str(synthetic_tif), data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "800 x 600 px" in out and "uint16" in out
    assert "2 stored (800x600, 400x300)" in out
    assert "0.5 µm/px (from tiff-metadata)" in out
    assert "class:       naevus" in out
    assert "0.40 x 0.30 mm" in out


def test_info_json(synthetic_tif: Path, tmp_path: Path) -> None:
    result = _run(str(synthetic_tif), "--json", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["width"] == 800 and data["height"] == 600
    assert data["dtype"] == "uint16" and data["channels"] == 1 and data["is_rgb"] is False
    assert [lv["width"] for lv in data["levels"]] == [800, 400]
    assert data["pages"] == 1
    assert data["pixel_size_um"] == 0.5 and data["pixel_size_source"] == "tiff-metadata"
    assert data["lesion_class"] == "naevus" and data["format"] == "tiff"


def test_info_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "lesion_08.tif"
    tifffile.imwrite(path, gradient(256, 256), tile=(64, 64), compression="zlib")
    path.write_bytes(path.read_bytes()[:3000])
    result = _run(str(path), data_dir=tmp_path / "data")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("rcm-viewer: error: lesion_08.tif is truncated: tile")
    assert result.stdout == ""


def test_info_in_process_unknown_pixel_size_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    logger = logging.getLogger("rcm_viewer")
    handlers_before = list(logger.handlers)
    request.addfinalizer(
        lambda: [logger.removeHandler(h) for h in logger.handlers if h not in handlers_before]
    )
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, gradient(3000, 100, "uint8"), tile=(64, 64))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "pixel size:  unknown" in out
    assert "the viewer builds 2 more" in out
    assert main(["info", str(tmp_path / "missing.tif")]) == 2
    assert "missing.tif does not exist" in capsys.readouterr().err
    assert main(["info", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
