"""Built levels for flat images, and the display range."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from mosaic_testdata import border_regions, expected_region, gradient, noise, reference_downsample
from PIL import Image

from rcm_viewer.mosaic import MosaicError, open_mosaic
from rcm_viewer.mosaic import levels as levels_module
from rcm_viewer.mosaic.levels import downsample_2x, planned_sizes


def test_downsample_2x_matches_reference_mean() -> None:
    for shape in [(4, 6), (5, 7), (1, 1), (3, 2)]:
        image = noise(*shape, dtype="uint16", seed=sum(shape))
        got = downsample_2x(image[:, :, None])[:, :, 0]
        np.testing.assert_array_equal(got, reference_downsample(image))
    flat = np.full((6, 6, 1), 40_001, np.uint16)
    assert np.all(downsample_2x(flat) == 40_001)  # no drift through levels
    white = np.full((4, 4, 1), 65535, np.uint16)
    assert np.all(downsample_2x(white) == 65535)  # no overflow


def test_planned_sizes() -> None:
    assert planned_sizes((2048, 1500), (2048, 1500)) == []
    assert planned_sizes((2049, 100), (2049, 100)) == [(1025, 50), (513, 25)]
    assert planned_sizes((5000, 3000), (5000, 3000)) == [(2500, 1500), (1250, 750), (625, 375)]
    # a stored pyramid that stops too early is extended from its smallest level
    assert planned_sizes((8000, 8000), (2000, 2000)) == [(1000, 1000)]
    assert planned_sizes((8000, 8000), (1000, 1000)) == []


def _check_level(mosaic, level: int, expected: np.ndarray) -> None:
    height, width = expected.shape[:2]
    for x, y, w, h in border_regions(width, height):
        np.testing.assert_array_equal(
            mosaic.read_region(level, x, y, w, h), expected_region(expected, x, y, w, h)
        )


def test_build_levels_for_flat_tiled_tiff(tmp_path: Path) -> None:
    image = noise(2101, 2601, "uint16", seed=1)  # odd sizes on purpose
    path = tmp_path / "flat_tiles.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    with open_mosaic(path) as mosaic:
        assert not mosaic.levels_ready()
        assert mosaic.level_count == 1 and len(mosaic.info.levels) == 1
        planned = mosaic.planned_levels
        assert [(lv.width, lv.height) for lv in planned] == [(2601, 2101), (1301, 1051), (651, 526)]
        calls: list[tuple[int, int]] = []
        assert mosaic.build_levels(progress=lambda done, total: calls.append((done, total)))
        assert mosaic.levels_ready() and mosaic.level_count == 3
        assert calls and calls[-1][0] == calls[-1][1]
        assert [done for done, _ in calls] == list(range(1, len(calls) + 1))
        info = mosaic.info
        assert [(lv.width, lv.height, lv.downsample, lv.stored) for lv in info.levels] == [
            (2601, 2101, 1.0, True),
            (1301, 1051, 2.0, False),
            (651, 526, 4.0, False),
        ]
        level1 = reference_downsample(image)
        _check_level(mosaic, 1, level1)
        _check_level(mosaic, 2, reference_downsample(level1))
        assert mosaic.build_levels()  # nothing left to do


def test_build_levels_reads_the_base_in_bands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never the whole base at once: two full-size copies must not coexist."""
    monkeypatch.setattr(levels_module, "BAND_BYTES", 600 * 2600)
    image = noise(2100, 2600, "uint8", seed=2)
    path = tmp_path / "bands.tif"
    tifffile.imwrite(path, image, rowsperstrip=100, compression="lzw")
    with open_mosaic(path) as mosaic:
        source = mosaic._source
        heights: list[int] = []
        real_read = source.read

        def spy(level, page, x0, y0, x1, y1):
            if level == 0:
                heights.append(y1 - y0)
            return real_read(level, page, x0, y0, x1, y1)

        monkeypatch.setattr(source, "read", spy)
        assert mosaic.build_levels()
        assert max(heights) <= 600 and sum(heights) == 2100
        assert all(h % 100 == 0 for h in heights)  # aligned on strips: each decoded once
        assert mosaic.stats()["segments_decoded"] == 21
        _check_level(mosaic, 1, reference_downsample(image))


