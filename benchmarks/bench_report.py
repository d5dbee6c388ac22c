"""Time to export the report (PDF + JSON) of a case on a large mosaic.

    python benchmarks/bench_report.py FILE [--repeat 3] [--annotations 8] [--out DIR]

FILE is any mosaic (e.g. benchmarks/data/flat16k_u8_raw.tif from make_bench_files.py, or a
pyramidal TIFF from ``rcm-viewer synth --size 16000``). A throw-away case store gets one
committed case on FILE with ``--annotations`` rectangles spread over the mosaic and a stored
AI result with a heatmap, so every part of the report is made: overview (a flat file has no
downsampled levels, so each run builds them, as the window does when it opens such a file;
each run opens the file afresh), heatmap, close-ups, PDF, JSON. Prints one JSON object:
seconds per run, median, PDF size, pages, peak RSS. Wall-clock numbers on a shared machine:
say so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mosaic", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--annotations", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = args.out or Path(tempfile.mkdtemp(prefix="rcm-bench-report-"))
    os.environ.setdefault("RCM_VIEWER_DATA_DIR", str(out / "user-data"))

    from rcm_viewer.cases import AIResult, CaseStore, Heatmap, file_sha256
    from rcm_viewer.mosaic import open_mosaic
    from rcm_viewer.reports.export import export_report
    from rcm_viewer.reports.model import ReportOptions

    with open_mosaic(args.mosaic) as mosaic:
        width, height = mosaic.info.width, mosaic.info.height
        pixel_um = mosaic.info.pixel_size_um or 0.5
    start = time.perf_counter()
    sha = file_sha256(args.mosaic)
    hash_s = time.perf_counter() - start
    store = CaseStore(out / "cases.sqlite")
    case = store.create_case(
        "BENCH",
        user="bench",
        mosaic_path=args.mosaic.resolve(),
        mosaic_sha256=sha,
        pixel_size_um=pixel_um,
    )
    cid = case.case_id
    store.update_assessment_fields(cid, None, "bench", diagnosis="naevus", confidence=3)
    rng = np.random.default_rng(0)
    for i in range(args.annotations):
        x, y = rng.integers(0, width - 600), rng.integers(0, height - 600)
        w, h = rng.integers(100, 600, size=2)
        ring = [
            [int(x), int(y)],
            [int(x + w), int(y)],
            [int(x + w), int(y + h)],
            [int(x), int(y + h)],
            [int(x), int(y)],
        ]
        store.add_roi(
            cid,
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "annotation",
                    "shape": "rectangle",
                    "classification": {"name": f"region {i + 1}", "color": [255, 80, 80]},
                },
            },
            "bench",
        )
    planes = rng.random((3, height // 256, width // 256))
    heatmap = Heatmap.from_float(planes, ("melanoma", "bcc", "naevus"), (height, width), (0.0, 1.0))
    store.save_ai_result(
        cid,
        AIResult.from_probabilities(
            "bench",
            "1",
            "0" * 64,
            {"melanoma": 0.2, "bcc": 0.1, "naevus": 0.7},
            heatmap=heatmap,
            flags=("synthetic_model",),
        ),
        "bench",
    )
    store.commit_initial_assessment(cid, "bench")

    runs = []
    report = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        report = export_report(
            store,
            cid,
            out / "report.pdf",
            out / "report.json",
            ReportOptions(institution="Benchmark"),
        )
        runs.append(round(time.perf_counter() - start, 3))
    from pypdf import PdfReader

    pages = len(PdfReader(str(out / "report.pdf")).pages)
    print(
        json.dumps(
            {
                "benchmark": "report_export",
                "mosaic": str(args.mosaic),
                "mosaic_px": [width, height],
                "mosaic_bytes": args.mosaic.stat().st_size,
                "annotations": args.annotations,
                "seconds_per_run": runs,
                "median_s": statistics.median(runs),
                "note": "each run opens the file afresh; a flat file builds its levels every run",
                "sha256_s_for_cli_lookup": round(hash_s, 3),
                "pdf_bytes": (out / "report.pdf").stat().st_size,
                "pages": pages,
                "image_note": report.image_note if report else None,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
