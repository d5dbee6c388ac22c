"""Sparse bright cells rendered as objects: pagetoid, dendritic and atypical cells.

Cells are scattered one candidate per grid block, with every parameter hashed
from (seed, layer, block), so any region renders the same cells whatever the
tiling. Each cell is drawn only on its own bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcm_viewer.synthetic.noise import hash_uniform


@dataclass(frozen=True)
class CellPopulation:
    """How one population of bright cells looks (sizes in µm)."""

    spacing_um: float
    presence: float
    radius_um: tuple[float, float]
    brightness: tuple[float, float]
    dendritic_fraction: float = 0.0
    branch_length_um: tuple[float, float] = (15.0, 40.0)
    branch_width_um: tuple[float, float] = (1.5, 3.0)
    nucleus_fraction: float = 0.0
    elongation: tuple[float, float] = (1.0, 1.0)
    irregularity: float = 0.0


def render_cells(
    shape: tuple[int, int],
    x0_um: float,
    y0_um: float,
    pixel_um: float,
    seed: int,
    layer: int,
    pop: CellPopulation,
) -> np.ndarray:
    """Return a float32 layer (0 = no cell) of this population over the region."""
    h, w = shape
    canvas = np.zeros(shape, dtype=np.float32)
    reach = pop.radius_um[1] * max(pop.elongation[1], 1.0)
    if pop.dendritic_fraction > 0:
        reach += pop.branch_length_um[1]
    s = pop.spacing_um
    bx0 = int(np.floor((x0_um - reach) / s))
    by0 = int(np.floor((y0_um - reach) / s))
    bx1 = int(np.floor((x0_um + w * pixel_um + reach) / s))
    by1 = int(np.floor((y0_um + h * pixel_um + reach) / s))
    bx = np.arange(bx0, bx1 + 1)[None, :]
    by = np.arange(by0, by1 + 1)[:, None]

    def hu(k: int) -> np.ndarray:
        return hash_uniform(seed, layer, bx, by, k).ravel()

    present = hu(0) < pop.presence
    if not present.any():
        return canvas
    gx = np.broadcast_to(bx, (by.shape[0], bx.shape[1])).ravel()
    gy = np.broadcast_to(by, (by.shape[0], bx.shape[1])).ravel()
    cx = (gx + hu(1)) * s
    cy = (gy + hu(2)) * s
    radius = pop.radius_um[0] + (pop.radius_um[1] - pop.radius_um[0]) * hu(3)
    bright = pop.brightness[0] + (pop.brightness[1] - pop.brightness[0]) * hu(4)
    dendritic = hu(5) < pop.dendritic_fraction
    nucleated = hu(6) < pop.nucleus_fraction
    n_branches = 2 + np.floor(hu(7) * 4).astype(int)
    elong = pop.elongation[0] + (pop.elongation[1] - pop.elongation[0]) * hu(8)
    orient = np.pi * hu(9)
    irregular_phase = 2 * np.pi * hu(10)

    for i in np.flatnonzero(present):
        r = radius[i]
        extent = r * max(elong[i], 1.0) * 1.6
        if dendritic[i]:
            extent += pop.branch_length_um[1]
        px0 = max(int((cx[i] - extent - x0_um) / pixel_um), 0)
        px1 = min(int((cx[i] + extent - x0_um) / pixel_um) + 2, w)
        py0 = max(int((cy[i] - extent - y0_um) / pixel_um), 0)
        py1 = min(int((cy[i] + extent - y0_um) / pixel_um) + 2, h)
        if px0 >= px1 or py0 >= py1:
            continue
        xs = (x0_um + np.arange(px0, px1, dtype=np.float32) * pixel_um - cx[i])[None, :]
        ys = (y0_um + np.arange(py0, py1, dtype=np.float32) * pixel_um - cy[i])[:, None]
        c, sn = np.cos(orient[i]), np.sin(orient[i])
        u = (xs * c + ys * sn) / elong[i]
        v = -xs * sn + ys * c
        dist = np.sqrt(u * u + v * v)
        if pop.irregularity > 0:
            theta = np.arctan2(v, u)
            dist = dist * (1.0 + pop.irregularity * np.cos(2 * theta + irregular_phase[i]))
        body = np.exp(-((dist / r) ** 3))
        if nucleated[i]:
            body = body * (1.0 - 0.55 * np.exp(-((dist / (0.38 * r)) ** 2)))
        cell = body
        if dendritic[i]:
            for k in range(int(n_branches[i])):
                angle = 2 * np.pi * float(hash_uniform(seed, layer, gx[i], gy[i], 20 + k)[0])
                length = pop.branch_length_um[0] + (
                    pop.branch_length_um[1] - pop.branch_length_um[0]
                ) * float(hash_uniform(seed, layer, gx[i], gy[i], 40 + k)[0])
                width = pop.branch_width_um[0] + (
                    pop.branch_width_um[1] - pop.branch_width_um[0]
                ) * float(hash_uniform(seed, layer, gx[i], gy[i], 60 + k)[0])
                dx, dy = np.cos(angle), np.sin(angle)
                t = np.clip(xs * dx + ys * dy, 0.0, length)
                perp = np.sqrt((xs - t * dx) ** 2 + (ys - t * dy) ** 2)
                taper = 1.0 - 0.6 * (t / length)
                branch = 0.85 * taper * np.exp(-((perp / (width * taper)) ** 2))
                cell = np.maximum(cell, branch)
        region = canvas[py0:py1, px0:px1]
        np.maximum(region, (bright[i] * cell).astype(np.float32), out=region)
    return canvas
