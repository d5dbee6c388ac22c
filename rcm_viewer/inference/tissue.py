"""Where the tissue is: a cheap mask from a low-resolution level (numpy only).

A mosaic holds more than tissue: the black unscanned margin where it is not rectangular,
blank fields, saturated glare. Tiles made of those would be classified as confidently as
tissue and drag the mosaic's result, so they are skipped. The mask is computed at about
8 µm/px from the smallest pyramid level that is still that sharp (a few hundred
kilobytes for a 16,000 px mosaic), so it costs well under a second.

A mask pixel is tissue when it is

- not black: its mean is at least ``BLACK_FRACTION`` of the robust white point,
- not saturated: its mean is below ``SATURATED_FRACTION`` of the pixel type's full scale,
- not blank: the local standard deviation over ``TEXTURE_WINDOW`` mask pixels (~40 µm)
  is at least ``TEXTURE_FRACTION`` of the white point (tissue always has texture at that
  scale; an empty or uniform field has none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcm_viewer.mosaic import Mosaic

MASK_PIXEL_UM = 8.0
#: At most this many mask pixels (a 46,000 px mosaic at 0.5 µm/px needs 8.3 M at 8 µm/px):
#: a coarser mask for bigger claims keeps the mask's float64 work arrays near 100 MB
#: whatever the header says (issue 16: a sparse 100,000 px TIFF took 8.8 GB here).
MAX_MASK_PIXELS = 12_000_000
BLACK_FRACTION = 0.02
SATURATED_FRACTION = 0.98
TEXTURE_FRACTION = 0.01
TEXTURE_WINDOW = 5
_BAND_BYTES = 32 * 1024**2
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def full_scale(dtype: str | np.dtype) -> float:
    """Largest value of the pixel type (255 or 65535)."""
    dt = np.dtype(dtype)
    return float(np.iinfo(dt).max) if dt.kind in "ui" else 1.0


def white_point(mosaic: Mosaic, rule: str) -> float:
    """The raw value that maps to 1.0 for the model (see ``manifest.INTENSITY_RULES``)."""
    if rule == "full_scale":
        return full_scale(mosaic.info.dtype)
    if rule == "robust_white":
        return max(float(mosaic.display_range()[1]), 1.0)
    raise ValueError(f"unknown intensity rule {rule!r}")


def to_gray(region: np.ndarray) -> tuple[np.ndarray, bool]:
    """Float32 grayscale of a region; True when colour had to be converted.

    RGB(A) becomes luma (ITU-R 601 weights): RCM is grayscale, a colour file is an export
    (screenshot, JPEG with a colour profile); gray + alpha keeps the gray.
    """
    if region.ndim == 2:
        return region.astype(np.float32, copy=False), False
    if region.shape[2] >= 3:
        return region[:, :, :3].astype(np.float32) @ _LUMA, True
    return region[:, :, 0].astype(np.float32), False


def _box_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over a ``window`` x ``window`` neighbourhood (edges replicated), by cumsum."""
    pad = window // 2
    padded = np.pad(values.astype(np.float64), pad, mode="edge")
    c = np.cumsum(np.cumsum(padded, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    w = window
    total = c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]
    return total / (window * window)


@dataclass(frozen=True, eq=False)
class TissueMask:
    """Boolean tissue mask; one mask pixel is ``downsample`` level-0 pixels wide."""

    mask: np.ndarray
    downsample: float

    def __post_init__(self) -> None:
        integral = np.pad(
            np.cumsum(np.cumsum(self.mask, axis=0, dtype=np.int64), axis=1), ((1, 0), (1, 0))
        )
        object.__setattr__(self, "_integral", integral)

    @property
    def any(self) -> bool:
        return bool(self.mask.any())

    def fraction(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """Tissue fraction of a level-0 rectangle (outside the mosaic counts as no tissue)."""
        d = self.downsample
        h, w = self.mask.shape
        ix0, iy0 = math.floor(x0 / d), math.floor(y0 / d)
        ix1, iy1 = max(math.ceil(x1 / d), ix0 + 1), max(math.ceil(y1 / d), iy0 + 1)
        area = (ix1 - ix0) * (iy1 - iy0)
        cx0, cy0 = min(max(ix0, 0), w), min(max(iy0, 0), h)
        cx1, cy1 = min(max(ix1, 0), w), min(max(iy1, 0), h)
        integral: np.ndarray = self._integral  # type: ignore[attr-defined]
        inside = integral[cy1, cx1] - integral[cy0, cx1] - integral[cy1, cx0] + integral[cy0, cx0]
        return float(inside) / area


def low_resolution(mosaic: Mosaic, target_downsample: float) -> tuple[np.ndarray, float, bool]:
    """The mosaic as float32 gray at about ``target_downsample``, read band by band.

    Returns (image, actual downsample, colour converted). Uses the smallest level at least
    that sharp and block-averages the rest, so a flat file without a pyramid is still read
    once in bounded memory.
    """
    level = mosaic.best_level(max(target_downsample, 1.0))
    info = mosaic.info.levels[level]
    k = max(1, int(target_downsample / info.downsample + 1e-6))
    itemsize = np.dtype(mosaic.info.dtype).itemsize * mosaic.info.channels
    rows = max(k, (_BAND_BYTES // max(info.width * itemsize, 1)) // k * k)
    out_w, out_h = math.ceil(info.width / k), math.ceil(info.height / k)
    out = np.zeros((out_h, out_w), dtype=np.float32)
    converted = False
    for y in range(0, info.height, rows):
        band_h = min(rows, info.height - y)
        region = mosaic.read_region(level, 0, y, info.width, band_h)
        if not region.any():  # unscanned (or sparse) rows: zeros already, skip the maths
            continue
        gray, was_colour = to_gray(region)
        converted |= was_colour
        if k > 1:
            pad_h, pad_w = (-band_h) % k, (-info.width) % k
            if pad_h or pad_w:
                gray = np.pad(gray, ((0, pad_h), (0, pad_w)), mode="edge")
            gray = gray.reshape(gray.shape[0] // k, k, gray.shape[1] // k, k).mean(axis=(1, 3))
        out[y // k : y // k + gray.shape[0]] = gray
    return out, info.downsample * k, converted


def tissue_mask(mosaic: Mosaic, pixel_size_um: float, white: float) -> TissueMask:
    """The tissue mask of a mosaic at about ``MASK_PIXEL_UM`` per mask pixel."""
    area = float(mosaic.info.width) * float(mosaic.info.height)
    target = max(MASK_PIXEL_UM / pixel_size_um, math.sqrt(area / MAX_MASK_PIXELS))
    image, downsample, _ = low_resolution(mosaic, target)
    mean = _box_mean(image, TEXTURE_WINDOW)
    square = _box_mean(image.astype(np.float64) ** 2, TEXTURE_WINDOW)
    local_std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    tissue = (
        (image >= BLACK_FRACTION * white)
        & (image < SATURATED_FRACTION * full_scale(mosaic.info.dtype))
        & (local_std >= TEXTURE_FRACTION * white)
    )
    return TissueMask(tissue, downsample)
