"""Downsampled levels for images that do not store a pyramid.

Levels are built band by band (a strip of full-width rows at a time) from the level above,
so the full-resolution image is never copied whole, and the built levels live in memory
(or in an anonymous temporary file when one is large).
"""

from __future__ import annotations

import math
import tempfile
from typing import IO

import numpy as np

from rcm_viewer.mosaic.model import BUILD_LEVELS_ABOVE_PX, SMALLEST_LEVEL_PX

#: A built level bigger than this goes to a temporary file (numpy memmap) instead of RAM.
IN_MEMORY_LEVEL_BYTES = 64 * 1024**2

#: Rows of the source level read at once while building: about this many bytes.
BAND_BYTES = 32 * 1024**2


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


def band_rows(width: int, bytes_per_pixel: int, row_hint: int) -> int:
    """Even number of source rows per band: ~``BAND_BYTES``, a multiple of the tile height."""
    rows = max(2, BAND_BYTES // max(1, width * bytes_per_pixel))
    if 0 < row_hint <= rows:
        step = row_hint if row_hint % 2 == 0 else 2 * row_hint
        rows = max(step, rows // step * step)
    return max(2, rows - rows % 2)


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

    def close(self) -> None:
        """Drop the array; a memmap is unmapped by the garbage collector once no reader holds
        a view of it (closing the mapping by hand could pull it from under another thread)."""
        self.array = np.zeros((0, 0, self.array.shape[2]), dtype=self.array.dtype)
        if self._file is not None:
            self._file.close()
            self._file = None
