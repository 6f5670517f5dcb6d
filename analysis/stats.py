"""Seed statistics: mean, sample standard deviation and a t-distribution confidence interval.

The t quantile comes from scipy, which scikit-learn (a hetero dependency) already requires.
With fewer than two values there is no spread to estimate: std and the interval are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

LEVEL = 0.95


def t_quantile(df: int, level: float = LEVEL) -> float:
    """Two-sided critical value: P(|T| <= q) = level for T ~ t(df); NaN when df < 1."""
    if df < 1:
        return float("nan")
    return float(student_t.ppf(0.5 + level / 2, df))


def ci_half_width(std: float, n: int, level: float = LEVEL) -> float:
    """Half the width of the t interval of a mean of ``n`` values with sample std ``std``."""
    if n < 2 or not math.isfinite(std):
        return float("nan")
    return t_quantile(n - 1, level) * std / math.sqrt(n)


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values with its sample std and ``level`` confidence interval."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    level: float = LEVEL

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def decided(self) -> bool:
        """True when the interval exists (two or more values)."""
        return math.isfinite(self.low) and math.isfinite(self.high)


def estimate(values: Iterable[float], level: float = LEVEL) -> Estimate:
    """Mean, sample std (ddof 1) and t interval of the finite values given."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(data)
    mean = float(data.mean()) if n else float("nan")
    std = float(data.std(ddof=1)) if n > 1 else float("nan")
    half = ci_half_width(std, n, level)
    return Estimate(mean, std, n, mean - half, mean + half, level)
