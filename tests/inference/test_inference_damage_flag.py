"""Issue 16, finding 1: a classification of a damaged file says so, even when the
classifier itself read only an intact reduced level of the pyramid."""

from __future__ import annotations

from pathlib import Path

from rcm_viewer.inference import ModelBundle
from rcm_viewer.inference.engine import classify_mosaic, damage_flags
from rcm_viewer.mosaic import open_mosaic
from tests.mosaic.hostile_files import write_pyramid_with_damaged_base


def test_damage_found_in_the_file_is_flagged_on_the_result(
    tmp_path: Path, random_bundle: ModelBundle
) -> None:
    path = tmp_path / "pyramid.tif"
    write_pyramid_with_damaged_base(path, 1024)  # 0.75 µm/px; model at 2 µm/px reads level 1
    with open_mosaic(path) as mosaic:
        after = classify_mosaic(mosaic, random_bundle, device="cpu")
        assert after.status == "ok" and len(mosaic.damage_report()) == 16  # all base tiles
        assert damage_flags(mosaic) == [f for f in after.flags if f.startswith("damaged")]
    damaged = [f for f in after.flags if f.startswith("damaged image data")]
    assert damaged[0].startswith("damaged image data: pyramid.tif: tile ")
    assert damaged[-1] == "damaged image data: 13 more damaged tiles"
