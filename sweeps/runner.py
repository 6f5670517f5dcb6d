"""Run a sweep: Ray Tune schedules the trials, MLflow records them, a summary closes it.

Search types:

- ``grid``: one Tune experiment, ``tune.grid_search`` over every lwdna combination plus the
  uniform baselines.
- ``random``: the same, over a seeded sample of ``num_samples`` lwdna combinations (sampled on
  the driver, so a resumed sweep runs the very same points) plus the baselines.
- ``optuna``: a multi-objective OptunaSearch experiment ``<name>`` (accuracy up, FLOPs down)
  over the lwdna space.

With ``optuna`` or an ASHA scheduler, the baselines run first as their own grid experiment
``<name>-baselines`` (always FIFO): they are fixed reference points, not samples of the searched
space (Optuna's study gets them as fixed, evaluated trials: sweeps.study) nor candidates for ASHA
to stop. All experiments of a sweep share one MLflow parent run.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from hetero.trial import TrialSpec
from sweeps import keys
from sweeps.spec import (
    NAME_PATTERN,
    Range,
    SpecError,
    SweepSpec,
    base_config,
    check_dataset,
    check_spec,
)
from sweeps.spec import smoke_test as make_smoke_spec
from sweeps.tracking import (
    TrackingError,
    TrialTracking,
    artifact_location,
    check_tracking,
    child_runs,
    close_stale_runs,
    ensure_experiment,
    finish_parent_run,
    is_loopback_uri,
    is_sqlite,
    log_sweep_metrics,
    mark_child_run,
    open_parent_run,
    resolve_tracking_uri,
    ui_url,
)
from sweeps.trainable import TrialContext, thread_count, train_trial, trial_dirname, trial_name

__all__ = ["run_sweep", "SweepResults", "TrialOutcome", "SweepInterrupted", "ray_session",
           "sigterm_as_interrupt", "cluster_tracking_problem"]

# Keeps a local Ray from reserving 30 % of the machine's memory for objects we never store.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
LOCAL_NODE_IP_ENV = "HETERO_RAY_NODE_IP"
CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # read by Ray: False keeps 127.0.0.1 as is


@dataclass
class TrialOutcome:
    trial_id: str
    hp: dict[str, Any]
    metrics: dict[str, Any]         # the last report
    error: str | None = None
    stopped_early: bool = False
    interrupted: bool = False       # cut short by Ctrl-C: --resume finishes it
    checkpoint: Any = field(default=None, repr=False)   # the trial's last (ray.tune.Checkpoint)

    @property
    def kind(self) -> str:
        return self.hp.get("kind", "?")

    @property
    def finished(self) -> bool:
        return (self.error is None and not self.stopped_early and not self.interrupted
                and keys.METRIC_ACCURACY in self.metrics)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the sweep; ``resume_hint`` says how to go on."""

    def __init__(self, sweep: str, outcomes: list[TrialOutcome] | None = None) -> None:
        super().__init__(sweep)
        self.sweep, self.outcomes = sweep, outcomes or []

    @property
    def resume_hint(self) -> str:
        return f"--resume --name {self.sweep}"


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
    experiment_id: str = ""

    def pareto(self) -> list[TrialOutcome]:
        """Finished trials no other finished trial beats on both accuracy and FLOPs (the one
        Pareto implementation: analysis.pareto)."""
        from analysis.pareto import non_dominated_mask

        done = [t for t in self.trials if t.finished]
        points = [(t.metrics[keys.METRIC_ACCURACY], t.metrics[keys.METRIC_FLOPS]) for t in done]
        keep = non_dominated_mask(points, ("max", "min")) if done else []
        return sorted((t for t, k in zip(done, keep, strict=True) if k),
                      key=lambda t: t.metrics[keys.METRIC_FLOPS])

    def summary_metrics(self) -> dict[str, float]:
        """The sweep in a few numbers, for its parent run (sweeps.keys: parent run metrics)."""
        from analysis.pareto import hypervolume

        done = [t for t in self.trials if t.finished]
        metrics = {keys.METRIC_SWEEP_TRIALS: len(self.trials),
                   keys.METRIC_SWEEP_FINISHED: len(done),
                   keys.METRIC_SWEEP_FAILED: sum(t.error is not None for t in self.trials),
                   keys.METRIC_SWEEP_STOPPED: sum(t.stopped_early for t in self.trials),
                   keys.METRIC_FRONT_POINTS: len(self.pareto())}
        best = {keys.METRIC_BEST_ACCURACY: done,
                keys.METRIC_BEST_LWDNA_ACCURACY: [t for t in done if t.kind == keys.KIND_LWDNA],
                keys.METRIC_BEST_BASELINE_ACCURACY: [t for t in done
                                                     if t.kind == keys.KIND_BASELINE]}
        metrics.update({key: max(t.metrics[keys.METRIC_ACCURACY] for t in trials)
                        for key, trials in best.items() if trials})
        if done:
            points = [(t.metrics[keys.METRIC_ACCURACY], t.metrics[keys.METRIC_FLOPS])
                      for t in done]
            metrics[keys.METRIC_HYPERVOLUME] = hypervolume(points)
        return metrics

    def summary(self) -> str:
        counts = (f"{sum(t.finished for t in self.trials)} finished, "
                  f"{sum(t.stopped_early for t in self.trials)} stopped early, "
                  f"{sum(t.error is not None for t in self.trials)} failed")
        lines = [f"Sweep {self.name}: {len(self.trials)} trials ({counts}) in "
                 f"{self.wall_seconds:.0f} s.",
                 *(f"  failed: {_describe(t.hp)}: {_last_line(t.error)}"
                   for t in self.trials if t.error is not None),
                 "Best points (Pareto front of accuracy vs FLOPs; early-stopped trials left out):",
                 f"  {'kind':<9}{'accuracy':>9}{'flops_ratio':>13}  config"]
        for t in self.pareto():
            lines.append(f"  {t.kind:<9}{t.metrics[keys.METRIC_ACCURACY]:>9.4f}"
                         f"{t.metrics[keys.METRIC_FLOPS_RATIO]:>13.3f}  {_describe(t.hp)}")
        lines.append(f"MLflow: experiment {self.experiment!r}, parent run {self.parent_run_id} "
                     f"at {self.tracking_uri}")
        link = ui_url(self.tracking_uri, self.experiment_id)
        if is_sqlite(self.tracking_uri):
            lines.append(f"  view it: mlflow ui --backend-store-uri {self.tracking_uri}, then "
                         f"open {link}")
        else:
            lines.append(f"  view it: {link}")
        baselines = f"{self.storage_path}-baselines"
        also = f" and {baselines}" if "://" not in baselines and Path(baselines).exists() else ""
        lines.append(f"Ray Tune results and checkpoints: {self.storage_path}{also}")
        return "\n".join(lines)


