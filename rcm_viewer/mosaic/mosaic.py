"""``open_mosaic`` and ``Mosaic``: one lazy, thread-safe handle on a mosaic file.

``open_mosaic`` reads headers only, so the window can show a file's size, levels and
pixel size in milliseconds; pixels are decoded when ``read_region`` asks for them, from
any number of worker threads at once. Every problem with the file (missing, damaged,
unsupported) becomes one ``MosaicError`` line naming the file; nothing else escapes.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rcm_viewer.errors import MosaicError
from rcm_viewer.mosaic import levels as levels_module
from rcm_viewer.mosaic.levels import (
    LevelBuffer,
    band_order,
    band_rows,
    fill_missing_rows,
    planned_sizes,
    reduce_band,
)
from rcm_viewer.mosaic.model import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_MEMORY_BUDGET_BYTES,
    LevelInfo,
    MosaicInfo,
    describe_bytes,
    mosaic_error,
    one_line,
)
from rcm_viewer.mosaic.pixel_map import mapped_source
from rcm_viewer.mosaic.pixel_size import (
    PixelSizeCandidate,
    choose_pixel_size,
    is_plausible,
    read_sidecar,
    remember_pixel_size,
    remembered_pixel_size,
)
from rcm_viewer.mosaic.sniff import (
    HEADER_BYTES,
    describe_unsupported,
    extension_matches,
    sniff_format,
)
from rcm_viewer.mosaic.source import ImageSource

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]
PreviewCallback = Callable[[np.ndarray], None]

#: ``build_levels`` builds every PREVIEW_STRIDE-th band first and then offers a preview.
PREVIEW_STRIDE = 4

#: ``display_range`` reads the smallest level whole up to this many pixels, else samples it.
_DISPLAY_RANGE_FULL_PIXELS = 4 * 1024 * 1024


class _Level:
    """One level as ``Mosaic`` sees it: stored in the file, or built in memory."""

    def __init__(self, info: LevelInfo) -> None:
        self.info = info

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    def read(self, page: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Free what the level holds (built levels only)."""


