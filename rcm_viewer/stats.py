"""Small statistics shared by rooms that must not import each other (numpy-free, stdlib only).

``training`` (test-split metrics) and ``cases`` (a reader's own sensitivity and
specificity against histology) both report proportions with 95 % Wilson score
intervals; the formula lives here once so both say the same thing about the same
counts. Wilson rather than the normal approximation: it stays inside 0-1 and
behaves at the small counts a clinic has (a handful of melanomas).
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (nan, nan) when n is 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)
