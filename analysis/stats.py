"""The statistics every evaluator and table uses, in one place.

* :data:`Z95`: the two-sided 95% normal quantile (1.959963984540054, "1.96").
* :func:`wilson_interval`: Wilson score interval for a binomial proportion.
* :func:`mcnemar`: McNemar's exact test of two classifiers on the same trials.
* :func:`mean_se` / :func:`normal_interval`: the mean over units (classes, runs, episodes) with its
  standard error sd / sqrt(n) (sd with ddof 1) and the interval mean ± 1.96 SE.

The one rule for too few units: an interval (or standard error, or spread) computed from fewer
than :data:`MIN_UNITS` = 2 units is *undefined*. It is reported as null (``None``) with a reason
(:func:`too_few_units`, e.g. ``"ci95": null, "ci95_reason": "n < 2: ..."``), never as a
zero-width interval or as NaN; tables show "–" in its place (``paper_figures.tables.fmt_ci``).

Imports go downwards: this module needs only the standard library and numpy, so vhe-free
callers (``paper_figures``) can use it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Z95",
    "MIN_UNITS",
    "too_few_units",
    "mean_se",
    "normal_interval",
    "wilson_interval",
    "mcnemar",
    "binomial_above",
]

#: the 97.5% quantile of N(0, 1): a two-sided 95% interval is ± Z95 standard errors
Z95 = 1.959963984540054
#: fewest units an interval is computed from
MIN_UNITS = 2


def too_few_units(n: int, unit: str = "unit") -> str | None:
    """The reason an interval from ``n`` units is undefined, or None when it is defined."""
    if n < MIN_UNITS:
        return f"n < {MIN_UNITS}: an interval needs at least {MIN_UNITS} {unit}s, got {n}"
    return None


def mean_se(values) -> tuple[float | None, float | None]:
    """(mean, standard error sd / sqrt(n), sd with ddof 1) of per-unit values; the SE is None
    with fewer than 2 units (the mean is None with none). Non-finite values propagate as NaN."""
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        return None, None
    mean = float(a.mean())
    if too_few_units(a.size):
        return mean, None
    return mean, float(a.std(ddof=1) / math.sqrt(a.size))


def normal_interval(
    mean: float | None, se: float | None, z: float = Z95, lo: float | None = None, hi: float | None = None
) -> list[float] | None:
    """[mean - z se, mean + z se] (clipped to [lo, hi] where given), or None when either is None."""
    if mean is None or se is None:
        return None
    low, high = mean - z * se, mean + z * se
    if lo is not None:
        low = max(lo, low)
    if hi is not None:
        high = min(hi, high)
    return [low, high]


def wilson_interval(successes: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval [low, high] for ``successes`` out of ``n`` trials; None when fewer
    than 2 trials (the rule of :func:`too_few_units`)."""
    if too_few_units(n):
        return None
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def mcnemar(a: Sequence[int], b: Sequence[int]) -> dict:
    """McNemar's exact test of two classifiers on the same trials (1 = correct).

    Returns n01 (a wrong, b right), n10 (a right, b wrong) and the two-sided p-value
    min(1, 2 P[Binomial(n01 + n10, 1/2) <= min(n01, n10)]) (1 with no discordant trial).
    """
    if len(a) != len(b):
        raise ValueError(f"McNemar needs the same trials: {len(a)} vs {len(b)} outcomes")
    n10 = sum(1 for x, y in zip(a, b) if x and not y)
    n01 = sum(1 for x, y in zip(a, b) if y and not x)
    n, k = n01 + n10, min(n01, n10)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    return {"n01": n01, "n10": n10, "p_value": p}


def binomial_above(successes: int, n: int, chance: float) -> float:
    """One-sided exact binomial test of an accuracy against chance: P[Binomial(n, chance) >= successes],
    the p-value of "above chance" (1.0 when n = 0)."""
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n], got {successes} of {n}")
    if not 0.0 <= chance <= 1.0:
        raise ValueError(f"chance must lie in [0, 1], got {chance}")
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) * chance**i * (1 - chance) ** (n - i) for i in range(successes, n + 1)))
