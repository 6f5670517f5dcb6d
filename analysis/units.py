"""Human units for counts (FLOPs, parameters) and accuracy, shared by plots and tables."""

from __future__ import annotations

import math

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


def count_scale(largest: float) -> tuple[float, str]:
    """(divisor, prefix) that keeps ``largest`` between 1 and 1000 (e.g. 4.1e7 -> (1e6, "M"))."""
    if not math.isfinite(largest):
        return 1.0, ""
    for divisor, prefix in _PREFIXES:
        if abs(largest) >= divisor:
            return divisor, prefix
    return 1.0, ""


def format_count(value: float, digits: int = 3) -> str:
    """4.12e7 -> "41.2M"; NaN -> "nan"."""
    if not math.isfinite(value):
        return "nan"
    divisor, prefix = count_scale(value)
    return f"{value / divisor:.{digits}g}{prefix}"


def format_percent(fraction: float, digits: int = 2) -> str:
    """0.9123 -> "91.23%"."""
    return "nan" if not math.isfinite(fraction) else f"{100 * fraction:.{digits}f}%"
