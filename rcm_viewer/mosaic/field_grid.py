"""Estimate a mosaic's pixel size from its field grid, when the file carries none.

A VivaBlock is stitched from square fields of known physical size (0.5 x 0.5 mm on
VivaScope 1500/3000). Each field has its own gain, a vignetted (darker) border and a seam,
so the column means (and the row means) of the mosaic repeat with the field period.
Pixel size = field size / period.

Why two detectors, and why these: the tissue itself is regular too (cells, rete ridges and
nests repeat every ~70-110 µm) and in the column means it is far stronger than the
acquisition pattern, so a plain Fourier peak or an epoch fold of the whole profile locks on
the tissue as often as on the grid. What the tissue does not make is

1. a *comb of sharp steps*: at each field border the gain jumps and the seam dips within one
   or two pixels, for every row at once, so the first differences of the column means have
   a spike every period, far above the tissue's (``_comb``: best-phase mean of the spike
   profile on a comb of candidate period, as a z-score against the profile's own spread);
2. a *vignetting bowl of one shape*: after removing each field's own mean (its gain), every
   field is brighter in the middle than at its borders, by the same parabola
   (``_bowl``: share of the within-field variance one shared parabola explains, signed, so a
   dark-centred pattern counts against).

A period is accepted when x and y agree on it (square fields: one period): each axis must
show the comb, or the bowl together with a weaker comb. Multiples of the period hit the
same seams, so the shortest candidate whose comb is about as strong wins. Candidates are
limited to plausible RCM pixel sizes (``PLAUSIBLE_UM``) and to at least ``MIN_FIELDS``
fields across. The answer is a suggestion with a confidence and a human-readable basis
("cannot tell" when there is no grid, or a rival period is nearly as strong), never a
silent value: the reader confirms it (ui/pixel_size_dialog.py). Thresholds were set on
synthetic mosaics and no-grid images (benchmarks/bench_field_grid.py).

Works on any level (pass its downsample), so a pyramid's overview suffices; numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: VivaScope 1500/3000 field of view, µm.
DEFAULT_FIELD_UM = 500.0
#: Level-0 pixel sizes searched (µm/px): RCM devices are 0.5-1.0; a margin either side.
PLAUSIBLE_UM = (0.3, 2.0)
#: Fewer whole fields across than this and the period is not tested.
MIN_FIELDS = 2.5
MIN_PERIOD_PX = 12.0
#: Relative step of the period grid (the comb needs sub-pixel accuracy over all fields).
PERIOD_STEP = 0.001
#: Spikes are capped at this many times the median step.
SPIKE_CAP = 10.0
#: Comb z-score (weaker axis) that claims a grid on its own, and that supports the bowl.
COMB_ACCEPT = 7.0
COMB_SUPPORT = 4.5
COMB_HIGH = 9.0
#: Bowl score (weaker axis) that, with a supporting comb, claims a grid.
BOWL_ACCEPT = 0.15
#: Peaks of the comb evidence examined further. The bowl's weight in their ranking is 0:
#: tissue makes bowls at wrong periods often enough that it may only gate, not rank.
CANDIDATES = 16
BOWL_WEIGHT = 0.0
_DEBUG = False
#: A harmonic p/m replaces p when its comb excess is this far from 1/m toward p's.
HARMONIC_SHARE = 0.6
#: Where twice the period cannot be tested, the weaker of the odd and even comb teeth must
#: reach this share of the stronger (gain steps differ from seam to seam: keep it low).
TOOTH_BALANCE = 0.15
#: A rival period (not a simple ratio of the best) this strong relative makes "cannot tell".
RIVAL_RATIO = 0.85
#: x and y best periods must agree within this relative difference.
AGREEMENT = 0.02


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
    The masks are the number of pixels averaged (0 where too few): a step of the mean where
    that number changes says which pixels were averaged, not what the image shows.
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
        out += [profile.astype(np.float64), np.where(ok, count, 0)]
    return out[0], out[1], out[2], out[3]


@dataclass
class _Axis:
    """Comb evidence of one profile over the period grid."""

    z: np.ndarray  # comb z-score at the best phase (0 where too few fields)
    mean: np.ndarray  # comb mean (spike units) at the best phase
    phase: np.ndarray  # best phase, pixels: the border sits between phase and phase + 1
    usable: np.ndarray  # the axis holds MIN_FIELDS fields of this period
    base: float = 0.0  # mean of the spike profile: what a comb tooth off the seams reads
    spikes: np.ndarray | None = None  # the spike profile (median units), 0 where not usable


def _comb(y: np.ndarray, count: np.ndarray, periods: np.ndarray) -> _Axis:
    n = len(y)
    d = np.abs(np.diff(y))
    # steps where the averaged pixels change (the edge of a round or ragged scan) are not
    # seams; steps by fewer averaged pixels are noisier, so weigh them down
    full = max(float(count.max()), 1.0)
    good = (count[1:] > 0) & (count[:-1] > 0) & (np.abs(np.diff(count)) <= 0.002 * full + 1)
    d = d * np.sqrt(np.minimum(count[1:], count[:-1]) / full)
    empty = _Axis(
        np.zeros(len(periods)),
        np.zeros(len(periods)),
        np.zeros(len(periods)),
        np.zeros(len(periods), bool),
    )
    if good.sum() < 16:
        return empty
    d = np.where(good, d, 0.0)
    d = d / max(float(np.median(d[good])), 1e-9)
    # a seam is a moderate step on every tooth; one huge edge (of a round scan, a bubble)
    # must not carry a comb of two or three teeth on its own
    d = np.minimum(d, SPIKE_CAP)
    # a seam is a dip two or three pixels wide: its two flanks and a gain step fall within
    # +-1 px of the border; the period grid's drift over all fields stays under 1 px
    spikes = sliding_window_view(np.pad(d, 1), 3).max(axis=1)
    spikes = np.where(good, spikes, 0.0)
    idx = np.flatnonzero(good)
    first, last = int(idx[0]), int(idx[-1])
    mu, sd = float(spikes[good].mean()), float(spikes[good].std()) + 1e-9
    out = _Axis(
        empty.z.copy(), empty.mean.copy(), empty.phase.copy(), empty.usable.copy(), mu, spikes
    )
    span = last - first + 1
    for i, p in enumerate(periods):
        if span / p < MIN_FIELDS:
            continue
        phi = np.arange(0.0, p, 0.5)
        ks = np.arange(int(n / p) + 2)
        pos = np.rint(phi[:, None] + ks[None, :] * p).astype(np.int64)
        inside = (pos >= first) & (pos <= last)
        posc = np.clip(pos, 0, n - 2)
        hit = inside & good[posc]
        cnt = np.maximum(hit.sum(axis=1), 1)
        mean = np.where(hit, spikes[posc], 0.0).sum(axis=1) / cnt
        z = (mean - mu) / sd * np.sqrt(cnt)
        b = int(np.argmax(z))
        out.z[i], out.mean[i], out.phase[i], out.usable[i] = z[b], mean[b], phi[b], True
    return out


def _bowl(y: np.ndarray, count: np.ndarray, period: float, phases: int = 32) -> float:
    """Signed share of the within-field variance one shared vignetting parabola explains.

    Positive when fields are brighter in the middle than at their borders (vignetting),
    negative for the opposite; the phase is searched (``phases`` steps).
    """
    ok = count > 0
    x = np.flatnonzero(ok).astype(np.float64)
    yv = y[ok]
    if len(x) < 16 or (x[-1] - x[0] + 1) / period < MIN_FIELDS:
        return 0.0
    j = np.arange(phases)
    s = (x[None, :] - (period * j / phases)[:, None]) / period
    k = np.floor(s)
    t = ((s - k) - 0.5) ** 2
    nk = int(k.max()) + 2
    ids = (j[:, None] * nk + (k + 1).astype(np.int64)).ravel()
    size = phases * nk
    yy = np.broadcast_to(yv, s.shape).ravel()
    tt = t.ravel()

    def within(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        n = np.maximum(np.bincount(ids, minlength=size), 1)
        sa = np.bincount(ids, a, size)
        sb = np.bincount(ids, b, size)
        return (np.bincount(ids, a * b, size) - sa * sb / n).reshape(phases, nk).sum(axis=1)

    cyy, ctt, cyt = within(yy, yy), within(tt, tt), within(yy, tt)
    r = -cyt * np.abs(cyt) / np.maximum(ctt * cyy, 1e-30)
    return float(r.max())


def _combined(ax: _Axis, ay: _Axis) -> np.ndarray:
    """Comb evidence both axes share: the weaker axis's z (one usable axis: discounted)."""
    both = ax.usable & ay.usable
    single = np.where(ax.usable, ax.z, ay.z) * 0.6
    return np.where(both, np.minimum(ax.z, ay.z), single)


