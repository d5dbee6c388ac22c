"""Estimate a mosaic's pixel size from its field grid, when the file carries none.

A VivaBlock is stitched from square fields of known physical size (0.5 x 0.5 mm on
VivaScope 1500/3000). Each field has its own gain, a vignetted (darker) border and a seam,
so the column means (and the row means) of the mosaic repeat with the field period.
Pixel size = field size / period.

How the period is found (epoch folding, a standard period search for non-sinusoidal
periodic signals): each profile is detrended and, for every candidate period on a fine
logarithmic grid, folded modulo the period into a fixed number of phase bins; the share of
the profile's variance the bin means explain is the candidate's score. Seams and
vignetting make a sharp, non-sinusoidal pattern, which folding captures at its fundamental
without the harmonic ambiguity of a single Fourier peak. x and y are searched together
(square fields: one period), and their separate best periods must agree.

Folding a profile that covers only K periods explains about 1/K of its variance by chance,
so a candidate is scored by its excess over that null level; it needs at least
``MIN_FIELDS`` whole fields. The answer is a suggestion with a confidence and a
human-readable basis ("cannot tell" when there is no grid), never a silent value: the
reader confirms it (ui/pixel_size_dialog.py).

Works on any level (pass its downsample), so a pyramid's overview suffices; numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcm_viewer.mosaic.model import MAX_PIXEL_SIZE_UM, MIN_PIXEL_SIZE_UM

#: VivaScope 1500/3000 field of view, µm.
DEFAULT_FIELD_UM = 500.0
MIN_FIELDS = 3.0
PHASE_BINS = 24
MIN_PERIOD_PX = 24.0
#: Combined excess score needed to claim a grid at all, and for "high" confidence.
MIN_EXCESS = 0.08
HIGH_EXCESS = 0.2
#: A peak unrelated to the best one this strong (relative) makes the answer "cannot tell".
RIVAL_RATIO = 0.8
#: x and y best periods must agree within this relative difference.
AGREEMENT = 0.04


@dataclass(frozen=True)
class PixelSizeEstimate:
    """What the image says about its pixel size; ``pixel_size_um`` None = cannot tell."""

    pixel_size_um: float | None
    #: 0-1, rough: how clearly the grid stands out of the profile noise.
    confidence: float
    #: "high", "medium" or "cannot tell".
    level: str
    #: One or two sentences a reader can check ("fields of 500 µm repeat every ...").
    basis: str
    #: Field period in level-0 pixels (None = no grid found).
    period_px: float | None = None
    field_um: float = DEFAULT_FIELD_UM
    #: Phase of the grid: level-0 x and y of a field corner (for drawing the grid).
    offset_px: tuple[float, float] = (0.0, 0.0)

    @property
    def found(self) -> bool:
        return self.pixel_size_um is not None


def _profiles(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column and row means of log brightness over non-black (scanned) pixels.

    Log: a field's gain and vignetting multiply the tissue, so they add in the log and
    their periodic pattern survives the averaging whatever the tissue's brightness.
    """
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    scale = float(np.percentile(a, 99.5)) or 1.0
    a = a / scale
    valid = a > 0.01
    log = np.log(np.maximum(a, 0.01) + 0.02)
    out = []
    for axis in (0, 1):  # axis 0 -> one value per column; 1 -> per row
        count = valid.sum(axis=axis)
        total = np.where(valid, log, 0.0).sum(axis=axis)
        ok = count >= max(4, 0.05 * a.shape[axis])
        profile = np.divide(total, count, out=np.zeros_like(total), where=ok)
        out += [profile.astype(np.float64), ok]
    return out[0], out[1], out[2], out[3]


