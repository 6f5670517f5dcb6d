"""Run a sweep: Ray Tune schedules the trials, MLflow records them, a summary closes it.

Search types:

- ``grid``: one Tune experiment, ``tune.grid_search`` over every lwdna combination plus the
  uniform baselines.
- ``random``: the same, over a seeded sample of ``num_samples`` lwdna combinations (sampled on
  the driver, so a resumed sweep runs the very same points) plus the baselines.
- ``optuna``: a multi-objective OptunaSearch experiment ``<name>`` (accuracy up, FLOPs down)
  over the lwdna space.

With ``optuna`` or an ASHA scheduler, the baselines run first as their own grid experiment
``<name>-baselines`` (always FIFO): they are fixed reference points, neither samples of the
searched space for Optuna's study nor candidates for ASHA to stop. All experiments of a sweep
share one MLflow parent run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from sweeps import keys
from sweeps.spec import SweepSpec, base_config, check_spec
from sweeps.spec import smoke_test as make_smoke_spec
from sweeps.tracking import (
    FAILED,
    FINISHED,
    KILLED,
    RUNNING,
    TrialTracking,
    artifact_location,
    check_tracking,
    child_runs,
    ensure_experiment,
    finish_parent_run,
    is_sqlite,
    mark_child_run,
    open_parent_run,
    resolve_tracking_uri,
)
from sweeps.trainable import TrialContext, thread_count, train_trial, trial_dirname, trial_name

__all__ = ["run_sweep", "SweepResults", "TrialOutcome", "ray_session"]

# Keeps a local Ray from reserving 30 % of the machine's memory for objects we never store.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
LOCAL_NODE_IP_ENV = "HETERO_RAY_NODE_IP"


@dataclass
class TrialOutcome:
    trial_id: str
    hp: dict[str, Any]
    metrics: dict[str, Any]         # the last report
    error: str | None = None
    stopped_early: bool = False

    @property
    def kind(self) -> str:
        return self.hp.get("kind", "?")

    @property
    def finished(self) -> bool:
        return (self.error is None and not self.stopped_early
                and keys.METRIC_ACCURACY in self.metrics)


@dataclass
class SweepResults:
    name: str
    experiment: str
    parent_run_id: str
    tracking_uri: str
    storage_path: str
    trials: list[TrialOutcome] = field(default_factory=list)
    wall_seconds: float = 0.0
    ray_seconds: float = 0.0        # ray.init (0 when Ray was already up)
    tune_seconds: float = 0.0       # Tuner.fit calls

    def pareto(self) -> list[TrialOutcome]:
        """Finished trials no other finished trial beats on both accuracy and FLOPs."""
        done = [t for t in self.trials if t.finished]

        def point(t: TrialOutcome) -> tuple[float, float]:
            return t.metrics[keys.METRIC_ACCURACY], t.metrics[keys.METRIC_FLOPS]

        def dominated(t: TrialOutcome) -> bool:
            (a, f) = point(t)
            return any(point(o)[0] >= a and point(o)[1] <= f and point(o) != (a, f) for o in done)

        return sorted((t for t in done if not dominated(t)), key=lambda t: point(t)[1])

    def summary(self) -> str:
        counts = (f"{sum(t.finished for t in self.trials)} finished, "
                  f"{sum(t.stopped_early for t in self.trials)} stopped early, "
                  f"{sum(t.error is not None for t in self.trials)} failed")
        lines = [f"Sweep {self.name}: {len(self.trials)} trials ({counts}) in "
                 f"{self.wall_seconds:.0f} s.",
                 "Best points (Pareto front of accuracy vs FLOPs; early-stopped trials left out):",
                 f"  {'kind':<9}{'accuracy':>9}{'flops_ratio':>13}  config"]
        for t in self.pareto():
            lines.append(f"  {t.kind:<9}{t.metrics[keys.METRIC_ACCURACY]:>9.4f}"
                         f"{t.metrics[keys.METRIC_FLOPS_RATIO]:>13.3f}  {_describe(t.hp)}")
        lines.append(f"MLflow: experiment {self.experiment!r}, parent run {self.parent_run_id} "
                     f"at {self.tracking_uri}")
        if is_sqlite(self.tracking_uri):
            lines.append(f"  view it: mlflow ui --backend-store-uri {self.tracking_uri}")
        baselines = f"{self.storage_path}-baselines"
        also = f" and {baselines}" if "://" not in baselines and Path(baselines).exists() else ""
        lines.append(f"Ray Tune results and checkpoints: {self.storage_path}{also}")
        return "\n".join(lines)


def _describe(hp: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in hp.items() if k != "kind")


# ---------------------------------------------------------------------------------- entry point
def run_sweep(spec: SweepSpec, *, address: str | None = None, tracking_uri: str | None = None,
              resume: bool = False, name: str | None = None,
              smoke_test: bool = False) -> SweepResults:
    """Run (or with ``resume`` continue) a sweep; returns its results and prints a summary.

    ``address``: None starts a private local Ray; "auto" or "ray://HOST:PORT" joins a cluster.
    A Ray already initialised by the caller is used as it is (and left running).
    """
    start = time.perf_counter()
    # Tune snapshots the experiment whenever a trial has checkpointed num_to_keep times: that
    # keeps --resume exact, so its warning about frequent snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if smoke_test:
        spec = make_smoke_spec(spec)
        check_spec(spec)
    uri = resolve_tracking_uri(tracking_uri or spec.tracking.uri)
    check_tracking(uri)   # before anything starts: a dead store would fail every trial
    storage = _storage_path(spec.storage)
    sweep = _sweep_name(storage, name or spec.name, resume)
    results = _run_tracked(spec, sweep, uri, storage, address=address, resume=resume)
    results.wall_seconds = time.perf_counter() - start
    print(results.summary(), flush=True)
    return results


def _run_tracked(spec: SweepSpec, sweep: str, uri: str, storage: str, *, address: str | None,
                 resume: bool) -> SweepResults:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    location = artifact_location(uri, spec.experiment)
    experiment_id = ensure_experiment(client, spec.experiment, location)
    spec_yaml = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    parent = open_parent_run(client, experiment_id, sweep=sweep, spec_yaml=spec_yaml,
                             resume=resume)
    tracking = TrialTracking(uri, experiment_id, parent, sweep)
    results = SweepResults(sweep, spec.experiment, parent, uri, f"{storage}/{sweep}")
    try:
        with _trial_tracking_uri(uri, spec, address) as trial_uri:
            context = _context(spec, tracking, trial_uri, storage)
            with ray_session(address) as ray_seconds:
                results.ray_seconds = ray_seconds
                results.trials, results.tune_seconds = _run_experiments(spec, context, storage,
                                                                        resume)
        _reconcile(client, tracking, results.trials)
    except BaseException as exc:
        finish_parent_run(client, parent, KILLED if isinstance(exc, KeyboardInterrupt) else FAILED)
        raise
    finish_parent_run(client, parent, FINISHED)
    return results


def _storage_path(storage: str) -> str:
    # Trials run in their own folders: a relative path must become absolute on the driver.
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def _sweep_name(storage: str, requested: str, resume: bool) -> str:
    """The Tune experiment / MLflow sweep name: a fresh run never reuses an old folder."""
    taken = "://" not in storage and any(
        Path(storage, n).exists() for n in (requested, f"{requested}-baselines"))
    if resume or not taken:
        return requested
    stamped = f"{requested}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"{storage}/{requested} exists (resume it with --resume --name {requested}); "
          f"this run is named {stamped}", flush=True)
    return stamped


# ---------------------------------------------------------------------------------- services
@contextmanager
def _trial_tracking_uri(uri: str, spec: SweepSpec, address: str | None) -> Iterator[str]:
    """The URI trials log to: a local mlflow server in front of SQLite when trials overlap."""
    if not is_sqlite(uri) or spec.resources.max_concurrent == 1:
        yield uri
        return
    from sweeps.server import MlflowServer

    if address is not None:
        print("note: trials log through an MLflow server on 127.0.0.1 of this machine; on a "
              "multi-machine cluster pass --tracking-uri http://HEAD:PORT instead", flush=True)
    with MlflowServer(uri) as server:
        yield server.url


@contextmanager
def ray_session(address: str | None = None, **init_kwargs: Any) -> Iterator[float]:
    """Ray for the sweep's duration: yields the seconds ``ray.init`` took (0 if already up)."""
    import ray

    if ray.is_initialized():
        yield 0.0
        return
    if address is None:
        # "local": never attach to some other `ray start` cluster on this machine by accident.
        init_kwargs = {"address": "local", "include_dashboard": False,
                       "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
                       **_local_node_ip(), **init_kwargs}
    else:
        _token_auth_for_clusters()
        init_kwargs = {"address": address, **init_kwargs}
    start = time.perf_counter()
    ray.init(**init_kwargs)
    try:
        yield time.perf_counter() - start
    finally:
        ray.shutdown()


