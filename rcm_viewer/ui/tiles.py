"""Display tiles: read off the GUI thread, converted to 8-bit once, cached by bytes.

The view asks for (level, column, row) tiles of ``TILE_PX`` level pixels. A
small thread pool reads them with ``Mosaic.read_region`` and applies the
display lookup table (black point, white point, gamma) there, so the GUI
thread only draws ready-made QImages. Raw tiles are cached too, so a contrast
change re-converts from memory instead of decoding the file again (QuPath
#936: 16-bit must feel as fast as 8-bit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from rcm_viewer.errors import RcmError
from rcm_viewer.mosaic import Mosaic
from rcm_viewer.mosaic.cache import SegmentCache
from rcm_viewer.reports.display import DisplaySettings
from rcm_viewer.reports.images import to_qimage

log = logging.getLogger(__name__)

TILE_PX = 512
#: Budgets, with the view's draw cache (~48 MB) and the reader's segment cache (64 MB) about
#: 420 MB of tiles at most: a 40,000 px mosaic session stays under 700 MB resident.
DISPLAY_CACHE_BYTES = 256 * 1024 * 1024  # 8-bit display tiles: ~1,000 tiles of 512 px
RAW_CACHE_BYTES = 96 * 1024 * 1024  # stored values, for contrast changes and pixel read-out

TileKey = tuple[int, int, int]  # level, column, row


def default_tile_threads() -> int:
    """Tile readers: one core fewer than the machine has (at least 1, at most 3).

    The GUI thread needs a core of its own while tiles load: on 2 cores the longest wait
    of the GUI thread during a fast tour was 54 ms (median of 5 runs) with 3 readers and
    37-38 ms with 1 or 2 (benchmarks/RESULTS.md).
    """
    return max(1, min(3, (os.cpu_count() or 2) - 1))


class _Signals(QObject):
    loaded = Signal(int, object, object)  # generation, key, QImage
    failed = Signal(int, object, str)


def damaged_tile_image(width: int, height: int) -> QImage:
    """Dark red, hatched, crossed: unmistakable for tissue at any zoom or contrast."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPainter, QPen

    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(60, 0, 0))
    painter = QPainter(image)
    painter.setPen(QPen(QColor(200, 30, 30), 3))
    for offset in range(-height, width, 24):
        painter.drawLine(offset, 0, offset + height, height)
    painter.setPen(QPen(QColor(255, 40, 40), 8, Qt.PenStyle.SolidLine))
    painter.drawLine(0, 0, width, height)
    painter.drawLine(width, 0, 0, height)
    painter.end()
    return image


class _TileJob(QRunnable):
    def __init__(self, cache: TileCache, generation: int, key: TileKey) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._cache = cache
        self._generation = generation
        self._key = key

    def run(self) -> None:
        cache = self._cache
        try:
            if not cache.still_wanted(self._generation, self._key):
                return
            try:
                image = cache.produce(self._generation, self._key)
            except RcmError as exc:
                self._emit(cache.signals.failed, str(exc))
                return
            except Exception as exc:  # a worker must never take the app down
                log.exception("tile %s failed", self._key)
                self._emit(cache.signals.failed, f"{type(exc).__name__}: {exc}")
                return
            if image is not None:
                self._emit(cache.signals.loaded, image)
        finally:
            cache.job_done(self._generation, self._key)

    def _emit(self, signal, payload) -> None:
        with contextlib.suppress(RuntimeError):  # the cache's QObject is gone: app closing
            signal.emit(self._generation, self._key, payload)