def _describe(hp: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in hp.items() if k != "kind")


def _last_line(error: str) -> str:
    # Ray wraps a trial's exception in a multi-line traceback; its last line is the message.
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else error


# ---------------------------------------------------------------------------------- entry point
def run_sweep(spec: SweepSpec, *, address: str | None = None, tracking_uri: str | None = None,
              resume: bool = False, name: str | None = None, smoke_test: bool = False,
              trainable: Callable[..., None] = train_trial,
              output: str = "progress") -> SweepResults:
    """Run (or with ``resume`` continue) a sweep; returns its results and prints a summary.

    ``address``: None starts a private local Ray; "auto" or "ray://HOST:PORT" joins a cluster.
    A Ray already initialised by the caller is used as it is (and left running).
    ``trainable``: what each trial runs, ``train_trial(config, context)`` or a wrapper of it
    (the tests inject faults this way).
    ``output``: ``progress`` (one live line), ``verbose`` (Ray Tune's own tables and logs) or
    ``quiet`` (the summary only); see :mod:`sweeps.progress`.
    """
    start = time.perf_counter()
    # Tune snapshots the experiment whenever a trial has checkpointed num_to_keep times: that
    # keeps --resume exact, so its warning about frequent snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if smoke_test:
        spec = make_smoke_spec(spec)
        check_spec(spec)
    requested = check_sweep_name(name or spec.name)
    check_dataset(spec)   # a missing data folder would fail every trial, twice
    uri = resolve_tracking_uri(tracking_uri or spec.tracking.uri)
    storage = _storage_path(spec.storage)
    if resume:   # before any store is opened or anything started: nothing to change yet
        _check_resumable(storage, requested)
    check_tracking(uri)   # before anything starts: a dead store would fail every trial
    sweep = _sweep_name(storage, requested, resume)
    try:
        results = _run_tracked(spec, sweep, uri, storage, address=address, resume=resume,
                               requested=requested, trainable=trainable, output=output)
    except SweepInterrupted:
        raise
    except KeyboardInterrupt:
        raise SweepInterrupted(sweep) from None
    results.wall_seconds = time.perf_counter() - start
    print(results.summary(), flush=True)
    return results


