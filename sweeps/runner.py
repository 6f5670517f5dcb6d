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

The pieces: sweeps.ray_env (Ray, its nodes' resources and reach), sweeps.plans (Tune experiments),
sweeps.results (outcomes, summary, reconciliation with MLflow), sweeps.parent_run (the parent
run's end after an error); this module checks the arguments and runs them in order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from hetero.trial import TrialSpec
from sweeps import keys
from sweeps.arguments import SweepArguments, find_record
from sweeps.lease import held_by, lease, lease_folder
from sweeps.parent_run import (
    Headroom,
    StoreFailed,
    close_after_error,
    raise_store_failure,
    refuse_finished,
)
from sweeps.plans import restorable, run_experiments
from sweeps.ray_env import (
    check_cluster_resources,
    check_cluster_tracking,
    check_local_resources,
    cluster_tracking_problem,
    private_token_file,
    ray_session,
    resource_problem,
    sigterm_as_interrupt,
)
from sweeps.results import (
    SweepFinished,
    SweepInterrupted,
    SweepResults,
    TrialOutcome,
    reconcile,
    sweep_status,
)
from sweeps.spec import (
    NAME_PATTERN,
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
    close_stale_runs,
    ensure_experiment,
    finish_parent_run,
    is_sqlite,
    log_sweep_metrics,
    open_parent_run,
    resolve_tracking_uri,
)
from sweeps.trainable import TrialContext, thread_count, train_trial

# run_sweep and its arguments' checks live here; the rest was split out by concept, and the
# names callers import from sweeps.runner stay importable here.
__all__ = ["run_sweep", "SweepResults", "TrialOutcome", "SweepInterrupted", "SweepFinished",
           "StoreFailed",
           "ray_session",
           "sigterm_as_interrupt", "cluster_tracking_problem", "resource_problem",
           "private_token_file"]


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
        refuse_finished(args)   # reads only: a finished sweep's store stays as it is
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
        check_local_resources(spec)
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


def _resume_hint(args: SweepArguments) -> str:
    """The flags that continue the sweep: its name, and what no record keeps (remote storage)."""
    hint = f"--resume --name {args.name}"
    if "://" not in args.storage:
        return hint
    extra = [f"--tracking-uri {args.tracking_uri}", f"--experiment {args.experiment}",
             *(["--smoke-test"] if args.smoke_test else [])]
    return " ".join([hint, *extra])


def _run_tracked(spec: SweepSpec, args: SweepArguments, *, resume: bool, stale: str | None,
                 trainable: Callable[..., None], output: str) -> SweepResults:
    from sweeps.progress import ray_output

    # Ray first: whether the tracking URI reaches every node is known only once Ray is up, and
    # a URI that does not must be refused before any run is recorded.
    with ray_output(output) as init_kwargs, ray_session(args.address,
                                                          **init_kwargs) as ray_seconds:
        check_cluster_tracking(args.tracking_uri, args.address)
        check_cluster_resources(spec, args.address)
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
            results.trials, results.tune_seconds = run_experiments(spec, context, storage,
                                                                    resume, trainable, output)
            _time_latencies(spec, context, results.trials, output)
    except SweepInterrupted as exc:
        headroom.release()
        close_after_error(client, tracking, keys.STATUS_KILLED, exc.outcomes)
        raise
    except BaseException as exc:
        headroom.release()
        close_after_error(client, tracking, keys.STATUS_KILLED
                           if isinstance(exc, KeyboardInterrupt) else keys.STATUS_FAILED)
        raise_store_failure(exc, uri, sweep, storage)
        raise
    headroom.release()
    try:
        reconcile(client, tracking, results.trials)
        log_sweep_metrics(client, parent, results.summary_metrics())
        finish_parent_run(client, parent, sweep_status(results.trials))
    except Exception as exc:
        close_after_error(client, tracking, keys.STATUS_FAILED)
        raise_store_failure(exc, uri, sweep, storage)
        raise
    return results


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
    if not any(restorable(storage, n) for n in (sweep, f"{sweep}-baselines")):
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