def test_build_levels_for_rgb_png(tmp_path: Path) -> None:
    image = gradient(1100, 2300, "uint8", channels=3)
    path = tmp_path / "wide.png"
    Image.fromarray(image).save(path, compress_level=1)
    with open_mosaic(path) as mosaic:
        assert mosaic.build_levels()
        assert [(lv.width, lv.height) for lv in mosaic.info.levels] == [
            (2300, 1100),
            (1150, 550),
            (575, 275),
        ]
        level1 = reference_downsample(image)
        assert mosaic.read_region(1, 0, 0, 10, 10).shape == (10, 10, 3)
        _check_level(mosaic, 1, level1)
        _check_level(mosaic, 2, reference_downsample(level1))


def test_build_levels_cancel_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(levels_module, "BAND_BYTES", 256 * 2600)
    image = noise(2100, 2600, "uint8", seed=3)
    path = tmp_path / "cancel.tif"
    tifffile.imwrite(path, image, tile=(256, 256))
    with open_mosaic(path) as mosaic:
        asked = []

        def cancel_on_third() -> bool:
            asked.append(1)
            return len(asked) >= 3

        assert mosaic.build_levels(cancel=cancel_on_third) is False
        assert not mosaic.levels_ready() and mosaic.level_count == 1
        assert mosaic.build_levels(cancel=lambda: False)
        assert mosaic.levels_ready() and mosaic.level_count == 3
        _check_level(mosaic, 1, reference_downsample(image))


def test_preview_comes_early_and_matches_the_built_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UI shows the preview instead of nothing while a flat file's levels are built."""
    monkeypatch.setattr(levels_module, "BAND_BYTES", 32 * 2600 * 2)  # 66 bands of 32 rows
    yy, xx = np.mgrid[0:2100, 0:2600]
    smooth = (yy * 10 + xx * 5 + (yy * xx) % 7).astype(np.uint16)
    path = tmp_path / "preview.tif"
    tifffile.imwrite(path, smooth, rowsperstrip=32, compression="lzw")
    with open_mosaic(path) as mosaic:
        seen: list[int] = []
        previews: list[tuple[int, np.ndarray]] = []
        assert mosaic.build_levels(
            progress=lambda done, total: seen.append(done),
            preview=lambda pixels: previews.append((len(seen), pixels.copy())),
            threads=3,
        )
        assert len(previews) == 1
        bands_done, pixels = previews[0]
        assert bands_done <= 66 // 2  # offered after a fraction of the work, not at the end
        last = mosaic.level_count - 1
        final = mosaic.read_region(last, 0, 0, 650, 525)
        assert pixels.shape == final.shape and pixels.dtype == final.dtype
        # bands 0, 4, 8, ... are exact; the rows between them are interpolated
        np.testing.assert_array_equal(pixels[0:8], final[0:8])
        np.testing.assert_array_equal(pixels[32:40], final[32:40])
        error = np.abs(pixels.astype(np.int64) - final.astype(np.int64))
        assert error.max() <= 0.05 * int(final.max())
        level1 = reference_downsample(smooth)
        _check_level(mosaic, 1, level1)  # several threads wrote disjoint bands correctly
        assert last == 2
        _check_level(mosaic, last, reference_downsample(level1))


def test_a_strip_damaged_inside_the_file_stops_the_build_with_one_line(tmp_path: Path) -> None:
    """Found only while building (the header is fine): a clear error, no hang, and the
    mosaic stays readable at full resolution."""
    image = noise(2100, 2600, "uint16", seed=11)
    path = tmp_path / "damaged_strip.tif"
    tifffile.imwrite(path, image, rowsperstrip=32, compression="lzw")
    page = tifffile.TiffFile(path).pages[0]
    offset, count = page.dataoffsets[40], page.databytecounts[40]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * count)
    with open_mosaic(path) as mosaic:
        with pytest.raises(MosaicError) as caught:
            mosaic.build_levels(threads=3)
        message = str(caught.value)
        assert "damaged_strip.tif" in message and "strip 41 of 66" in message
        assert "\n" not in message
        assert not mosaic.levels_ready() and mosaic.level_count == 1
        np.testing.assert_array_equal(mosaic.read_region(0, 0, 0, 300, 200), image[:200, :300])


