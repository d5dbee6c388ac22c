"""Review coverage: which tissue the reader has seen at diagnostic zoom, and for how long.

The intended use says the clinician reviews the full images; this measures how much of
the tissue was actually on screen at a zoom where cells can be judged. It has to run on
every painted frame, so it is a coarse grid (``cell_px`` level-0 px per cell, grown for
huge mosaics so the grid stays under ``max_cells``), and a frame costs two numpy slice
updates, microseconds.

* A cell counts as **seen** when its centre was inside a frame shown at a zoom of at
  least ``min_zoom`` (screen px per level-0 px). Edge cells half on screen do not count.
* **Dwell**: the time until the next frame is credited to the cells of the frame that
  was on screen (capped at ``max_dwell_s`` per frame: a reader away from the desk has
  not read for an hour).
* **Tissue** cells come from the overview pixels (not the black margin of a mosaic), so
  the share reviewed is of tissue only.
* ``mark_commit()`` freezes what was seen when the reader committed the unaided
  assessment: "was this hotspot reviewed?" is asked of that, not of the tour afterwards.

Pure numpy, no Qt; ``to_dict()`` / ``from_dict()`` give a compact JSON form (bit-packed,
base64) that the window keeps in the case's view state.
"""

from __future__ import annotations

import base64
import math
import zlib
from typing import Any

import numpy as np

DEFAULT_CELL_PX = 256
DEFAULT_MAX_CELLS = 128 * 128
DEFAULT_MIN_ZOOM = 0.5
MAX_DWELL_S = 10.0
#: A cell is tissue when at least this share of its overview pixels is not margin.
TISSUE_SHARE = 0.25
#: Overview pixels darker than this share of the bright end (99.5th percentile) are margin.
MARGIN_LEVEL = 0.08
FORMAT_VERSION = 1

Rect = tuple[float, float, float, float]  # level-0 (x, y, width, height)


def _pack_bits(mask: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.packbits(mask.ravel()).tobytes())).decode("ascii")


def _unpack_bits(text: str, shape: tuple[int, int]) -> np.ndarray:
    raw = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8)
    bits = np.unpackbits(raw)[: shape[0] * shape[1]]
    if bits.size != shape[0] * shape[1]:
        raise ValueError("coverage mask does not match its grid")
    return bits.reshape(shape).astype(bool)