class _StoredLevel(_Level):
    def __init__(self, info: LevelInfo, source: ImageSource, index: int) -> None:
        super().__init__(info)
        self._source = source
        self._index = index

    def read(self, page: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return self._source.read(self._index, page, x0, y0, x1, y1)


class _BuiltLevel(_Level):
    def __init__(self, info: LevelInfo, buffers: list[LevelBuffer]) -> None:
        super().__init__(info)
        self._buffers = buffers

    def read(self, page: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return np.array(self._buffers[page].array[y0:y1, x0:x1])

    def close(self) -> None:
        for buffer in self._buffers:
            buffer.close()


def _stored_downsample(base: tuple[int, int], size: tuple[int, int]) -> float:
    """Downsample of a stored level, snapped to a power of two when the size says so.

    Writers halve with ceil or floor (600 px -> 300 -> 150, 601 -> 301 or 300); the exact
    power of two maps level pixels to base pixels better than the ratio of the sizes.
    """
    ratio_x, ratio_y = base[0] / size[0], base[1] / size[1]
    k = round(math.log2(max(ratio_x, 1e-9)))
    if k >= 0:
        factor = 2**k
        if all(
            side in (math.floor(full / factor), math.ceil(full / factor))
            for full, side in zip(base, size, strict=True)
        ):
            return float(factor)
    return (ratio_x + ratio_y) / 2


class Mosaic:
    """A mosaic file opened for reading; safe to share between threads.

    Use ``open_mosaic`` to create one. ``close()`` (or ``with``) releases the file.
    """

    def __init__(
        self,
        source: ImageSource,
        info: MosaicInfo,
        pending_sizes: list[tuple[int, int]],
        memory_budget_bytes: int,
    ) -> None:
        self._source = source
        self._info = info
        self._budget = memory_budget_bytes
        self._levels: tuple[_Level, ...] = tuple(
            _StoredLevel(level_info, source, index) for index, level_info in enumerate(info.levels)
        )
        self._pending = list(pending_sizes)
        self._state_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._range_cache: dict[tuple[int, int], tuple[float, float]] = {}
        self._closed = False

    # ------------------------------------------------------------------ description

    @property
    def info(self) -> MosaicInfo:
        return self._info

    @property
    def path(self) -> Path:
        return self._info.path

    @property
    def level_count(self) -> int:
        """Levels readable now (stored + built so far)."""
        return len(self._levels)

    @property
    def pages(self) -> int:
        return self._info.pages

    def levels_ready(self) -> bool:
        """False while ``build_levels`` still has downsampled levels to make."""
        return not self._pending

    @property
    def planned_levels(self) -> tuple[LevelInfo, ...]:
        """All levels this mosaic will have once ``build_levels`` has run."""
        levels = list(self._info.levels)
        downsample = levels[-1].downsample
        for width, height in self._pending:
            downsample *= 2
            levels.append(LevelInfo(width, height, downsample, stored=False))
        return tuple(levels)

    def best_level(self, downsample: float) -> int:
        """Index of the smallest existing level still at least as sharp as ``downsample``."""
        best = 0
        for index, level in enumerate(self._levels):
            if level.info.downsample <= downsample * 1.01:
                best = index
        return best

    # ------------------------------------------------------------------ pixels

    def read_region(self, level: int, x: int, y: int, w: int, h: int, page: int = 0) -> np.ndarray:
        """Pixels of a rectangle in ``level``'s own coordinates, native dtype.

        Shape (h, w) for grayscale, (h, w, C) for colour; what lies outside the image is 0.
        Raises ``MosaicError`` when the file turns out damaged there.
        """
        levels = self._levels
        if not 0 <= level < len(levels):
            raise IndexError(f"level {level} does not exist (0-{len(levels) - 1} available)")
        if not 0 <= page < self._info.pages:
            raise IndexError(f"page {page} does not exist (0-{self._info.pages - 1} available)")
        x, y, w, h = int(x), int(y), int(w), int(h)
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got {w} x {h}")
        channels = self._info.channels
        nbytes = w * h * channels * np.dtype(self._info.dtype).itemsize
        if nbytes > self._budget:
            raise ValueError(
                f"region {w} x {h} needs {describe_bytes(nbytes)}, above the memory budget"
            )
        if self._closed:
            raise mosaic_error(self.path, "is closed")
        lv = levels[level]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, lv.width), min(y + h, lv.height)
        try:
            if x0 == x and y0 == y and x1 == x + w and y1 == y + h:
                out = lv.read(page, x0, y0, x1, y1)
            else:
                out = np.zeros((h, w, channels), dtype=self._info.dtype)
                if x0 < x1 and y0 < y1:
                    out[y0 - y : y1 - y, x0 - x : x1 - x] = lv.read(page, x0, y0, x1, y1)
        except MosaicError:
            raise
        except MemoryError:
            raise mosaic_error(self.path, "cannot be read: not enough memory") from None
        except Exception as exc:
            log.exception("reading %s failed", self.path)
            raise mosaic_error(self.path, f"cannot be read ({one_line(exc, 150)})") from exc
        return out[:, :, 0] if channels == 1 else out

    def build_levels(
        self,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
        preview: PreviewCallback | None = None,
        threads: int | None = None,
    ) -> bool:
        """Build the missing downsampled levels; True when all exist, False when cancelled.

        Meant for a worker thread. One pass over the smallest stored level in bands of
        full-width rows (``levels.band_rows``); each band is halved once per missing level
        and written into every level, by ``threads`` threads at once (default: one per CPU,
        at most 4). Memory holds the bands in flight plus the levels being built (a third
        of the source's size in all; a large one is file-backed). The levels become
        readable together at the end; a cancelled run discards its work.

        Bands are taken in an interleaved order (every ``PREVIEW_STRIDE``-th first), so
        after a fraction of the work ``preview(pixels)`` receives an approximation of page
        0's smallest level (shaped as ``read_region`` returns it): exact rows from the bands
        done so far, the rows between them interpolated. The UI shows it until the real
        levels exist. ``progress(done, total)`` counts bands.
        """
        with self._build_lock:
            if not self._pending:
                return True
            info = self._info
            channels, dtype, pages = info.channels, np.dtype(info.dtype), info.pages
            row_hint = getattr(self._source, "header", None)
            row_hint = row_hint.row_hint if row_hint is not None else 0
            src = self._levels[-1]
            sizes = list(self._pending)
            rows = band_rows(src.width, channels * dtype.itemsize, row_hint, len(sizes))
            bands = math.ceil(src.height / rows)
            order = band_order(bands, PREVIEW_STRIDE)
            first_pass = math.ceil(bands / PREVIEW_STRIDE)
            want_preview = preview is not None and bands >= 2 * PREVIEW_STRIDE
            total = bands * pages
            wanted_threads = threads or min(4, os.cpu_count() or 1)
            band_bytes = rows * src.width * channels * dtype.itemsize
            # bands submitted at once: two per thread, fewer when bands are huge
            window = max(1, min(2 * wanted_threads, levels_module.IN_FLIGHT_BYTES // band_bytes))
            workers = min(wanted_threads, window)
            buffers: list[list[LevelBuffer]] = []  # [level][page]
            cancelled = False
            try:
                for width, height in sizes:
                    buffers.append([])
                    for _ in range(pages):
                        buffers[-1].append(LevelBuffer(height, width, channels, dtype))

                def one_band(page: int, index: int) -> None:
                    r0 = index * rows
                    r1 = min(r0 + rows, src.height)
                    band = src.read(page, 0, r0, src.width, r1)
                    if not band.any():  # sparse/unscanned: the levels start as zeros
                        return
                    for k, small in enumerate(reduce_band(band, len(sizes))):
                        y = r0 >> (k + 1)
                        buffers[k][page].write_rows(y, small)

                jobs = [(page, index) for page in range(pages) for index in order]
                done = 0
                with ThreadPoolExecutor(workers, thread_name_prefix="rcm-levels") as pool:
                    in_flight: dict[Future[None], tuple[int, int]] = {}
                    finished_page0: set[int] = set()
                    for page, index in jobs:
                        if cancel is not None and cancel():
                            cancelled = True
                            break
                        in_flight[pool.submit(one_band, page, index)] = (page, index)
                        if len(in_flight) < window:
                            continue
                        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                        for f in finished:
                            f.result()  # a failed band ends the build here
                            done += 1
                            page_done, index_done = in_flight.pop(f)
                            if page_done == 0:
                                finished_page0.add(index_done)
                            if progress is not None:
                                progress(done, total)
                        if want_preview and len(finished_page0) >= first_pass:
                            want_preview = False
                            preview(
                                self._preview(
                                    buffers[-1][0].array, finished_page0, rows >> len(sizes)
                                )
                            )
                    for f in as_completed(in_flight):
                        f.result()
                        done += 1
                        if progress is not None and not cancelled:
                            progress(done, total)
            except BaseException as exc:
                for level_buffers in buffers:
                    for b in level_buffers:
                        b.close()
                if isinstance(exc, MosaicError) or not isinstance(exc, Exception):
                    raise
                log.exception("building levels of %s failed", self.path)
                raise mosaic_error(
                    self.path, f"levels could not be built ({one_line(exc, 150)})"
                ) from exc
            if cancelled:
                for level_buffers in buffers:
                    for b in level_buffers:
                        b.close()
                return False
            built = []
            downsample = src.info.downsample
            for (width, height), level_buffers in zip(sizes, buffers, strict=True):
                downsample *= 2
                built.append(
                    _BuiltLevel(LevelInfo(width, height, downsample, stored=False), level_buffers)
                )
            with self._state_lock:
                self._levels = (*self._levels, *built)
                self._pending.clear()
                self._info = replace(
                    self._info, levels=(*self._info.levels, *(lv.info for lv in built))
                )
            return True

    @staticmethod
    def _preview(level: np.ndarray, bands_done: set[int], rows_per_band: int) -> np.ndarray:
        known = np.zeros(level.shape[0], dtype=bool)
        for index in bands_done:
            known[index * rows_per_band : (index + 1) * rows_per_band] = True
        pixels = fill_missing_rows(np.asarray(level), known)
        return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels  # as read_region gives it

    def display_range(self, page: int = 0) -> tuple[float, float]:
        """Robust (0.5th, 99.5th percentile) intensity range, from the smallest level.

        A 16-bit mosaic often uses a few thousand grey values out of 65,536; stretching
        this range to the screen is what makes it visible. Alpha is left out.
        """
        levels = self._levels
        key = (page, len(levels))
        cached = self._range_cache.get(key)
        if cached is not None:
            return cached
        level = len(levels) - 1
        lv = levels[level]
        if lv.width * lv.height <= _DISPLAY_RANGE_FULL_PIXELS:
            sample = self.read_region(level, 0, 0, lv.width, lv.height, page)
        else:
            size = min(128, lv.width, lv.height)
            patches = []
            for gy in range(8):
                for gx in range(8):
                    px = (lv.width - size) * gx // 7
                    py = (lv.height - size) * gy // 7
                    patches.append(self.read_region(level, px, py, size, size, page))
            sample = np.concatenate([p.reshape(-1, *p.shape[2:]) for p in patches])
        result = display_range_of(sample, self._info.channels)
        self._range_cache[key] = result
        return result

    # ------------------------------------------------------------------ pixel size

    def set_pixel_size(self, pixel_size_um: float, remember: bool = True) -> MosaicInfo:
        """Use a pixel size the user typed; remember it for this file (source ``user``)."""
        if remember:  # remembered per pixel of the file, not of a reduced decode
            scale = float(self._info.metadata.get("decode_scale", 1))
            remember_pixel_size(self.path, float(pixel_size_um) / scale)
        elif not is_plausible(float(pixel_size_um)):
            raise mosaic_error(self.path, f"cannot use pixel size {pixel_size_um:g} µm/px")
        with self._state_lock:
            self._info = replace(
                self._info, pixel_size_um=float(pixel_size_um), pixel_size_source="user"
            )
        return self._info

    # ------------------------------------------------------------------ damage (issue 16)

    def damage_report(self) -> list[str]:
        """One line per damaged tile/strip found so far, naming the file and the tile.

        Reads of a damaged tile raise ``MosaicError``; this list lets a caller that read
        elsewhere (a classifier on a reduced level, a report) say that the file is damaged.
        """
        return self._source.damage_report()

    def damaged_regions(self) -> list[tuple[int, int, int, int, int, int]]:
        """(stored level, page, x0, y0, x1, y1) of each damaged tile/strip found so far."""
        return self._source.damaged_segments()

    def check_damage(
        self,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> list[str]:
        """Decode every stored level once (strict decoders) and return ``damage_report()``.

        For a worker after opening: a pyramid whose reduced levels are intact can hide
        damaged full-resolution tiles from everything that reads only the reduced ones.
        Decodes one tile/strip at a time (bounded memory); ``cancel()`` returning True
        stops early. A flat PNG/JPEG is decoded whole (that is its first read anyway).
        """
        self._source.check_segments(progress, cancel)
        return self.damage_report()

    # ------------------------------------------------------------------ housekeeping

    def stats(self) -> dict[str, int]:
        """Decode counters (tiles/strips decoded, cache hits, bytes read) for tests/benchmarks."""
        return self._source.stats()

    def close(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            levels = self._levels
        self._source.close()
        for lv in levels:
            lv.close()

    def __enter__(self) -> Mosaic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self._info
        return (
            f"<Mosaic {info.path.name} {info.width}x{info.height} {info.dtype} "
            f"levels={len(self._levels)} pages={info.pages}>"
        )


def display_range_of(sample: np.ndarray, channels: int = 1) -> tuple[float, float]:
    """Robust (0.5th, 99.5th percentile) range of pixels as ``read_region`` returns them
    (alpha left out); what ``Mosaic.display_range`` uses, for a preview image too."""
    if sample.ndim == 3 or (sample.ndim == 2 and channels > 1):
        sample = sample.reshape(-1, channels)[:, : min(3, channels)]
    lo, hi = _percentiles(sample.ravel(), 0.5, 99.5)
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _percentiles(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """Percentiles by histogram for 8/16-bit data (exact, and far faster than sorting)."""
    if values.size == 0:
        return 0.0, 1.0
    if values.dtype in (np.uint8, np.uint16):
        counts = np.bincount(values, minlength=256)
        cumulative = np.cumsum(counts)
        n = cumulative[-1]
        lo = int(np.searchsorted(cumulative, n * low / 100.0, side="left"))
        hi = int(np.searchsorted(cumulative, n * high / 100.0, side="left"))
        return float(lo), float(hi)
    lo_f, hi_f = np.percentile(values, [low, high])
    return float(lo_f), float(hi_f)


# ---------------------------------------------------------------------- opening


def _read_head(path: Path) -> tuple[os.stat_result, bytes]:
    """Stat and read the first bytes, turning every OS complaint into one clear line."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise mosaic_error(path, "does not exist") from None
    except PermissionError:
        raise mosaic_error(path, "cannot be read: permission denied") from None
    except OSError as exc:
        raise mosaic_error(path, f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise mosaic_error(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise mosaic_error(path, "is not a regular file")
    if st.st_size == 0:
        raise mosaic_error(path, "is empty (0 bytes)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES)
    except PermissionError:
        raise mosaic_error(path, "cannot be read: permission denied") from None
    except OSError as exc:
        raise mosaic_error(path, f"cannot be read ({exc.strerror or exc})") from None
    return st, head


def open_mosaic(
    path: str | os.PathLike[str],
    *,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
) -> Mosaic:
    """Open a TIFF/PNG/JPEG/BMP mosaic lazily (headers only); raise ``MosaicError`` if not.

    The content decides the format (magic bytes), not the extension. ``memory_budget_bytes``
    caps a full decode (PNG/JPEG/BMP), one TIFF tile/strip and one ``read_region``.
    """
    p = Path(path).expanduser()
    try:
        return _open(p, cache_bytes, memory_budget_bytes)
    except MosaicError:
        raise
    except MemoryError:
        raise mosaic_error(p, "cannot be opened: not enough memory") from None
    except Exception as exc:  # last line of defence: one line for the user, traceback in the log
        log.exception("opening %s failed", p)
        raise mosaic_error(
            p, f"cannot be opened ({type(exc).__name__}: {one_line(exc, 150)})"
        ) from exc


def _open(path: Path, cache_bytes: int, budget: int) -> Mosaic:
    st, head = _read_head(path)
    kind = sniff_format(head)
    if kind is None:
        what = describe_unsupported(head)
        if len(head) < 8 and not what:
            raise mosaic_error(path, f"is too small to be an image ({len(head)} bytes)")
        looks = f" (it looks like {what})" if what else ""
        raise mosaic_error(
            path, f"is not a supported image{looks}; rcm-viewer opens TIFF, PNG, JPEG and BMP"
        )
    source: ImageSource
    if kind == "tiff":
        from rcm_viewer.mosaic.tiff_reader import TiffSource

        source = TiffSource(path, st.st_size, budget, cache_bytes)
    else:
        from rcm_viewer.mosaic.flat_reader import FlatSource

        source = FlatSource(path, kind, st.st_size, budget)
    try:
        source = mapped_source(source)  # float/signed/32-bit/palette -> 8/16-bit on read
        return _assemble(path, st, kind, source, budget)
    except BaseException:
        source.close()
        raise


def _assemble(
    path: Path, st: os.stat_result, kind: str, source: ImageSource, budget: int
) -> Mosaic:
    header = source.header
    warnings = list(header.warnings)
    metadata: dict[str, Any] = dict(header.metadata)
    if not extension_matches(path, kind):
        warnings.append(
            f"the file name ends in '{path.suffix or '(nothing)'}' but the content is "
            f"{kind.upper()}"
        )

    candidates: list[PixelSizeCandidate] = []
    scale = float(header.metadata.get("decode_scale", 1))  # a JPEG shown reduced
    user_um = remembered_pixel_size(path)
    if user_um is not None:
        candidates.append(PixelSizeCandidate(user_um * scale, "user", "pixel size set by the user"))
    sidecar, sidecar_path = read_sidecar(path)
    lesion_class = header.lesion_class
    if sidecar_path:
        metadata["sidecar"] = sidecar_path
        value = sidecar.get("pixel_size_um")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            candidates.append(
                PixelSizeCandidate(
                    float(value) * scale,
                    "sidecar",
                    f"pixel_size_um in {Path(sidecar_path).name}",
                )
            )
        if isinstance(sidecar.get("lesion_class"), str) and sidecar["lesion_class"].strip():
            lesion_class = sidecar["lesion_class"].strip()
    candidates.extend(header.pixel_size_candidates)
    pixel_size_um, pixel_source, ignored, conflicts = choose_pixel_size(candidates)
    warnings.extend(conflicts)
    if ignored:
        metadata["pixel_size_ignored"] = ignored
    metadata["pixel_size_candidates"] = [
        {"pixel_size_um": c.pixel_size_um, "source": c.source, "detail": c.detail}
        for c in candidates
    ]

    base = (header.width, header.height)
    levels = tuple(
        LevelInfo(w, h, 1.0 if i == 0 else _stored_downsample(base, (w, h)), stored=True)
        for i, (w, h) in enumerate(header.stored_levels)
    )
    pending = planned_sizes(base, header.stored_levels[-1])
    info = MosaicInfo(
        path=path.resolve(),
        format_description=header.format_description,
        width=header.width,
        height=header.height,
        dtype=header.dtype.name,
        channels=header.channels,
        is_rgb=header.is_rgb,
        levels=levels,
        pages=header.pages,
        pixel_size_um=pixel_size_um,
        pixel_size_source=pixel_source,
        lesion_class=lesion_class,
        metadata=metadata,
        format=kind,
        file_size=st.st_size,
        warnings=tuple(warnings),
        pixel_map=getattr(source, "pixel_map", None),
    )
    return Mosaic(source, info, pending, budget)
