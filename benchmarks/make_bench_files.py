"""Write the large test mosaics the viewer benchmarks open (issue 3, "Large-mosaic viewer").

    .venv/bin/python benchmarks/make_bench_files.py [--out benchmarks/data] [--only NAME ...]

Files (all 0.5 µm/px in the resolution tags, RCM-like content):

* ``pyr40k_jpeg_tifffile.tif``: 40,000 x 40,000 8-bit, JPEG tiles of 512 px, SubIFD
  pyramid down to <= 1024 px (written by tifffile).
* ``pyr40k_jpeg_vips.tif``: the same pixels re-written by ``vips tiffsave --tile --pyramid
  --subifd --compression jpeg`` (256 px tiles), when ``vips`` is installed: a second writer.
* ``pyr16k_jpeg_tifffile.tif``: the same writer at 16,000 x 16,000 (quick runs).
* ``flat16k_u8_raw.tif``: 16,000 x 16,000 8-bit, uncompressed strips, no pyramid.
* ``flat16k_u16_lzw.tif``: 16,000 x 16,000 16-bit, LZW strips, no pyramid.

The content is one 4096 x 4096 synthetic naevus mosaic (rendered once, cached as
``texture_4096.npy``) laid out in 4096 px blocks, each block flipped at random (up/down,
left/right) so the mosaic is not trivially periodic. Pyramid level k tiles the 2^k-times
downsampled texture with the same flips, which is exactly the 2x2 mean of level k-1 because
4096 is divisible by 2^k. Everything is written tile by tile / strip by strip from
iterators, so memory stays bounded (a few tens of MB besides the texture).

Prints one JSON object (per file: size, seconds, levels).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

TEXTURE_PX = 4096
PIXEL_SIZE_UM = 0.5
RES_PER_CM = 1e4 / PIXEL_SIZE_UM  # 20,000 px per cm
SMALLEST_LEVEL_PX = 1024
FLIP_SEED = 7
DATA = Path(__file__).resolve().parent / "data"


def texture(out: Path) -> np.ndarray:
    cache = out / f"texture_{TEXTURE_PX}.npy"
    if cache.exists():
        return np.load(cache)
    from rcm_viewer.synthetic import MosaicSpec, SyntheticMosaic

    start = time.perf_counter()
    tex = SyntheticMosaic(
        MosaicSpec("naevus", TEXTURE_PX, TEXTURE_PX, PIXEL_SIZE_UM, seed=1)
    ).to_array()
    print(f"rendered texture in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    tex = np.ascontiguousarray(tex.astype(np.uint8))
    np.save(cache, tex)
    return tex


def downsample_2x(a: np.ndarray) -> np.ndarray:
    """2x2 mean, rounding half up (the same rule as rcm_viewer.mosaic.levels)."""
    acc = a[0::2, 0::2].astype(np.uint32) + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
    return ((acc + 2) >> 2).astype(a.dtype)


class Layout:
    """The big image as blocks of (flipped) texture, at any power-of-two level."""

    def __init__(self, tex: np.ndarray, blocks: int) -> None:
        rng = np.random.default_rng(FLIP_SEED)
        self.flips = rng.integers(0, 2, size=(blocks, blocks, 2)).astype(bool)
        self.levels = [tex]
        while self.levels[-1].shape[0] > 16:
            self.levels.append(downsample_2x(self.levels[-1]))

    def region(self, level: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        tex = self.levels[level]
        b = tex.shape[0]
        out = np.empty((h, w), dtype=tex.dtype)
        for by in range(y0 // b, (y0 + h - 1) // b + 1):
            for bx in range(x0 // b, (x0 + w - 1) // b + 1):
                flip_ud, flip_lr = self.flips[by % len(self.flips), bx % len(self.flips)]
                block = tex[::-1] if flip_ud else tex
                block = block[:, ::-1] if flip_lr else block
                ay0, ay1 = max(y0, by * b), min(y0 + h, (by + 1) * b)
                ax0, ax1 = max(x0, bx * b), min(x0 + w, (bx + 1) * b)
                out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = block[
                    ay0 - by * b : ay1 - by * b, ax0 - bx * b : ax1 - bx * b
                ]
        return out


def level_sizes(size: int) -> list[int]:
    sizes = [size]
    while sizes[-1] > SMALLEST_LEVEL_PX:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def tiles(layout: Layout, level: int, size: int, tile: int) -> Iterator[np.ndarray]:
    for y in range(0, size, tile):
        for x in range(0, size, tile):
            h, w = min(tile, size - y), min(tile, size - x)
            yield layout.region(level, y, x, h, w)  # tifffile zero-pads edge tiles


def write_pyramid(
    layout: Layout, path: Path, size: int, tile: int = 512, quality: int = 90
) -> dict:
    sizes = level_sizes(size)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level, side in enumerate(sizes):
            tif.write(
                tiles(layout, level, side, tile),
                shape=(side, side),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="minisblack",
                compression="jpeg",
                compressionargs={"level": quality},
                resolution=(RES_PER_CM / 2**level, RES_PER_CM / 2**level),
                resolutionunit="CENTIMETER",
                subifds=len(sizes) - 1 if level == 0 else None,
                subfiletype=1 if level else 0,
                metadata=None,
                software="rcm-viewer benchmarks/make_bench_files.py",
            )
    return {"levels": sizes, "tile": tile, "compression": f"jpeg q{quality}"}


def strips(layout: Layout, size: int, rows: int, dtype, encode) -> Iterator[bytes]:
    for y in range(0, size, rows):
        h = min(rows, size - y)
        band = layout.region(0, y, 0, h, size)
        if dtype == np.uint16:
            band = band.astype(np.uint16) * 12 + 500  # a few thousand grey values, like RCM
        yield encode(np.ascontiguousarray(band).tobytes())


def write_flat(
    layout: Layout, path: Path, size: int, dtype, compression: str | None, rows: int
) -> dict:
    encode = (lambda b: b) if compression is None else imagecodecs.lzw_encode
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        tif.write(
            strips(layout, size, rows, dtype, encode),
            shape=(size, size),
            dtype=dtype,
            rowsperstrip=rows,
            photometric="minisblack",
            compression=compression,
            predictor=False,
            resolution=(RES_PER_CM, RES_PER_CM),
            resolutionunit="CENTIMETER",
            metadata=None,
            software="rcm-viewer benchmarks/make_bench_files.py",
        )
    return {"levels": [size], "rows_per_strip": rows, "compression": compression or "none"}


def write_vips(source: Path, path: Path, quality: int = 90) -> dict:
    vips = shutil.which("vips")
    if vips is None:
        raise FileNotFoundError("vips is not installed (apt-get install libvips-tools)")
    cmd = [
        vips,
        "tiffsave",
        str(source),
        str(path),
        "--tile",
        "--tile-width",
        "256",
        "--tile-height",
        "256",
        "--pyramid",
        "--subifd",
        "--compression",
        "jpeg",
        "--Q",
        str(quality),
        "--bigtiff",
        "--resunit",
        "cm",
        "--xres",
        str(1e3 / PIXEL_SIZE_UM),
        "--yres",
        str(1e3 / PIXEL_SIZE_UM),
    ]
    subprocess.run(cmd, check=True)
    version = subprocess.run([vips, "--version"], capture_output=True, text=True).stdout.strip()
    return {"command": " ".join(cmd[1:]), "writer": version}


def describe(path: Path) -> dict:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        levels = [lv.shape for lv in tif.series[0].levels]
        return {
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "levels_seen_by_tifffile": [list(s) for s in levels],
            "tiled": bool(page.is_tiled),
            "segment": [page.tilelength, page.tilewidth]
            if page.is_tiled
            else [page.rowsperstrip, page.imagewidth],
            "dtype": str(page.dtype),
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--force", action="store_true", help="rewrite existing files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tex = texture(args.out)
    layout = Layout(tex, blocks=math.ceil(40000 / TEXTURE_PX))
    jobs = {
        "pyr40k_jpeg_tifffile.tif": lambda p: write_pyramid(layout, p, 40000),
        # the quick one (issue 15 reading-aid runs): the same content and writer, 16k a side
        "pyr16k_jpeg_tifffile.tif": lambda p: write_pyramid(layout, p, 16000),
        "pyr40k_jpeg_vips.tif": lambda p: write_vips(args.out / "pyr40k_jpeg_tifffile.tif", p),
        "flat16k_u8_raw.tif": lambda p: write_flat(layout, p, 16000, np.uint8, None, 64),
        "flat16k_u16_lzw.tif": lambda p: write_flat(layout, p, 16000, np.uint16, "lzw", 32),
    }
    report: dict = {
        "benchmark": "make_bench_files",
        "out": str(args.out),
        "tifffile": tifffile.__version__,
        "imagecodecs": imagecodecs.__version__,
        "files": {},
    }
    for name, job in jobs.items():
        if args.only and name not in args.only:
            continue
        path = args.out / name
        entry: dict = {}
        if path.exists() and not args.force:
            entry["skipped"] = "exists"
        else:
            start = time.perf_counter()
            try:
                entry.update(job(path))
            except (FileNotFoundError, subprocess.CalledProcessError) as exc:
                entry["failed"] = str(exc)
                report["files"][name] = entry
                continue
            entry["seconds"] = round(time.perf_counter() - start, 1)
        entry.update(describe(path))
        report["files"][name] = entry
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