def _run_tracked(spec: SweepSpec, sweep: str, uri: str, storage: str, *, address: str | None,
                 resume: bool, requested: str, trainable: Callable[..., None],
                 output: str) -> SweepResults:
    from sweeps.progress import ray_output

    # Ray first: whether the tracking URI reaches every node is known only once Ray is up, and
    # a URI that does not must be refused before any run is recorded.
    with ray_output(output) as init_kwargs, ray_session(address, **init_kwargs) as ray_seconds:
        _check_cluster_tracking(uri, address)
        results = _run_with_parent(spec, sweep, uri, storage, address=address, resume=resume,
                                   requested=requested, trainable=trainable, output=output)
    results.ray_seconds = ray_seconds
    return results


def _run_with_parent(spec: SweepSpec, sweep: str, uri: str, storage: str, *,
                     address: str | None, resume: bool, requested: str,
                     trainable: Callable[..., None], output: str) -> SweepResults:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    location = artifact_location(uri, spec.experiment)
    experiment_id = ensure_experiment(client, spec.experiment, location)
    if not resume:
        close_stale_runs(client, experiment_id, requested)
    parent = open_parent_run(client, experiment_id, sweep=sweep, spec=spec, resume=resume)
    tracking = TrialTracking(uri, experiment_id, parent, sweep)
    results = SweepResults(sweep, spec.experiment, parent, uri, f"{storage}/{sweep}",
                           experiment_id=experiment_id)
    try:
        with _trial_tracking_uri(uri, spec, address) as trial_uri:
            context = _context(spec, tracking, trial_uri, storage)
            results.trials, results.tune_seconds = _run_experiments(spec, context, storage,
                                                                    resume, trainable, output)
            _time_latencies(spec, context, results.trials, output)
        _reconcile(client, tracking, results.trials)
        log_sweep_metrics(client, parent, results.summary_metrics())
    except SweepInterrupted as exc:
        _reconcile(client, tracking, exc.outcomes)
        finish_parent_run(client, parent, keys.STATUS_KILLED)
        raise
    except BaseException as exc:
        _close_after_error(client, tracking, keys.STATUS_KILLED
                           if isinstance(exc, KeyboardInterrupt) else keys.STATUS_FAILED)
        raise
    finish_parent_run(client, parent, _sweep_status(results.trials))
    return results


def _close_after_error(client, tracking: TrialTracking, status: str) -> None:
    # Best effort: the store itself may be what failed, and the original error must surface.
    try:
        _reconcile(client, tracking, [])
        finish_parent_run(client, tracking.parent_run_id, status)
    except Exception as exc:
        print(f"warning: could not mark sweep {tracking.sweep!r} {status} in MLflow: {exc}",
              file=sys.stderr, flush=True)


def _sweep_status(trials: list[TrialOutcome]) -> str:
    # A sweep in which no trial produced a result did not happen: the UI must not show success.
    failed = trials and all(t.error is not None for t in trials)
    return keys.STATUS_FAILED if failed else keys.STATUS_FINISHED


def _storage_path(storage: str) -> str:
    # Trials run in their own folders: a relative path must become absolute on the driver.
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def check_sweep_name(name: str) -> str:
    """The sweep name becomes a folder under the storage path: no separators, no '..'."""
    if not NAME_PATTERN.match(name):
        raise SpecError(f"sweep name {name!r} must be letters, digits, '_', '.' or '-' (starting "
                        "with a letter or digit): it names a folder under the storage path; "
                        "pass another --name")
    return name


def _check_resumable(storage: str, sweep: str) -> None:
    if not any(_restorable(storage, n) for n in (sweep, f"{sweep}-baselines")):
        raise FileNotFoundError(f"nothing to resume: no Tune experiment {sweep!r} under {storage}"
                                "; run without --resume (or check --name and the spec's storage)")


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


