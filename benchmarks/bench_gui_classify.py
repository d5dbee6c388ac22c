"""GUI responsiveness while the classifier runs: the longest event-loop stall.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_classify.py [--model DIR]
        [--backend auto|torch-fp32|torch|openvino] [MOSAIC]

Opens the mosaic in the real main window, starts classification (Ctrl+R path), and
while it runs pans/zooms the view every 30 ms; a QTimer probe firing every 5 ms records
the gaps between its ticks. Prints one JSON object. Timing does not depend on the
weights, so an untrained bundle is fine (benchmarks/out/untrained-resnet34 is written by
bench_inference.py; when it is missing the bundled demo model is used). ``--backend``
picks the inference runtime the way Analysis > Inference runtime does (the QSettings key
``inference/backend`` in a fresh settings file), so each backend's first-run load stall
is in run 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mosaic",
        nargs="?",
        type=Path,
        default=HERE / "data" / "bench_inference_naevus_2048px_1um.ome.tif",
    )
    parser.add_argument("--model", type=Path, default=HERE / "out" / "untrained-resnet34")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--backend", default=None, help="inference runtime (default: the setting's default, auto)"
    )
    args = parser.parse_args()
    if args.model.exists():
        os.environ["RCM_VIEWER_MODEL_DIR"] = str(args.model)
    os.environ["RCM_VIEWER_DATA_DIR"] = tempfile.mkdtemp(prefix="rcm-bench-gui-")
    if args.backend:
        from rcm_viewer.ui.classification import set_chosen_backend

        set_chosen_backend(args.backend)

    from PySide6.QtCore import QElapsedTimer, QTimer

    from rcm_viewer.ui.app import create_app
    from rcm_viewer.ui.main_window import MainWindow

    app = create_app()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    window.open_path(args.mosaic)
    window.wait_until_idle(60)
    runs = []
    for run in range(args.runs):
        runs.append(_measure(app, window, QElapsedTimer, QTimer, run))
    print(
        json.dumps(
            {
                "benchmark": "gui_stall_during_classification",
                "mosaic": str(args.mosaic.name),
                "model": args.model.name if args.model.exists() else "bundled default",
                "backend": args.backend or "auto (default)",
                "runs": runs,
            }
        )
    )
    window.close()
    return 0


def _measure(app, window, QElapsedTimer, QTimer, run: int) -> dict:  # noqa: N803
    """One classification while panning; run 0 includes loading torch in the worker."""
    window.prediction = None
    ticks: list[int] = []
    clock = QElapsedTimer()
    clock.start()
    probe = QTimer()
    probe.timeout.connect(lambda: ticks.append(clock.elapsed()))
    probe.start(5)
    started = time.perf_counter()
    window.classify()
    frames: list[float] = []
    step = 0
    while window._classify_job is not None and not window._classify_job.done.is_set():
        t0 = time.perf_counter()
        window.view.zoom_by(1.04 if step % 40 < 20 else 1 / 1.04)
        window.view.pan_by_fraction(0.01 if step % 16 < 8 else -0.01, 0.005)
        window.view.viewport().repaint()
        frames.append((time.perf_counter() - t0) * 1000)
        end = time.perf_counter() + 0.03
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.002)
        step += 1
    app.processEvents()
    seconds = time.perf_counter() - started
    probe.stop()
    gaps = sorted(b - a for a, b in zip(ticks, ticks[1:], strict=False))
    prediction = window.prediction
    return {
        "run": run,
        "torch_already_loaded": run > 0,
        "classify_seconds": round(seconds, 1),
        "status": None if prediction is None else prediction.status,
        "n_tiles": None if prediction is None else prediction.n_tiles,
        "probe_ticks": len(ticks),
        "longest_stall_ms": gaps[-1] if gaps else None,
        "p99_gap_ms": gaps[int(0.99 * (len(gaps) - 1))] if gaps else None,
        "frames": len(frames),
        "frame_ms_median": round(sorted(frames)[len(frames) // 2], 2) if frames else None,
        "frame_ms_max": round(max(frames), 2) if frames else None,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


if __name__ == "__main__":
    sys.exit(main())
