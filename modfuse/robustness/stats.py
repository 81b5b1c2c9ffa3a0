"""Small statistics of accuracies (no torch): confidence intervals."""

from __future__ import annotations

import math


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy ``correct / n``.

    Examples:
        >>> lo, hi = wilson_interval(90, 100)
        >>> round(lo, 3), round(hi, 3)
        (0.826, 0.945)
    """
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