def _token_auth_for_clusters() -> None:
    # Ray 2.60 clusters use token authentication by default, but ray.init with an explicit
    # address only sends the token (~/.ray/auth_token, RAY_AUTH_TOKEN[_PATH]) in token mode.
    # This is what Ray itself does for address="auto"; RAY_AUTH_MODE set by the user wins.
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _local_node_ip() -> dict[str, str]:
    # A private Ray needs no address outside the machine. Ray swaps 127.0.0.1 for the external
    # address, so on Linux (where all of 127/8 is loopback) it gets 127.0.0.2 unless
    # HETERO_RAY_NODE_IP says otherwise (empty: Ray's own choice).
    ip = os.environ.get(LOCAL_NODE_IP_ENV, "127.0.0.2" if sys.platform == "linux" else "")
    return {"_node_ip_address": ip} if ip else {}


def _context(spec: SweepSpec, tracking: TrialTracking, trial_uri: str,
             storage: str) -> TrialContext:
    base = base_config(spec)
    data_dir = spec.dataset.data_dir
    fixed = {"model": spec.model.name, "variant": spec.model.variant,
             "options": dict(spec.model.options), "dataset": spec.dataset.name,
             "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
             "download": spec.dataset.download, "target_metric": spec.space.target_metric,
             "score_batches": spec.space.score_batches, "divisor": spec.space.divisor,
             "inherit": spec.space.inherit, "protocol": spec.protocol}
    varying = tuple(d for d in spec.space.DIMENSIONS if len(spec.space.values(d)) > 1)
    failing = spec.testing.fail_first_attempt
    fail_kinds = ((keys.KIND_LWDNA, keys.KIND_BASELINE) if failing is True
                  else (failing,) if failing else ())
    marker_dir = f"{storage}/.hetero-testing/{tracking.sweep}" if fail_kinds else None
    trial_tracking = TrialTracking(trial_uri, tracking.experiment_id, tracking.parent_run_id,
                                   tracking.sweep)
    return TrialContext(fixed=fixed, tracking=trial_tracking, model_label=spec.model.name,
                        family=base.family, variant=base.variant, varying=varying,
                        threads=thread_count(spec.resources.cpus), fail_marker_dir=marker_dir,
                        fail_kinds=fail_kinds)