def _cannot(template: PixelSizeEstimate, why: str) -> PixelSizeEstimate:
    return PixelSizeEstimate(
        None,
        0.0,
        "cannot tell",
        f"Cannot tell the pixel size from the image: {why}.",
        None,
        template.field_um,
    )


def estimate_pixel_size(
    image: np.ndarray, *, downsample: float = 1.0, field_um: float = DEFAULT_FIELD_UM
) -> PixelSizeEstimate:
    """Estimate the level-0 pixel size of a mosaic from one of its levels.

    ``image`` is the level's pixels (gray or RGB), ``downsample`` its level-0 pixels per
    pixel, ``field_um`` the side of one stitched field.
    """
    cannot = PixelSizeEstimate(None, 0.0, "cannot tell", "", None, field_um)
    a = np.asarray(image)
    if a.ndim < 2 or min(a.shape[:2]) < MIN_FIELDS * MIN_PERIOD_PX:
        return _cannot(cannot, "the image is too small to show a field grid")
    col, col_n, row, row_n = _profiles(a)
    length = max(len(col), len(row))
    lo = max(MIN_PERIOD_PX, field_um / (PLAUSIBLE_UM[1] * downsample))
    hi = min(length / MIN_FIELDS, field_um / (PLAUSIBLE_UM[0] * downsample))
    if hi <= lo * 1.01:
        return _cannot(
            cannot,
            f"the image is too small to hold {MIN_FIELDS:g} fields of "
            f"{field_um:g} µm at a plausible RCM pixel size "
            f"({PLAUSIBLE_UM[0]:g}-{PLAUSIBLE_UM[1]:g} µm/px)",
        )
    periods = np.exp(np.arange(math.log(lo), math.log(hi), PERIOD_STEP))
    ax, ay = _comb(col, col_n, periods), _comb(row, row_n, periods)
    comb = _combined(ax, ay)
    if not comb.any():
        return _cannot(cannot, "no repeating field grid shows in the column and row means")
    # candidates: the strongest distinct peaks of the comb (with few fields a peak is a
    # plateau: keep one period per +-1.5 %)
    peaks: list[int] = []
    for i in np.argsort(-comb, kind="stable"):
        if comb[i] <= 0 or len(peaks) >= CANDIDATES:
            break
        if all(abs(math.log(periods[i] / periods[j])) > 0.015 for j in peaks):
            peaks.append(int(i))
    scored = []
    for i in peaks:
        p = float(periods[i])
        bowl = min(
            _bowl(col, col_n, p) if ax.usable[i] else 1.0,
            _bowl(row, row_n, p) if ay.usable[i] else 1.0,
        )
        ok = comb[i] >= COMB_ACCEPT or (comb[i] >= COMB_SUPPORT and bowl >= BOWL_ACCEPT)
        scored.append((ok, float(comb[i]) + BOWL_WEIGHT * max(bowl, 0.0), i, bowl))
    if _DEBUG:
        print([(round(float(periods[i]), 1), round(v, 1), round(b, 2), o) for o, v, i, b in scored])
    scored.sort(key=lambda s: (not s[0], -s[1]))
    accepted, strength, best, bowl = scored[0]
    if not accepted:
        return _cannot(
            cannot,
            "no repeating field grid shows in the column and row means "
            f"(seam comb {comb[best]:.1f}, needs {COMB_ACCEPT:g}; "
            f"vignetting {bowl:.2f})",
        )
    best = _fundamental(periods, comb, ax, ay, best)
    period = float(periods[best])
    # (below ~3.5 fields at p, 2p would be under two fields: not a mosaic to worry about)
    if 3.5 <= length / period < 2 * MIN_FIELDS and not all(
        _every_tooth(axis, best, period) for axis in (ax, ay) if axis.usable[best]
    ):
        return _cannot(
            cannot,
            "every other seam of the repeating pattern is weak, so the "
            "fields may be twice as large; too few fields to tell",
        )
    # a rival is accepted too, is no simple ratio of the period, and lies outside the
    # period's own peak (K fields across resolve the period to about 1/(2K))
    width = 0.5 * period / length
    rival = max(
        (
            s[1]
            for s in scored
            if s[0]
            and not _related(periods[s[2]], period)
            and abs(math.log(periods[s[2]] / period)) > width
        ),
        default=0.0,
    )
    strength = max(strength, float(comb[best]) + BOWL_WEIGHT * max(bowl, 0.0))
    if rival >= RIVAL_RATIO * strength:
        return _cannot(
            cannot,
            "two field periods of similar strength compete (tissue "
            f"structure as regular as the field grid: {strength:.1f} vs "
            f"{rival:.1f})",
        )
    # do x and y, each on its own, peak at this period? (both must already show it)
    window = np.abs(np.log(periods / period)) < 0.05
    agree = True
    if ax.usable[best] and ay.usable[best]:
        px = float(periods[window][np.argmax(ax.z[window])])
        py = float(periods[window][np.argmax(ay.z[window])])
        agree = abs(px - py) / period <= AGREEMENT
    period_l0 = period * downsample
    pixel = field_um / period_l0
    z = float(comb[best])
    confidence = float(
        np.clip(
            (z - COMB_SUPPORT) / (2 * (COMB_HIGH - COMB_SUPPORT))
            + 0.5 * min(max(bowl, 0.0) / (2 * BOWL_ACCEPT), 1.0),
            0.0,
            1.0,
        )
    )
    high = (
        z >= COMB_HIGH and agree and ax.usable[best] and ay.usable[best] and rival < 0.6 * strength
    )
    n_fields = length / period
    cues = []
    if z >= COMB_SUPPORT:
        cues.append("seams and brightness steps between fields")
    if bowl >= BOWL_ACCEPT:
        cues.append("each field darker toward its borders")
    basis = (
        f"Fields of {field_um:g} µm appear to repeat every {period_l0:.1f} pixels "
        f"(about {n_fields:.1f} fields across; {' and '.join(cues)} in the column and row "
        f"means), so one pixel is about {pixel:.3g} µm. Check that the drawn grid follows "
        f"the seams."
    )
    offset = tuple(
        float((axis.phase[best] + 1.0) % period) * downsample if axis.usable[best] else 0.0
        for axis in (ax, ay)
    )
    return PixelSizeEstimate(
        pixel,
        round(confidence, 3),
        "high" if high else "medium",
        basis,
        period_l0,
        field_um,
        (offset[0], offset[1]),
    )


