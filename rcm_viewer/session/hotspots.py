"""The regions of highest activation in a heatmap, for the hotspot tour (issue 15).

The tour must point the reader at *different* places, so a plain top-K of heatmap cells
is useless (the K best cells of one blob are neighbours). Greedy non-maximum suppression
picks the highest cell, blanks every cell within a suppression radius of it, and repeats.
The radius is in level-0 pixels (or µm, given the pixel size) because that is what the
reader perceives as "the same place", whatever the heatmap's cell size is.

Pure numpy on the canonical ``AIView`` heatmap ((classes, rows, columns) in 0-1 covering
``heatmap_span`` = (width, height) level-0 px from the top-left corner), so the window,
a report and a batch run find the same hotspots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Default suppression radius: about half a 1:1 screen, so the next stop is a new field.
DEFAULT_RADIUS_PX = 512.0
DEFAULT_COUNT = 5


@dataclass(frozen=True)
class Hotspot:
    """One stop of the tour: a level-0 rectangle around a heatmap peak."""

    rank: int  # 1 = the highest peak
    class_id: str
    class_index: int
    peak: float  # heatmap value at the peak, 0-1
    center: tuple[float, float]  # level-0 (x, y), activation-weighted around the peak
    rect: tuple[float, float, float, float]  # level-0 (x, y, width, height)


def suppression_radius_px(
    radius_um: float | None, pixel_size_um: float | None, radius_px: float | None = None
) -> float:
    """The radius in level-0 px: µm when the pixel size is known, else px, else the default."""
    if radius_um is not None and pixel_size_um:
        return float(radius_um) / float(pixel_size_um)
    if radius_px is not None:
        return float(radius_px)
    return DEFAULT_RADIUS_PX


def find_hotspots(
    heatmap: np.ndarray,
    span: tuple[float, float],
    class_ids: tuple[str, ...] | list[str],
    class_id: str | None = None,
    *,
    count: int = DEFAULT_COUNT,
    radius_px: float = DEFAULT_RADIUS_PX,
    min_value: float = 0.05,
) -> list[Hotspot]:
    """The ``count`` strongest, mutually distant peaks of one class (or of any class).

    ``class_id`` None: the score of a cell is its maximum over the classes, and each
    hotspot names the class that gave it. Peaks below ``min_value`` are not hotspots.
    Raises ``ValueError`` for a heatmap that does not match ``class_ids`` or ``span``.
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 3 or heat.shape[0] != len(class_ids):
        raise ValueError(f"heatmap of shape {heat.shape} does not match {len(class_ids)} classes")
    width, height = float(span[0]), float(span[1])
    _, rows, cols = heat.shape
    if rows == 0 or cols == 0 or width <= 0 or height <= 0 or count <= 0:
        return []
    if class_id is None:
        owner = np.argmax(heat, axis=0)
        score = np.take_along_axis(heat, owner[None], axis=0)[0]
    else:
        if class_id not in class_ids:
            raise ValueError(f"class {class_id!r} is not in this result ({', '.join(class_ids)})")
        index = list(class_ids).index(class_id)
        owner = np.full((rows, cols), index, dtype=np.int64)
        score = heat[index]
    score = np.nan_to_num(score, nan=0.0).astype(np.float32, copy=True)
    cell_w, cell_h = width / cols, height / rows
    # cell centres in level-0 px, for the distance test
    cx = (np.arange(cols, dtype=np.float64) + 0.5) * cell_w
    cy = (np.arange(rows, dtype=np.float64) + 0.5) * cell_h
    radius = max(float(radius_px), 0.0)
    # the rectangle outlined (and asked "was it reviewed?"): half the suppression radius
    # each way, so the boxes of two stops never overlap; at least one cell
    half_w = max(radius / 2, cell_w / 2)
    half_h = max(radius / 2, cell_h / 2)
    work = score.copy()
    found: list[Hotspot] = []
    while len(found) < count:
        flat = int(np.argmax(work))
        r, c = divmod(flat, cols)
        peak = float(work[r, c])
        if not peak > min_value:
            break
        # weighted centre of the 3 x 3 neighbourhood: finer than the cell grid
        r0, r1, c0, c1 = max(0, r - 1), min(rows, r + 2), max(0, c - 1), min(cols, c + 2)
        patch = score[r0:r1, c0:c1].astype(np.float64)
        total = float(patch.sum())
        if total > 0:
            x = float((patch.sum(axis=0) * cx[c0:c1]).sum() / total)
            y = float((patch.sum(axis=1) * cy[r0:r1]).sum() / total)
        else:
            x, y = float(cx[c]), float(cy[r])
        left, top = max(0.0, x - half_w), max(0.0, y - half_h)
        rect = (left, top, min(width, x + half_w) - left, min(height, y + half_h) - top)
        index = int(owner[r, c])
        found.append(Hotspot(len(found) + 1, str(class_ids[index]), index, peak, (x, y), rect))
        # suppress every cell whose centre is within the radius of this peak (and the peak)
        near_x = np.abs(cx - cx[c]) <= radius
        near_y = np.abs(cy - cy[r]) <= radius
        if radius > 0:
            ys, xs = np.nonzero(near_y)[0], np.nonzero(near_x)[0]
            if ys.size and xs.size:
                block = (cx[xs][None, :] - cx[c]) ** 2 + (
                    cy[ys][:, None] - cy[r]
                ) ** 2 <= radius * radius
                sub = work[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
                sub[block] = -math.inf
        work[r, c] = -math.inf
    return found


def hotspots_of_view(
    view,
    class_id: str | None = None,
    *,
    count: int = DEFAULT_COUNT,
    radius_px: float = DEFAULT_RADIUS_PX,
    min_value: float = 0.05,
) -> list[Hotspot]:
    """``find_hotspots`` on an ``AIView`` ([] when it has no heatmap)."""
    if view is None or view.heatmap is None:
        return []
    return find_hotspots(
        view.heatmap,
        view.heatmap_span,
        view.class_ids,
        class_id,
        count=count,
        radius_px=radius_px,
        min_value=min_value,
    )


__all__ = [
    "DEFAULT_COUNT",
    "DEFAULT_RADIUS_PX",
    "Hotspot",
    "find_hotspots",
    "hotspots_of_view",
    "suppression_radius_px",
]