def test_bands_in_flight_stay_within_the_byte_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Huge bands (a very wide image) are not read eight at a time."""
    monkeypatch.setattr(levels_module, "BAND_BYTES", 200 * 2600)
    monkeypatch.setattr(levels_module, "IN_FLIGHT_BYTES", 2 * 200 * 2600)
    image = noise(2100, 2600, "uint8", seed=12)
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, image, rowsperstrip=100)
    with open_mosaic(path) as mosaic:
        source = mosaic._source
        real_read = source.read
        lock = threading.Lock()
        busy, most = [0], [0]

        def counting(level, page, x0, y0, x1, y1):
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
            try:
                time.sleep(0.01)  # let other threads pile up if they are allowed to
                return real_read(level, page, x0, y0, x1, y1)
            finally:
                with lock:
                    busy[0] -= 1

        monkeypatch.setattr(source, "read", counting)
        assert mosaic.build_levels(threads=4)
        assert most[0] <= 2
        _check_level(mosaic, 1, reference_downsample(image))


def test_band_order_samples_the_image_evenly_first() -> None:
    order = levels_module.band_order(10, 4)
    assert order[:3] == [0, 4, 8] and sorted(order) == list(range(10))
    assert levels_module.band_order(1, 4) == [0]
    rows = levels_module.band_rows(16000, 2, 32, levels=4)
    assert rows % 32 == 0 and rows % 16 == 0 and rows * 16000 * 2 <= 2 * levels_module.BAND_BYTES


def test_large_built_levels_go_to_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(levels_module, "IN_MEMORY_LEVEL_BYTES", 100_000)
    image = noise(2100, 2200, "uint16", seed=5)
    path = tmp_path / "memmap.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zstd")
    mosaic = open_mosaic(path)
    assert mosaic.build_levels()
    assert isinstance(mosaic._levels[1]._buffers[0].array, np.memmap)
    _check_level(mosaic, 1, reference_downsample(image))
    mosaic.close()


def test_stored_pyramid_is_extended_when_it_stops_above_1024(tmp_path: Path) -> None:
    image = noise(2400, 4200, "uint8", seed=6)
    path = tmp_path / "short_pyramid.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(256, 256), compression="zlib", subifds=1)
        tif.write(image[::2, ::2], tile=(256, 256), compression="zlib", subfiletype=1)
    with open_mosaic(path) as mosaic:
        assert mosaic.level_count == 2 and not mosaic.levels_ready()
        assert mosaic.build_levels()
        sizes = [(lv.width, lv.height, lv.downsample, lv.stored) for lv in mosaic.info.levels]
        assert sizes == [
            (4200, 2400, 1.0, True),
            (2100, 1200, 2.0, True),
            (1050, 600, 4.0, False),
            (525, 300, 8.0, False),
        ]
        _check_level(mosaic, 2, reference_downsample(image[::2, ::2]))


def test_build_levels_for_every_page_of_a_stack(tmp_path: Path) -> None:
    stack = np.stack([noise(2100, 1000, "uint8", seed=s) for s in (7, 8)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", tile=(256, 256))
    with open_mosaic(path) as mosaic:
        assert mosaic.pages == 2
        assert mosaic.build_levels()
        for page in range(2):
            expected = reference_downsample(stack[page])
            got = mosaic.read_region(1, 0, 0, expected.shape[1], expected.shape[0], page=page)
            np.testing.assert_array_equal(got, expected)


def test_display_range_is_robust(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    image = rng.integers(1000, 2001, size=(500, 600)).astype(np.uint16)
    image[:5, :5] = 65535  # a few saturated pixels must not stretch the range
    path = tmp_path / "range.tif"
    tifffile.imwrite(path, image, tile=(128, 128))
    with open_mosaic(path) as mosaic:
        lo, hi = mosaic.display_range()
        assert 1000 <= lo <= 1010 and 1990 <= hi <= 2000
        assert mosaic.display_range() == (lo, hi)


def test_display_range_of_a_constant_image(tmp_path: Path) -> None:
    path = tmp_path / "constant.png"
    Image.fromarray(np.full((40, 40), 77, np.uint8)).save(path)
    with open_mosaic(path) as mosaic:
        assert mosaic.display_range() == (77.0, 78.0)


def test_display_range_samples_a_large_unbuilt_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = np.full((2100, 2100), 3000, np.uint16)
    path = tmp_path / "large.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    with open_mosaic(path) as mosaic:
        areas: list[int] = []
        real_read = mosaic._source.read

        def spy(level, page, x0, y0, x1, y1):
            areas.append((x1 - x0) * (y1 - y0))
            return real_read(level, page, x0, y0, x1, y1)

        monkeypatch.setattr(mosaic._source, "read", spy)
        assert mosaic.display_range() == (3000.0, 3001.0)
        assert sum(areas) == 64 * 128 * 128  # 8 x 8 patches, not the 4.4 Mpx level