def _fundamental(periods: np.ndarray, comb: np.ndarray, ax: _Axis, ay: _Axis, best: int) -> int:
    """The shortest period p/m whose comb teeth all stand on seams.

    Multiples of the field period hit the same seams with fewer teeth, so they win on
    nothing; but a comb at p/m when p is the field period puts only one tooth in m on a
    seam, so its excess over the spike baseline is ~1/m of p's: p/m replaces p only when
    its excess is well above that (``HARMONIC_SHARE`` of the way from 1/m to 1), on both
    axes.
    """
    for m in (4, 3, 2):
        target = periods[best] / m
        near = np.abs(np.log(periods / target)) < 0.006
        if not near.any():
            continue
        j = int(np.flatnonzero(near)[np.argmax(comb[near])])
        share = 1.0 / m + HARMONIC_SHARE * (1.0 - 1.0 / m)
        ok = comb[j] >= COMB_SUPPORT
        for axis in (ax, ay):
            if axis.usable[best]:
                excess = axis.mean[best] - axis.base
                ok = ok and bool(axis.usable[j]) and axis.mean[j] - axis.base >= share * excess
        if ok:
            return j
    return best


def _every_tooth(axis: _Axis, i: int, period: float) -> bool:
    """Whether the odd and the even teeth of the comb both stand on seams.

    With about two fields across, twice the field period cannot be tested (too few
    fields), and a comb at half the field period still finds every true seam on its even
    (or odd) teeth; the other half of its teeth then read no more than the baseline.
    """
    if axis.spikes is None:
        return True
    n = len(axis.spikes)
    pos = np.rint(axis.phase[i] + np.arange(int(n / period) + 2) * period).astype(np.int64)
    pos = pos[(pos >= 0) & (pos < n)]
    vals = axis.spikes[pos]
    even, odd = vals[0::2] - axis.base, vals[1::2] - axis.base
    if len(even) == 0 or len(odd) == 0:
        return True
    low, high = sorted((float(even.mean()), float(odd.mean())))
    return high <= 0 or low >= TOOTH_BALANCE * high


def _related(p: float, period: float) -> bool:
    """Whether ``p`` is a small ratio (k/m, k, m <= 4) of ``period``."""
    ratio = p / period
    return any(abs(ratio * m / k - 1) < 0.03 for k in (1, 2, 3, 4) for m in (1, 2, 3, 4))


def estimate_mosaic_pixel_size(
    mosaic: object, *, field_um: float = DEFAULT_FIELD_UM, max_side: int = 4096
) -> PixelSizeEstimate:
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