class ReviewCoverage:
    """A coarse grid over one mosaic; see the module docstring."""

    def __init__(
        self,
        width: int,
        height: int,
        *,
        cell_px: float = DEFAULT_CELL_PX,
        max_cells: int = DEFAULT_MAX_CELLS,
        min_zoom: float = DEFAULT_MIN_ZOOM,
        max_dwell_s: float = MAX_DWELL_S,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"cannot track coverage of a {width} x {height} mosaic")
        cell = max(1.0, float(cell_px))
        if math.ceil(width / cell) * math.ceil(height / cell) > max_cells:
            cell = math.ceil(math.sqrt(width * height / max_cells))
            while math.ceil(width / cell) * math.ceil(height / cell) > max_cells:
                cell += 1
        self.width, self.height = int(width), int(height)
        self.cell_px = float(cell)
        self.cols = math.ceil(width / cell)
        self.rows = math.ceil(height / cell)
        self.min_zoom = float(min_zoom)
        self.max_dwell_s = float(max_dwell_s)
        self.seen = np.zeros((self.rows, self.cols), dtype=bool)
        self.dwell = np.zeros((self.rows, self.cols), dtype=np.float32)
        self.tissue = np.ones((self.rows, self.cols), dtype=bool)
        self.seen_at_commit: np.ndarray | None = None
        self.version = 0  # bumps whenever ``seen`` grows (overlays redraw only then)
        self._last: tuple[slice, slice, float] | None = None  # cells on screen, since when

    # -- the grid ---------------------------------------------------------------------

    def cells_in(self, rect: Rect) -> tuple[slice, slice]:
        """(rows, columns) of the cells whose centres lie inside ``rect``."""
        x, y, w, h = rect
        cell = self.cell_px
        c0 = max(0, math.ceil(x / cell - 0.5))
        c1 = min(self.cols - 1, math.floor((x + w) / cell - 0.5))
        r0 = max(0, math.ceil(y / cell - 0.5))
        r1 = min(self.rows - 1, math.floor((y + h) / cell - 0.5))
        return slice(r0, max(r0, r1 + 1)), slice(c0, max(c0, c1 + 1))

    def cells_touching(self, rect: Rect) -> tuple[slice, slice]:
        """(rows, columns) of every cell that ``rect`` overlaps."""
        x, y, w, h = rect
        cell = self.cell_px
        c0, r0 = max(0, int(x // cell)), max(0, int(y // cell))
        c1 = min(self.cols - 1, math.ceil((x + w) / cell) - 1)
        r1 = min(self.rows - 1, math.ceil((y + h) / cell) - 1)
        return slice(r0, max(r0, r1 + 1)), slice(c0, max(c0, c1 + 1))

    def set_tissue_from_overview(self, pixels: np.ndarray | None) -> None:
        """Tissue cells from the overview level's pixels (2-D, or RGB(A): mean of colours).

        The margin of a mosaic is (near) black; a cell is tissue when at least
        ``TISSUE_SHARE`` of its overview pixels are brighter than ``MARGIN_LEVEL`` of the
        bright end. An empty or all-dark overview leaves every cell tissue.
        """
        if pixels is None or pixels.size == 0:
            return
        values = pixels if pixels.ndim == 2 else pixels[..., :3].mean(axis=-1)
        values = np.asarray(values, dtype=np.float32)
        bright = float(np.percentile(values, 99.5))
        if bright <= 0:
            return
        tissue_px = values > MARGIN_LEVEL * bright
        oh, ow = tissue_px.shape
        col_of = np.minimum(
            ((np.arange(ow) + 0.5) * (self.width / ow) // self.cell_px).astype(np.int64),
            self.cols - 1,
        )
        row_of = np.minimum(
            ((np.arange(oh) + 0.5) * (self.height / oh) // self.cell_px).astype(np.int64),
            self.rows - 1,
        )
        index = (row_of[:, None] * self.cols + col_of[None, :]).ravel()
        n = self.rows * self.cols
        total = np.bincount(index, minlength=n)
        hits = np.bincount(index, weights=tissue_px.ravel().astype(np.float64), minlength=n)
        share = np.divide(hits, total, out=np.zeros(n), where=total > 0)
        tissue = (share >= TISSUE_SHARE).reshape(self.rows, self.cols)
        if tissue.any():
            self.tissue = tissue

    # -- recording --------------------------------------------------------------------

    def record(self, rect: Rect, zoom: float, now: float) -> None:
        """A frame showing ``rect`` (level-0 px) at ``zoom`` was painted at time ``now`` (s).

        The time since the previous frame goes to the cells the previous frame showed.
        """
        self._credit(now)
        if zoom < self.min_zoom:
            self._last = None
            return
        rows, cols = self.cells_in(rect)
        if rows.stop <= rows.start or cols.stop <= cols.start:
            self._last = None
            return
        block = self.seen[rows, cols]
        if not block.all():
            block[...] = True
            self.version += 1
        self._last = (rows, cols, now)

    def flush(self, now: float) -> None:
        """Credit the frame on screen up to ``now`` (before saving or reading dwell)."""
        self._credit(now)
        if self._last is not None:
            rows, cols, _ = self._last
            self._last = (rows, cols, now)

    def pause(self, now: float) -> None:
        """The view is hidden or the window lost focus: stop the clock."""
        self._credit(now)
        self._last = None

    def _credit(self, now: float) -> None:
        last = self._last
        if last is None:
            return
        rows, cols, since = last
        seconds = min(max(0.0, now - since), self.max_dwell_s)
        if seconds:
            self.dwell[rows, cols] += seconds
        self._last = None

    def mark_commit(self) -> None:
        """The unaided assessment was committed: freeze what had been seen by then."""
        if self.seen_at_commit is None:
            self.seen_at_commit = self.seen.copy()

    # -- questions --------------------------------------------------------------------

    def share_reviewed(self, at_commit: bool = False) -> float:
        """Share (0-1) of tissue cells seen at diagnostic zoom (at the commit, if asked)."""
        seen = self.seen_at_commit if at_commit and self.seen_at_commit is not None else self.seen
        tissue = int(self.tissue.sum())
        return float((seen & self.tissue).sum()) / tissue if tissue else 0.0

    def was_reviewed(self, rect: Rect, *, min_share: float = 0.5, at_commit: bool = True) -> bool:
        """Were at least ``min_share`` of the (tissue) cells under ``rect`` seen?

        ``at_commit``: as of the commit of the unaided assessment, when there was one.
        """
        seen = self.seen_at_commit if at_commit and self.seen_at_commit is not None else self.seen
        rows, cols = self.cells_touching(rect)
        block, tissue = seen[rows, cols], self.tissue[rows, cols]
        if block.size == 0:
            return False
        if tissue.any():
            block = block[tissue]
        return float(block.mean()) >= min_share

    def unseen_tissue(self) -> np.ndarray:
        """(rows, cols) bool: tissue never shown at diagnostic zoom."""
        return self.tissue & ~self.seen

    def summary(self) -> dict[str, Any]:
        """The numbers a report or the case list shows."""
        out: dict[str, Any] = {
            "share_reviewed": round(self.share_reviewed(), 4),
            "tissue_cells": int(self.tissue.sum()),
            "seen_tissue_cells": int((self.seen & self.tissue).sum()),
            "min_zoom": self.min_zoom,
            "median_dwell_s": round(
                float(np.median(self.dwell[self.seen & self.tissue]))
                if (self.seen & self.tissue).any()
                else 0.0,
                2,
            ),
        }
        if self.seen_at_commit is not None:
            out["share_reviewed_at_commit"] = round(self.share_reviewed(at_commit=True), 4)
        return out

    # -- storage ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-able form (a few kB for a 128 x 128 grid)."""
        dwell_ds = np.minimum(np.round(self.dwell * 10), 65535).astype("<u2")
        out: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "width": self.width,
            "height": self.height,
            "cell_px": self.cell_px,
            "min_zoom": self.min_zoom,
            "seen": _pack_bits(self.seen),
            "tissue": _pack_bits(self.tissue),
            "dwell_ds": base64.b64encode(zlib.compress(dwell_ds.tobytes())).decode("ascii"),
            **self.summary(),
        }
        if self.seen_at_commit is not None:
            out["seen_at_commit"] = _pack_bits(self.seen_at_commit)
        return out

    @classmethod
    def from_dict(cls, data: Any, width: int, height: int) -> ReviewCoverage | None:
        """Back from ``to_dict``; None when it is missing, damaged or of another mosaic."""
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            return None
        try:
            if int(data["width"]) != width or int(data["height"]) != height:
                return None
            cell = float(data["cell_px"])
            if not cell >= 1:
                return None
            coverage = cls(
                width, height, cell_px=cell, max_cells=10**12, min_zoom=float(data["min_zoom"])
            )
            shape = (coverage.rows, coverage.cols)
            coverage.seen = _unpack_bits(data["seen"], shape)
            coverage.tissue = _unpack_bits(data["tissue"], shape)
            raw = zlib.decompress(base64.b64decode(data["dwell_ds"]))
            dwell = np.frombuffer(raw, dtype="<u2")
            if dwell.size != shape[0] * shape[1]:
                return None
            coverage.dwell = dwell.reshape(shape).astype(np.float32) / 10.0
            if "seen_at_commit" in data:
                coverage.seen_at_commit = _unpack_bits(data["seen_at_commit"], shape)
        except (KeyError, TypeError, ValueError, zlib.error):
            return None
        return coverage


#: Where the window keeps the coverage inside the case's view state (no schema change).
VIEW_STATE_KEY = "review_coverage"


def coverage_from_view_state(view_state: Any, width: int, height: int) -> ReviewCoverage | None:
    """The coverage stored in a case's view state, if any and if it fits this mosaic."""
    if not isinstance(view_state, dict):
        return None
    return ReviewCoverage.from_dict(view_state.get(VIEW_STATE_KEY), width, height)


__all__ = [
    "DEFAULT_CELL_PX",
    "DEFAULT_MIN_ZOOM",
    "VIEW_STATE_KEY",
    "ReviewCoverage",
    "coverage_from_view_state",
]