def _check_cluster_tracking(uri: str, address: str | None) -> None:
    """Refuse a store that trials on other machines cannot reach (they would fail or log apart)."""
    if address is None:
        return
    import ray

    ips = sorted({node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")})
    problem = cluster_tracking_problem(uri, ips)
    if problem:
        raise TrackingError(problem)


def cluster_tracking_problem(uri: str, node_ips: list[str]) -> str | None:
    """Why trials on the nodes ``node_ips`` cannot log to ``uri`` (None when they can).

    Loopback URIs and SQLite files (and the local server a sweep puts in front of one) exist on
    this machine only: fine for nodes on this machine (a loopback test cluster), not for others.
    """
    elsewhere = [ip for ip in node_ips if not _on_this_machine(ip)]
    if not elsewhere or not (is_loopback_uri(uri) or is_sqlite(uri)):
        return None
    return (f"the Ray cluster has nodes on other machines ({', '.join(elsewhere)}), and trials "
            f"there cannot reach the tracking store {uri} (it is local to this machine): start "
            "`mlflow server --host <head's private IP>` on the head and pass --tracking-uri "
            "http://<head's private IP>:5000")


def _on_this_machine(ip: str) -> bool:
    # Only addresses of this machine's own interfaces can be bound here.
    import socket

    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((ip, 0))
        return True
    except OSError:
        return False


@contextmanager
def ray_session(address: str | None = None, **init_kwargs: Any) -> Iterator[float]:
    """Ray for the sweep's duration: yields the seconds ``ray.init`` took (0 if already up).

    Whatever way the block is left (an error, Ctrl-C, SIGTERM turned into KeyboardInterrupt by
    the CLI), a Ray this started is shut down, its GCS, raylet, agents and workers with it.
    """
    import ray

    if ray.is_initialized():
        yield 0.0
        return
    with _loopback_only(address is None and LOCAL_NODE_IP_ENV not in os.environ):
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
            # ray.init installs a handler that aborts the driver on SIGTERM: take it back, so
            # that SIGTERM unwinds like Ctrl-C (runs KILLED, Ray and the server stopped).
            with sigterm_as_interrupt():
                yield time.perf_counter() - start
        finally:
            ray.shutdown()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a batch system's stop) raises KeyboardInterrupt while in the block."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        # A handler installed outside Python (Ray's) reads back as None: default it.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def _loopback_only(enabled: bool) -> Iterator[None]:
    """A private Ray that listens on 127.0.0.1 only.

    Ray's gRPC servers (GCS, raylet, workers) bind every interface unless the node address is
    exactly 127.0.0.1, and on Linux Ray swaps 127.0.0.1 for the machine's external address
    unless it believes multi-node clusters are off (its Windows/macOS default). A private Ray
    needs no cluster: turn that off while it starts, for this process and the ones it spawns.
    """
    if not enabled:
        yield
        return
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(CLUSTER_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[CLUSTER_ENV] = "0"
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[0]
        if saved[1] is None:
            os.environ.pop(CLUSTER_ENV, None)
        else:
            os.environ[CLUSTER_ENV] = saved[1]


def _token_auth_for_clusters() -> None:
    # Ray 2.60 clusters use token authentication by default, but ray.init with an explicit
    # address only sends the token (~/.ray/auth_token, RAY_AUTH_TOKEN[_PATH]) in token mode.
    # This is what Ray itself does for address="auto"; RAY_AUTH_MODE set by the user wins.
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _local_node_ip() -> dict[str, str]:
    # 127.0.0.1 (loopback only, see _loopback_only) unless HETERO_RAY_NODE_IP names another
    # address (empty: Ray's own choice, the machine's external address).
    ip = os.environ.get(LOCAL_NODE_IP_ENV, "127.0.0.1")
    return {"_node_ip_address": ip} if ip else {}


def _context(spec: SweepSpec, tracking: TrialTracking, trial_uri: str,
             storage: str) -> TrialContext:
    base = base_config(spec)
    data_dir = spec.dataset.data_dir
    fixed = TrialSpec(model=spec.model.name, variant=spec.model.variant,
                      options=dict(spec.model.options), dataset=spec.dataset.name,
                      data_dir=str(Path(data_dir).expanduser().resolve()) if data_dir else None,
                      download=spec.dataset.download, **spec.space.fixed_settings(),
                      protocol=spec.protocol)
    trial_tracking = TrialTracking(trial_uri, tracking.experiment_id, tracking.parent_run_id,
                                   tracking.sweep)
    return TrialContext(fixed=fixed, tracking=trial_tracking, model_label=spec.model.name,
                        family=base.family, variant=base.variant, varying=spec.space.varying(),
                        threads=thread_count(spec.resources.cpus),
                        log_models=spec.tracking.models == keys.MODELS_ALL)


# ---------------------------------------------------------------------------------- Tune
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
                           _optuna(spec, sweep, storage),
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


def _optuna(spec: SweepSpec, sweep: str, storage: str):
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


def _run_experiments(spec: SweepSpec, context: TrialContext, storage: str, resume: bool,
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
            ran = _outcomes(tuner.fit(), spec.protocol.epochs)
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


def _time_latencies(spec: SweepSpec, context: TrialContext, trials: list[TrialOutcome],
                    output: str) -> None:
    """The trained networks' latency, timed one at a time now that no trial runs (see
    sweeps.latency_pass); ``tracking.latency_batch: 0`` skips it."""
    if spec.tracking.latency_batch <= 0:
        return
    from sweeps.latency_pass import measure_latencies

    line = measure_latencies(trials, tracking=context.tracking, device=spec.protocol.device,
                             batch=spec.tracking.latency_batch, threads=context.threads,
                             cpus=spec.resources.cpus, gpus=spec.resources.gpus)
    if output != "quiet" and line:
        print(line, flush=True)


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


def _restorable(storage: str, name: str) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(f"{storage}/{name}")


def _tuner(spec: SweepSpec, plan: _Plan, context: TrialContext, storage: str, resume: bool,
           trainable: Callable[..., None], output: dict[str, Any] | None = None):
    from ray import tune

    output = output or {}
    trainable = _trainable(spec, context, trainable)
    if resume and _restorable(storage, plan.name):
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


def _outcomes(grid, epochs: int) -> list[TrialOutcome]:
    # The grid's results come in the order of Tune's trials. Their status after fit() is no
    # help (Tune marks every trial TERMINATED when it shuts down), but the experiment state it
    # saved just before tells a trial a scheduler stopped (TERMINATED) from one an interrupt cut
    # short (RUNNING, PENDING, PAUSED): the very state --resume continues from.
    from ray.tune import ExperimentAnalysis

    state = ExperimentAnalysis(grid.experiment_path, storage_filesystem=grid.filesystem)
    saved = {t.trial_id: t.status for t in state.trials}
    trials = grid._experiment_analysis.trials
    return [_outcome(result, epochs, trial.trial_id, saved.get(trial.trial_id, "PENDING"))
            for result, trial in zip(grid, trials, strict=True)]


def _outcome(result, epochs: int, trial_id: str, status: str) -> TrialOutcome:
    metrics = dict(result.metrics or {})
    error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
    interrupted = error is None and status not in ("TERMINATED", "ERROR")
    early = (error is None and not interrupted
             and int(metrics.get(keys.METRIC_EPOCH, epochs)) < epochs)
    return TrialOutcome(trial_id, dict(result.config.get("hp", {})), metrics, error, early,
                        interrupted, result.checkpoint)


def _reconcile(client, tracking: TrialTracking, outcomes: list[TrialOutcome]) -> None:
    """Fix up child runs a worker could not close itself (stopped early, interrupted, killed)."""
    for outcome in outcomes:
        if outcome.stopped_early:
            mark_child_run(client, tracking, outcome.trial_id, status=keys.STATUS_FINISHED,
                           stopped_early=True)
        elif outcome.interrupted:  # its worker may have closed it as if a scheduler stopped it
            mark_child_run(client, tracking, outcome.trial_id, status=keys.STATUS_KILLED,
                           stopped_early=False)
    for run in child_runs(client, tracking):
        if run.info.status == keys.STATUS_RUNNING:
            # an attempt whose process died
            client.set_terminated(run.info.run_id, keys.STATUS_KILLED)
