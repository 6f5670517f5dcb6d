"""Tune's side of a sweep: its plans (one Tune experiment each: param space, search algorithm,
scheduler), their tuners (fresh or restored for --resume), and running them in order.

With ``optuna`` or an ASHA scheduler the baselines are a plan of their own, run first (see
sweeps.runner); the baselines that finished enter the Optuna study as fixed trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sweeps import keys
from sweeps.results import SweepInterrupted, TrialOutcome, read_outcomes
from sweeps.spec import Range, SweepSpec
from sweeps.trainable import TrialContext, trial_dirname, trial_name

__all__ = ["run_experiments", "study_storage", "optuna_search", "restorable"]

@dataclass
class _Plan:
    name: str
    param_space: dict[str, Any]
    searcher: Any = None
    num_samples: int = 1
    scheduler: Any = None


def _plans(spec: SweepSpec, sweep: str, storage: str) -> list[_Plan]:
    from ray import tune

    separate = spec.search.type == "optuna" or spec.scheduler.type == "asha"
    plans = []
    if separate and spec.baselines:
        plans.append(_Plan(f"{sweep}-baselines", {"hp": tune.grid_search(spec.baseline_points())}))
    if spec.search.type == "optuna":
        space = {d: _domain(spec.space.values(d)) for d in spec.space.DIMENSIONS}
        plans.append(_Plan(sweep, {"hp": {"kind": keys.KIND_LWDNA, **space}},
                           optuna_search(spec, sweep, storage),
                           spec.search.num_samples, _scheduler(spec)))
    else:
        points = spec.sampled_lwdna_points() if separate else spec.fixed_points()
        plans.append(_Plan(sweep, {"hp": tune.grid_search(points)}, scheduler=_scheduler(spec)))
    return plans


def _domain(values):
    """Tune's domain for one searched dimension: a range, a choice, or a constant."""
    from ray import tune

    if isinstance(values, Range):
        return tune.uniform(values.low, values.high)
    return tune.choice(list(values)) if len(values) > 1 else values[0]


def study_storage(storage: str, sweep: str) -> str | None:
    """SQLite URL of the sweep's Optuna study, in its Tune folder (None for remote storage)."""
    if "://" in storage:
        return None
    folder = Path(storage, sweep)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / f'{sweep}.optuna.db'}"


def optuna_search(spec: SweepSpec, sweep: str, storage: str):
    import optuna

    from sweeps.samplers import build_sampler
    from sweeps.study import SweepSearch

    sampler = build_sampler(spec.search.sampler, spec.search.seed)
    # Persisted, named after the sweep: optuna-dashboard attaches to it while the sweep runs,
    # and --resume continues the same study (Tune restores the searcher, which reopens it).
    url = study_storage(storage, sweep)
    if url is None:
        print("note: the Optuna study is kept in memory (storage is not a local folder); "
              "optuna-dashboard cannot attach to it", flush=True)
    # Multi-objective (accuracy up, FLOPs ratio down: sweeps.study.OBJECTIVES): metric/mode stay
    # OUT of TuneConfig, or the study turns single-objective.
    return SweepSearch(sampler=sampler, study_name=sweep,
                       storage=optuna.storages.RDBStorage(url) if url else None)


def _scheduler(spec: SweepSpec):
    if spec.scheduler.type == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", metric=keys.METRIC_ACCURACY,
                         mode="max", max_t=spec.protocol.epochs,
                         grace_period=spec.scheduler.grace_period,
                         reduction_factor=spec.scheduler.reduction_factor)


def _trainable(spec: SweepSpec, context: TrialContext, trainable: Callable[..., None]):
    from ray import tune

    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    return tune.with_resources(tune.with_parameters(trainable, context=context), resources)


def run_experiments(spec: SweepSpec, context: TrialContext, storage: str, resume: bool,
                     trainable: Callable[..., None], output: str = "progress"
                     ) -> tuple[list[TrialOutcome], float]:
    from sweeps.progress import SweepProgress

    plans = _plans(spec, context.tracking.sweep, storage)
    progress = (SweepProgress(sum(map(_planned_trials, plans)), spec.protocol.epochs)
                if output == "progress" else None)
    outcomes, start = [], time.perf_counter()
    try:
        for plan in plans:
            tuner = _tuner(spec, plan, context, storage, resume, trainable,
                           _output_settings(output, progress))
            ran = read_outcomes(tuner.fit(), spec.protocol.epochs)
            outcomes += ran
            _fix_in_later_studies(plans, ran)
            # Tune catches SIGINT itself and returns normally: cut trials, or trials never
            # started.
            if any(t.interrupted for t in ran) or len(ran) < _planned_trials(plan):
                raise SweepInterrupted(context.tracking.sweep, outcomes)
    finally:
        if progress is not None:
            progress.close()
    return outcomes, time.perf_counter() - start


def _fix_in_later_studies(plans: list[_Plan], ran: list[TrialOutcome]) -> None:
    """The baselines that finished enter the Optuna study of the search after them as fixed,
    evaluated trials (sweeps.study)."""
    from sweeps.study import SweepSearch, fixed_point

    points = [p for p in map(fixed_point, ran) if p is not None]
    for plan in plans:
        if isinstance(plan.searcher, SweepSearch):
            plan.searcher.add_fixed(points)


def _output_settings(output: str, progress) -> dict[str, Any]:
    """RunConfig fields: Tune's own output off (but with --verbose), the progress line on."""
    return {"verbose": None if output == "verbose" else 0,
            "callbacks": [progress] if progress is not None else None}


def _planned_trials(plan: _Plan) -> int:
    hp = plan.param_space["hp"]
    points = hp.get("grid_search") if isinstance(hp, dict) else None
    return plan.num_samples * (len(points) if points is not None else 1)


def restorable(storage: str, name: str) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(f"{storage}/{name}")


def _tuner(spec: SweepSpec, plan: _Plan, context: TrialContext, storage: str, resume: bool,
           trainable: Callable[..., None], output: dict[str, Any] | None = None):
    from ray import tune

    output = output or {}
    trainable = _trainable(spec, context, trainable)
    if resume and restorable(storage, plan.name):
        # Finished trials stay finished; unfinished and errored ones go on from their checkpoint.
        tuner = tune.Tuner.restore(f"{storage}/{plan.name}", trainable, resume_errored=True)
        _restored_output(tuner, output)
        return tuner
    label = (context.model_label, context.varying)
    tune_config = tune.TuneConfig(search_alg=plan.searcher, scheduler=plan.scheduler,
                                  num_samples=plan.num_samples, reuse_actors=True,
                                  max_concurrent_trials=spec.resources.max_concurrent,
                                  trial_name_creator=partial(trial_name, *label),
                                  trial_dirname_creator=partial(trial_dirname, *label))
    run_config = tune.RunConfig(
        name=plan.name, storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2), **output)
    return tune.Tuner(trainable, param_space=plan.param_space, tune_config=tune_config,
                      run_config=run_config)


def _restored_output(tuner, output: dict[str, Any]) -> None:
    # A restored tuner brings back the run config pickled with the experiment; how this session
    # prints is this session's choice. (Through Ray Client the tuner is remote: left as is.)
    local = getattr(tuner, "_local_tuner", None)
    if local is not None:
        for name, value in output.items():
            setattr(local.get_run_config(), name, value)
