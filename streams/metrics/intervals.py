"""95 % confidence intervals from additive counts (pure helpers for scores and alerts).

* Proportions use the **Wilson score interval** (no continuity correction). Unlike the Wald
  interval ``p ± 1.96·sqrt(p(1-p)/n)`` it never leaves [0, 1], is not degenerate at p = 0 or 1
  (a window with zero detractors still gets a non-zero upper bound), and has close to nominal
  coverage at the small n (30..100) that short windows and small dimension members produce.
* Means use the normal interval ``mean ± 1.96·s/sqrt(n)`` with the sample standard deviation
  rebuilt from ``(n, sum, sum_sq)``; the variance is clamped at 0 because cancellation in
  ``sum_sq - sum²/n`` can leave a tiny negative number when all answers are equal. The interval
  is clipped to the answer scale (a mean of 1..5 answers cannot exceed 5).
* Quantiles use the distribution-free order-statistic interval: the ranks
  ``n·q ∓ 1.96·sqrt(n·q·(1-q))`` (normal approximation to the binomial) rounded outwards.
"""

from __future__ import annotations

import math

Z95 = 1.96


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson interval of the proportion ``k/n``; None when undefined (n <= 0, k outside 0..n)."""
    if n <= 0 or not 0 <= k <= n:
        return None
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (max(0.0, center - half), min(1.0, center + half))


def sample_sd(total: float, total_sq: float, n: int) -> float | None:
    """Sample standard deviation from ``n``, ``sum`` and ``sum of squares``; None when n < 2."""
    if n < 2:
        return None
    var = (total_sq - total * total / n) / (n - 1)
    return math.sqrt(max(0.0, var))


def mean_ci(
    total: float, total_sq: float, n: int, lo: float, hi: float, z: float = Z95
) -> tuple[float, float] | None:
    """``mean ± z·s/sqrt(n)`` clipped to ``[lo, hi]``; None when n < 2 (no sample sd)."""
    sd = sample_sd(total, total_sq, n)
    if sd is None:
        return None
    mean = total / n
    half = z * sd / math.sqrt(n)
    return (max(lo, mean - half), min(hi, mean + half))


def nearest_rank(q: float, n: int) -> int:
    """1-based nearest rank ``ceil(q·n)`` clamped to 1..n.

    Rounded to 9 decimals first so that e.g. 0.7·10 = 7.000000000000001 gives rank 7, not 8.
    """
    return min(n, max(1, math.ceil(round(q * n, 9))))


def quantile_rank_interval(q: float, n: int, z: float = Z95) -> tuple[int, int]:
    """1-based ranks ``(r, s)`` whose order statistics bound the q-quantile with ~95 %."""
    spread = z * math.sqrt(n * q * (1 - q))
    low = math.floor(round(n * q - spread, 9))
    high = math.ceil(round(n * q + spread, 9)) + 1
    return (min(n, max(1, low)), min(n, max(1, high)))
