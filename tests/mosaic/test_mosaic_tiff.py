"""TIFF in its many forms: strips/tiles, codecs, BigTIFF, pyramids, OME, stacks, colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from mosaic_testdata import border_regions, expected_region, gradient

from rcm_viewer.mosaic import open_mosaic

H, W = 300, 420  # deliberately not multiples of the tile size


def _check_all_regions(path: Path, image: np.ndarray, level: int = 0, page: int = 0) -> None:
    with open_mosaic(path) as mosaic:
        for x, y, w, h in border_regions(image.shape[1], image.shape[0]):
            got = mosaic.read_region(level, x, y, w, h, page=page)
            want = expected_region(image, x, y, w, h)
            assert got.dtype == image.dtype
            assert got.shape == want.shape, (x, y, w, h)
            np.testing.assert_array_equal(got, want, err_msg=f"region {(x, y, w, h)}")


LOSSLESS_WRITERS = {
    "uncompressed-strips": {"rowsperstrip": 64},
    "uncompressed-single-strip": {},
    "lzw-strips": {"rowsperstrip": 50, "compression": "lzw"},
    "deflate-strips-predictor": {"rowsperstrip": 32, "compression": "zlib", "predictor": True},
    "deflate-tiles": {"tile": (64, 64), "compression": "zlib"},
    "zstd-tiles": {"tile": (128, 64), "compression": "zstd"},
    "lzw-tiles-bigtiff": {"tile": (64, 64), "compression": "lzw", "bigtiff": True},
    "uncompressed-tiles": {"tile": (32, 48)},
    "big-endian-tiles": {"tile": (64, 64), "compression": "zlib", "byteorder": ">"},
    "big-endian-strips": {"rowsperstrip": 20, "byteorder": ">"},
}


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("name", sorted(LOSSLESS_WRITERS))
def test_lossless_tiff_regions_match_written_array(tmp_path: Path, name: str, dtype: str) -> None:
    image = gradient(H, W, dtype)
    path = tmp_path / f"{name}.tif"
    tifffile.imwrite(path, image, photometric="minisblack", **LOSSLESS_WRITERS[name])
    with open_mosaic(path) as mosaic:
        info = mosaic.info
        assert (info.width, info.height, info.dtype, info.channels) == (W, H, dtype, 1)
        assert info.format == "tiff" and not info.is_rgb and info.pages == 1
        assert mosaic.levels_ready()  # small image: nothing to build
    _check_all_regions(path, image)


def test_bigtiff_is_described(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, gradient(H, W), bigtiff=True, tile=(64, 64), compression="zlib")
    with open_mosaic(path) as mosaic:
        assert "BigTIFF" in mosaic.info.format_description
        assert mosaic.info.metadata["bigtiff"] is True


def test_large_uncompressed_single_strip_reads_only_needed_rows(tmp_path: Path) -> None:
    """A single 2.4 MB strip: a small region must not read the whole strip."""
    image = gradient(1100, 1100)
    path = tmp_path / "single_strip.tif"
    tifffile.imwrite(path, image)
    with open_mosaic(path) as mosaic:
        assert "single strip" in mosaic.info.format_description
        got = mosaic.read_region(0, 500, 600, 40, 30)
        np.testing.assert_array_equal(got, image[600:630, 500:540])
        assert mosaic.stats()["bytes_read"] == 40 * 30 * 2  # narrow: row spans only
        wide = mosaic.read_region(0, 10, 20, 900, 5)
        np.testing.assert_array_equal(wide, image[20:25, 10:910])
    _check_all_regions(path, image)


def test_jpeg_tiles_match_tifffile_decoding(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8")
    path = tmp_path / "jpeg.tif"
    tifffile.imwrite(path, image, tile=(64, 64), compression="jpeg", photometric="minisblack")
    reference = tifffile.imread(path)
    assert np.abs(reference.astype(int) - image).mean() < 8  # lossy, but close
    _check_all_regions(path, reference)


def test_rgb_jpeg_tiles_are_flagged_and_shown_as_is(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8", channels=3)
    path = tmp_path / "rgb_jpeg.tif"
    tifffile.imwrite(path, image, tile=(64, 64), compression="jpeg", photometric="rgb")
    reference = tifffile.imread(path)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.is_rgb and mosaic.info.channels == 3
        assert mosaic.read_region(0, 0, 0, 10, 10).shape == (10, 10, 3)
    _check_all_regions(path, reference)


@pytest.mark.parametrize("planar", ["contig", "separate"])
@pytest.mark.parametrize("channels", [3, 4])
def test_rgb_and_rgba_lossless(tmp_path: Path, planar: str, channels: int) -> None:
    image = gradient(H, W, "uint8", channels=channels)
    path = tmp_path / f"rgb_{planar}_{channels}.tif"
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    data = np.moveaxis(image, -1, 0) if planar == "separate" else image  # tifffile wants SYX
    tifffile.imwrite(
        path,
        data,
        photometric="rgb",
        planarconfig=planar,
        tile=(64, 64),
        compression="zlib",
        **extra,
    )
    np.testing.assert_array_equal(
        np.moveaxis(tifffile.imread(path), 0, -1)
        if planar == "separate"
        else tifffile.imread(path),
        image,
    )
    with open_mosaic(path) as mosaic:
        assert mosaic.info.is_rgb and mosaic.info.channels == channels
    _check_all_regions(path, image)


def test_rgb_16bit_strips(tmp_path: Path) -> None:
    image = gradient(H, W, "uint16", channels=3)
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, image, photometric="rgb", rowsperstrip=16, compression="lzw")
    _check_all_regions(path, image)


def test_miniswhite_is_inverted_for_display(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8")
    path = tmp_path / "miniswhite.tif"
    tifffile.imwrite(path, image, photometric="miniswhite", tile=(64, 64), compression="zlib")
    _check_all_regions(path, (255 - image).astype(np.uint8))


def test_gray_with_alpha_shows_the_gray_sample(tmp_path: Path) -> None:
    image = gradient(H, W, "uint8", channels=2)
    path = tmp_path / "gray_alpha.tif"
    tifffile.imwrite(
        path, image, photometric="minisblack", planarconfig="contig", extrasamples=["unassalpha"]
    )
    with open_mosaic(path) as mosaic:
        assert mosaic.info.channels == 1 and not mosaic.info.is_rgb
        assert mosaic.info.warnings
    _check_all_regions(path, image[:, :, 0])


# ---------------------------------------------------------------------- pyramids


def _pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    return [image[:: 2**k, :: 2**k] for k in range(levels)]


def _check_pyramid(path: Path, pyramid: list[np.ndarray]) -> None:
    with open_mosaic(path) as mosaic:
        info = mosaic.info
        assert [(lv.width, lv.height) for lv in info.levels] == [
            (p.shape[1], p.shape[0]) for p in pyramid
        ]
        assert [lv.downsample for lv in info.levels] == [2.0**k for k in range(len(pyramid))]
        assert all(lv.stored for lv in info.levels)
    for level, expected in enumerate(pyramid):
        _check_all_regions(path, expected, level=level)


def test_pyramid_in_subifds(tmp_path: Path) -> None:
    pyramid = _pyramid(gradient(H, W), 3)
    path = tmp_path / "subifds.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(pyramid[0], tile=(64, 64), compression="zlib", subifds=2)
        for level in pyramid[1:]:
            tif.write(level, tile=(64, 64), compression="zlib", subfiletype=1)
    _check_pyramid(path, pyramid)


def test_pyramid_as_reduced_resolution_pages(tmp_path: Path) -> None:
    pyramid = _pyramid(gradient(H, W), 3)
    path = tmp_path / "reduced_pages.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(pyramid[0], tile=(64, 64), compression="zstd", metadata=None)
        for level in pyramid[1:]:
            tif.write(level, tile=(64, 64), compression="zstd", subfiletype=1, metadata=None)
    _check_pyramid(path, pyramid)


def test_ome_pyramid_bigtiff(tmp_path: Path) -> None:
    pyramid = _pyramid(gradient(H, W, "uint8"), 3)
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(
            pyramid[0],
            tile=(64, 64),
            compression="zlib",
            subifds=2,
            metadata={"PhysicalSizeX": 0.75, "PhysicalSizeY": 0.75},
        )
        for level in pyramid[1:]:
            tif.write(level, tile=(64, 64), compression="zlib", subfiletype=1)
    _check_pyramid(path, pyramid)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.format_description.startswith("OME-TIFF, BigTIFF")
        assert mosaic.info.pixel_size_um == pytest.approx(0.75)
        assert mosaic.info.pixel_size_source == "ome"


def test_best_level_for_a_zoom(tmp_path: Path) -> None:
    pyramid = _pyramid(gradient(H, W), 3)
    path = tmp_path / "levels.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(pyramid[0], tile=(64, 64), subifds=2)
        for level in pyramid[1:]:
            tif.write(level, tile=(64, 64), subfiletype=1)
    with open_mosaic(path) as mosaic:
        assert [mosaic.best_level(d) for d in (0.5, 1, 1.9, 2, 3.5, 4, 100)] == [
            0,
            0,
            0,
            1,
            1,
            2,
            2,
        ]


# ---------------------------------------------------------------------- pages (VivaStack)


def _stack(n: int) -> np.ndarray:
    return np.stack([(gradient(H, W) + 1000 * k).astype(np.uint16) for k in range(n)])


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"tile": (64, 64), "compression": "zlib"}, {"rowsperstrip": 40, "compression": "lzw"}],
    ids=["contiguous", "tiled-frames", "strips"],
)
def test_stack_pages(tmp_path: Path, kwargs: dict) -> None:
    stack = _stack(4)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", **kwargs)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.pages == mosaic.pages == 4
        assert len(mosaic.info.levels) == 1
        assert "4 pages" in mosaic.info.format_description
        with pytest.raises(IndexError):
            mosaic.read_region(0, 0, 0, 8, 8, page=4)
    for page in range(4):
        _check_all_regions(path, stack[page], page=page)


def test_stack_written_page_by_page_as_separate_series(tmp_path: Path) -> None:
    stack = _stack(3)
    path = tmp_path / "appended.tif"
    with tifffile.TiffWriter(path) as tif:
        for page in stack:
            tif.write(page, photometric="minisblack", tile=(64, 64), compression="zlib")
    with open_mosaic(path) as mosaic:
        assert mosaic.info.pages == 3
    for page in range(3):
        _check_all_regions(path, stack[page], page=page)


def test_stack_with_a_pyramid_per_page(tmp_path: Path) -> None:
    stack = _stack(2)
    path = tmp_path / "stack_pyramid.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(stack, photometric="minisblack", tile=(64, 64), subifds=1)
        tif.write(stack[:, ::2, ::2], photometric="minisblack", tile=(64, 64), subfiletype=1)
    with open_mosaic(path) as mosaic:
        assert mosaic.info.pages == 2 and len(mosaic.info.levels) == 2
    _check_all_regions(path, stack[1, ::2, ::2], level=1, page=1)
    _check_all_regions(path, stack[0], level=0, page=0)


def test_imagej_hyperstack_pages(tmp_path: Path) -> None:
    stack = _stack(3)
    path = tmp_path / "imagej.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    with open_mosaic(path) as mosaic:
        assert mosaic.info.pages == 3
        assert mosaic.info.format_description.startswith("ImageJ TIFF")
    _check_all_regions(path, stack[2], page=2)


# ---------------------------------------------------------------------- reading economy


def test_tiled_read_decodes_only_intersecting_tiles(tmp_path: Path) -> None:
    image = gradient(1024, 1024)
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, image, tile=(128, 128), compression="zlib")
    with open_mosaic(path) as mosaic:
        mosaic.read_region(0, 10, 10, 50, 50)  # inside tile (0, 0)
        assert mosaic.stats()["segments_decoded"] == 1
        mosaic.read_region(0, 100, 100, 60, 60)  # tiles (0,0) (0,1) (1,0) (1,1): 3 new
        assert mosaic.stats()["segments_decoded"] == 4
        mosaic.read_region(0, 300, 300, 300, 200)  # columns 2-4, rows 2-3: 6 new
        assert mosaic.stats()["segments_decoded"] == 10
        before = mosaic.stats()
        mosaic.read_region(0, 12, 12, 40, 40)  # cached
        assert mosaic.stats()["segments_decoded"] == 10
        assert mosaic.stats()["segments_from_cache"] > before["segments_from_cache"]
        mosaic.read_region(0, 2000, 2000, 64, 64)  # outside: nothing decoded
        assert mosaic.stats()["segments_decoded"] == 10


def test_striped_read_decodes_only_needed_strips(tmp_path: Path) -> None:
    image = gradient(1000, 300)
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, image, rowsperstrip=64, compression="lzw")
    with open_mosaic(path) as mosaic:
        got = mosaic.read_region(0, 20, 130, 100, 10)  # rows 130-139: strip 2 only
        np.testing.assert_array_equal(got, image[130:140, 20:120])
        assert mosaic.stats()["segments_decoded"] == 1
        mosaic.read_region(0, 0, 120, 10, 80)  # rows 120-199: strips 1, 2, 3 -> 2 new
        assert mosaic.stats()["segments_decoded"] == 3


def test_cache_stays_within_its_budget(tmp_path: Path) -> None:
    image = gradient(1024, 1024)
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, image, tile=(128, 128), compression="zlib")
    with open_mosaic(path, cache_bytes=4 * 128 * 128 * 2) as mosaic:
        np.testing.assert_array_equal(mosaic.read_region(0, 0, 0, 1024, 1024), image)
        assert mosaic.stats()["cache_bytes"] <= 4 * 128 * 128 * 2


def test_returned_arrays_are_private_copies(tmp_path: Path) -> None:
    image = gradient(256, 256)
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, image, tile=(128, 128), compression="zlib")
    with open_mosaic(path) as mosaic:
        first = mosaic.read_region(0, 0, 0, 128, 128)
        first[:] = 0
        np.testing.assert_array_equal(mosaic.read_region(0, 0, 0, 128, 128), image[:128, :128])
