"""Downsampled levels for images that do not store a pyramid.

All levels are built in one pass over the smallest stored level, band by band (a strip of
full-width rows at a time): each band is halved again and again, and every result goes
straight into its level. The full-resolution image is never copied whole, no built level
is read back to make the next, and bands are independent, so several threads decode and
reduce them at once. The built levels live in memory (or in an anonymous temporary file
when one is large).
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import IO

import numpy as np

from rcm_viewer.mosaic.model import BUILD_LEVELS_ABOVE_PX, SMALLEST_LEVEL_PX

#: A built level bigger than this goes to a temporary file (numpy memmap) instead of RAM.
IN_MEMORY_LEVEL_BYTES = 64 * 1024**2

#: Rows of the source level read at once while building: about this many bytes. Small
#: bands keep threads busy evenly and let a preview show after a fraction of them.
BAND_BYTES = 1024**2

#: Bands bigger than this are not made bigger still to keep them aligned on strips/tiles.
MAX_ALIGNED_BAND_BYTES = 64 * 1024**2

#: Source bytes of all bands being read or reduced at once, across threads. Bands are
#: small for ordinary mosaics (1 MB); a very wide image can need big ones (2**levels rows).
IN_FLIGHT_BYTES = 128 * 1024**2


def planned_sizes(base: tuple[int, int], smallest_stored: tuple[int, int]) -> list[tuple[int, int]]:
    """Sizes of the levels to build below the smallest stored one (each half the previous).

    Only images with a side above ``BUILD_LEVELS_ABOVE_PX`` get levels; building stops at a
    level whose longer side is at most ``SMALLEST_LEVEL_PX``. A stored pyramid that stops
    too early is extended the same way.
    """
    if max(base) <= BUILD_LEVELS_ABOVE_PX:
        return []
    sizes: list[tuple[int, int]] = []
    width, height = smallest_stored
    while max(width, height) > SMALLEST_LEVEL_PX:
        width, height = math.ceil(width / 2), math.ceil(height / 2)
        sizes.append((width, height))
    return sizes


def downsample_2x(block: np.ndarray) -> np.ndarray:
    """2x2 mean of an (h, w, C) array; odd edges repeat their last row/column.

    Integer images round half up ((a+b+c+d+2) // 4), so a flat 16-bit field keeps its
    exact value through every level.
    """
    height, width = block.shape[:2]
    if height % 2 or width % 2:
        block = np.pad(block, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    if block.dtype.kind in "ui":
        acc = block[0::2, 0::2].astype(np.uint32)
        acc += block[1::2, 0::2]
        acc += block[0::2, 1::2]
        acc += block[1::2, 1::2]
        acc += 2
        acc >>= 2
        return acc.astype(block.dtype)
    acc_f = block[0::2, 0::2].astype(np.float64)
    acc_f += block[1::2, 0::2]
    acc_f += block[0::2, 1::2]
    acc_f += block[1::2, 1::2]
    return (acc_f / 4).astype(block.dtype)


def band_rows(width: int, bytes_per_pixel: int, row_hint: int, levels: int) -> int:
    """Source rows per band: ~``BAND_BYTES``, a multiple of ``2**levels`` (so every level's
    share of a band is a whole number of rows) and, where that stays affordable, of the
    strip/tile height ``row_hint`` (so each stored segment is decoded once)."""
    row_bytes = max(1, width * bytes_per_pixel)
    step = 2 ** max(1, levels)
    if row_hint > 0:
        aligned = math.lcm(step, row_hint)
        if aligned * row_bytes <= MAX_ALIGNED_BAND_BYTES:
            step = aligned
    rows = BAND_BYTES // row_bytes
    return max(step, rows // step * step)


def reduce_band(band: np.ndarray, levels: int) -> list[np.ndarray]:
    """The band halved ``levels`` times: one array per level, largest first."""
    out = []
    for _ in range(levels):
        band = downsample_2x(band)
        out.append(band)
    return out


def band_order(count: int, stride: int) -> list[int]:
    """Bands ``0, s, 2s, ...`` first, then the ones halfway between, then the rest: after the
    first ``ceil(count / stride)`` bands the whole image is sampled evenly (for a preview)."""
    first = list(range(0, count, stride))
    taken = set(first)
    step = stride // 2
    order = list(first)
    while step >= 1:
        for i in range(step, count, 2 * step):
            if i not in taken:
                taken.add(i)
                order.append(i)
        step //= 2
    order.extend(i for i in range(count) if i not in taken)
    return order


def fill_missing_rows(level: np.ndarray, known: np.ndarray) -> np.ndarray:
    """A copy of ``level`` whose rows not marked ``known`` are linearly interpolated (per
    column) from the nearest known rows above and below; edges repeat the nearest one."""
    rows = np.flatnonzero(known)
    if rows.size == 0 or rows.size == level.shape[0]:
        return level.copy()
    out = level.copy()
    missing = np.flatnonzero(~known)
    after = np.clip(np.searchsorted(rows, missing), 0, rows.size - 1)
    before = np.clip(after - 1, 0, rows.size - 1)
    below, above = rows[after], rows[before]
    span = np.where(below > above, below - above, 1)
    weight = np.clip((missing - above) / span, 0.0, 1.0)
    weight = np.where(below == above, 0.0, weight)[:, None, None]
    mixed = level[above] * (1.0 - weight) + level[below] * weight
    if np.dtype(level.dtype).kind in "ui":
        mixed = np.rint(mixed)
    out[missing] = mixed.astype(level.dtype)
    return out


class LevelBuffer:
    """Storage for one built level of one page: a numpy array, file-backed when large."""

    def __init__(self, height: int, width: int, channels: int, dtype: np.dtype) -> None:
        shape = (height, width, channels)
        nbytes = height * width * channels * np.dtype(dtype).itemsize
        self._file: IO[bytes] | None = None
        if nbytes > IN_MEMORY_LEVEL_BYTES:
            self._file = tempfile.TemporaryFile(prefix="rcm-viewer-level-")  # noqa: SIM115
            self.array: np.ndarray = np.memmap(self._file, dtype=dtype, mode="w+", shape=shape)
        else:
            self.array = np.zeros(shape, dtype=dtype)

    def write_rows(self, y: int, rows: np.ndarray) -> None:
        """Store full-width rows from ``y``; a file-backed level is written with ``pwrite``.

        Writing through the memmap would make every page of a multi-gigabyte level part of
        this process's resident memory (dirty shared pages) until it is unmapped; ``pwrite``
        goes through the page cache, which the kernel may write back and drop at will.
        """
        if self._file is None:
            self.array[y : y + rows.shape[0]] = rows
            return
        row_bytes = self.array.shape[1] * self.array.shape[2] * self.array.dtype.itemsize
        data = np.ascontiguousarray(rows, dtype=self.array.dtype)
        os.pwrite(self._file.fileno(), memoryview(data).cast("B"), y * row_bytes)

    def close(self) -> None:
        """Drop the array; a memmap is unmapped by the garbage collector once no reader holds
        a view of it (closing the mapping by hand could pull it from under another thread)."""
        self.array = np.zeros((0, 0, self.array.shape[2]), dtype=self.array.dtype)
        if self._file is not None:
            self._file.close()
            self._file = None
