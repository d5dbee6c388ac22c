"""``rcm-viewer --self-test``: does this installation work, in one command and one line?

Meant for a frozen (PyInstaller) app, a fresh ``pip install`` or a .deb: it exercises what
a reader's first minutes need, with the pieces the installation actually carries:

1. ``seals``    the bundled model's manifest and weights checksum (``load_bundle``);
2. ``open``     the bundled demo mosaic (headers and one region decoded);
3. ``classify`` the demo mosaic with whatever inference backend is in the build;
4. ``window``   the main window built and painted offscreen, the demo mosaic opened in it;
5. ``report``   a report written to a temporary folder, once ``rcm_viewer.reports`` exists.

Each step runs even when an earlier one failed (except those needing its result), so one
run names every problem. It prints ONE summary line on stdout and returns 0 when every
step passed or was skipped for a stated reason, 1 otherwise. Nothing is written to the
user's data folder: the run uses a temporary ``RCM_VIEWER_DATA_DIR`` that is removed after.
Never touches the network.

Extension points (issues 11 and 13): ``_classify`` asks ``rcm_viewer.inference`` for
``classify_mosaic``, which picks the backend; in a build without torch and without the
fast CPU runtime it fails with that reason. ``_write_report`` calls
``rcm_viewer.reports.export.export_report`` as soon as that module exists, passing the
arguments its signature names from what the earlier steps produced.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: How long the window step waits for the demo mosaic to show before it paints anyway.
WINDOW_WAIT_S = 5.0


class SkipStep(Exception):
    """A step that cannot run in this build, for a stated reason (not a failure)."""


@dataclass
class StepResult:
    name: str
    status: str  # "ok", "skipped", "failed"
    seconds: float
    note: str = ""

    def summary(self) -> str:
        text = f"{self.name} {self.status} {self.seconds:.1f}s"
        return f"{text} ({self.note})" if self.note else text


@dataclass
class _Context:
    """What the steps hand each other."""

    tmp: Path
    bundle: Any = None
    demo_path: Path | None = None
    prediction: Any = None


@contextlib.contextmanager
def _isolated_data_dir() -> Iterator[Path]:
    """A temporary user data folder for the run (settings, case store, logs)."""
    old = os.environ.get("RCM_VIEWER_DATA_DIR")
    with tempfile.TemporaryDirectory(prefix="rcm-selftest-") as tmp:
        os.environ["RCM_VIEWER_DATA_DIR"] = str(Path(tmp) / "data")
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("RCM_VIEWER_DATA_DIR", None)
            else:
                os.environ["RCM_VIEWER_DATA_DIR"] = old


def _check_seals(ctx: _Context) -> str:
    from rcm_viewer.inference import default_bundle_dir, load_bundle
    from rcm_viewer.paths import MODELS_DIR

    ctx.bundle = load_bundle(default_bundle_dir(MODELS_DIR), verify=True)
    return ctx.bundle.manifest.name


def _open_demo(ctx: _Context) -> str:
    from rcm_viewer.mosaic import open_mosaic
    from rcm_viewer.paths import demo_mosaic

    path = demo_mosaic()
    with open_mosaic(path) as mosaic:
        pixels = mosaic.read_region(mosaic.level_count - 1, 0, 0, 64, 64)
        if pixels.size == 0 or not pixels.any():
            raise RuntimeError(f"{path.name}: decoded no image content")
        size = f"{mosaic.info.width}x{mosaic.info.height}"
    ctx.demo_path = path
    return f"{path.name} {size}"


def _backend_available() -> str | None:
    """The name of an inference backend this build carries, or None."""
    from rcm_viewer.inference.backends import available_backends

    names = available_backends()
    for name in ("openvino", "torch"):  # the fast CPU runtime first, as "auto" picks
        if name in names:
            return name
    return None


def _classify(ctx: _Context) -> str:
    if ctx.bundle is None or ctx.demo_path is None:
        raise SkipStep("needs the seals and open steps")
    backend = _backend_available()
    if backend is None:
        raise RuntimeError(
            "no inference backend in this build (neither torch nor the fast CPU runtime, openvino)"
        )
    from rcm_viewer.inference import classify_mosaic
    from rcm_viewer.mosaic import open_mosaic

    with open_mosaic(ctx.demo_path) as mosaic:
        prediction = classify_mosaic(mosaic, ctx.bundle, device="cpu", backend="auto")
    if prediction.probabilities is None:
        raise RuntimeError(f"{ctx.demo_path.name}: {prediction.status}")
    ctx.prediction = prediction
    return f"{prediction.top_class} via {prediction.backend or backend}"


def _render_window(ctx: _Context) -> str:
    if (
        not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and sys.platform.startswith("linux")
    ):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer
    from PySide6.QtWidgets import QApplication

    from rcm_viewer.ui.app import create_app
    from rcm_viewer.ui.main_window import MainWindow

    app = create_app()
    window = MainWindow()
    try:
        window.resize(1200, 800)
        window.show()
        if ctx.demo_path is not None:
            window.open_path(ctx.demo_path)
        timer = QElapsedTimer()
        timer.start()
        while timer.elapsed() < WINDOW_WAIT_S * 1000:
            QApplication.processEvents()
            if ctx.demo_path is not None and ctx.demo_path.name in window.windowTitle():
                break
            time.sleep(0.02)
        image = window.grab().toImage()
        if image.isNull() or image.width() < 100:
            raise RuntimeError("the main window painted nothing")
        shown = ctx.demo_path is not None and ctx.demo_path.name in window.windowTitle()
        image.save(str(ctx.tmp / "window.png"))
        return f"{image.width()}x{image.height()}" + ("" if shown else ", demo not shown")
    finally:
        window.close()
        window.deleteLater()
        app.processEvents()


def _write_report(ctx: _Context) -> str:
    """A real case in a throw-away case store, its AI result, and its PDF + JSON report."""
    if ctx.prediction is None or ctx.demo_path is None:
        raise SkipStep("needs the classify step")
    from rcm_viewer.cases import CaseStore, file_sha256
    from rcm_viewer.reports.export import export_report
    from rcm_viewer.session import case_for_mosaic, stored_from_prediction

    out_dir = ctx.tmp / "report"
    out_dir.mkdir()
    with CaseStore(ctx.tmp / "self-test-cases.sqlite3") as store:
        case, _restored = case_for_mosaic(
            store,
            ctx.demo_path,
            file_sha256(ctx.demo_path),
            user="self-test",
            reader_mode="ai_visible",
        )
        store.save_ai_result(case.case_id, stored_from_prediction(ctx.prediction), "self-test")
        pdf, sidecar = out_dir / "self-test-report.pdf", out_dir / "self-test-report.json"
        export_report(store, case.case_id, pdf, sidecar, mosaic_path=ctx.demo_path)
    if not (pdf.is_file() and pdf.stat().st_size > 0 and sidecar.is_file()):
        raise RuntimeError("export_report wrote no file")
    return f"{pdf.name} {pdf.stat().st_size // 1024} kB + {sidecar.name}"


STEPS: list[tuple[str, Callable[[_Context], str]]] = [
    ("seals", _check_seals),
    ("open", _open_demo),
    ("classify", _classify),
    ("window", _render_window),
    ("report", _write_report),
]


def run_self_test(
    steps: list[tuple[str, Callable[[_Context], str]]] | None = None,
) -> tuple[int, str, list[StepResult]]:
    """Run the steps; return (exit code, summary line, per-step results)."""
    started = time.perf_counter()
    results: list[StepResult] = []
    with _isolated_data_dir() as tmp:
        ctx = _Context(tmp=tmp)
        for name, step in steps or STEPS:
            t0 = time.perf_counter()
            try:
                note = step(ctx)
                results.append(StepResult(name, "ok", time.perf_counter() - t0, note))
            except SkipStep as exc:
                results.append(StepResult(name, "skipped", time.perf_counter() - t0, str(exc)))
            except Exception as exc:  # noqa: BLE001  (a self-test reports every failure)
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                results.append(StepResult(name, "failed", time.perf_counter() - t0, reason))
    total = time.perf_counter() - started
    failed = [r for r in results if r.status == "failed"]
    verdict = "FAILED" if failed else "OK"
    line = f"rcm-viewer self-test {verdict} in {total:.1f}s: " + "; ".join(
        r.summary() for r in results
    )
    return (1 if failed else 0), line, results


def main() -> int:
    """Entry of ``rcm-viewer --self-test``: one line on stdout, exit code 0 or 1."""
    code, line, _ = run_self_test()
    print(line, flush=True)
    return code
