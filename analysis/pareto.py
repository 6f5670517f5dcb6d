"""Pareto fronts and hypervolume over trials, optionally averaged over seeds first.

An objective is ``(column, "max" | "min")``. A point dominates another when it is at least as good
in every objective and strictly better in one; so two points with identical objective values do not
dominate each other and ties are BOTH kept on the front. Rows with NaN in an objective are dropped
and counted (Front.n_dropped_nan); trials stopped early are left out unless asked for.
The dominance test and the hypervolume are sweeps.front's (a sweep's summary needs them too and
sweeps never imports analysis), re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from sweeps import keys
from sweeps.front import (  # noqa: F401 (re-exported: the one implementation is in sweeps)
    ACC_FLOPS,
    Objective,
    default_reference,
    hypervolume,
    non_dominated_mask,
)

ACC_PARAMS: tuple[Objective, ...] = ((keys.METRIC_ACCURACY, "max"), (keys.METRIC_PARAMS, "min"))
ACC_FLOPS_PARAMS: tuple[Objective, ...] = (*ACC_FLOPS, (keys.METRIC_PARAMS, "min"))

# what makes two trials "the same experiment but another seed": every declared setting
HYPERPARAMETERS = ("kind", *keys.SETTING_PARAMS)


@dataclass(frozen=True)
class Front:
    """The non-dominated rows (sorted by the first "min" objective) and what was left out."""

    points: pd.DataFrame
    objectives: tuple[Objective, ...]
    n_candidates: int          # rows that took part (after dropping NaN and stopped trials)
    n_dropped_nan: int         # rows with NaN in an objective
    n_stopped_excluded: int    # trials stopped early by a scheduler


def pareto_front(trials: pd.DataFrame, objectives: Sequence[Objective] = ACC_FLOPS, *,
                 aggregate: bool = False, include_stopped: bool = False) -> Front:
    """The non-dominated trials (or seed-averaged groups when ``aggregate``)."""
    objectives = _check_objectives(trials, objectives)
    stopped = _stopped(trials)
    rows = trials if include_stopped else trials[~stopped]
    if aggregate:
        rows = aggregate_seeds(rows)
    columns = [c for c, _ in objectives]
    has_nan = rows[columns].isna().any(axis=1)
    rows = rows[~has_nan]
    mask = non_dominated_mask(rows[columns].to_numpy(dtype=float), [s for _, s in objectives])
    points = rows[mask].sort_values(_sort_columns(objectives), ignore_index=True)
    return Front(points, tuple(objectives), n_candidates=len(rows),
                 n_dropped_nan=int(has_nan.sum()),
                 n_stopped_excluded=0 if include_stopped else int(stopped.sum()))


def aggregate_seeds(trials: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per hyperparameter group (all of ``by`` but the seed): numeric columns become
    their mean with a ``<col>_std`` (sample std, NaN for a single seed), plus ``n_seeds``,
    ``seeds``, ``run_ids`` (comma-joined) and ``run_id`` (the first seed's run)."""
    by = [c for c in (by or HYPERPARAMETERS) if c in trials.columns]
    numeric = [c for c in trials.select_dtypes("number").columns
               if c not in by and c != keys.PARAM_SEED]
    if keys.PARAM_SEED in trials.columns:  # so that "first" means the lowest seed
        trials = trials.sort_values(keys.PARAM_SEED, kind="stable")
    groups = trials.groupby(by, dropna=False, sort=False)  # NaN keys: baselines have no target
    means = groups[numeric].mean()
    stds = groups[numeric].std().add_suffix("_std")
    extra = groups.size().to_frame("n_seeds")
    if keys.PARAM_SEED in trials.columns:
        extra["seeds"] = groups[keys.PARAM_SEED].agg(lambda s: ",".join(map(str, s.dropna())))
    if "run_id" in trials.columns:
        extra["run_ids"] = groups["run_id"].agg(",".join)
        extra["run_id"] = groups["run_id"].first()
    if "stopped_early" in trials.columns:
        extra["stopped_early"] = groups["stopped_early"].any()
    return pd.concat([means, stds, extra], axis=1).reset_index()


def _check_objectives(trials, objectives) -> tuple[Objective, ...]:
    objectives = tuple((c, s) for c, s in objectives)
    for column, sense in objectives:
        if sense not in ("max", "min"):
            raise ValueError(f"objective {column!r} has sense {sense!r}: use 'max' or 'min'")
        if column not in trials.columns:
            raise ValueError(f"no column {column!r} to optimise: pick from "
                             f"{', '.join(trials.select_dtypes('number').columns)}")
    return objectives


def _stopped(trials: pd.DataFrame) -> pd.Series:
    if "stopped_early" not in trials.columns:
        return pd.Series(False, index=trials.index)
    return trials["stopped_early"].fillna(False).astype(bool)


def _sort_columns(objectives) -> list[str]:
    mins = [c for c, s in objectives if s == "min"]
    return mins[:1] + [c for c, _ in objectives if c not in mins[:1]]