# ---------------------------------------------------------------------------------- Tune
@dataclass
class _Plan:
    name: str
    param_space: dict[str, Any]
    searcher: Any = None
    num_samples: int = 1
    scheduler: Any = None


def _plans(spec: SweepSpec, sweep: str) -> list[_Plan]:
    from ray import tune

    separate = spec.search.type == "optuna" or spec.scheduler.type == "asha"
    plans = []
    if separate and spec.baselines:
        plans.append(_Plan(f"{sweep}-baselines", {"hp": tune.grid_search(spec.baseline_points())}))
    if spec.search.type == "optuna":
        space = {d: tune.choice(list(v)) if len(v := spec.space.values(d)) > 1 else v[0]
                 for d in spec.space.DIMENSIONS}
        plans.append(_Plan(sweep, {"hp": {"kind": keys.KIND_LWDNA, **space}}, _optuna(spec),
                           spec.search.num_samples, _scheduler(spec)))
    else:
        points = spec.sampled_lwdna_points() if separate else spec.fixed_points()
        plans.append(_Plan(sweep, {"hp": tune.grid_search(points)}, scheduler=_scheduler(spec)))
    return plans


def _optuna(spec: SweepSpec):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    samplers = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
                "random": optuna.samplers.RandomSampler}
    sampler = samplers[spec.search.sampler](seed=spec.search.seed)
    # Multi-objective: metric/mode stay OUT of TuneConfig, or the study turns single-objective.
    return OptunaSearch(metric=[keys.METRIC_ACCURACY, keys.METRIC_FLOPS], mode=["max", "min"],
                        sampler=sampler)


