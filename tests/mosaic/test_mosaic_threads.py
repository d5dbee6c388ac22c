"""Many worker threads reading at once must see exactly what one thread sees."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
from mosaic_testdata import noise, reference_downsample
from PIL import Image

from rcm_viewer.mosaic import open_mosaic


def _write(kind: str, path: Path, image: np.ndarray) -> None:
    if kind == "tiled-pyramid":
        with tifffile.TiffWriter(path) as tif:
            tif.write(image, tile=(64, 64), compression="zlib", subifds=1)
            tif.write(image[::2, ::2], tile=(64, 64), compression="zlib", subfiletype=1)
    elif kind == "lzw-strips":
        tifffile.imwrite(path, image, rowsperstrip=16, compression="lzw")
    elif kind == "uncompressed-single-strip":
        tifffile.imwrite(path, image)
    else:
        Image.fromarray(image).save(path, format="PNG")


@pytest.mark.parametrize(
    "kind", ["tiled-pyramid", "lzw-strips", "uncompressed-single-strip", "png"]
)
def test_concurrent_reads_equal_serial_reads(tmp_path: Path, kind: str) -> None:
    image = noise(800, 900, "uint16", seed=11)
    path = tmp_path / f"{kind}.bin"
    _write(kind, path, image)
    rng = np.random.default_rng(12)
    with open_mosaic(path, cache_bytes=200_000) as mosaic:  # small cache: constant eviction
        levels = mosaic.level_count
        requests = [
            (
                int(rng.integers(0, levels)),
                int(rng.integers(-50, 900)),
                int(rng.integers(-50, 800)),
                int(rng.integers(1, 200)),
                int(rng.integers(1, 200)),
            )
            for _ in range(240)
        ]
    with open_mosaic(path) as serial_mosaic:
        serial = [serial_mosaic.read_region(*r) for r in requests]
    with open_mosaic(path, cache_bytes=200_000) as mosaic:
        barrier = threading.Barrier(8)

        def worker(chunk: list[int]) -> list[tuple[int, np.ndarray]]:
            barrier.wait()
            return [(i, mosaic.read_region(*requests[i])) for i in chunk]

        chunks = [list(range(k, len(requests), 8)) for k in range(8)]
        with ThreadPoolExecutor(8) as pool:
            results = [item for part in pool.map(worker, chunks) for item in part]
    assert len(results) == len(requests)
    for i, got in results:
        np.testing.assert_array_equal(got, serial[i], err_msg=f"request {requests[i]}")


def test_reading_while_levels_are_built(tmp_path: Path) -> None:
    image = noise(2100, 2200, "uint8", seed=13)
    path = tmp_path / "busy.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    errors: list[BaseException] = []
    with open_mosaic(path, cache_bytes=500_000) as mosaic:
        done = threading.Event()

        def reader(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                while not done.is_set():
                    x, y = int(rng.integers(0, 2000)), int(rng.integers(0, 1900))
                    got = mosaic.read_region(0, x, y, 100, 100)
                    np.testing.assert_array_equal(got, image[y : y + 100, x : x + 100])
                    top = mosaic.level_count - 1  # a level published mid-way must be whole
                    mosaic.read_region(top, 0, 0, 64, 64)
            except BaseException as exc:  # reported below, in the test thread
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        try:
            assert mosaic.build_levels()
        finally:
            done.set()
            for t in threads:
                t.join(timeout=30)
        assert not errors, errors[0]
        expected = reference_downsample(image)
        np.testing.assert_array_equal(
            mosaic.read_region(1, 0, 0, expected.shape[1], expected.shape[0]), expected
        )
