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

import errno
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from hetero.trial import TrialSpec
from sweeps import keys
from sweeps.arguments import SweepArguments, find_record
from sweeps.lease import held_by, lease, lease_folder
from sweeps.spec import (
    NAME_PATTERN,
    Range,
    SpecError,
    SweepSpec,
    base_config,
    check_dataset,
    check_spec,
    relative_note,
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
    sqlite_path,
    ui_url,
)
from sweeps.trainable import TrialContext, thread_count, train_trial, trial_dirname, trial_name

__all__ = ["run_sweep", "SweepResults", "TrialOutcome", "SweepInterrupted", "SweepFinished",
           "StoreFailed",
           "ray_session",
           "sigterm_as_interrupt", "cluster_tracking_problem", "resource_problem",
           "private_token_file"]

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

    def __init__(self, sweep: str, outcomes: list[TrialOutcome] | None = None, *,
                 hint: str | None = None) -> None:
        super().__init__(sweep)
        self.sweep, self.outcomes = sweep, outcomes or []
        self.hint = hint

    @property
    def resume_hint(self) -> str:
        return self.hint or f"--resume --name {self.sweep}"


class SweepFinished(Exception):
    """``--resume`` of a sweep that finished: nothing to do, nothing changed."""

    def __init__(self, sweep: str, parent_run_id: str) -> None:
        super().__init__(f"sweep {sweep!r} finished already (parent run {parent_run_id}): "
                         "nothing to resume; run without --resume for a new sweep")


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
        Pareto implementation: sweeps.front)."""
        from sweeps.front import non_dominated_mask

        done = [t for t in self.trials if t.finished]
        points = [(t.metrics[keys.METRIC_ACCURACY], t.metrics[keys.METRIC_FLOPS]) for t in done]
        keep = non_dominated_mask(points, ("max", "min")) if done else []
        return sorted((t for t, k in zip(done, keep, strict=True) if k),
                      key=lambda t: t.metrics[keys.METRIC_FLOPS])

    def summary_metrics(self) -> dict[str, float]:
        """The sweep in a few numbers, for its parent run (sweeps.keys: parent run metrics)."""
        from sweeps.front import hypervolume

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
              experiment: str | None = None,
              trainable: Callable[..., None] = train_trial,
              output: str = "progress") -> SweepResults:
    """Run (or with ``resume`` continue) a sweep; returns its results and prints a summary.

    ``address``: None starts a private local Ray; "auto" or "ray://HOST:PORT" joins a cluster.
    A Ray already initialised by the caller is used as it is (and left running).
    ``resume``: the sweep's own arguments (tracking URI, experiment, ``smoke_test``, spec) are
    read back from its record; a flag given again must agree with them.
    ``experiment``: the MLflow experiment (default: the spec's, ``<it>-smoke`` for a smoke test).
    ``trainable``: what each trial runs, ``train_trial(config, context)`` or a wrapper of it
    (the tests inject faults this way).
    ``output``: ``progress`` (one live line), ``verbose`` (Ray Tune's own tables and logs) or
    ``quiet`` (the summary only); see :mod:`sweeps.progress`.
    """
    start = time.perf_counter()
    # Tune snapshots the experiment whenever a trial has checkpointed num_to_keep times: that
    # keeps --resume exact, so its warning about frequent snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    args, spec, recorded = _arguments(spec, address=address, tracking_uri=tracking_uri,
                                      resume=resume, name=name, smoke_test=smoke_test,
                                      experiment=experiment)
    _check_before_start(spec, args, resume=resume, recorded=recorded)
    folder = lease_folder(args.storage, args.tracking_uri)
    requested = args.name
    live = None if resume else held_by(folder, requested)
    args = replace(args, name=requested if resume else _sweep_name(args.storage, requested, live))
    if resume:
        _refuse_finished(args)   # reads only: a finished sweep's store stays as it is
    with lease(folder, args.name):
        if not resume:
            args.save()
        # A RUNNING parent of the requested name that no driver holds was left by a dead one.
        stale = None if resume or live else requested
        try:
            results = _run_tracked(spec, args, resume=resume, stale=stale,
                                   trainable=trainable, output=output)
        except SweepInterrupted as exc:
            exc.hint = _resume_hint(args)
            raise
        except KeyboardInterrupt:
            raise SweepInterrupted(args.name, hint=_resume_hint(args)) from None
    results.wall_seconds = time.perf_counter() - start
    print(results.summary(), flush=True)
    return results


def _arguments(spec: SweepSpec, *, address: str | None, tracking_uri: str | None, resume: bool,
               name: str | None, smoke_test: bool, experiment: str | None
               ) -> tuple[SweepArguments, SweepSpec, bool]:
    """The sweep's arguments, the spec it runs, and whether they come from its record."""
    if resume:
        record = _resume_record(spec, name, smoke_test)
        if record is not None:
            uri = resolve_tracking_uri(tracking_uri) if tracking_uri else None
            record.conflicts({"--tracking-uri": uri, "--smoke-test": smoke_test,
                              "--experiment": experiment})
            record.check_spec(spec.to_dict(), "the spec given")
            run_spec = _run_spec(spec, record.smoke_test, record.experiment)
            return replace(record, address=address or record.address), run_spec, True
    run_spec = _run_spec(spec, smoke_test, experiment)
    uri = resolve_tracking_uri(tracking_uri or run_spec.tracking.uri)
    args = SweepArguments(check_sweep_name(name or run_spec.name), uri, run_spec.experiment,
                          _storage_path(run_spec.storage), smoke_test, address, spec.to_dict())
    return args, run_spec, False


def _run_spec(spec: SweepSpec, smoke_test: bool, experiment: str | None) -> SweepSpec:
    """What runs: the spec, or its smoke version; in ``experiment`` when one is given."""
    if smoke_test:
        check_spec(spec, read_data=False)   # the spec's own settings, without its data folders
        spec = make_smoke_spec(spec)
    if experiment is not None:
        if not NAME_PATTERN.match(experiment):
            raise SpecError(f"--experiment {experiment!r} must be letters, digits, '_', '.' or "
                            "'-': it names the experiment's artifact folder")
        spec = replace(spec, tracking=replace(spec.tracking, experiment=experiment))
    return spec


def _resume_record(spec: SweepSpec, name: str | None, smoke_test: bool) -> SweepArguments | None:
    """The record of the sweep to resume: a real one in the spec's storage, a smoke test in the
    smoke test's (./ray_results)."""
    smoke = make_smoke_spec(spec)
    name = check_sweep_name(name or (smoke.name if smoke_test else spec.name))
    places = [(_storage_path(s.storage), s is smoke) for s in (smoke, spec)]
    for storage, smoke_record in (places if smoke_test else places[::-1]):
        record = find_record([storage], name)
        if record is not None and (record.smoke_test == smoke_record
                                   or storage == _storage_path(spec.storage)):
            return record
    return None


def _check_before_start(spec: SweepSpec, args: SweepArguments, *, resume: bool,
                        recorded: bool) -> None:
    """Everything a user can fix, checked before Ray, MLflow or any trial starts (and before
    anything is written): each would otherwise fail every trial, or hang."""
    check_spec(spec)
    check_dataset(spec)   # a missing data folder would fail every trial, twice
    _check_storage(args.storage, spec.storage)
    if args.address is None:
        _check_local_resources(spec)
    if resume and not recorded:   # before any store is opened: nothing to change yet
        _check_resumable(args.storage, args.name)
    try:
        check_tracking(args.tracking_uri)   # a dead store would fail every trial
    except TrackingError as exc:
        given = spec.tracking.uri if args.tracking_uri == resolve_tracking_uri(
            spec.tracking.uri) else None
        raise TrackingError(f"{exc}{relative_note(given)}") from None


def _check_storage(storage: str, given: str) -> None:
    """Tune's storage folder can be made and written (checked where it first exists)."""
    if "://" in storage:
        return
    path = Path(storage)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    else:
        return
    raise SpecError(f"storage {given}: {problem}{relative_note(given)}; set storage: to a "
                    "folder this user can write")


def _check_local_resources(spec: SweepSpec) -> None:
    """A private Ray gets this machine's CPUs and GPUs: a trial asking for more would wait for
    them forever. (A Ray already up, or a cluster, is checked once joined.)"""
    import ray
    import torch

    if ray.is_initialized():
        return
    node = {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
    problem = resource_problem(spec, [node], "this machine")
    if problem:
        raise SpecError(problem)


def _check_cluster_resources(spec: SweepSpec, address: str | None) -> None:
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    problem = resource_problem(spec, nodes, "the Ray cluster" if address else "this Ray")
    if problem:
        raise SpecError(problem)


def resource_problem(spec: SweepSpec, nodes: list[dict[str, float]], where: str) -> str | None:
    """Why no node of ``nodes`` (Ray resource dicts) can run one trial of ``spec`` (None if one
    can): Ray would keep such a trial pending forever."""
    want = spec.resources
    if any(n.get("CPU", 0) >= want.cpus and n.get("GPU", 0) >= want.gpus for n in nodes):
        return None
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if want.gpus > gpus:
        has = f"at most {gpus:g} GPU(s) on a node" if gpus else "no GPU"
        return (f"resources.gpus {want.gpus:g}: {where} has {has}, so a trial would wait for "
                "one forever; set resources.gpus: 0 and protocol.device: auto (or run "
                "--smoke-test, which runs on the CPU)")
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    return (f"resources.cpus {want.cpus:g}: {where} has at most {cpus:g} CPUs on a node (with "
            f"{want.gpus:g} GPUs), so a trial would wait forever; lower resources.cpus")


def _resume_hint(args: SweepArguments) -> str:
    """The flags that continue the sweep: its name, and what no record keeps (remote storage)."""
    hint = f"--resume --name {args.name}"
    if "://" not in args.storage:
        return hint
    extra = [f"--tracking-uri {args.tracking_uri}", f"--experiment {args.experiment}",
             *(["--smoke-test"] if args.smoke_test else [])]
    return " ".join([hint, *extra])


def _refuse_finished(args: SweepArguments) -> None:
    """``--resume`` of a sweep that finished changes nothing (its parent run keeps its end)."""
    from sweeps.tracking import parent_run

    run = parent_run(args.tracking_uri, args.experiment, args.name)
    if run is not None and run.info.status == keys.STATUS_FINISHED:
        raise SweepFinished(args.name, run.info.run_id)


def _run_tracked(spec: SweepSpec, args: SweepArguments, *, resume: bool, stale: str | None,
                 trainable: Callable[..., None], output: str) -> SweepResults:
    from sweeps.progress import ray_output

    # Ray first: whether the tracking URI reaches every node is known only once Ray is up, and
    # a URI that does not must be refused before any run is recorded.
    with ray_output(output) as init_kwargs, ray_session(args.address,
                                                          **init_kwargs) as ray_seconds:
        _check_cluster_tracking(args.tracking_uri, args.address)
        _check_cluster_resources(spec, args.address)
        results = _run_with_parent(spec, args, resume=resume, stale=stale,
                                   trainable=trainable, output=output)
    results.ray_seconds = ray_seconds
    return results


def _run_with_parent(spec: SweepSpec, args: SweepArguments, *, resume: bool, stale: str | None,
                     trainable: Callable[..., None], output: str) -> SweepResults:
    from mlflow import MlflowClient

    uri, sweep, storage = args.tracking_uri, args.name, args.storage
    client = MlflowClient(uri)
    location = artifact_location(uri, spec.experiment)
    experiment_id = ensure_experiment(client, spec.experiment, location)
    if stale is not None:
        close_stale_runs(client, experiment_id, stale)
    parent = open_parent_run(client, experiment_id, sweep=sweep, spec=spec, resume=resume,
                             tags={keys.TAG_SWEEP_ARGS: args.tag()})
    tracking = TrialTracking(uri, experiment_id, parent, sweep)
    results = SweepResults(sweep, spec.experiment, parent, uri, f"{storage}/{sweep}",
                           experiment_id=experiment_id)
    headroom = Headroom(uri, sweep)
    try:
        with _trial_tracking_uri(uri, spec, args.address) as trial_uri:
            context = _context(spec, tracking, trial_uri, storage)
            results.trials, results.tune_seconds = _run_experiments(spec, context, storage,
                                                                    resume, trainable, output)
            _time_latencies(spec, context, results.trials, output)
    except SweepInterrupted as exc:
        headroom.release()
        _close_after_error(client, tracking, keys.STATUS_KILLED, exc.outcomes)
        raise
    except BaseException as exc:
        headroom.release()
        _close_after_error(client, tracking, keys.STATUS_KILLED
                           if isinstance(exc, KeyboardInterrupt) else keys.STATUS_FAILED)
        _raise_store_failure(exc, uri, sweep, storage)
        raise
    headroom.release()
    try:
        _reconcile(client, tracking, results.trials)
        log_sweep_metrics(client, parent, results.summary_metrics())
        finish_parent_run(client, parent, _sweep_status(results.trials))
    except Exception as exc:
        _close_after_error(client, tracking, keys.STATUS_FAILED)
        _raise_store_failure(exc, uri, sweep, storage)
        raise
    return results


def _raise_store_failure(exc: BaseException, uri: str, sweep: str, storage: str) -> None:
    failure = store_failure(exc, uri, sweep, storage)
    if failure is not None:
        raise failure from exc


def _close_after_error(client, tracking: TrialTracking, status: str,
                       outcomes: list[TrialOutcome] = ()) -> None:
    # Best effort: the store itself may be what failed, and the original error must surface.
    # A parent left RUNNING here is no driver's: the next sweep of the name, or --resume,
    # finds it so (its lease is free).
    try:
        _reconcile(client, tracking, list(outcomes))
        finish_parent_run(client, tracking.parent_run_id, status)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        print(f"warning: could not mark sweep {tracking.sweep!r} {status} in MLflow ({first}); "
              f"`--resume --name {tracking.sweep}` will", file=sys.stderr, flush=True)


class StoreFailed(RuntimeError):
    """The tracking store (or the disk under it) failed while the sweep ran: the sweep ended
    FAILED; the message names the store and how to go on."""


# How the stores word it when the disk under them is full or gone read-only.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
# A disk with less free space than this (the headroom given back included) counts as full: what
# fails on a full disk is often a file read back half-written, not the write itself.
FULL_BELOW = 16 * 2**20


def store_failure(exc: BaseException, uri: str, sweep: str,
                  storage: str = "") -> StoreFailed | None:
    """``exc`` as one line naming the store or the full disk, when that is what failed."""
    import sqlite3

    from mlflow.exceptions import MlflowException

    if isinstance(exc, KeyboardInterrupt):
        return None
    full = _full_disk([sqlite_path(uri) if is_sqlite(uri) else None,
                       None if "://" in storage else storage])
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if full:
        what = f"the disk under {full} is full ({type(exc).__name__}: {first})"
    elif ((isinstance(exc, OSError) and exc.errno in DISK_ERRORS)
          or isinstance(exc, MlflowException | sqlite3.Error)):
        what = f"the tracking store {uri} failed ({first})"
    else:
        return None
    return StoreFailed(f"sweep {sweep!r}: {what}; free disk space or fix the store, then "
                       f"continue with --resume --name {sweep}")


def _full_disk(paths: list) -> str | None:
    import shutil

    for path in filter(None, paths):
        existing = next((p for p in (Path(path), *Path(path).parents) if p.exists()), None)
        if existing is not None and shutil.disk_usage(existing).free < FULL_BELOW:
            return str(existing)
    return None


class Headroom:
    """A little disk space held beside an SQLite store while the sweep runs, and given back for
    its last writes: on a disk that filled up meanwhile, the sweep can still mark its parent
    and trial runs KILLED or FAILED instead of leaving them RUNNING."""

    SIZE = 4 * 2**20

    def __init__(self, uri: str, sweep: str) -> None:
        self.path = sqlite_path(uri).parent / f".{sweep}.headroom" if is_sqlite(uri) else None
        if self.path is None:
            return
        try:
            with open(self.path, "wb") as out:
                out.write(bytes(self.SIZE))
        except OSError:   # no space to hold: nothing to give back either
            self.release()

    def release(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


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


def _sweep_name(storage: str, requested: str, live: str | None) -> str:
    """The Tune experiment / MLflow sweep name of a fresh run: never an old folder's, nor the
    name a live sweep holds (``live``: who holds it)."""
    taken = "://" not in storage and any(
        Path(storage, n).exists() for n in (requested, f"{requested}-baselines"))
    if not taken and live is None:
        return requested
    stamped = f"{requested}-{time.strftime('%Y%m%d-%H%M%S')}"
    why = (f"sweep {requested} is running ({live})" if live else
           f"{storage}/{requested} exists (resume it with --resume --name {requested})")
    print(f"{why}; this run is named {stamped}", flush=True)
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
        private_token_file()   # a local Ray may just have generated it
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

    private_token_file()
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def private_token_file() -> Path | None:
    """Make the Ray token file readable by its owner only (0600); returns it if it exists.

    ``ray get-auth-token --generate`` writes it with the umask's mode (0644: any user of the
    machine could read the token, and join or run code on the cluster), and ``ray up`` copies it
    to every node as it is.
    """
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None
    if mode & 0o077:
        path.chmod(0o600)
        print(f"note: {path} was readable by other users (mode {mode:o}); made it 0600",
              file=sys.stderr, flush=True)
    return path


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
                        family=base.family, variant=base.variant, varying=spec.varying(),
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
    return [_outcome(result, epochs, trial, saved.get(trial.trial_id, "PENDING"))
            for result, trial in zip(grid, trials, strict=True)]


def _outcome(result, epochs: int, trial, status: str) -> TrialOutcome:
    metrics = dict(result.metrics or {})
    # A trial that never reported (Ctrl-C before its first epoch) has no result config.
    config = result.config or trial.config or {}
    error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
    interrupted = error is None and status not in ("TERMINATED", "ERROR")
    early = (error is None and not interrupted
             and int(metrics.get(keys.METRIC_EPOCH, epochs)) < epochs)
    return TrialOutcome(trial.trial_id, dict(config.get("hp", {})), metrics, error, early,
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
