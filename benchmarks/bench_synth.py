"""Time and peak memory to generate one synthetic mosaic into a tiled pyramidal OME-TIFF.

    python benchmarks/bench_synth.py [--size 16000] [--pixel-size-um 0.5] [--out DIR]

Prints one JSON object. Peak RSS is the process maximum (ru_maxrss), so run
one size per process.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from rcm_viewer.synthetic import MosaicSpec, SyntheticMosaic, write_tiff


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=16000)
    parser.add_argument("--pixel-size-um", type=float, default=0.5)
    parser.add_argument("--lesion-class", default="naevus")
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="rcm-bench-"))
    path = out_dir / f"bench_{args.lesion_class}_{args.size}.ome.tif"
    spec = MosaicSpec(
        args.lesion_class, args.size, args.size, args.pixel_size_um, seed=1, bits=args.bits
    )
    start = time.perf_counter()
    write_tiff(SyntheticMosaic(spec), path)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "benchmark": "synth_generate",
                "size_px": args.size,
                "pixel_size_um": args.pixel_size_um,
                "lesion_class": args.lesion_class,
                "bits": args.bits,
                "seconds": round(seconds, 1),
                "megapixels_per_second": round(args.size**2 / 1e6 / seconds, 2),
                "peak_rss_mb": round(peak_mb, 1),
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "python": platform.python_version(),
                "machine": platform.machine(),
            }
        )
    )
    if args.out is None:
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
