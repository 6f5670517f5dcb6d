"""The sweep's Optuna study as a person reads it (optuna-dashboard, ``optuna.load_study``).

Ray Tune's ``OptunaSearch`` leaves the objectives unnamed ("Objective 0/1"), links no study trial
to the MLflow run that trained it, and knows nothing of the uniform baselines, which run as their
own Tune experiment. :class:`SweepSearch` adds the three:

- the objectives are named after the metrics they are (``accuracy``, ``flops_ratio``);
- every study trial carries user attributes ``mlflow_run_id``, ``tune_trial_id`` and ``kind``;
- the baselines enter the study as fixed, already evaluated trials (user attribute ``kind:
  baseline``, their width in ``width_mult``, no sampled parameters). The samplers hetero offers
  do not learn from them: NSGA-II draws its population from its own generations, TPE from the
  parameters a trial has, the random sampler from nothing.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from sweeps import keys

__all__ = ["SweepSearch", "OBJECTIVES", "fixed_point"]

OBJECTIVES = ((keys.METRIC_ACCURACY, "max"), (keys.METRIC_FLOPS_RATIO, "min"))


def fixed_point(outcome) -> dict[str, Any] | None:
    """A finished baseline trial as a fixed study trial (None when it did not finish)."""
    if not outcome.finished:
        return None
    return {"values": [outcome.metrics[name] for name, _ in OBJECTIVES],
            "user_attrs": {"kind": outcome.kind, "tune_trial_id": outcome.trial_id,
                           "mlflow_run_id": outcome.metrics.get(keys.RESULT_RUN_ID),
                           keys.PARAM_WIDTH_MULT: outcome.hp.get(keys.PARAM_WIDTH_MULT),
                           keys.PARAM_SEED: outcome.hp.get(keys.PARAM_SEED)}}


class SweepSearch(OptunaSearch):
    """``OptunaSearch`` over the LW-DNA space with named objectives, run ids and ``fixed``
    points (see :func:`fixed_point`) added to the study once."""

    def __init__(self, *, fixed: list[dict[str, Any]] = (), **kwargs) -> None:
        super().__init__(metric=[name for name, _ in OBJECTIVES],
                         mode=[sense for _, sense in OBJECTIVES], **kwargs)
        self._fixed = list(fixed)

    def add_fixed(self, points: list[dict[str, Any]]) -> None:
        """More fixed points, added when the study is set up (before the search starts)."""
        self._fixed += points

    def _setup_study(self, mode):
        super()._setup_study(mode)
        with warnings.catch_warnings():   # "experimental since 3.2": stable for years
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names([name for name, _ in OBJECTIVES])
        present = {t.user_attrs.get("tune_trial_id") for t in self._ot_study.get_trials(
            deepcopy=False)}
        for point in self._fixed:   # once: a resumed sweep reopens the same study
            if point["user_attrs"]["tune_trial_id"] not in present:
                self._ot_study.add_trial(optuna.trial.create_trial(
                    values=point["values"], params={}, distributions={},
                    user_attrs=point["user_attrs"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        trial = self._ot_trials.get(trial_id)
        if trial is not None and trial_id not in self._completed_trials:
            trial.set_user_attr("tune_trial_id", trial_id)
            trial.set_user_attr("kind", keys.KIND_LWDNA)
            if result and result.get(keys.RESULT_RUN_ID):
                trial.set_user_attr("mlflow_run_id", result[keys.RESULT_RUN_ID])
        super().on_trial_complete(trial_id, result, error)