def _scheduler(spec: SweepSpec):
    if spec.scheduler.type == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", metric=keys.METRIC_ACCURACY,
                         mode="max", max_t=spec.protocol.epochs,
                         grace_period=spec.scheduler.grace_period,
                         reduction_factor=spec.scheduler.reduction_factor)


def _trainable(spec: SweepSpec, context: TrialContext):
    from ray import tune

    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    return tune.with_resources(tune.with_parameters(train_trial, context=context), resources)


def _run_experiments(spec: SweepSpec, context: TrialContext, storage: str,
                     resume: bool) -> tuple[list[TrialOutcome], float]:
    plans = _plans(spec, context.tracking.sweep)
    if resume and not any(_restorable(storage, p.name) for p in plans):
        raise FileNotFoundError(f"nothing to resume: no Tune experiment {context.tracking.sweep!r}"
                                f" under {storage}; run without --resume (or check --name)")
    outcomes, start = [], time.perf_counter()
    for plan in plans:
        grid = _tuner(spec, plan, context, storage, resume).fit()
        outcomes += [_outcome(result, spec.protocol.epochs) for result in grid]
    return outcomes, time.perf_counter() - start


def _restorable(storage: str, name: str) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(f"{storage}/{name}")


def _tuner(spec: SweepSpec, plan: _Plan, context: TrialContext, storage: str, resume: bool):
    from ray import tune

    trainable = _trainable(spec, context)
    if resume and _restorable(storage, plan.name):
        # Finished trials stay finished; unfinished and errored ones go on from their checkpoint.
        return tune.Tuner.restore(f"{storage}/{plan.name}", trainable, resume_errored=True)
    label = (context.model_label, context.varying)
    tune_config = tune.TuneConfig(search_alg=plan.searcher, scheduler=plan.scheduler,
                                  num_samples=plan.num_samples, reuse_actors=True,
                                  max_concurrent_trials=spec.resources.max_concurrent,
                                  trial_name_creator=partial(trial_name, *label),
                                  trial_dirname_creator=partial(trial_dirname, *label))
    run_config = tune.RunConfig(
        name=plan.name, storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2))
    return tune.Tuner(trainable, param_space=plan.param_space, tune_config=tune_config,
                      run_config=run_config)


def _outcome(result, epochs: int) -> TrialOutcome:
    metrics = dict(result.metrics or {})
    error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
    early = error is None and int(metrics.get(keys.METRIC_EPOCH, epochs)) < epochs
    return TrialOutcome(str(metrics.get("trial_id", "?")), dict(result.config.get("hp", {})),
                        metrics, error, early)


def _reconcile(client, tracking: TrialTracking, outcomes: list[TrialOutcome]) -> None:
    """Fix up child runs a worker could not close itself (stopped early, or killed)."""
    for outcome in outcomes:
        if outcome.stopped_early:
            mark_child_run(client, tracking, outcome.trial_id, status=FINISHED,
                           stopped_early=True)
    for run in child_runs(client, tracking):
        if run.info.status == RUNNING:
            client.set_terminated(run.info.run_id, KILLED)  # an attempt whose process died
