"""The peer for bench_viewer.py: the same opens and the same scripted tour in napari.

    benchmarks/.venv-napari/bin/python benchmarks/bench_napari.py [--data DIR] [--repeats 3]
    benchmarks/.venv-napari/bin/python benchmarks/bench_napari.py --one FILE [--tour]

Runs in its own virtualenv (``python3.11 -m venv benchmarks/.venv-napari`` and
``pip install 'napari[pyside6]' tifffile imagecodecs zarr dask``), so ours stays untouched.

How napari users view a big TIFF: ``tifffile.imread(path, aszarr=True)`` + ``zarr.open`` +
one ``dask.array.from_zarr`` per level, ``viewer.add_image(levels, multiscale=True)`` (a
flat file: the single level, ``multiscale=False``). Default napari settings (synchronous
slicing: data for a new view is read on the GUI thread while drawing).

napari draws with OpenGL (vispy). On Qt's ``offscreen`` platform there is no GL context
(``--probe-offscreen`` shows the error), so this script runs napari on an X server: the
``DISPLAY`` given, or an ``Xvfb`` it starts itself, with Mesa's llvmpipe (software GL on
the CPU). That makes every napari frame pay software GL and Qt's composition of the GL
widget (``static_frame`` reports that floor) — on a machine with a GPU it is far cheaper;
the data-loading part is what the comparison is fair for.

Per step of the tour (the same ``tour_path`` as bench_viewer.py, same viewport size): set
``camera.center``/``camera.zoom``, then time ``canvas.native.repaint()`` + processing the
events it queues (the repaint that shows the newly sliced data) + ``glFinish``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_viewer import (  # noqa: E402  (pure-Python helpers, no rcm_viewer import)
    DATA,
    FILES,
    PROBE_MS,
    STEP_MS,
    TOUR_FILES,
    WINDOW,
    ensure_display,
    loadavg,
    machine,
    peak_rss_mb,
    pin_singletons,
    stats_ms,
    tour_path,
)

VIEWPORT = (1586, 953)  # what our MosaicView gets in a 1600 x 1000 window (docks hidden)


def probe_offscreen() -> dict:
    """Try napari on QT_QPA_PLATFORM=offscreen in a child process; report what happens."""
    code = (
        "import ctypes\n"
        "for o in (None, True, False): ctypes.c_ssize_t.from_address(id(o)).value += 1<<40\n"
        "import numpy as np, napari\n"
        "v = napari.Viewer(show=False)\n"
        "v.add_image(np.zeros((64, 64), np.uint8))\n"
        "print(v.screenshot(canvas_only=True, flash=False).shape)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["QT_QPA_PLATFORM"] = "offscreen"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return {
        "returncode": proc.returncode,
        "stdout": proc.stdout.strip()[-200:],
        "error": lines[-1] if lines else "",
    }


class NapariBench:
    def __init__(self, viewport: tuple[int, int] = VIEWPORT) -> None:
        self.refs_at_start = pin_singletons()  # the same PySide6 6.12.0 bug bites napari
        import dask.array as da
        import napari
        import tifffile
        import zarr
        from qtpy.QtCore import QEventLoop, Qt, QTimer
        from qtpy.QtWidgets import QApplication, QDockWidget
        from vispy.gloo import gl

        self.da, self.napari, self.tifffile, self.zarr = da, napari, tifffile, zarr
        self.QEventLoop, self.QTimer, self.precise = QEventLoop, QTimer, Qt.TimerType.PreciseTimer
        self.QApplication, self.gl = QApplication, gl
        self.viewer = napari.Viewer(show=True)
        window = self.viewer.window
        for dock in window._qt_window.findChildren(QDockWidget):
            dock.hide()
        self.canvas = window._qt_viewer.canvas
        self.native = self.canvas.native
        self.native.setFixedSize(*viewport)
        window._qt_window.resize(*WINDOW)
        self.process()
        self.gl_renderer = gl.glGetParameter(gl.GL_RENDERER)
        self.layer = None
        self._loop = None

    def process(self) -> None:
        self.QApplication.processEvents()

    def frame(self) -> None:
        """One synchronous frame, plus the one napari queues after slicing new data."""
        self.native.repaint()
        self.process()
        self.native.makeCurrent()
        self.gl.glFinish()

    def camera(self):
        viewer = self.viewer
        return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera

    def load_levels(self, path: Path):
        store = self.tifffile.imread(path, aszarr=True)
        node = self.zarr.open(store, mode="r")
        if hasattr(node, "keys"):  # multiscale: a group with one array per level
            keys = sorted(node.keys(), key=int)
            return [self.da.from_zarr(node[k]) for k in keys], store
        return [self.da.from_zarr(node)], store

    def measure_open(self, path: Path) -> dict:
        viewer = self.viewer
        viewer.layers.clear()
        self.process()
        result: dict = {}
        t0 = time.perf_counter()
        levels, store = self.load_levels(path)
        result["data_access_s"] = round(time.perf_counter() - t0, 4)
        if len(levels) > 1:
            layer = viewer.add_image(levels, multiscale=True, name=path.stem)
        else:
            layer = viewer.add_image(levels[0], multiscale=False, name=path.stem)
        result["add_image_s"] = round(time.perf_counter() - t0, 4)
        self.layer = layer
        self.refresh_times: list[float] = []
        refresh = layer.refresh

        def timed_refresh(*args, **kwargs):  # slicing + reading + texture data, GUI thread
            t = time.perf_counter()
            refresh(*args, **kwargs)
            self.refresh_times.append(time.perf_counter() - t)

        layer.refresh = timed_refresh
        marks = []
        for _ in range(6):
            self.frame()
            marks.append(
                (
                    time.perf_counter() - t0,
                    int(getattr(layer, "data_level", 0)),
                    tuple(map(tuple, getattr(layer, "corner_pixels", [[0]]).tolist())),
                )
            )
        final_level, final_corners = marks[-1][1], marks[-1][2]
        result["first_frame_s"] = round(marks[0][0], 4)
        result["sharp_frame_s"] = next(
            round(t, 4) for t, lv, c in marks if lv == final_level and c == final_corners
        )
        result["level"] = final_level
        result["levels"] = len(levels)
        result["zoom"] = round(float(self.camera().zoom), 5)
        result["contrast_limits"] = [float(x) for x in layer.contrast_limits]
        self._store = store
        return result

    def static_frame(self, n: int = 20) -> dict:
        """Frames with nothing changed: the floor of software GL + GL widget composition."""
        times = []
        for _ in range(n):
            t = time.perf_counter()
            self.frame()
            times.append(time.perf_counter() - t)
        return stats_ms(times)

    def apply(self, state) -> None:
        cx, cy, zoom = state
        camera = self.camera()
        camera.center = (cy, cx)
        camera.zoom = zoom

    def run_loop(self, seconds: float) -> None:
        loop = self.QEventLoop()
        self._loop = loop
        self.QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()
        self._loop = None

    def tour(self, path: Path) -> dict:
        layer = self.layer
        height, width = layer.level_shapes[0] if layer.multiscale else layer.data.shape
        size = self.native.size()
        steps = tour_path(int(width), int(height), size.width(), size.height())
        out: dict = {
            "steps": len(steps),
            "viewport": [size.width(), size.height()],
            "gl_renderer": self.gl_renderer,
            "static_frame": self.static_frame(),
        }
        frames: list[float] = []
        ticks: list[float] = []
        probe = self.QTimer()
        probe.setTimerType(self.precise)
        probe.setInterval(PROBE_MS)
        probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
        stepper = self.QTimer()
        stepper.setTimerType(self.precise)
        stepper.setInterval(STEP_MS)
        index = [0]

        def step() -> None:
            if index[0] >= len(steps):
                stepper.stop()
                if self._loop is not None:
                    self._loop.quit()
                return
            self.apply(steps[index[0]])
            index[0] += 1
            t = time.perf_counter()
            self.frame()
            frames.append(time.perf_counter() - t)

        stepper.timeout.connect(step)
        self.refresh_times.clear()
        t0 = time.perf_counter()
        probe.start()
        stepper.start()
        self.run_loop(600)
        stepper.stop()
        wall = time.perf_counter() - t0
        self.run_loop(0.3)
        probe.stop()
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        out["pass1"] = {
            **stats_ms(frames),
            "wall_s": round(wall, 2),
            "probe_ticks": len(ticks),
            "longest_stall_ms": round(max(gaps) * 1000, 1) if gaps else None,
            "stalls_over_50ms": sum(g > 0.05 for g in gaps),
            "layer_refresh": stats_ms(self.refresh_times),
        }
        self.refresh_times.clear()
        frames = []
        for state in steps:  # pass 2: the same path again (napari keeps what dask caches)
            self.apply(state)
            t = time.perf_counter()
            self.frame()
            frames.append(time.perf_counter() - t)
            self.process()
        out["pass2"] = {**stats_ms(frames), "layer_refresh": stats_ms(self.refresh_times)}
        return out


def run_one(path: Path, repeats: int, tour: bool, viewport: tuple[int, int] = VIEWPORT) -> dict:
    xvfb = ensure_display()
    try:
        result: dict = {
            "file": path.name,
            "loadavg_start": loadavg(),
            "platform": os.environ.get("QT_QPA_PLATFORM"),
        }
        bench = NapariBench(viewport)
        result["napari"] = bench.napari.__version__
        result["gl_renderer"] = bench.gl_renderer
        result["open_cold_process"] = bench.measure_open(path)
        opens = [bench.measure_open(path) for _ in range(repeats)]
        result["opens"] = opens

        def med(key):
            return round(statistics.median(o[key] for o in opens), 4)

        result["open"] = {
            "first_frame_s": med("first_frame_s"),
            "sharp_frame_s": med("sharp_frame_s"),
            "data_access_s": med("data_access_s"),
        }
        result["peak_rss_open_mb"] = peak_rss_mb()
        if tour:
            result["tour"] = bench.tour(path)
            result["peak_rss_mb"] = peak_rss_mb()
        result["loadavg_end"] = loadavg()
        bench.viewer.close()
        return result
    finally:
        if xvfb is not None:
            xvfb.terminate()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=Path)
    parser.add_argument("--tour", action="store_true")
    parser.add_argument("--files", nargs="*", default=None)
    parser.add_argument("--probe-offscreen", action="store_true")
    parser.add_argument(
        "--viewport",
        default=f"{VIEWPORT[0]}x{VIEWPORT[1]}",
        help="canvas size WxH (bench_viewer.py passes its view's size)",
    )
    args = parser.parse_args()
    if args.probe_offscreen:
        print(json.dumps(probe_offscreen()))
        return 0
    viewport = tuple(int(v) for v in args.viewport.lower().split("x"))
    if args.one:
        print(json.dumps(run_one(args.one, args.repeats, args.tour, viewport)))
        return 0
    report: dict = {
        "benchmark": "napari",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(),
        "offscreen_probe": probe_offscreen(),
        "files": {},
    }
    for name in args.files or FILES:
        path = args.data / name
        if not path.exists():
            report["files"][name] = {"skipped": "missing"}
            continue
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(path),
            "--repeats",
            str(args.repeats),
            "--viewport",
            args.viewport,
        ]
        if name in TOUR_FILES:
            cmd.append("--tour")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            report["files"][name] = {"failed": proc.stderr[-2000:]}
            continue
        report["files"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