def _fold_scores(y: np.ndarray, ok: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Explained-variance excess over the chance level, for each candidate period.

    For each period ``p`` the profile is first high-passed by subtracting its moving mean
    over exactly ``p``: that leaves a ``p``-periodic pattern untouched and removes the
    tissue's variation on scales longer than one field.
    """
    n = len(y)
    idx = np.arange(n, dtype=np.float64)
    w = ok.astype(np.float64)
    cy = np.concatenate([[0.0], np.cumsum(y * w)])
    cw = np.concatenate([[0.0], np.cumsum(w)])
    scores = np.zeros(len(periods))
    for i, p in enumerate(periods):
        half = p / 2.0
        lo = np.clip(np.round(idx - half).astype(np.int64), 0, n)
        hi = np.clip(np.round(idx + half).astype(np.int64), 0, n)
        full = (idx - half >= 0) & (idx + half <= n) & ok
        weight = cw[hi] - cw[lo]
        good = full & (weight > 0.8 * p)
        if good.sum() < 3 * PHASE_BINS:
            continue
        hp = y[good] - (cy[hi] - cy[lo])[good] / weight[good]
        hp = hp - hp.mean()
        total = float((hp * hp).sum())
        if total <= 0:
            continue
        x = idx[good]
        phase = np.floor((x / p % 1.0) * PHASE_BINS).astype(np.int64)
        counts = np.bincount(phase, minlength=PHASE_BINS)
        sums = np.bincount(phase, weights=hp, minlength=PHASE_BINS)
        explained = float((sums[counts > 0] ** 2 / counts[counts > 0]).sum()) / total
        covered = (x[-1] - x[0] + 1) / p
        null = min(0.99, PHASE_BINS / len(hp) + 1.0 / covered)
        scores[i] = (explained - null) / (1.0 - null)
    return scores


def _phase(y: np.ndarray, ok: np.ndarray, period: float) -> float:
    """Offset (pixels) of the darkest phase bin: the vignetted seams between fields."""
    x = np.nonzero(ok)[0].astype(np.float64)
    bins = 48
    phase = np.floor((x / period % 1.0) * bins).astype(np.int64)
    counts = np.bincount(phase, minlength=bins)
    sums = np.bincount(phase, weights=y[ok], minlength=bins)
    means = np.divide(sums, counts, out=np.full(bins, np.inf), where=counts > 0)
    return (int(np.argmin(means)) + 0.5) / bins * period


def estimate_pixel_size(image: np.ndarray, *, downsample: float = 1.0,
                        field_um: float = DEFAULT_FIELD_UM) -> PixelSizeEstimate:
    """Estimate the level-0 pixel size of a mosaic from one of its levels.

    ``image`` is the level's pixels (gray or RGB), ``downsample`` its level-0 pixels per
    pixel, ``field_um`` the side of one stitched field.
    """
    cannot = PixelSizeEstimate(None, 0.0, "cannot tell", "", None, field_um)
    a = np.asarray(image)
    if a.ndim < 2 or min(a.shape[:2]) < 3 * MIN_PERIOD_PX:
        return _cannot(cannot, "the image is too small to show a field grid")
    col, col_ok, row, row_ok = _profiles(a)
    length = max(len(col), len(row))
    lo = max(MIN_PERIOD_PX, field_um / (MAX_PIXEL_SIZE_UM * downsample))
    hi = min(length / MIN_FIELDS, field_um / (MIN_PIXEL_SIZE_UM * downsample))
    if hi <= lo * 1.05:
        return _cannot(cannot, f"the image is too small to hold {MIN_FIELDS:g} fields of "
                               f"{field_um:g} µm at any plausible pixel size")
    yc, yr = col, row

    def search(periods: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sc = _fold_scores(yc, col_ok, periods)
        sr = _fold_scores(yr, row_ok, periods)
        both = sc.any() and sr.any()
        return sc, sr, (np.minimum(sc, sr) if both else np.maximum(sc, sr) * 0.5)

    # coarse 1 % grid, then 0.1 % around the best few peaks
    coarse = np.exp(np.arange(math.log(lo), math.log(hi), 0.01))
    _, _, coarse_scores = search(coarse)
    fine_list = [coarse]
    for i in np.argsort(coarse_scores)[-4:]:
        fine_list.append(coarse[i] * np.exp(np.arange(-0.012, 0.0121, 0.001)))
    periods = np.unique(np.concatenate(fine_list))
    periods = periods[(periods >= lo) & (periods <= hi)]
    sc, sr, combined = search(periods)
    # the fundamental, not a multiple: the shortest period nearly as good as the best
    best = int(np.argmax(combined))
    strength = float(combined[best])
    for k in (4, 3, 2):
        target = periods[best] / k
        if target < lo:
            continue
        near = np.abs(np.log(periods / target)) < 0.02
        if near.any() and combined[near].max() >= 0.8 * strength:
            best = int(np.flatnonzero(near)[np.argmax(combined[near])])
            strength = float(combined[best])
            break
    period = float(periods[best])
    rival = _rival(coarse, coarse_scores, period)
    if strength >= MIN_EXCESS and rival >= RIVAL_RATIO * strength:
        return _cannot(cannot, "several repeating patterns of similar strength compete "
                               f"(tissue structure as regular as the field grid: best "
                               f"{strength:.2f}, next {rival:.2f})")
    if strength < MIN_EXCESS:
        return _cannot(cannot, "no repeating field grid shows in the column and row "
                               f"brightness (score {strength:.2f}, needs {MIN_EXCESS:g})")
    # do x and y agree on their own?
    window = np.abs(np.log(periods / period)) < 0.15
    px = float(periods[window][np.argmax(sc[window])]) if sc.any() else period
    py = float(periods[window][np.argmax(sr[window])]) if sr.any() else period
    agree = abs(px - py) / period <= AGREEMENT
    period_l0 = period * downsample
    pixel = field_um / period_l0
    if not MIN_PIXEL_SIZE_UM <= pixel <= MAX_PIXEL_SIZE_UM:
        return _cannot(cannot, "the repeating pattern does not fit a plausible pixel size")
    confidence = float(np.clip(strength / (2 * HIGH_EXCESS), 0.0, 1.0)) * (1.0 if agree else
                                                                           0.5)
    level = "high" if strength >= HIGH_EXCESS and agree else "medium"
    n_fields = length / period
    basis = (
        f"Fields of {field_um:g} µm appear to repeat every {period_l0:.1f} pixels "
        f"(about {n_fields:.1f} fields across; seams and per-field brightness in the column "
        f"and row means{'' if agree else ', x and y disagree slightly'}), so one pixel is "
        f"about {pixel:.3g} µm. Check that the drawn grid follows the seams."
    )
    offset = (_phase(yc, col_ok, period) * downsample, _phase(yr, row_ok, period) * downsample)
    return PixelSizeEstimate(pixel, round(confidence, 3), level, basis, period_l0, field_um,
                             offset)


def _rival(periods: np.ndarray, scores: np.ndarray, period: float) -> float:
    """Best local peak whose period is not a small ratio (k/m, k, m <= 4) of ``period``."""
    best = 0.0
    for i in range(1, len(scores) - 1):
        if not (scores[i] >= scores[i - 1] and scores[i] >= scores[i + 1]):
            continue
        ratio = periods[i] / period
        related = any(abs(ratio * m / k - 1) < 0.04 for k in (1, 2, 3, 4)
                      for m in (1, 2, 3, 4))
        if not related:
            best = max(best, float(scores[i]))
    return best


def _cannot(template: PixelSizeEstimate, why: str) -> PixelSizeEstimate:
    return PixelSizeEstimate(None, 0.0, "cannot tell",
                             f"Cannot tell the pixel size from the image: {why}.", None,
                             template.field_um)


def estimate_mosaic_pixel_size(mosaic: object, *, field_um: float = DEFAULT_FIELD_UM,
                               max_side: int = 4096) -> PixelSizeEstimate:
    """``estimate_pixel_size`` on the sharpest level of a ``Mosaic`` at most ``max_side``."""
    info = mosaic.info  # type: ignore[attr-defined]
    level = len(info.levels) - 1
    for index, lv in enumerate(info.levels):
        if max(lv.width, lv.height) <= max_side:
            level = index
            break
    lv = info.levels[level]
    pixels = mosaic.read_region(level, 0, 0, lv.width, lv.height)  # type: ignore[attr-defined]
    return estimate_pixel_size(pixels, downsample=float(lv.downsample), field_um=field_um)
