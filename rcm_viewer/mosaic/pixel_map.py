"""Open float, signed, 32/64-bit and palette images by mapping them to 8/16-bit on read.

Why a map at the read path rather than float support everywhere: the whole app (tile
LUTs, the histogram, built levels, the model's input, reports) works on unsigned 8/16-bit
pixels, and several people change those parts at once. Mapping once, here, gives every
consumer pixels it already handles, and the map (``PixelMap`` on ``MosaicInfo``) says
exactly what was done, so the status bar and contrast labels can show the file's own
values and ``rcm-viewer info --json`` can show the formula.

* **Linear** (float16/32/64, int8/16/32/64, uint32/64): ``stored = round((value - low) /
  (high - low) * 65535)`` into uint16, clipped; NaN -> 0, +inf -> 65535, -inf -> 0.
  ``low``/``high`` are the finite minimum and maximum of a *sample*: the smallest stored
  level when it is at most ``FULL_SAMPLE_PIXELS`` (read whole), else ``GRID`` x ``GRID``
  patches of it (each on a tile boundary), on the first, middle and last page. A huge
  image is never decoded whole to open it. Unless the sample was the whole
  full-resolution image, the range is widened by ``MARGIN`` of its span on each side, so
  full-resolution extremes that averaging in a reduced level hid are not clipped
  (integers: rounded outward, kept inside the type).
  Integer images spanning at most 65,535 values (all int8/int16) stay exact: each value
  keeps its own stored value and ``PixelMap.real_value`` gives it back.
* **The model** sees the stored uint16: with the ``full_scale`` intensity rule the data
  range [low, high] becomes the model's 0-1 input (black = the darkest sampled value);
  with ``robust_white`` the 99.5th percentile of the mapped data is white. No engine
  change is needed.
* **Palette** (TIFF photometric 3): indices are expanded through the colour table. A
  table whose three channels are equal is gray (8-bit, or 16-bit when the table holds
  16-bit values that are not 8-bit values scaled by 257); any other becomes 8-bit RGB.
  (PNG/BMP palettes are expanded by Pillow in ``flat_reader``.)
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from rcm_viewer.mosaic.model import MAPPED_DTYPES, PixelMap, describe_dtype, mosaic_error
from rcm_viewer.mosaic.source import ImageSource, SourceHeader

#: A smallest level up to this many pixels is read whole to find the data range.
FULL_SAMPLE_PIXELS = 2048 * 2048
#: Else GRID x GRID patches of PATCH_PX pixels spread over it.
GRID = 6
PATCH_PX = 128
#: Widening of the sampled range on each side (fraction of its span).
MARGIN = 0.02
_U16_MAX = 65535.0


def needs_map(header: SourceHeader) -> bool:
    return header.palette is not None or header.dtype.name in MAPPED_DTYPES


def mapped_source(source: ImageSource) -> ImageSource:
    """``source`` itself for 8/16-bit images, else a ``MappedSource`` around it."""
    return MappedSource(source) if needs_map(source.header) else source


class MappedSource(ImageSource):
    """An ``ImageSource`` whose reads come back through a ``PixelMap``."""

    def __init__(self, inner: ImageSource) -> None:
        self._inner = inner
        self.path = Path(inner.path)
        header = inner.header
        if header.palette is not None:
            self.pixel_map, self._lut, channels, is_rgb = _palette_map(header, self.path)
            self._low = self._scale = 0.0
        else:
            low, high, sampled = _sample_range(inner)
            self.pixel_map = PixelMap(
                kind="linear",
                source_dtype=header.dtype.name,
                stored_dtype="uint16",
                low=low,
                high=high,
                sampled_from=sampled,
            )
            self._lut = None
            self._low, self._scale = low, _U16_MAX / (high - low)
            channels, is_rgb = header.channels, header.is_rgb
        self.header = replace(
            header,
            dtype=np.dtype(self.pixel_map.stored_dtype),
            channels=channels,
            is_rgb=is_rgb,
            palette=None,
            format_description=f"{header.format_description}, {self._short()}",
            metadata=dict(header.metadata),
            warnings=list(header.warnings),
        )

    def _short(self) -> str:
        pm = self.pixel_map
        if pm.kind == "palette":
            return "gray palette" if pm.palette_gray else "colour palette shown as RGB"
        return f"{describe_dtype(pm.source_dtype)} mapped to 16-bit"

    def read(self, level: int, page: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        raw = self._inner.read(level, page, x0, y0, x1, y1)
        if self._lut is not None:
            index = np.minimum(raw[:, :, 0], self._lut.shape[0] - 1)
            return self._lut[index]
        return linear_to_u16(raw, self._low, self._scale)

    def close(self) -> None:
        self._inner.close()

    def stats(self) -> dict[str, int]:
        return self._inner.stats()


def linear_to_u16(values: np.ndarray, low: float, scale: float) -> np.ndarray:
    """``round((values - low) * scale)`` clipped to 0-65535 as uint16; NaN -> 0.

    In place on one working copy (``np.nan_to_num`` made a 512 px tile 13x slower).
    """
    work = np.float32 if values.dtype.itemsize <= 2 else np.float64  # exact for float32 too
    out = values.astype(work)
    out -= work(low)
    out *= work(scale)
    np.clip(out, 0.0, _U16_MAX, out=out)  # +inf -> 65535, -inf -> 0; NaN stays NaN
    if values.dtype.kind == "f":
        out[np.isnan(out)] = 0.0
    np.rint(out, out=out)
    return out.astype(np.uint16)


def _sample_range(source: ImageSource) -> tuple[float, float, str]:
    """Finite (low, high) of a sample of the smallest stored level; see the module doc."""
    header = source.header
    level = len(header.stored_levels) - 1
    width, height = header.stored_levels[level]
    pages = sorted({0, header.pages // 2, header.pages - 1})
    whole = width * height <= FULL_SAMPLE_PIXELS
    # Patches start on a tile/strip boundary of the base level (the only size a reader
    # tells), so each decodes one tile where the tiles are at least PATCH_PX.
    snap = header.row_hint if level == 0 and header.row_hint >= PATCH_PX else 0
    lows: list[float] = []
    highs: list[float] = []
    for page in pages:
        if whole:
            patches = [source.read(level, page, 0, 0, width, height)]
        else:
            patches = []
            for gy in range(GRID):
                for gx in range(GRID):
                    x0 = _snap((width - PATCH_PX) * gx // (GRID - 1), snap)
                    y0 = _snap((height - PATCH_PX) * gy // (GRID - 1), snap)
                    patches.append(source.read(level, page, x0, y0, x0 + PATCH_PX, y0 + PATCH_PX))
        for patch in patches:
            values = patch[np.isfinite(patch)] if patch.dtype.kind == "f" else patch
            if values.size:
                lows.append(float(values.min()))
                highs.append(float(values.max()))
    where = f"level {level}" if len(header.stored_levels) > 1 else "the image"
    sampled = f"{where}, {width} x {height} px" if whole else f"{GRID * GRID} patches of {where}"
    if len(pages) > 1:
        sampled += f", pages {', '.join(str(p + 1) for p in pages)}"
    if not lows:  # all NaN/inf: any range; everything maps to 0 (or 65535 for +inf)
        return 0.0, 1.0, sampled + " (no finite values)"
    low, high = min(lows), max(highs)
    if not (whole and level == 0):
        pad = (high - low) * MARGIN
        low, high = low - pad, high + pad
    if header.dtype.kind in "iu":
        info = np.iinfo(header.dtype)
        low = max(float(info.min), math.floor(low))
        high = min(float(info.max), math.ceil(high))
    if high <= low:
        high = low + 1.0
    return float(low), float(high), sampled


def _snap(position: int, step: int) -> int:
    return position - position % step if step else position


def _palette_map(header: SourceHeader, path: Path) -> tuple[PixelMap, np.ndarray, int, bool]:
    table = np.asarray(header.palette)
    if table.ndim != 2 or table.shape[0] != 3 or table.shape[1] == 0:
        raise mosaic_error(path, "has a damaged colour palette")
    table = table.astype(np.uint32)
    entries = table.shape[1]
    gray = bool(np.array_equal(table[0], table[1]) and np.array_equal(table[0], table[2]))
    eight_bit_values = int(table.max()) <= 255
    table8 = (table if eight_bit_values else np.rint(table / 257.0)).astype(np.uint8)
    if gray:
        scaled_8bit = eight_bit_values or bool(np.all(table[0] % 257 == 0))
        if scaled_8bit:
            lut = table8[0].reshape(-1, 1)
            stored = "uint8"
        else:
            lut = table[0].astype(np.uint16).reshape(-1, 1)
            stored = "uint16"
    else:
        lut = np.ascontiguousarray(table8.T)
        stored = "uint8"
    pm = PixelMap(
        kind="palette",
        source_dtype=header.dtype.name,
        stored_dtype=stored,
        palette_entries=entries,
        palette_gray=gray,
    )
    return pm, lut, lut.shape[1], not gray
