"""Cost of opening and reading float32 mosaics through the pixel map, against uint16.

    python benchmarks/bench_pixel_map.py [--size 4096] [--runs 3]

Writes two tiled (256 px, deflate) TIFFs of the same content without a stored pyramid to
benchmarks/data (ignored by git): float32 and uint16. Opening the float32 file samples
its range (8 x 8 patches of 128 px: it is above 2048 x 2048); the uint16 file reads
headers only. Then reads 16 tiles of 512 px from each. Prints one JSON object with
median times in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rcm_viewer.mosaic import open_mosaic  # noqa: E402


def _files(size: int) -> dict[str, Path]:
    out = HERE / "data"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    base = ((yy + xx) / (2 * size) + rng.normal(0, 0.05, (size, size))).astype(np.float32)
    paths = {
        "float32": out / f"pixel_map_float32_{size}.tif",
        "uint16": out / f"pixel_map_uint16_{size}.tif",
    }
    if not paths["float32"].exists():
        tifffile.imwrite(paths["float32"], base, tile=(256, 256), compression="zlib")
    if not paths["uint16"].exists():
        u16 = np.clip(base * 40000, 0, 65535).astype(np.uint16)
        tifffile.imwrite(paths["uint16"], u16, tile=(256, 256), compression="zlib")
    return paths


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    paths = _files(args.size)
    result: dict[str, object] = {"size_px": args.size, "runs": args.runs}
    for name, path in paths.items():
        opens, reads = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            mosaic = open_mosaic(path)
            opens.append((time.perf_counter() - t0) * 1000)
            decoded_at_open = mosaic.stats()["segments_decoded"]
            t0 = time.perf_counter()
            for i in range(16):
                x = (i % 4) * (args.size // 4)
                y = (i // 4) * (args.size // 4)
                mosaic.read_region(0, x, y, 512, 512)
            reads.append((time.perf_counter() - t0) * 1000 / 16)
            mosaic.close()
        result[name] = {
            "open_ms_median": round(statistics.median(opens), 1),
            "read_512px_tile_ms_median": round(statistics.median(reads), 2),
            "tiles_decoded_at_open": decoded_at_open,
            "tiles_in_file": (args.size // 256) ** 2,
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
