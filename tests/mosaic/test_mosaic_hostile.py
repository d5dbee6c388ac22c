"""Issue 16, findings 1 and 2: damaged image data is reported, memory stays bounded.

Every file is generated here, small (kB to 2 MB), however many pixels its header claims.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rcm_viewer.errors import MosaicError
from rcm_viewer.mosaic import flat_reader, open_mosaic
from tests.mosaic.hostile_files import (
    jpeg_bytes,
    jpeg_cut_scan,
    jpeg_patch_size,
    jpeg_randomise_scan,
    texture,
    write_pyramid_with_damaged_base,
    write_tiled_tiff,
    write_zero_png,
    zero_deflate,
)


def _read_all(path: Path) -> np.ndarray:
    with open_mosaic(path) as mosaic:
        return mosaic.read_region(0, 0, 0, mosaic.info.width, mosaic.info.height)


@pytest.mark.parametrize("damage", ["scan_cut", "scan_20pct_random"])
def test_a_damaged_jpeg_is_refused_not_shown_grey(tmp_path: Path, damage: str) -> None:
    good = jpeg_bytes(texture(256))
    bad = jpeg_cut_scan(good) if damage == "scan_cut" else jpeg_randomise_scan(good)
    assert bad.endswith(b"\xff\xd9")  # the end marker is kept: not a plain truncation
    path = tmp_path / f"{damage}.jpg"
    path.write_bytes(bad)
    with pytest.raises(MosaicError) as caught:
        _read_all(path)
    message = str(caught.value)
    assert message.startswith(f"{damage}.jpg is damaged") and "\n" not in message
    # the intact file still opens, with the same pixels Pillow gives
    (tmp_path / "good.jpg").write_bytes(good)
    from PIL import Image

    assert np.array_equal(
        _read_all(tmp_path / "good.jpg"), np.asarray(Image.open(tmp_path / "good.jpg"))
    )


def test_randomised_full_resolution_tiles_are_reported_per_tile(tmp_path: Path) -> None:
    path = tmp_path / "pyramid.tif"
    write_pyramid_with_damaged_base(path, 512)  # 4 x 4 tiles of 256 px, base damaged
    with open_mosaic(path) as mosaic:
        assert mosaic.info.levels[1].stored
        mosaic.read_region(1, 0, 0, 256, 256)  # the intact reduced level reads fine
        assert mosaic.damage_report() == []
        with pytest.raises(MosaicError, match=r"pyramid.tif is damaged: tile 1 of 4"):
            mosaic.read_region(0, 0, 0, 64, 64)
        report = mosaic.check_damage()
        assert len(report) == 4  # every randomised base tile, one line each
        assert all(line.startswith("pyramid.tif: tile ") for line in report)
        assert all("\n" not in line for line in report)
        assert mosaic.damaged_regions()[-1] == (0, 0, 256, 256, 512, 512)


def test_an_intact_jpeg_tiled_tiff_reads_as_tifffile_decodes_it(tmp_path: Path) -> None:
    path = tmp_path / "ok.tif"
    image = texture(512)
    tifffile.imwrite(path, image, tile=(256, 256), compression="jpeg")
    with open_mosaic(path) as mosaic:
        assert np.array_equal(mosaic.read_region(0, 0, 0, 512, 512), tifffile.imread(path))
        assert mosaic.check_damage() == []


def test_a_tiny_jpeg_claiming_46000_px_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "claims.jpg"
    path.write_bytes(jpeg_patch_size(jpeg_bytes(texture(64)), 46000, 46000))
    assert path.stat().st_size < 4000
    with pytest.raises(MosaicError, match=r"claims.jpg is damaged: its header claims 46000"):
        open_mosaic(path)


def test_a_jpeg_above_the_flat_limit_is_decoded_reduced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flat_reader, "FLAT_DECODE_LIMIT_BYTES", 100_000)
    path = tmp_path / "big.jpg"
    image = texture(512)
    path.write_bytes(jpeg_bytes(image))  # 0.75 µm/px in its dpi
    with open_mosaic(path) as mosaic:
        assert (mosaic.info.width, mosaic.info.height) == (256, 256)
        assert any("1/2 resolution" in w for w in mosaic.info.warnings)
        assert mosaic.info.pixel_size_um == pytest.approx(1.5, rel=1e-3)
        pixels = mosaic.read_region(0, 0, 0, 256, 256).astype(float)
    halved = image.reshape(256, 2, 256, 2).mean(axis=(1, 3))
    assert np.abs(pixels - halved).mean() < 8


def test_a_png_above_the_flat_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flat_reader, "FLAT_DECODE_LIMIT_BYTES", 100_000)
    path = tmp_path / "big.png"
    write_zero_png(path, 600, 600)
    with pytest.raises(MosaicError, match="big.png is too large to open.*tiled TIFF"):
        open_mosaic(path)


def test_one_huge_tile_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "onetile.tif"
    write_tiled_tiff(path, 32768, 32768, 16, 32768, 8, [zero_deflate(32768 * 32768 * 2)])
    assert path.stat().st_size < 3_000_000
    with pytest.raises(MosaicError, match="onetile.tif cannot be opened: one tile of 32768"):
        open_mosaic(path)


_PROBE = """
import json, sys

def peak_mb():
    # VmHWM is this process's own peak; ru_maxrss survives exec and so reports the pytest
    # parent's size at fork time when the suite has torch loaded (2.3 GB seen)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.inference.tissue import tissue_mask
with open_mosaic(sys.argv[1]) as m:
    m.build_levels()
    mask = tissue_mask(m, 0.5, 255.0)
    print(json.dumps({"levels": m.level_count, "mask_px": int(mask.mask.size),
                      "any": bool(mask.any),
                      "rss_mb": peak_mb()}))
"""


def test_a_sparse_tiff_claiming_a_huge_area_stays_in_bounds(tmp_path: Path) -> None:
    path = tmp_path / "sparse.tif"
    side = 40_000  # 1.6 Gpx claimed by 0.2 MB of headers
    across = -(-side // 256)
    write_tiled_tiff(path, side, side, 8, 256, 8, [None] * (across * across))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["levels"] > 1 and probe["any"] is False
    assert probe["rss_mb"] < 400, probe  # 1.6 GB of levels + mask arrays before the fix


def test_the_tissue_mask_has_a_bounded_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rcm_viewer.inference import tissue

    monkeypatch.setattr(tissue, "MAX_MASK_PIXELS", 1_000)
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, texture(1024), tile=(256, 256))
    with open_mosaic(path) as mosaic:
        mosaic.build_levels()
        mask = tissue.tissue_mask(mosaic, 0.5, 255.0)  # 64 x 64 at 8 µm/px unbounded
    assert mask.downsample >= 32 and mask.mask.size <= 1024  # ~sqrt(1024^2 / 1000) px each
