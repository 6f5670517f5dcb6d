"""LW-DNA against the sweep's uniform-width arm (baselines at several width multipliers).

The uniform curve is accuracy vs cost of the baselines (averaged over seeds), made monotone by a
running maximum: "the best uniform network at this cost or less", which is what an LW-DNA has to
beat. Each LW-DNA point gets its accuracy gain at equal cost and the cost it saves at equal
accuracy, by linear interpolation on that curve, never extrapolated: outside the curve's range the
value is NaN with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.pareto import aggregate_seeds
from analysis.units import format_count, format_percent
from sweeps import keys

ACC = keys.METRIC_ACCURACY


@dataclass(frozen=True)
class Comparison:
    curve: pd.DataFrame   # the uniform arm: width_mult, <cost>, accuracy, ..., envelope
    points: pd.DataFrame  # the LW-DNA points with gain / saving columns and their reasons
    cost: str
    verdict: str


def uniform_curve(trials: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS) -> pd.DataFrame:
    """Baselines averaged over seeds, sorted by cost; ``envelope`` is the running max accuracy."""
    base = _usable(trials, keys.KIND_BASELINE, cost)
    if base.empty:
        return pd.DataFrame(columns=[keys.PARAM_WIDTH_MULT, cost, ACC, "envelope"])
    curve = aggregate_seeds(base).sort_values([cost, ACC], ignore_index=True)
    # equal cost twice (same width, other settings): keep the better one so costs increase
    curve = curve.drop_duplicates(cost, keep="last").reset_index(drop=True)
    curve["envelope"] = curve[ACC].cummax()
    return curve


# Relative slack at the ends of the uniform curve's cost range (the shrink tolerance).
EDGE_TOLERANCE = 0.005


def accuracy_at(curve: pd.DataFrame, value: float, *, cost: str = keys.METRIC_FLOPS
                ) -> tuple[float, str]:
    """(uniform-curve accuracy at this cost, "") or (NaN, why not)."""
    if len(curve) > 1:
        value = _snap_to_range(value, float(curve[cost].min()), float(curve[cost].max()))
    reason = _range_problem(curve, cost, value, f"baseline {_label(cost)} range", format_count)
    if reason:
        return float("nan"), reason
    return float(np.interp(value, curve[cost], curve["envelope"])), ""


def cost_at(curve: pd.DataFrame, accuracy: float, *, cost: str = keys.METRIC_FLOPS
            ) -> tuple[float, str]:
    """(least uniform cost that reaches this accuracy, "") or (NaN, why not)."""
    reason = _range_problem(curve.rename(columns={"envelope": "_acc"}), "_acc", accuracy,
                            "baseline accuracy range", format_percent)
    if reason:
        return float("nan"), reason
    xs, ys = curve[cost].to_numpy(float), curve["envelope"].to_numpy(float)
    i = int(np.argmax(ys >= accuracy))  # first point that reaches it (the envelope is sorted)
    if i == 0:
        return float(xs[0]), ""
    share = (accuracy - ys[i - 1]) / (ys[i] - ys[i - 1])  # ys[i-1] < accuracy <= ys[i]
    return float(xs[i - 1] + share * (xs[i] - xs[i - 1])), ""


def compare_to_uniform(trials: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS,
                       aggregate: bool = True) -> Comparison:
    """Every LW-DNA point (seed-averaged when ``aggregate``) against the uniform curve."""
    curve = uniform_curve(trials, cost=cost)
    points = _usable(trials, keys.KIND_LWDNA, cost)
    if aggregate and not points.empty:
        points = aggregate_seeds(points)
    points = points.sort_values(cost, ignore_index=True)
    gains = [accuracy_at(curve, c, cost=cost) for c in points[cost]]
    needs = [cost_at(curve, a, cost=cost) for a in points[ACC]]
    base_acc = np.array([g for g, _ in gains], dtype=float)
    base_cost = np.array([n for n, _ in needs], dtype=float)
    points[f"baseline_{ACC}_at_{cost}"] = base_acc
    points["accuracy_gain_points"] = 100 * (points[ACC].to_numpy(float) - base_acc)
    points["gain_reason"] = [r for _, r in gains]
    points[f"baseline_{cost}_at_{ACC}"] = base_cost
    points[f"{cost}_saved"] = base_cost - points[cost].to_numpy(float)
    points[f"{cost}_saved_pct"] = 100 * points[f"{cost}_saved"] / base_cost
    points["saving_reason"] = [r for _, r in needs]
    return Comparison(curve, points, cost, verdict(curve, points, cost=cost))


def verdict(curve: pd.DataFrame, points: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS) -> str:
    """One line: at how many LW-DNA budgets it beats the uniform curve, and by how much."""
    if points.empty:
        return "No finished LW-DNA trial in this sweep: nothing to compare with the uniform curve."
    if curve.empty:
        return ("No uniform-width baseline in this sweep: cannot compare; add a baseline arm "
                "with several width multipliers.")
    gains = points["accuracy_gain_points"].dropna()
    if gains.empty:
        return _no_comparison(curve, cost)
    line = (f"LW-DNA beats the uniform curve at {int((gains > 0).sum())} of {len(gains)} "
            f"budgets inside its {_label(cost)} range, by {gains.mean():+.2f} points on average")
    saved = points[f"{cost}_saved_pct"].dropna()
    if not saved.empty:
        line += f"; {_label(cost)} saved at equal accuracy: {saved.mean():+.1f}% on average"
    outside = len(points) - len(gains)
    return line + (f" ({outside} outside the range not compared)." if outside else ".")


# ---- helpers ------------------------------------------------------------------------------------

def _usable(trials: pd.DataFrame, kind: str, cost: str) -> pd.DataFrame:
    """Finished, fully trained trials of one kind with both numbers present."""
    rows = trials[trials["kind"] == kind]
    if "stopped_early" in rows.columns:
        rows = rows[~rows["stopped_early"].astype(bool)]
    return rows.dropna(subset=[ACC, cost]).copy()


def _snap_to_range(value: float, lo: float, hi: float) -> float:
    """Shrinking hits a target to +/-0.5 %: a point that close to an end of the curve is
    compared at that end instead of being refused as an extrapolation."""
    if lo * (1 - EDGE_TOLERANCE) <= value < lo:
        return lo
    if hi < value <= hi * (1 + EDGE_TOLERANCE):
        return hi
    return value


def _range_problem(curve, column, value, what, fmt) -> str:
    if curve.empty:
        return "no uniform-width baseline to compare with"
    lo, hi = float(curve[column].min()), float(curve[column].max())
    if lo <= value <= hi:
        return ""
    if len(curve) == 1:
        return (f"only one baseline point ({fmt(lo)}): add width multipliers to the baseline "
                "arm to interpolate")
    return f"outside the {what} [{fmt(lo)}, {fmt(hi)}]"


def _no_comparison(curve: pd.DataFrame, cost: str) -> str:
    if len(curve) == 1:
        width = curve[keys.PARAM_WIDTH_MULT].iloc[0]
        return (f"Only one uniform-width baseline (width {width:g}): need two or more widths to "
                "draw the curve; add width multipliers to the baseline arm.")
    lo, hi = format_count(curve[cost].min()), format_count(curve[cost].max())
    return (f"No LW-DNA point lies inside the baseline {_label(cost)} range [{lo}, {hi}]: widen "
            "the baseline arm's width multipliers to cover the LW-DNA budgets.")


def _label(cost: str) -> str:
    return {keys.METRIC_FLOPS: "FLOPs", keys.METRIC_PARAMS: "params"}.get(cost, cost)