class TileCache(QObject):
    """Asynchronous tile supply for one mosaic at a time."""

    tileReady = Signal(object)  # TileKey
    tileFailed = Signal(object, str)

    def __init__(self, parent: QObject | None = None, threads: int | None = None) -> None:
        super().__init__(parent)
        self.signals = _Signals()
        self.signals.loaded.connect(self._on_loaded)
        self.signals.failed.connect(self._on_failed)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads or default_tile_threads())
        self._display = SegmentCache(DISPLAY_CACHE_BYTES)
        self._raw = SegmentCache(RAW_CACHE_BYTES)
        self._lock = threading.Lock()
        self._pending: set[TileKey] = set()
        self._wanted: set[TileKey] = set()
        self._generation = 0
        self._mosaic: Mosaic | None = None
        self._settings: DisplaySettings | None = None
        self._lut: np.ndarray | None = None
        self._lut_version = 0
        self._page = 0
        self.failures: dict[TileKey, str] = {}

    # -- configuration ------------------------------------------------------------------

    def set_mosaic(self, mosaic: Mosaic | None, settings: DisplaySettings | None) -> None:
        with self._lock:
            self._generation += 1
            self._mosaic = mosaic
            self._pending.clear()
            self._wanted.clear()
        self._pool.clear()
        self._display.clear()
        self._raw.clear()
        self.failures.clear()
        if settings is not None and mosaic is not None:
            self.set_display(settings)

    @property
    def page(self) -> int:
        return self._page

    def set_page(self, page: int) -> None:
        """Show another page of a stack (VivaStack): every cached tile is of the old page."""
        with self._lock:
            self._page = page
            self._generation += 1
            self._pending.clear()
        self._display.clear()
        self._raw.clear()
        self.failures.clear()

    def set_display(self, settings: DisplaySettings) -> None:
        mosaic = self._mosaic
        if mosaic is None:
            return
        lut = settings.lut(np.dtype(mosaic.info.dtype))
        with self._lock:
            self._settings = settings
            self._lut = lut
            self._lut_version += 1
            self._generation += 1  # in-flight conversions with the old LUT are dropped
            self._pending.clear()
        self._display.clear()

    @property
    def display_settings(self) -> DisplaySettings | None:
        return self._settings

    @property
    def lut(self) -> np.ndarray | None:
        return self._lut

    # -- queries from the view ------------------------------------------------------------

    def image(self, key: TileKey) -> QImage | None:
        if key in self.failures:  # never let a coarser level's tissue show through
            return self._damaged_image(key)
        return self._display.get((self._lut_version, key))

    def _damaged_image(self, key: TileKey) -> QImage | None:
        """A tile that could not be read: red hatching and a red cross (issue 16)."""
        mosaic = self._mosaic
        if mosaic is None:
            return None
        level, col, row = key
        info = mosaic.info.levels[level] if level < len(mosaic.info.levels) else None
        w = TILE_PX if info is None else max(1, min(TILE_PX, info.width - col * TILE_PX))
        h = TILE_PX if info is None else max(1, min(TILE_PX, info.height - row * TILE_PX))
        return damaged_tile_image(w, h)

    def request(self, keys: list[TileKey]) -> None:
        """Ask for these tiles (most important first); forget earlier unmet wishes."""
        with self._lock:
            self._wanted = set(keys)
            generation = self._generation
            todo = [k for k in keys if k not in self._pending and k not in self.failures]
            self._pending.update(todo)
        for priority, key in enumerate(todo):
            if self._display.get((self._lut_version, key)) is not None:
                with self._lock:
                    self._pending.discard(key)
                continue
            self._pool.start(_TileJob(self, generation, key), max(0, 1000 - priority))

    def raw_value(self, level: int, x: float, y: float):
        """Value at level-0 pixel (x, y) from an already loaded tile, else None.

        For a mapped pixel type (``MosaicInfo.pixel_map``) the file's value, not the
        16-bit one the tile holds.

        The status bar reads values from memory only: a lookup must never decode.
        """
        mosaic = self._mosaic
        if mosaic is None or level >= mosaic.level_count:
            return None
        ds = mosaic.info.levels[level].downsample
        lx, ly = int(x / ds), int(y / ds)
        raw = self._raw.get((id(mosaic), (level, lx // TILE_PX, ly // TILE_PX)))
        if raw is None:
            return None
        ty, tx = ly % TILE_PX, lx % TILE_PX
        if ty >= raw.shape[0] or tx >= raw.shape[1]:
            return None
        value = raw[ty, tx]
        value = value.tolist() if hasattr(value, "tolist") else value
        pixel_map = mosaic.info.pixel_map  # float/signed/32-bit files: the file's own value
        return pixel_map.real_value(value) if pixel_map is not None else value

    def wait_idle(self, msecs: int = 30000) -> bool:
        return self._pool.waitForDone(msecs)

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def stats(self) -> dict[str, int]:
        return {
            "display_tiles": len(self._display),
            "display_bytes": self._display.nbytes,
            "raw_tiles": len(self._raw),
            "raw_bytes": self._raw.nbytes,
            "pending": len(self._pending),
        }

    # -- worker side ------------------------------------------------------------------------

    def still_wanted(self, generation: int, key: TileKey) -> bool:
        with self._lock:
            return generation == self._generation and key in self._wanted

    def job_done(self, generation: int, key: TileKey) -> None:
        with self._lock:
            if generation == self._generation:
                self._pending.discard(key)

    def produce(self, generation: int, key: TileKey) -> QImage | None:
        with self._lock:
            mosaic, lut, version = self._mosaic, self._lut, self._lut_version
        if mosaic is None or lut is None:
            return None
        raw = self._raw.get((id(mosaic), key))
        if raw is None:
            level, col, row = key
            if level >= mosaic.level_count:
                return None
            info = mosaic.info.levels[level]
            x, y = col * TILE_PX, row * TILE_PX
            w = min(TILE_PX, info.width - x)
            h = min(TILE_PX, info.height - y)
            if w <= 0 or h <= 0:
                return None
            raw = mosaic.read_region(level, x, y, w, h, page=self._page)
            self._raw.put((id(mosaic), key), raw, raw.nbytes)
        image = to_qimage(raw, lut)
        self._display.put((version, key), image, image.sizeInBytes())
        return image

    def _on_loaded(self, generation: int, key: TileKey, image: QImage) -> None:
        if generation == self._generation:
            self.tileReady.emit(key)

    def _on_failed(self, generation: int, key: TileKey, message: str) -> None:
        if generation == self._generation:
            self.failures[key] = message
            self.tileFailed.emit(key, message)
