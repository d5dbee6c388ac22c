"""Per-frame cost of review coverage (issue 15): ``ReviewCoverage.record`` alone, no Qt.

    .venv/bin/python benchmarks/bench_coverage.py [--frames 20000]

The viewer calls ``record`` once per painted frame; the budget is well under 1 ms. This
times it on the largest grid (128 x 128 cells over a 40k mosaic) for a pan at 1:1 and a
zoomed-out sweep, in GUI-thread CPU time (``thread_time``, so a loaded machine does not
inflate it) and wall time. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from rcm_viewer.session.coverage import ReviewCoverage


def run(frames: int, width: int, viewport: tuple[int, int], zoom: float) -> dict:
    cov = ReviewCoverage(width, width)
    w, h = viewport[0] / zoom, viewport[1] / zoom
    cpu, wall = [], []
    for i in range(frames):
        x = (i * 37.0) % max(1.0, width - w)
        y = (i * 11.0) % max(1.0, width - h)
        t, c = time.perf_counter(), time.thread_time()
        cov.record((x, y, w, h), zoom, i / 60)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)

    def stats(values: list[float]) -> dict:
        us = sorted(v * 1e6 for v in values)
        return {
            "median_us": round(statistics.median(us), 2),
            "p99_us": round(us[int(0.99 * (len(us) - 1))], 2),
            "max_us": round(us[-1], 2),
        }

    return {
        "grid": [cov.rows, cov.cols],
        "cell_px": cov.cell_px,
        "zoom": zoom,
        "cpu": stats(cpu),
        "wall": stats(wall),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20000)
    args = parser.parse_args()
    out = {
        "benchmark": "coverage",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "nproc": os.cpu_count(),
        "runs": [
            run(args.frames, 40000, (1600, 1000), 1.0),
            run(args.frames, 40000, (1600, 1000), 0.5),
            run(args.frames, 40000, (1600, 1000), 0.05),
        ],
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
