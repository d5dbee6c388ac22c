"""Coordinate-hashed noise primitives.

Every value is a pure function of (seed, layer, absolute coordinates), never of
the order in which regions are rendered. That is what lets a 16,000 px mosaic
be rendered tile by tile (bounded memory) and still be seamless and
bit-identical to rendering it in one piece.

Coordinates are in "cell units" (µm divided by the feature scale) and may be
broadcastable arrays: ``gx`` of shape (1, W) and ``gy`` of shape (H, 1) for an
axis-aligned grid, or full (H, W) arrays after a warp or rotation.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ODD_Y = np.uint64(0xD6E8FEB86659FD93)
_ODD_K = np.uint64(0xA0761D6478BD642F)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))
_TO_UNIT = 1.0 / float(1 << 53)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a cheap, well-distributed 64-bit bijection."""
    z = z ^ (z >> _S30)
    z = z * _MIX1
    z = z ^ (z >> _S27)
    z = z * _MIX2
    return z ^ (z >> _S31)


def _key(seed: int, layer: int) -> np.uint64:
    with np.errstate(over="ignore"):
        base = np.array([(seed & 0xFFFFFFFFFFFFFFFF)], dtype=np.uint64) * _GOLDEN
        return _mix(base + np.uint64(layer & 0xFFFFFFFF))[0]


def hash_uniform(seed: int, layer: int, ix, iy, k: int = 0) -> np.ndarray:
    """Uniform [0, 1) float64 for each integer lattice point (ix, iy)."""
    ix = np.atleast_1d(np.asarray(ix, dtype=np.int64)).astype(np.uint64)
    iy = np.atleast_1d(np.asarray(iy, dtype=np.int64)).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = _mix(ix * _GOLDEN + _key(seed, layer))
        z = _mix(z ^ (iy * _ODD_Y))
        if k:
            z = _mix(z ^ (np.uint64(k) * _ODD_K))
    return (z >> _S11).astype(np.float64) * _TO_UNIT


def hash_normal(seed: int, layer: int, ix, iy) -> np.ndarray:
    """Standard-normal float32 per lattice point (Box-Muller on two hashed uniforms)."""
    u1 = hash_uniform(seed, layer, ix, iy, 1)
    u2 = hash_uniform(seed, layer, ix, iy, 2)
    r = np.sqrt(-2.0 * np.log1p(-u1))
    return (r * np.cos(2.0 * np.pi * u2)).astype(np.float32)


def _lattice_range(i: np.ndarray) -> tuple[int, int]:
    return int(i.min()), int(i.max())


def _cell_lattice(gx, gy):
    """Cells under the pixels plus a one-cell border: what a 3x3 neighbour search reads.

    Returns (shape, ix, iy, x0, y0, x1, cx, cy): the broadcast pixel shape, each pixel's
    cell, the lattice origin and last column, and the lattice coordinates (row and column
    vectors) on which per-cell random values are hashed.
    """
    shape = np.broadcast_shapes(np.shape(gx), np.shape(gy))
    ix = np.floor(gx).astype(np.int64)
    iy = np.floor(gy).astype(np.int64)
    x0, x1 = _lattice_range(ix)
    y0, y1 = _lattice_range(iy)
    x0, y0, x1, y1 = x0 - 1, y0 - 1, x1 + 1, y1 + 1
    cx = np.arange(x0, x1 + 1)[None, :]
    cy = np.arange(y0, y1 + 1)[:, None]
    return shape, ix, iy, x0, y0, x1, cx, cy


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def value_noise(gx: np.ndarray, gy: np.ndarray, seed: int, layer: int) -> np.ndarray:
    """Smooth noise in [0, 1] with one feature per unit cell (smoothstep interpolation)."""
    fx0 = np.floor(gx)
    fy0 = np.floor(gy)
    ix = fx0.astype(np.int64)
    iy = fy0.astype(np.int64)
    tx = (gx - fx0).astype(np.float32)
    ty = (gy - fy0).astype(np.float32)
    x0, x1 = _lattice_range(ix)
    y0, y1 = _lattice_range(iy)
    lattice = hash_uniform(
        seed, layer, np.arange(x0, x1 + 2)[None, :], np.arange(y0, y1 + 2)[:, None]
    ).astype(np.float32)
    jx = ix - x0
    jy = iy - y0
    v00 = lattice[jy, jx]
    v10 = lattice[jy, jx + 1]
    v01 = lattice[jy + 1, jx]
    v11 = lattice[jy + 1, jx + 1]
    sx = tx * tx * (3.0 - 2.0 * tx)
    sy = ty * ty * (3.0 - 2.0 * ty)
    top = v00 + (v10 - v00) * sx
    bottom = v01 + (v11 - v01) * sx
    return top + (bottom - top) * sy


