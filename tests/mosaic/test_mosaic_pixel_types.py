"""Float, signed, 32-bit and palette images open through a documented pixel map.

Real TIFF files written by tifffile; each test checks the stored 16-bit pixels against
the formula in ``rcm_viewer/mosaic/pixel_map.py`` and the file's own values against
``PixelMap.real_value``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from rcm_test_helpers import run_cli

from rcm_viewer.mosaic import open_mosaic
from rcm_viewer.mosaic import pixel_map as pixel_map_module

H, W = 200, 240


def _field(dtype: str, low: float, high: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    smooth = (yy / H + xx / W) / 2  # 0-1
    values = low + (high - low) * np.clip(smooth + rng.normal(0, 0.02, (H, W)), 0, 1)
    values[0, 0], values[-1, -1] = low, high  # the extremes are in the file
    return values.astype(dtype)


def _expected(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (values.astype(np.float64) - low) / (high - low) * 65535
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=65535, neginf=0.0)
    return np.rint(np.clip(scaled, 0, 65535)).astype(np.uint16)


def test_float32_with_nan_and_inf_opens_with_the_data_range(tmp_path: Path) -> None:
    values = _field("float32", -0.25, 3.5)
    values[10, 10] = np.nan
    values[11, 11] = np.inf
    values[12, 12] = -np.inf
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, values, tile=(64, 64), compression="zlib")
    with open_mosaic(path) as mosaic:
        info = mosaic.info
        pm = info.pixel_map
        assert info.dtype == "uint16" and pm is not None and pm.kind == "linear"
        assert pm.source_dtype == "float32"
        # small image read whole: the exact finite range, NaN and inf ignored
        assert (pm.low, pm.high) == (pytest.approx(-0.25), pytest.approx(3.5))
        region = mosaic.read_region(0, 0, 0, W, H)
        assert region.dtype == np.uint16
        np.testing.assert_array_equal(region, _expected(values, pm.low, pm.high))
        assert region[10, 10] == 0 and region[11, 11] == 65535 and region[12, 12] == 0
        # the file's own values come back to within one 16-bit step
        step = (pm.high - pm.low) / 65535
        assert abs(pm.real_value(int(region[50, 60])) - float(values[50, 60])) <= step
        lo, hi = mosaic.display_range()
        assert 0 <= lo < hi <= 65535 and hi - lo > 20000  # the data fill the range
        assert "mapped to 16-bit" in info.format_description


def test_int16_negative_values_are_exact(tmp_path: Path) -> None:
    values = _field("int16", -1200, 2400)
    path = tmp_path / "int16.tif"
    tifffile.imwrite(path, values)
    with open_mosaic(path) as mosaic:
        pm = mosaic.info.pixel_map
        assert pm is not None and (pm.low, pm.high) == (-1200, 2400)
        region = mosaic.read_region(0, 0, 0, W, H)
        np.testing.assert_array_equal(region, _expected(values, -1200, 2400))
        real = np.vectorize(pm.real_value)(region)
        np.testing.assert_array_equal(real, values)  # every value given back exactly
        assert pm.real_value(0) == -1200 and isinstance(pm.real_value(7), int)


def test_int8_and_uint32_open(tmp_path: Path) -> None:
    for dtype, low, high in (("int8", -100, 90), ("uint32", 70_000, 3_000_000_000)):
        values = _field(dtype, low, high, seed=3)
        path = tmp_path / f"{dtype}.tif"
        tifffile.imwrite(path, values)
        with open_mosaic(path) as mosaic:
            pm = mosaic.info.pixel_map
            assert pm is not None and pm.source_dtype == dtype
            assert (pm.low, pm.high) == (low, high)
            region = mosaic.read_region(0, 20, 30, 64, 64)
            np.testing.assert_array_equal(region, _expected(values[30:94, 20:84], low, high))
            step = (high - low) / 65535
            assert abs(pm.real_value(int(region[5, 5])) - int(values[35, 25])) <= max(step, 0.5)


def test_range_comes_from_a_reduced_level_not_the_full_image(tmp_path: Path) -> None:
    base = _field("float32", 0.0, 10.0)
    base[100, 100] = 500.0  # an outlier that averaging in the reduced level hides
    reduced = base.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3)).astype(np.float32)
    reduced[50, 50] = 10.0
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, tile=(64, 64), subifds=1, compression="zlib")
        tw.write(reduced, tile=(64, 64), subfiletype=1, compression="zlib")
    with open_mosaic(path) as mosaic:
        pm = mosaic.info.pixel_map
        assert pm is not None and mosaic.info.level_count == 2
        assert "level 1" in pm.sampled_from
        assert mosaic.stats()["segments_decoded"] == 4  # level 1's tiles only
        span = 10.0 - float(reduced.min())
        assert pm.high == pytest.approx(10.0 + 0.02 * span, rel=1e-5)  # widened by 2 %
        assert mosaic.read_region(0, 100, 100, 1, 1)[0, 0] == 65535  # the outlier clips


def test_a_large_level_is_sampled_in_patches(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pixel_map_module, "FULL_SAMPLE_PIXELS", 1000)
    monkeypatch.setattr(pixel_map_module, "GRID", 3)
    monkeypatch.setattr(pixel_map_module, "PATCH_PX", 16)
    values = np.random.default_rng(1).normal(0, 1, (512, 512)).astype(np.float32)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, values, tile=(64, 64), compression="zlib")
    with open_mosaic(path) as mosaic:
        pm = mosaic.info.pixel_map
        assert pm is not None and pm.sampled_from.startswith("9 patches")
        # one 64 px tile per patch (patches start on tile boundaries), not all 64 tiles
        assert mosaic.stats()["segments_decoded"] == 9
        assert pm.low < -2 and pm.high > 2


def test_gray_and_colour_palette_tiffs_are_expanded(tmp_path: Path) -> None:
    index = (np.arange(H * W).reshape(H, W) % 256).astype(np.uint8)
    gray_map = np.tile((np.arange(256, dtype=np.uint16) * 257)[::-1], (3, 1))  # inverted gray
    path = tmp_path / "gray_palette.tif"
    tifffile.imwrite(path, index, photometric="palette", colormap=gray_map)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.dtype == "uint8" and mosaic.info.channels == 1
        assert not mosaic.info.is_rgb and mosaic.info.pixel_map.palette_gray
        np.testing.assert_array_equal(mosaic.read_region(0, 0, 0, W, H), 255 - index)

    colour_map = np.stack([np.arange(256) * 257, np.zeros(256), (255 - np.arange(256)) * 257])
    path = tmp_path / "colour_palette.tif"
    tifffile.imwrite(path, index, photometric="palette", colormap=colour_map.astype(np.uint16))
    with open_mosaic(path) as mosaic:
        assert mosaic.info.channels == 3 and mosaic.info.is_rgb
        rgb = mosaic.read_region(0, 0, 0, W, H)
        assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
        np.testing.assert_array_equal(rgb[..., 0], index)
        np.testing.assert_array_equal(rgb[..., 2], 255 - index)
        assert not rgb[..., 1].any()


def test_palette_png_opens_as_rgb(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    im = Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 7).astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0, 9, 9, 9, 1, 2, 3])
    im.save(path)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.is_rgb
        np.testing.assert_array_equal(
            mosaic.read_region(0, 0, 0, 64, 64), np.asarray(im.convert("RGB"))
        )


def test_info_json_shows_the_map(tmp_path: Path) -> None:
    path = tmp_path / "int16.tif"
    tifffile.imwrite(path, _field("int16", -50, 700))
    result = run_cli("info", str(path), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dtype"] == "uint16"
    assert data["pixel_map"]["kind"] == "linear" and data["pixel_map"]["source_dtype"] == "int16"
    assert (data["pixel_map"]["low"], data["pixel_map"]["high"]) == (-50, 700)
    assert "65535" in data["pixel_map"]["formula"]
    text = run_cli("info", str(path))
    assert text.returncode == 0 and "pixel map:" in text.stdout and "-50 to 700" in text.stdout
