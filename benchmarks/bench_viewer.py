"""Viewer benchmark (issue 3): open-to-first-frame and a scripted pan/zoom tour, offscreen.

    .venv/bin/python benchmarks/bench_viewer.py [--data benchmarks/data] [--repeats 3]
    .venv/bin/python benchmarks/bench_viewer.py --with-napari   # + ours on Xvfb + napari
    .venv/bin/python benchmarks/bench_viewer.py --one FILE [--tour] [--platform xcb]
    .venv/bin/python benchmarks/bench_viewer.py --files pyr16k_jpeg_tifffile.tif \
        --coverage on|off [--two-views]     # reading aids (issue 15)

Runs our ``MainWindow`` (1600 x 1000, docks hidden so the view fills it) on Qt's offscreen
platform with a 1920 x 1200 virtual screen. Every file is measured in its own process, so
peak RSS (``ru_maxrss``) belongs to that file alone. Files come from make_bench_files.py.
Prints one JSON object (``--no-detail`` drops the per-step arrays).

Per file:

* ``open``: seconds from ``open_path`` to the first painted frame that shows the mosaic
  (overview or tiles: ``first_frame_s``) and to the first fully sharp frame (every visible
  tile of the level the final pyramid would use at this zoom drawn: ``sharp_frame_s``).
  The event loop runs as in the application: frames are painted when something calls
  ``update()``, nothing is forced. The first open in the process (``open_cold_process``)
  includes first-use costs (codec imports); ``open`` is the median of ``--repeats`` opens
  after it. The OS file cache is warm (files were just written or read).
* ``tour`` (40k files): ``tour_path()`` below, 231 absolute camera states (fit -> 1:1 zoom
  with drift, 100 pans at 1:1 across to the right edge, 30 diagonal pans, zoom back out),
  applied with ``view.set_zoom(zoom, QPointF(cx, cy))``. Each step is timed around
  ``viewport().repaint()`` (one synchronous GUI-thread frame); ``cpu``/``process_cpu`` are
  the CPU seconds of that frame (GUI thread alone / whole process, which adds Qt's paint
  helper threads and any busy tile worker), ``motion_frames`` how many were drawn in the
  view's motion mode (nearest-neighbour minification).
  Pass 1 runs right after opening, steps paced by a 16 ms timer with the event loop running
  (tiles load meanwhile), and a 5 ms probe timer measures the longest gap between its ticks
  (GUI-thread stall). A fill pass then visits every step and waits for the tiles; pass 2
  repeats the path with ``wait_until_idle`` after each timed frame (cached drawing).
  ``still_frames_ms``: one frame per zoom after the view has settled (filtered scaling).

``--coverage on`` attaches the review-coverage controller (``rcm_viewer.ui.coverage``) to
the view, so every frame also updates the coverage grid; ``coverage_slot`` reports what
that slot cost per frame. ``--two-views`` puts the view in a ``LinkedViews`` splitter with
the same file open beside it (linked in µm): each timed frame then repaints both views.

``--with-napari`` runs, per file, ours offscreen, ours on Xvfb (``--platform xcb``) and
bench_napari.py (in ``benchmarks/.venv-napari``, on Xvfb: napari needs OpenGL), and reports
ours/napari per metric. PySide6 6.12.0 on Python 3.11 drops references to None/True on
every void call and signal emit, which aborts the interpreter after a few hundred frames;
``pin_singletons()`` works around it for the benchmark only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
WINDOW = (1600, 1000)
SCREEN = (1920, 1200)
STEP_MS = 16
PROBE_MS = 5
FILES = [
    "pyr40k_jpeg_tifffile.tif",
    "pyr40k_jpeg_vips.tif",
    "flat16k_u8_raw.tif",
    "flat16k_u16_lzw.tif",
]
TOUR_FILES = ["pyr40k_jpeg_tifffile.tif", "pyr40k_jpeg_vips.tif", "pyr16k_jpeg_tifffile.tif"]


# ---------------------------------------------------------------- shared with bench_napari.py


def tour_path(width: int, height: int, vp_w: int, vp_h: int) -> list[tuple[float, float, float]]:
    """(centre x, centre y, zoom) in level-0 pixels / screen px per level-0 px, 231 steps.

    Fit; 60 steps zooming to 1:1 while drifting to the left edge; 100 pans at 1:1 to the
    right edge (width * 0.009 each: 360 px on a 40k mosaic, about a quarter viewport);
    30 pans down-left (a fifth / a quarter viewport); 40 steps zooming back out to fit
    while drifting to the centre.
    """
    fit = min(vp_w / width, vp_h / height)
    steps: list[tuple[float, float, float]] = [(width / 2, height / 2, fit)]
    cx0, cy0 = width / 2, height / 2
    tx, ty = 0.05 * width, 0.5 * height
    n = 60
    for i in range(1, n + 1):
        t = i / n
        steps.append((cx0 + (tx - cx0) * t, cy0 + (ty - cy0) * t, fit * (1.0 / fit) ** t))
    cx, cy = tx, ty
    for _ in range(100):
        cx += 0.009 * width
        steps.append((cx, cy, 1.0))
    for _ in range(30):
        cx -= 0.2 * vp_w
        cy += 0.25 * vp_h
        steps.append((cx, cy, 1.0))
    n = 40
    for i in range(1, n + 1):
        t = i / n
        steps.append(
            (cx + (width / 2 - cx) * t, cy + (height / 2 - cy) * t, (1.0 / fit) ** (1 - t) * fit)
        )
    return steps


def stats_ms(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {}
    ms = sorted(v * 1000 for v in values_s)

    def pct(p: float) -> float:
        k = min(len(ms) - 1, max(0, round(p / 100 * (len(ms) - 1))))
        return round(ms[k], 2)

    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2, 1)


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/meminfo") as fh:
            info["mem_total_gb"] = round(int(fh.readline().split()[1]) / 1024**2, 1)
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return info


def pin_singletons() -> dict[str, int]:
    """Work around PySide6 6.12.0 on Python 3.11 dropping references to None and True.

    Every call of a C++ method returning void drops one reference to ``None``
    (``QLabel.setText`` -1, one ``viewport().repaint()`` about -21 through what it
    triggers) and ``Signal.emit()`` drops one to ``True``. They start near 5,000
    references, so after a few hundred frames Python aborts with "none_dealloc:
    deallocating None" (or "bool_dealloc"). From Python 3.12 on these objects are immortal
    and it is harmless. The benchmark gives them 2^40 extra references so it can run at
    all; returns the counts before.
    """
    before = {repr(o): sys.getrefcount(o) for o in (None, True, False)}
    if sys.version_info < (3, 12):
        import ctypes

        for obj in (None, True, False):
            ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    return before


def ensure_display() -> subprocess.Popen | None:
    """Use $DISPLAY, else start Xvfb on a free display number."""
    if os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise RuntimeError("napari needs OpenGL: no DISPLAY and no Xvfb (apt-get install xvfb)")
    for number in range(90, 120):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            break
    proc = subprocess.Popen(
        [xvfb, f":{number}", "-screen", "0", "1920x1200x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if Path(f"/tmp/.X11-unix/X{number}").exists():
            break
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    return proc


def screen_config() -> str:
    """Qt offscreen platform with a 1920 x 1200 screen (the default one is 800 x 800)."""
    path = Path(tempfile.gettempdir()) / "rcm_bench_offscreen.json"
    path.write_text(
        json.dumps(
            {
                "screens": [
                    {
                        "name": "bench",
                        "x": 0,
                        "y": 0,
                        "width": SCREEN[0],
                        "height": SCREEN[1],
                        "logicalDpi": 96,
                        "logicalBaseDpi": 96,
                        "dpr": 1,
                    }
                ]
            }
        )
    )
    return f"offscreen:configfile={path}"


# ---------------------------------------------------------------- one file, in this process


class Bench:
    def __init__(self, coverage: bool = False, two_views: bool = False) -> None:
        self.refs_at_start = pin_singletons()
        os.environ.setdefault("QT_QPA_PLATFORM", screen_config())
        os.environ.setdefault("RCM_VIEWER_DATA_DIR", tempfile.mkdtemp(prefix="rcm-bench-"))
        from PySide6.QtCore import QEventLoop, QPointF, Qt, QTimer

        from rcm_viewer.ui.app import create_app
        from rcm_viewer.ui.main_window import MainWindow
        from rcm_viewer.ui.mosaic_view import MosaicView

        self.QEventLoop, self.QPointF, self.QTimer = QEventLoop, QPointF, QTimer
        self.precise = Qt.TimerType.PreciseTimer
        self.app = create_app()
        self.paint_hook = None
        self.draw_times: list[float] = []
        self.draw_spans: list[tuple[float, float]] = []  # (start, seconds) of each draw
        self.cpu_times: list[float] = []
        self.process_cpu_times: list[float] = []
        self.motion: list[bool] = []
        original = MosaicView.drawBackground
        bench = self

        def draw_background(view, painter, rect):  # timing wrapper, class-wide
            t = time.perf_counter()
            original(view, painter, rect)
            bench.draw_times.append(time.perf_counter() - t)
            bench.draw_spans.append((t, bench.draw_times[-1]))
            if bench.paint_hook is not None:
                bench.paint_hook(view)

        MosaicView.drawBackground = draw_background
        from PySide6.QtWidgets import QDockWidget

        self.win = MainWindow()
        self.win.resize(*WINDOW)
        # the view alone fills the window (docks hidden): the largest viewport to paint, and
        # independent of which docks the window grows
        for dock in self.win.findChildren(QDockWidget):
            dock.hide()
        self.win.show()
        self.app.processEvents()
        self.view = self.win.view
        self.views = [self.view]  # every view a timed frame repaints
        self.coverage = None
        self.coverage_slot: list[float] = []  # wall seconds of the coverage slot per frame
        self.coverage_slot_cpu: list[float] = []  # its GUI-thread CPU seconds
        if coverage:
            from rcm_viewer.ui.coverage import CoverageController

            self.coverage = CoverageController(self.view, self.win.overview)
            slot = self.coverage._on_frame
            self.view.frameShown.disconnect(slot)

            def timed_slot(rect, zoom) -> None:
                t, c = time.perf_counter(), time.thread_time()
                slot(rect, zoom)
                self.coverage_slot_cpu.append(time.thread_time() - c)
                self.coverage_slot.append(time.perf_counter() - t)

            self.view.frameShown.connect(timed_slot)
        self.linked = None
        if two_views:
            from rcm_viewer.ui.linked_views import LinkedViews

            self.win.takeCentralWidget()  # setCentralWidget would delete the view
            self.linked = LinkedViews(self.view)
            self.win.setCentralWidget(self.linked)
            self.views.append(self.linked.secondary)
            self.app.processEvents()

    def reading_aids_opened(self, path: Path) -> None:
        """After an open: start the coverage grid, open the second view (and wait for it)."""
        mosaic = self.win.mosaic
        if self.coverage is not None:
            self.coverage.start(mosaic.info.width, mosaic.info.height, self.win._overview_pixels)
        if self.linked is not None:
            from rcm_viewer.ui.overview_levels import open_with_overview

            self.linked.show_secondary(*open_with_overview(path))
            self.linked.setSizes([1, 1])
            self.app.processEvents()

    def idle(self, timeout_s: float = 60) -> None:
        self.win.wait_until_idle(timeout_s)
        for view in self.views[1:]:
            view.tiles.wait_idle(int(timeout_s * 1000))
            self.app.processEvents()

    def repaint_all(self) -> None:
        """One frame: with two views, both in one paint pass (as one event-loop update
        paints them), not two passes with a backing-store flush each."""
        if self.linked is not None:
            self.linked.repaint()
        else:
            self.view.viewport().repaint()

    # -- helpers ---------------------------------------------------------------------

    def run_loop(self, seconds: float, until=None) -> None:
        """Run the event loop (like app.exec) for up to ``seconds`` or until loop.quit()."""
        loop = self.QEventLoop()
        self._loop = loop
        self.QTimer.singleShot(int(seconds * 1000), loop.quit)
        if until is None or not until():
            loop.exec()
        self._loop = None

    def target_level(self) -> int:
        """The level the complete pyramid would show at this zoom (as best_level does)."""
        mosaic = self.view.mosaic
        downsample = 1.0 / max(self.view.zoom, 1e-9)
        best = 0
        for index, level in enumerate(mosaic.planned_levels):
            if level.downsample <= downsample * 1.01:
                best = index
        return best

    def is_sharp(self) -> bool:
        view = self.view
        return (
            view.mosaic is not None
            and view.current_level == self.target_level()
            and bool(view.last_requested)
            and set(view.last_drawn) == set(view.last_requested)
        )

    def shows_mosaic(self) -> bool:
        view = self.view
        return view.mosaic is not None and (view._overview is not None or bool(view.last_drawn))

    # -- open --------------------------------------------------------------------------

    def measure_open(self, path: Path, timeout_s: float = 120.0) -> dict:
        win = self.win
        win.close_mosaic()
        win.wait_until_idle(30)
        self.app.processEvents()
        result: dict = {"first_frame_s": None, "sharp_frame_s": None, "frames": 0}
        resolved = path.resolve()
        t0 = time.perf_counter()

        def hook(view) -> None:
            if view.mosaic is None or view.mosaic.path != resolved:
                return
            now = time.perf_counter() - t0
            result["frames"] += 1
            if result["first_frame_s"] is None and self.shows_mosaic():
                result["first_frame_s"] = round(now, 4)
                # a flat file's first frame may be the preview drawn before its levels exist
                result["first_frame_preview"] = not view.mosaic.levels_ready()
            if result["sharp_frame_s"] is None and self.is_sharp():
                result["sharp_frame_s"] = round(now, 4)
                if self._loop is not None:
                    self._loop.quit()

        self.paint_hook = hook
        win.open_path(path)
        self.run_loop(timeout_s)
        self.paint_hook = None
        result["opened_s"] = None if win.mosaic is None else round(time.perf_counter() - t0, 4)
        result["level"] = self.view.current_level
        result["levels"] = 0 if win.mosaic is None else win.mosaic.level_count
        result["zoom"] = round(self.view.zoom, 5)
        result["error"] = win.last_error
        win.wait_until_idle(60)
        return result

    # -- tour ----------------------------------------------------------------------------

    def apply(self, state) -> None:
        cx, cy, zoom = state
        self.view.set_zoom(zoom, self.QPointF(cx, cy))

    def timed_repaint(self) -> tuple[float, bool]:
        t, c, pc = time.perf_counter(), time.thread_time(), time.process_time()
        self.repaint_all()
        # CPU the frame used, without waiting for a CPU or the GIL: the GUI thread alone, and
        # the whole process (adds Qt's paint helper threads, and tile workers if busy)
        self.cpu_times.append(time.thread_time() - c)
        self.process_cpu_times.append(time.process_time() - pc)
        self.motion.append(getattr(self.view, "_moving_until", 0.0) > time.monotonic())
        return time.perf_counter() - t, self.is_sharp()

    def tour(self, path: Path) -> dict:
        view = self.view
        vp = view.viewport().size()
        mosaic = self.win.mosaic
        steps = tour_path(mosaic.info.width, mosaic.info.height, vp.width(), vp.height())
        out: dict = {"steps": len(steps), "viewport": [vp.width(), vp.height()]}

        # pass 1: paced steps, tiles loading, event loop running, stall probe
        frames: list[float] = []
        sharp: list[bool] = []
        levels: list[int] = []
        ticks: list[float] = []
        probe = self.QTimer()
        probe.setTimerType(self.precise)
        probe.setInterval(PROBE_MS)
        tick_cpu: list[float] = []  # GUI-thread CPU seconds at each tick

        def tick() -> None:
            ticks.append(time.perf_counter())
            tick_cpu.append(time.thread_time())

        probe.timeout.connect(tick)
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
            dt, ok = self.timed_repaint()
            frames.append(dt)
            sharp.append(ok)
            levels.append(view.current_level)

        stepper.timeout.connect(step)
        gc_pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation)
        gc_start = [0.0]

        def gc_probe(phase: str, info: dict) -> None:
            if phase == "start":
                gc_start[0] = time.perf_counter()
            else:
                gc_pauses.append(
                    (gc_start[0], time.perf_counter() - gc_start[0], info["generation"])
                )

        gc.callbacks.append(gc_probe)
        self.draw_spans.clear()
        self.draw_times.clear()
        self.cpu_times.clear()
        self.process_cpu_times.clear()
        self.motion.clear()
        t0 = time.perf_counter()
        probe.start()
        stepper.start()
        self.run_loop(120)
        stepper.stop()
        pass1_s = time.perf_counter() - t0
        # keep probing while the last requested tiles arrive
        self.run_loop(0.3)
        probe.stop()
        gc.callbacks.remove(gc_probe)
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        worst = sorted(range(len(gaps)), key=gaps.__getitem__, reverse=True)[:5]
        worst_stalls = []
        for i in worst:
            a, b = ticks[i], ticks[i + 1]
            in_gc = sum(d for s0, d, _ in gc_pauses if s0 < b and s0 + d > a)
            draws = [round(d * 1000, 1) for s0, d in self.draw_spans if s0 < b and s0 + d > a]
            worst_stalls.append(
                {
                    "ms": round((b - a) * 1000, 1),
                    "at_s": round(a - t0, 3),
                    # GUI-thread CPU inside the gap: the rest is waiting for a
                    # core or the GIL
                    "gui_cpu_ms": round((tick_cpu[i + 1] - tick_cpu[i]) * 1000, 1),
                    "draws_ms": draws,
                    "gc_ms_inside": round(in_gc * 1000, 1),
                }
            )
        out["pass1"] = {
            **stats_ms(frames),
            "sharp_frames": sum(sharp),
            "wall_s": round(pass1_s, 2),
            "probe_ticks": len(ticks),
            "longest_stall_ms": round(max(gaps) * 1000, 1) if gaps else None,
            "stalls_over_50ms": sum(g > 0.05 for g in gaps),
            "worst_stalls": worst_stalls,
            "gc": {
                "collections": len(gc_pauses),
                "gen2": sum(g == 2 for _, _, g in gc_pauses),
                "max_ms": round(max((d for _, d, _ in gc_pauses), default=0) * 1000, 1),
            },
            "cpu": stats_ms(self.cpu_times),
            "process_cpu": stats_ms(self.process_cpu_times),
            "motion_frames": sum(self.motion),
            "draw_background": stats_ms(self.draw_times),
        }
        out["rss_after_pass1_mb"] = current_rss_mb()
        detail = {
            "zoom": [round(z, 4) for _, _, z in steps],
            "level": levels,
            "pass1_ms": [round(f * 1000, 2) for f in frames],
            "pass1_sharp": sharp,
        }

        # fill: every step's tiles into the cache
        t0 = time.perf_counter()
        for state in steps:
            self.apply(state)
            self.repaint_all()
            self.idle(60)
            self.repaint_all()
        out["fill_s"] = round(time.perf_counter() - t0, 2)

        # pass 2: cached drawing
        frames, sharp = [], []
        self.draw_times.clear()
        self.cpu_times.clear()
        self.process_cpu_times.clear()
        self.motion.clear()
        for state in steps:
            self.apply(state)
            dt, ok = self.timed_repaint()
            frames.append(dt)
            sharp.append(ok)
            self.idle(60)
        out["pass2"] = {
            **stats_ms(frames),
            "sharp_frames": sum(sharp),
            "cpu": stats_ms(self.cpu_times),
            "process_cpu": stats_ms(self.process_cpu_times),
            "motion_frames": sum(self.motion),
            "draw_background": stats_ms(self.draw_times),
        }
        detail["pass2_ms"] = [round(f * 1000, 2) for f in frames]
        detail["pass2_sharp"] = sharp
        detail["pass2_motion"] = list(self.motion)

        # still frames: the view settled (filtered scaling), one per zoom
        still = {}
        fit = min(steps[0][2], 1.0)
        for zoom in (fit, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 1.0):
            self.apply((mosaic.info.width / 2, mosaic.info.height / 2, zoom))
            view.viewport().repaint()
            self.win.wait_until_idle(60)
            self.run_loop(0.15)
            dt, _ = self.timed_repaint()
            still[f"{zoom:.4g}"] = round(dt * 1000, 2)
        out["still_frames_ms"] = {**stats_ms([v / 1000 for v in still.values()]), "by_zoom": still}
        out["detail"] = detail
        out["tile_cache"] = view.tiles.stats()
        out["source"] = mosaic.stats()
        out["rss_end_mb"] = current_rss_mb()
        return out


def run_one(
    path: Path,
    repeats: int,
    tour: bool,
    platform_name: str,
    tile_threads: int | None = None,
    coverage: bool = False,
    two_views: bool = False,
) -> dict:
    xvfb = ensure_display() if platform_name == "xcb" else None
    try:
        result: dict = {"file": path.name, "loadavg_start": loadavg()}
        bench = Bench(coverage=coverage, two_views=two_views)
        result["reading_aids"] = {"coverage": coverage, "two_views": two_views}
        if tile_threads:
            bench.view.tiles._pool.setMaxThreadCount(tile_threads)
        result["tile_threads"] = bench.view.tiles._pool.maxThreadCount()
        result["platform"] = os.environ["QT_QPA_PLATFORM"].split(":")[0]
        result["open_cold_process"] = bench.measure_open(path)
        opens = [bench.measure_open(path) for _ in range(repeats)]
        result["opens"] = opens

        def med(key):
            values = [o[key] for o in opens if o[key] is not None]
            return round(statistics.median(values), 4) if values else None

        result["open"] = {
            "first_frame_s": med("first_frame_s"),
            "sharp_frame_s": med("sharp_frame_s"),
        }
        result["peak_rss_open_mb"] = peak_rss_mb()
        if tour:
            bench.reading_aids_opened(path)
            result["tour"] = bench.tour(path)
            if bench.coverage is not None:
                result["coverage_slot"] = stats_ms(bench.coverage_slot)
                result["coverage_slot_cpu"] = stats_ms(bench.coverage_slot_cpu)
                result["coverage_summary"] = bench.coverage.coverage.summary()
                result["coverage_grid"] = [
                    bench.coverage.coverage.rows,
                    bench.coverage.coverage.cols,
                ]
            result["peak_rss_mb"] = peak_rss_mb()
        result["loadavg_end"] = loadavg()
        bench.win.close()
        return result
    finally:
        if xvfb is not None:
            xvfb.terminate()


NAPARI_PYTHON = HERE / ".venv-napari" / "bin" / "python"

#: (label, path in a result) compared as ours / napari
RATIO_METRICS = [
    ("open first frame s", ("open", "first_frame_s")),
    ("open sharp frame s", ("open", "sharp_frame_s")),
    ("pass1 median ms", ("tour", "pass1", "median_ms")),
    ("pass1 p99 ms", ("tour", "pass1", "p99_ms")),
    ("pass1 max ms", ("tour", "pass1", "max_ms")),
    ("pass1 longest stall ms", ("tour", "pass1", "longest_stall_ms")),
    ("pass2 median ms", ("tour", "pass2", "median_ms")),
    ("pass2 p99 ms", ("tour", "pass2", "p99_ms")),
    ("peak RSS MB", ("peak_rss_mb",)),
    ("peak RSS (opens only) MB", ("peak_rss_open_mb",)),
]


def _get(result: dict, keys: tuple[str, ...]):
    for key in keys:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def ratios(ours: dict, napari: dict) -> dict:
    out = {}
    for label, keys in RATIO_METRICS:
        a, b = _get(ours, keys), _get(napari, keys)
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            out[label] = {"ours": a, "napari": b, "ours/napari": round(a / b, 3)}
    return out


def _child(cmd: list[str]) -> dict:
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"failed": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=Path, help="measure this file in this process")
    parser.add_argument("--tour", action="store_true", help="with --one: also the tour")
    parser.add_argument(
        "--platform",
        choices=["offscreen", "xcb"],
        default="offscreen",
        help="xcb: on $DISPLAY or an Xvfb started here (as napari needs)",
    )
    parser.add_argument("--files", nargs="*", default=None)
    parser.add_argument(
        "--with-napari",
        action="store_true",
        help="per file also run ours on Xvfb and bench_napari.py there, and report ours/napari",
    )
    parser.add_argument("--no-detail", action="store_true", help="drop per-step arrays")
    parser.add_argument(
        "--coverage",
        choices=["on", "off"],
        default="off",
        help="track review coverage on every frame (issue 15)",
    )
    parser.add_argument(
        "--two-views",
        action="store_true",
        help="the same file open beside the first, linked in µm (issue 15)",
    )
    parser.add_argument(
        "--tile-threads",
        type=int,
        default=None,
        help="with --one: override the tile pool size (experiments)",
    )
    args = parser.parse_args()
    if args.one:
        print(
            json.dumps(
                run_one(
                    args.one,
                    args.repeats,
                    args.tour,
                    args.platform,
                    args.tile_threads,
                    args.coverage == "on",
                    args.two_views,
                )
            )
        )
        return 0
    report: dict = {
        "benchmark": "viewer",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(),
        "window": WINDOW,
        "screen": SCREEN,
        "loadavg_start": loadavg(),
        "files": {},
    }
    if args.with_napari:
        napari_script = HERE / "bench_napari.py"
        probe = subprocess.run(
            [str(NAPARI_PYTHON), str(napari_script), "--probe-offscreen"],
            capture_output=True,
            text=True,
        )
        report["napari_offscreen_probe"] = (
            json.loads(probe.stdout) if probe.returncode == 0 else probe.stderr[-500:]
        )
    for name in args.files or FILES:
        path = args.data / name
        if not path.exists():
            report["files"][name] = {"skipped": "missing (run make_bench_files.py)"}
            continue
        common = [
            "--one",
            str(path),
            "--repeats",
            str(args.repeats),
            "--coverage",
            args.coverage,
            *(["--two-views"] if args.two_views else []),
        ]
        if name in TOUR_FILES:
            common.append("--tour")
        entry = {"ours": _child([sys.executable, __file__, *common])}
        if args.with_napari:
            entry["ours_xcb"] = _child([sys.executable, __file__, *common, "--platform", "xcb"])
            size = _get(entry["ours"], ("tour", "viewport"))
            extra = ["--viewport", f"{size[0]}x{size[1]}"] if size else []
            entry["napari"] = _child(
                [str(NAPARI_PYTHON), str(HERE / "bench_napari.py"), *common, *extra]
            )
            entry["ratio_ours_xcb_vs_napari"] = ratios(entry["ours_xcb"], entry["napari"])
            entry["ratio_ours_offscreen_vs_napari"] = ratios(entry["ours"], entry["napari"])
        if args.no_detail:
            for result in entry.values():
                if isinstance(result, dict) and isinstance(result.get("tour"), dict):
                    result["tour"].pop("detail", None)
        report["files"][name] = entry
    report["loadavg_end"] = loadavg()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
