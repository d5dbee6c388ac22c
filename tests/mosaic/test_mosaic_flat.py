"""PNG, JPEG and BMP through Pillow; files are recognised by content, not by extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from mosaic_testdata import border_regions, expected_region, gradient
from PIL import Image

from rcm_viewer.mosaic import open_mosaic

H, W = 130, 170


def _check_all_regions(path: Path, image: np.ndarray) -> None:
    with open_mosaic(path) as mosaic:
        for x, y, w, h in border_regions(image.shape[1], image.shape[0]):
            got = mosaic.read_region(0, x, y, w, h)
            np.testing.assert_array_equal(got, expected_region(image, x, y, w, h))
            assert got.dtype == image.dtype


@pytest.mark.parametrize(
    ("suffix", "dtype", "channels"),
    [
        (".png", "uint8", 1),
        (".png", "uint16", 1),
        (".png", "uint8", 3),
        (".png", "uint8", 4),
        (".bmp", "uint8", 1),
        (".bmp", "uint8", 3),
    ],
)
def test_lossless_flat_formats(tmp_path: Path, suffix: str, dtype: str, channels: int) -> None:
    image = gradient(H, W, dtype, channels)
    path = tmp_path / f"image{suffix}"
    Image.fromarray(image).save(path)
    with open_mosaic(path) as mosaic:
        info = mosaic.info
        assert (info.width, info.height, info.dtype, info.channels) == (W, H, dtype, channels)
        assert info.is_rgb == (channels > 1)
        assert info.format == suffix[1:] and info.pages == 1 and len(info.levels) == 1
        assert info.pixel_size_um is None and info.pixel_size_source == "unknown"
    _check_all_regions(path, image)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_matches_pillow_decoding(tmp_path: Path, mode: str) -> None:
    image = gradient(H, W, "uint8", 1 if mode == "L" else 3)
    path = tmp_path / "image.jpg"
    Image.fromarray(image).save(path, quality=90)
    with Image.open(path) as im:
        reference = np.asarray(im)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.format == "jpeg" and mosaic.info.is_rgb == (mode == "RGB")
    _check_all_regions(path, reference)


def test_flat_image_is_decoded_once(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8")
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    with open_mosaic(path) as mosaic:
        assert mosaic.stats()["full_decodes"] == 0  # headers only at open
        for x in range(0, W, 20):
            mosaic.read_region(0, x, 0, 20, 20)
        assert mosaic.stats()["full_decodes"] == 1


def test_grayscale_palette_png_opens_as_grayscale(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8")
    path = tmp_path / "palette_gray.png"
    im = Image.fromarray(image).convert("P")
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    im.save(path)
    with Image.open(path) as check:
        assert check.mode == "P"
    with open_mosaic(path) as mosaic:
        assert mosaic.info.channels == 1 and not mosaic.info.is_rgb
        np.testing.assert_array_equal(mosaic.read_region(0, 0, 0, W, H), np.asarray(im))


def test_colour_palette_png_opens_as_rgb(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8", 3)
    path = tmp_path / "palette_rgb.png"
    im = Image.fromarray(image).quantize(64)
    im.save(path)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.channels == 3 and mosaic.info.is_rgb
        np.testing.assert_array_equal(
            mosaic.read_region(0, 0, 0, W, H), np.asarray(im.convert("RGB"))
        )


def test_gray_alpha_png_drops_alpha_with_a_warning(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8", 2)
    path = tmp_path / "la.png"
    Image.fromarray(image, mode="LA").save(path)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.channels == 1 and mosaic.info.warnings
    _check_all_regions(path, image[:, :, 0])


def test_png_named_tif_opens_by_content(tmp_path: Path) -> None:
    image = gradient(H, W, "uint16")
    path = tmp_path / "lesion_07.tif"
    Image.fromarray(image).save(path, format="PNG")
    with open_mosaic(path) as mosaic:
        assert mosaic.info.format == "png"
        assert any("content is PNG" in w for w in mosaic.info.warnings)
    _check_all_regions(path, image)


def test_tiff_named_png_opens_by_content(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8")
    path = tmp_path / "scan.png"
    tifffile.imwrite(path, image, tile=(64, 64), compression="zlib")
    with open_mosaic(path) as mosaic:
        assert mosaic.info.format == "tiff"
    _check_all_regions(path, image)


def test_bmp_named_jpg_opens_by_content(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8", 3)
    path = tmp_path / "photo.jpg"
    Image.fromarray(image).save(path, format="BMP")
    with open_mosaic(path) as mosaic:
        assert mosaic.info.format == "bmp"
    _check_all_regions(path, image)


def test_large_flat_image_is_not_refused_by_pillow_bomb_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our own budget replaces Pillow's decompression-bomb limit (a real 16k mosaic is 256 Mpx)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    image = gradient(H, W, "uint8")
    path = tmp_path / "big.png"
    Image.fromarray(image).save(path)
    _check_all_regions(path, image)


def test_highly_compressible_low_bit_depth_png_is_not_taken_for_a_fake(tmp_path: Path) -> None:
    """The size-claim check uses the real bit depth: a 1-bit palette PNG packs 8 px a byte."""
    path = tmp_path / "sparse.png"
    im = Image.new("P", (3000, 3000))
    im.putpalette([0, 0, 0, 255, 255, 255])
    im.save(path, bits=1, optimize=True)
    assert path.stat().st_size < 3000 * 3000 / 1100  # would fail an 8-bit-per-pixel estimate
    with open_mosaic(path) as mosaic:
        assert (mosaic.info.width, mosaic.info.height) == (3000, 3000)
        assert mosaic.info.channels == 1  # black/white palette is grayscale