def fbm(gx: np.ndarray, gy: np.ndarray, seed: int, layer: int, octaves: int = 3) -> np.ndarray:
    """Fractal sum of value noise, rescaled to roughly [0, 1] around 0.5."""
    total = np.zeros(np.broadcast_shapes(np.shape(gx), np.shape(gy)), dtype=np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        scale = float(1 << octave)
        total += amplitude * value_noise(gx * scale, gy * scale, seed, layer * 16 + octave)
        norm += amplitude
        amplitude *= 0.5
    out = total / norm
    # Sums of uniforms crowd the middle; stretch back towards [0, 1].
    return np.clip((out - 0.5) * (1.0 + 0.6 * (octaves - 1)) + 0.5, 0.0, 1.0)


class Worley:
    """Cellular (Worley) noise: distance to the nearest and second-nearest jittered point.

    Attributes after construction: ``f1``, ``f2`` (cell units), ``cell_value``
    (a uniform per nearest cell, for per-cell brightness), ``dx``/``dy`` (vector
    from the nearest point to the pixel).
    """

    def __init__(
        self, gx: np.ndarray, gy: np.ndarray, seed: int, layer: int, jitter: float = 1.0
    ) -> None:
        shape, ix, iy, x0, y0, x1, cx, cy = _cell_lattice(gx, gy)
        px = (cx + 0.5 + jitter * (hash_uniform(seed, layer, cx, cy, 1) - 0.5)).astype(np.float32)
        py = (cy + 0.5 + jitter * (hash_uniform(seed, layer, cx, cy, 2) - 0.5)).astype(np.float32)
        values = hash_uniform(seed, layer, cx, cy, 3).astype(np.float32)
        ncols = x1 - x0 + 1
        px_flat, py_flat, val_flat = px.ravel(), py.ravel(), values.ravel()
        gx32 = np.asarray(gx, dtype=np.float32)
        gy32 = np.asarray(gy, dtype=np.float32)
        f1 = np.full(shape, np.inf, dtype=np.float32)
        f2 = np.full(shape, np.inf, dtype=np.float32)
        best = np.zeros(shape, dtype=np.int64)
        for oy in (-1, 0, 1):
            row = (iy + oy - y0) * ncols
            for ox in (-1, 0, 1):
                flat = row + (ix + ox - x0)
                ddx = gx32 - px_flat[flat]
                ddy = gy32 - py_flat[flat]
                dist = np.sqrt(ddx * ddx + ddy * ddy)
                closer = dist < f1
                f2 = np.where(closer, f1, np.minimum(f2, dist))
                f1 = np.where(closer, dist, f1)
                best = np.where(closer, flat, best)
        self.f1 = f1
        self.f2 = f2
        self.cell_value = val_flat[best]
        self.dx = gx32 - px_flat[best]
        self.dy = gy32 - py_flat[best]


class BlobField:
    """Sparse round-to-lobulated blobs (dermal papillae, nests, tumour islands).

    One candidate blob per grid cell (``presence`` chance), radius drawn in
    [r_min, r_max] cell units, outline perturbed by two angular harmonics
    (``lobulation``). ``rho`` is the pixel's distance to the nearest blob centre
    divided by that blob's radius in the pixel's direction: < 1 inside, 1 on
    the edge. Radii must stay below ~0.7 cell so the 3x3 search is exact.
    """

    def __init__(
        self,
        gx: np.ndarray,
        gy: np.ndarray,
        seed: int,
        layer: int,
        *,
        presence: float,
        r_min: float,
        r_max: float,
        lobulation: float = 0.0,
        jitter: float = 0.6,
    ) -> None:
        shape, ix, iy, x0, y0, x1, cx, cy = _cell_lattice(gx, gy)

        def h(k: int) -> np.ndarray:
            return hash_uniform(seed, layer, cx, cy, k).astype(np.float32).ravel()

        px = (cx + 0.5 + jitter * (hash_uniform(seed, layer, cx, cy, 1) - 0.5)).ravel()
        py = (cy + 0.5 + jitter * (hash_uniform(seed, layer, cx, cy, 2) - 0.5)).ravel()
        px, py = px.astype(np.float32), py.astype(np.float32)
        present = h(3) < presence
        radius = r_min + (r_max - r_min) * h(4)
        harm_a = lobulation * (h(5) - 0.2)
        harm_b = lobulation * 0.6 * h(6)
        phase_a = 2 * np.pi * h(7)
        phase_b = 2 * np.pi * h(8)
        order_a = 2 + np.floor(h(9) * 3)
        order_b = 4 + np.floor(h(10) * 4)
        values = h(11)
        ncols = x1 - x0 + 1
        gx32 = np.asarray(gx, dtype=np.float32)
        gy32 = np.asarray(gy, dtype=np.float32)
        rho = np.full(shape, np.inf, dtype=np.float32)
        best = np.zeros(shape, dtype=np.int64)
        for oy in (-1, 0, 1):
            row = (iy + oy - y0) * ncols
            for ox in (-1, 0, 1):
                flat = row + (ix + ox - x0)
                ddx = gx32 - px[flat]
                ddy = gy32 - py[flat]
                dist = np.sqrt(ddx * ddx + ddy * ddy)
                theta = np.arctan2(ddy, ddx)
                local_r = radius[flat] * (
                    1.0
                    + harm_a[flat] * np.cos(order_a[flat] * theta + phase_a[flat])
                    + harm_b[flat] * np.cos(order_b[flat] * theta + phase_b[flat])
                )
                r_norm = np.where(present[flat], dist / np.maximum(local_r, 1e-3), np.inf)
                closer = r_norm < rho
                rho = np.where(closer, r_norm, rho)
                best = np.where(closer, flat, best)
        self.rho = rho
        self.radius = radius[best]  # cell units
        self.value = values[best]
        self.theta = np.arctan2(gy32 - py[best], gx32 - px[best])
