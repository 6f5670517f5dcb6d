"""Non-dominated points and hypervolume: the one Pareto implementation.

It lives in sweeps because a sweep's summary needs it and sweeps never imports analysis;
analysis.pareto builds its fronts of trial tables on it. An objective is ``(column, "max" |
"min")``; a point dominates another when it is at least as good in every objective and strictly
better in one, so ties do not dominate each other and are both kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweeps import keys

Objective = tuple[str, str]
ACC_FLOPS: tuple[Objective, ...] = ((keys.METRIC_ACCURACY, "max"), (keys.METRIC_FLOPS, "min"))


def non_dominated_mask(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """True for the rows of ``values`` (n x k, no NaN) that no other row dominates."""
    costs = _as_costs(np.asarray(values, dtype=float), senses)
    keep = np.ones(len(costs), dtype=bool)
    for i, point in enumerate(costs):
        no_worse = np.all(costs <= point, axis=1)
        better = np.any(costs < point, axis=1)
        keep[i] = not np.any(no_worse & better)
    return keep


def hypervolume(points: pd.DataFrame | np.ndarray, objectives: Sequence[Objective] = ACC_FLOPS,
                reference: Sequence[float] | None = None) -> float:
    """Volume dominated by the points and bounded by ``reference`` (exact, by slicing).

    The default reference is the worst value of each objective among the points (lowest accuracy,
    highest FLOPs), so a point that is worst in some objective adds nothing and a single point
    has volume 0: pass a fixed reference to compare sweeps. Rows with NaN are ignored.
    """
    senses = [s for _, s in objectives]
    values = _objective_values(points, objectives)
    values = values[~np.isnan(values).any(axis=1)]
    if len(values) == 0:
        return 0.0
    ref = default_reference(values, objectives) if reference is None else reference
    costs = _as_costs(values, senses)
    ref_cost = _as_costs(np.asarray(ref, dtype=float)[None, :], senses)[0]
    inside = costs[np.all(costs < ref_cost, axis=1)]  # points beyond the reference add nothing
    return float(_volume(inside, ref_cost))


def default_reference(points: pd.DataFrame | np.ndarray,
                      objectives: Sequence[Objective] = ACC_FLOPS) -> tuple[float, ...]:
    """The worst value of each objective (min of a "max" column, max of a "min" column)."""
    values = _objective_values(points, objectives)
    return tuple(float(np.nanmin(col) if sense == "max" else np.nanmax(col))
                 for col, (_, sense) in zip(values.T, objectives, strict=True))


# ---- helpers ------------------------------------------------------------------------------------

def _as_costs(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """Flip "max" columns so that smaller is better everywhere."""
    signs = np.array([-1.0 if s == "max" else 1.0 for s in senses])
    return values * signs


def _volume(costs: np.ndarray, ref: np.ndarray) -> float:
    """Exact union volume of the boxes [point, ref]: slice along the last axis and recurse."""
    if len(costs) == 0:
        return 0.0
    if costs.shape[1] == 1:
        return float(ref[0] - costs[:, 0].min())
    if costs.shape[1] == 2:
        return _area_2d(costs, ref)
    order = np.argsort(costs[:, -1], kind="stable")
    costs = costs[order]
    bounds = np.append(costs[1:, -1], ref[-1])
    # between consecutive last-axis values, the slice is the (k-1)-D volume of the points so far
    return float(sum((bounds[i] - costs[i, -1]) * _volume(costs[: i + 1, :-1], ref[:-1])
                     for i in range(len(costs))))


def _area_2d(costs: np.ndarray, ref: np.ndarray) -> float:
    order = np.lexsort((costs[:, 1], costs[:, 0]))
    area, best_y = 0.0, ref[1]
    for x, y in costs[order]:
        if y < best_y:  # only points that improve the second objective add a strip
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def _objective_values(points, objectives) -> np.ndarray:
    # An analysis.pareto.Front holds its rows as a DataFrame in .points; recognised by shape
    # because sweeps cannot import that class. (A DataFrame's "points" column is a Series.)
    if isinstance(getattr(points, "points", None), pd.DataFrame):
        points = points.points
    if isinstance(points, pd.DataFrame):
        return points[[c for c, _ in objectives]].to_numpy(dtype=float)
    return np.asarray(points, dtype=float).reshape(-1, len(objectives))
