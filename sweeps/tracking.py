"""MLflow for sweeps: where runs go, a reachability check, the parent run and the trial runs.

One parent run per sweep (created on the driver) and one child run per trial (created inside the
trial's worker, nested through the ``mlflow.parentRunId`` tag). A child run is found again by its
``trial_id`` tag, so retried and resumed trials keep logging into the run they started.
"""

from __future__ import annotations

import json
import numbers
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps import keys

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

__all__ = ["TrackingError", "TrialTracking", "TrialRun", "default_tracking_uri",
           "resolve_tracking_uri", "is_sqlite", "sqlite_path", "check_tracking",
           "artifact_location", "ensure_experiment", "sweep_description", "open_parent_run",
           "finish_parent_run", "parent_run", "find_child_run", "child_runs", "mark_child_run", "git_commit",
           "is_loopback_uri", "close_stale_runs", "tracking_uri_problem",
           "no_artifact_progress_bars", "ui_url", "ui_route", "metric_value", "spec_params",
           "log_sweep_metrics", "source_tags", "DEFAULT_UI"]

DEFAULT_DB = "mlflow.db"
DEFAULT_UI = "http://127.0.0.1:5000"   # where `mlflow ui` serves a local store
UI_TRAINING_VIEW = "workflowType=machine_learning"  # MLflow 3's UI: runs, not GenAI pages
METRIC_DIGITS = 6                      # significant digits a float metric is logged with
# the fix when a store to read is not there
STORE_HINT = ("the --tracking-uri of the sweep's store "
              "(e.g. sqlite:////abs/path/mlflow.db or http://host:5000)")


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message names the URI and the fix."""


# ------------------------------------------------------------------------------ where runs go
def default_tracking_uri(folder: str | os.PathLike | None = None) -> str:
    """``sqlite:///<abs>/mlflow.db`` in ``folder`` (the current one by default)."""
    return f"sqlite:///{Path(folder or os.getcwd()).resolve() / DEFAULT_DB}"


def is_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def sqlite_path(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


def is_loopback_uri(uri: str) -> bool:
    """An http(s) URI whose host is this machine's loopback (unreachable from other nodes)."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_tracking_uri(uri: str | None) -> str:
    """The one resolution every command uses: the given URI, else ``$MLFLOW_TRACKING_URI``, else
    ``mlflow.db`` here; relative SQLite paths made absolute (trials run in other folders);
    refused with the fix when MLflow could not use it (:class:`TrackingError`)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return default_tracking_uri()
    _check_scheme(uri)
    if is_sqlite(uri) and not sqlite_path(uri).is_absolute():
        return f"sqlite:///{sqlite_path(uri).resolve()}"
    return uri.rstrip("/")


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of SQLite-backed experiments live in plain folders next to the database.

    That keeps them readable with or without a server in front of the file. A remote server
    decides for itself (None).
    """
    if not is_sqlite(uri):
        return None
    return (sqlite_path(uri).parent / "mlartifacts" / experiment).as_uri()


def _check_scheme(uri: str) -> None:
    problem = tracking_uri_problem(uri)
    if problem:
        raise TrackingError(problem)


def tracking_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a tracking store (None if it may be); the sweep and the analysis
    both ask this before they touch anything.

    MLflow would take sqlite://x (two slashes) as a database host, and an unknown scheme fails
    deep inside the first trial.
    """
    if uri.startswith("sqlite:") and not is_sqlite(uri):
        return (f"tracking URI {uri!r}: an SQLite URI has three slashes before a relative path "
                "(sqlite:///mlflow.db) or four before an absolute one (sqlite:////abs/mlflow.db)")
    if not uri.startswith(("sqlite:///", "http://", "https://", "databricks")):
        return (f"tracking URI {uri!r} is not supported: pass sqlite:///PATH.db or "
                "http(s)://HOST:PORT of an mlflow server")
    return None


@contextmanager
def no_artifact_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar per artifact file it downloads (or uploads in parts): loading
    one model, a sweep's dozens of configs or a trial's model in Tune's output need none. Scoped,
    and an explicit ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` of the user's wins."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # mlflow.environment_variables, read per call
    if name in os.environ:
        yield
        return
    os.environ[name] = "false"
    try:
        yield
    finally:
        os.environ.pop(name, None)


# ------------------------------------------------------------------------------ the UI
def ui_route(experiment_id: str, run_id: str | None = None, artifact: str | None = None) -> str:
    """The MLflow UI's page (from the ``#``): an experiment's training-runs table, a run, or a
    run's artifact file, each in the training view (MLflow 3 otherwise opens the GenAI pages:
    an experiment's overview, a run without its metrics and params in sight)."""
    page = f"#/experiments/{experiment_id}"
    if run_id is not None:
        page += f"/runs/{run_id}" + (f"/artifacts/{artifact}" if artifact else "")
    return f"{page}?{UI_TRAINING_VIEW}"


def ui_url(tracking_uri: str, experiment_id: str, run_id: str | None = None,
           artifact: str | None = None) -> str:
    """A link into the MLflow UI: on the tracking server itself, or for a local store on
    ``mlflow ui``'s default address."""
    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else DEFAULT_UI
    return f"{base.rstrip('/')}/{ui_route(experiment_id, run_id, artifact)}"


def metric_value(value: float) -> float:
    """A metric as logged: integers exact, floats to 6 significant digits (an accuracy to the
    image on 100,000 test images, milliseconds to the microsecond), so the UI shows 0.986111, not
    0.9861111111111112."""
    if isinstance(value, numbers.Integral):
        return float(value)
    return float(f"{value:.{METRIC_DIGITS}g}")


# ------------------------------------------------------------------------------ reachability
def check_tracking(uri: str, *, existing: bool = False, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingError` unless the store at ``uri`` can be used, checked up front so a
    bad store is one line, not a failure in every trial or minutes of MLflow's retries.

    The one reachability check of every command. A sweep logs (the default): an SQLite file may
    still be made but its folder must be writable. A reader (``existing=True``: the analysis,
    ``hetero export``) needs the file to be there, since MLflow would silently create an empty
    one and then report "no experiment".
    """
    if uri.startswith(("http://", "https://")):
        _check_http(uri, timeout, existing)
    elif is_sqlite(uri):
        _check_sqlite(sqlite_path(uri), existing)


def _check_http(uri: str, timeout: float, existing: bool) -> None:
    start = "start it (e.g. `mlflow server --host 127.0.0.1 --port PORT --workers 1`), or pass "
    fix = start + (STORE_HINT if existing else
                   "--tracking-uri sqlite:///mlflow.db to log to a local file")
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        problem = f"answered HTTP {exc.code}"
        if exc.code == 403:
            fix = "start the server with --allowed-hosts including this host name"
    except (urllib.error.URLError, OSError) as exc:
        problem = f"is not reachable ({getattr(exc, 'reason', exc)})"
    raise TrackingError(f"MLflow tracking server {uri} {problem}: {fix}.")


def _check_sqlite(path: Path, existing: bool) -> None:
    uri = f"sqlite:///{path}"
    if existing:  # read only: the folder's permissions do not matter, the file's presence does
        if not path.is_file():
            raise TrackingError(f"no MLflow store at {uri} (no file {path}): run a sweep first, "
                                f"or pass {STORE_HINT}.")
    elif not path.parent.is_dir():
        raise TrackingError(f"MLflow store {uri}: folder {path.parent} does not exist; "
                            "create it or pass another --tracking-uri.")
    elif not os.access(path.parent, os.W_OK) or (path.exists()
                                                 and not os.access(path, os.W_OK)):
        raise TrackingError(f"MLflow store {uri} is not writable; fix the permissions or pass "
                            "another --tracking-uri.")
    try:
        with sqlite3.connect(path, timeout=10) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise TrackingError(f"MLflow store {uri} is not an SQLite database ({exc}); "
                            "move it away or pass another --tracking-uri.") from None


# ------------------------------------------------------------------------------ parent run
def ensure_experiment(client, name: str, location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = client.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    client.set_experiment_tag(experiment_id, keys.TAG_EXPERIMENT_KIND,
                              keys.EXPERIMENT_KIND_TRAINING)
    return experiment_id


def sweep_description(spec: SweepSpec, experiment_id: str, run_id: str) -> str:
    """The parent run's description (markdown): what the sweep was (the settings it searches
    are ``spec.varying()``), and where its report is."""
    from sweeps.spec import AXES, Range

    def shown(values) -> Any:  # as the logged sweep.yaml writes them
        return values.to_dict() if isinstance(values, Range) else list(values)

    searched = ", ".join(f"{AXES[d]} {shown(spec.values(d))}" for d in spec.varying())
    report = ui_route(experiment_id, run_id, f"{keys.ARTIFACT_REPORT_DIR}/summary.md")
    return (f"**Sweep {spec.name}**: widen-shrink LW-DNA search on "
            f"{spec.model.name} / {spec.dataset.name}, {spec.search.type} search over "
            f"{searched or 'one combination'}; uniform baselines at widths "
            f"{list(spec.baselines)}; {spec.protocol.epochs} epochs per trial."
            f"\n\nEach child run is one trial (its trained network under Models). Report: "
            f"[{keys.ARTIFACT_REPORT_DIR}/summary.md]({report}) after `hetero pareto "
            f"--experiment <name> --out report` (front, LW-DNA vs uniform, latency).")


def _find_parent_run(client, experiment_id: str, sweep: str):
    found = client.search_runs(
        [experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
        filter_string=f"tags.{keys.TAG_KIND} = '{keys.KIND_SWEEP}' "
                      f"and tags.{keys.TAG_SWEEP} = '{sweep}'")
    return found[0] if found else None


def parent_run(uri: str, experiment: str, sweep: str):
    """The latest parent run of ``sweep`` at ``uri``, read without changing anything (None when
    the store, the experiment or the run does not exist)."""
    from mlflow import MlflowClient

    if is_sqlite(uri) and not sqlite_path(uri).is_file():
        return None
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return None if found is None else _find_parent_run(client, found.experiment_id, sweep)


def open_parent_run(client, experiment_id: str, *, sweep: str, spec: SweepSpec, resume: bool,
                    tags: dict[str, str] | None = None) -> str:
    """The sweep's parent run: reused on resume, created otherwise (spec logged as a YAML
    artifact, and described)."""
    import yaml

    if resume and (run := _find_parent_run(client, experiment_id, sweep)) is not None:
        client.update_run(run.info.run_id, status=keys.STATUS_RUNNING)
        return run.info.run_id
    if resume:
        print(f"note: no parent run of sweep {sweep!r} in this tracking store; resuming under a "
              "new one (finished trials keep their runs under the old parent)", file=sys.stderr)
    run_tags = {keys.TAG_KIND: keys.KIND_SWEEP, keys.TAG_SWEEP: sweep,
                keys.TAG_GIT_COMMIT: git_commit(), **source_tags(sweep), **(tags or {})}
    run = client.create_run(experiment_id, run_name=sweep, tags=run_tags)
    _log_params(client, run.info.run_id, spec_params(spec))
    client.log_text(run.info.run_id, yaml.safe_dump(spec.to_dict(), sort_keys=False),
                    keys.ARTIFACT_SPEC)
    client.set_tag(run.info.run_id, keys.TAG_NOTE,
                   sweep_description(spec, experiment_id, run.info.run_id))
    return run.info.run_id


def spec_params(spec: SweepSpec) -> dict[str, str]:
    """The sweep spec as the parent run's params, one per leaf (``protocol.epochs``,
    ``space.width_mults``, ``search.type``): the runs table can show and compare them."""
    def leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                yield from leaves(inner, f"{prefix}.{key}" if prefix else str(key))
        else:
            yield prefix, value

    return {key: _param_text(value) for key, value in leaves(spec.to_dict(), "")
            if value is not None}


def _log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):   # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=items[start:start + 100])


def log_sweep_metrics(client, run_id: str, metrics: dict[str, float]) -> None:
    """The sweep's summary metrics on its parent run (a resumed sweep logs them again)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, metric_value(v), now, 0)
                                      for k, v in metrics.items()])


def source_tags(sweep: str) -> dict[str, str]:
    """What the UI shows as a run's (and a logged model's) source: the sweep, not the script
    that happened to run it (a Ray worker's ``default_worker.py``)."""
    return {keys.TAG_SOURCE_NAME: f"hetero sweep {sweep}", keys.TAG_SOURCE_TYPE: "LOCAL"}


def finish_parent_run(client, run_id: str, status: str = keys.STATUS_FINISHED) -> None:
    client.set_terminated(run_id, status)


def close_stale_runs(client, experiment_id: str, sweep: str) -> int:
    """Mark KILLED the RUNNING parent (and its RUNNING children) of an earlier ``sweep``.

    Such a parent is left by a driver that was killed (SIGKILL, a lost machine): nothing will
    ever finish it. Its Tune state is kept, so ``--resume --name SWEEP`` can still continue it.
    """
    stale = client.search_runs(
        [experiment_id], max_results=1000,
        filter_string=f"tags.{keys.TAG_KIND} = '{keys.KIND_SWEEP}' and tags.{keys.TAG_SWEEP} = "
                      f"'{sweep}' and attributes.status = '{keys.STATUS_RUNNING}'")
    for parent in stale:
        tracking = TrialTracking("", experiment_id, parent.info.run_id, sweep)
        for child in child_runs(client, tracking):
            if child.info.status == keys.STATUS_RUNNING:
                client.set_terminated(child.info.run_id, keys.STATUS_KILLED)
        client.set_terminated(parent.info.run_id, keys.STATUS_KILLED)
        print(f"note: an earlier run of sweep {sweep!r} (parent run {parent.info.run_id}) was "
              f"still RUNNING with no driver; marked it and its running trials KILLED (continue "
              f"it instead with --resume --name {sweep})", file=sys.stderr, flush=True)
    return len(stale)


def git_commit() -> str:
    """HEAD of the checkout this package runs from, '+dirty' with uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=root, capture_output=True,
                               timeout=5).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


# ------------------------------------------------------------------------------ trial runs
@dataclass(frozen=True)
class TrialTracking:
    """What a trial worker needs to log (picklable; handed to trials with the trainable)."""

    uri: str
    experiment_id: str
    parent_run_id: str
    sweep: str


def find_child_run(client, tracking: TrialTracking, trial_id: str):
    found = client.search_runs(
        [tracking.experiment_id], max_results=1,
        filter_string=f"tags.{keys.TAG_TRIAL_ID} = '{trial_id}' "
                      f"and tags.`{keys.TAG_PARENT_RUN_ID}` = '{tracking.parent_run_id}'")
    return found[0] if found else None


def child_runs(client, tracking: TrialTracking) -> list:
    """Every child run of the sweep's parent run."""
    return list(client.search_runs(
        [tracking.experiment_id], max_results=10_000,
        filter_string=f"tags.`{keys.TAG_PARENT_RUN_ID}` = '{tracking.parent_run_id}'"))


def mark_child_run(client, tracking: TrialTracking, trial_id: str, *, status: str,
                   stopped_early: bool | None = None) -> None:
    """Driver-side fix-up of a trial's run (a stopped or crashed worker cannot do it itself)."""
    run = find_child_run(client, tracking, trial_id)
    if run is None:
        return
    if stopped_early is not None:
        client.set_tag(run.info.run_id, keys.TAG_STOPPED_EARLY, str(stopped_early).lower())
    if run.info.status != status:
        client.set_terminated(run.info.run_id, status)


class TrialRun:
    """One trial's child run, as seen from the trial worker. ``seconds``: time spent in MLflow."""

    def __init__(self, client, run_id: str, seconds: float = 0.0, previous=None) -> None:
        self.client, self.run_id, self.seconds = client, run_id, seconds
        # What an earlier attempt of the trial logged: a resumed attempt re-runs the epochs after
        # its last checkpoint, and must not log a second row for a step it already logged.
        data = previous.data if previous is not None else None
        self.logged_keys = set(data.metrics) if data else set()
        self.logged_through = int(data.metrics.get(keys.METRIC_EPOCH, 0)) if data else 0
        self.previous_tags = dict(data.tags) if data else {}
        self.previous_metrics = dict(data.metrics) if data else {}
        self.written: set[tuple[str, int]] = set()   # (key, step) logged by this attempt
        # An earlier attempt finished the run (metrics, model, FINISHED) and died before Tune
        # took its last report: nothing is left to train or to log.
        self.finished_before = (previous is not None
                                and previous.info.status == keys.STATUS_FINISHED
                                and self.previous_tags.get(keys.TAG_STOPPED_EARLY) != "true")

    @classmethod
    def open(cls, tracking: TrialTracking, trial_id: str, *, run_name: str,
             tags: dict[str, str], params: dict[str, Any]) -> TrialRun:
        """Reuse the trial's run if an earlier attempt made one, else create it."""
        from mlflow import MlflowClient
        from mlflow.entities import Param

        start = time.perf_counter()
        client = MlflowClient(tracking.uri)
        existing = find_child_run(client, tracking, trial_id)
        if existing is not None:
            run = cls(client, existing.info.run_id, time.perf_counter() - start, existing)
            if not run.finished_before:
                client.update_run(existing.info.run_id, status=keys.STATUS_RUNNING)
            return run
        run_tags = {**tags, keys.TAG_TRIAL_ID: trial_id, keys.TAG_SWEEP: tracking.sweep,
                    keys.TAG_PARENT_RUN_ID: tracking.parent_run_id}
        run = client.create_run(tracking.experiment_id, run_name=run_name, tags=run_tags)
        client.log_batch(run.info.run_id,
                         params=[Param(k, _param_text(v)) for k, v in params.items()])
        return cls(client, run.info.run_id, time.perf_counter() - start)

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        # Synchronous on purpose: MLflow's async queue makes set_terminated wait up to 1 s for
        # its logging thread, more than the ~20 ms a direct log_batch costs per epoch.
        from mlflow.entities import Metric

        start = time.perf_counter()
        now = int(time.time() * 1000)
        batch = [Metric(k, metric_value(v), now, step) for k, v in metrics.items()
                 if _is_number(v) and not self._already_logged(k, step)]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)
            self.written.update((m.key, step) for m in batch)
        self.seconds += time.perf_counter() - start

    def _already_logged(self, key: str, step: int) -> bool:
        # One row per (key, step), the first written: per-epoch keys are logged at every step up
        # to logged_through, final-only keys only at the last one, so a key an earlier attempt
        # logged and a step not past it is a duplicate; so is one this attempt logged already.
        return (key, step) in self.written or (step <= self.logged_through
                                               and key in self.logged_keys)

    def fail(self, message: str) -> None:
        """Close the run FAILED with the reason as a tag (shown in the UI, read by a retry)."""
        try:
            self.client.set_tag(self.run_id, keys.TAG_FAILURE, message[:5000])
        except Exception as exc:  # best effort, like end()
            print(f"warning: could not tag MLflow run {self.run_id}: {exc}", file=sys.stderr)
        self.end(keys.STATUS_FAILED)

    def finish(self, result, *, step: int, metrics: dict[str, float]) -> None:
        """Final metrics, tags and artifacts of a trial that ran to the end; status FINISHED."""
        from mlflow.entities import RunTag

        start = time.perf_counter()
        self.log_metrics(metrics, step)
        self.client.log_batch(self.run_id, tags=[RunTag(keys.TAG_STOPPED_EARLY, "false")])
        self.client.log_text(self.run_id, result.config.to_json(), keys.ARTIFACT_CONFIG)
        self.client.log_text(self.run_id, result.base_config.to_json(), keys.ARTIFACT_BASE_CONFIG)
        self.client.log_figure(self.run_id, width_figure(result), keys.ARTIFACT_WIDTH_PLOT)
        # One more small call so the total includes the artifacts (the rest is milliseconds).
        self.seconds += time.perf_counter() - start
        self.log_metrics({keys.METRIC_TRACKING_SECONDS: self.seconds}, step)
        self.client.set_terminated(self.run_id, keys.STATUS_FINISHED)

    def end(self, status: str, *, stopped_early: bool = False) -> None:
        """Close a run that did not finish; best effort (it runs while an error propagates)."""
        try:
            if stopped_early:
                self.client.set_tag(self.run_id, keys.TAG_STOPPED_EARLY, "true")
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # the driver marks leftover RUNNING runs at the end
            print(f"warning: could not close MLflow run {self.run_id}: {exc}", file=sys.stderr)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _param_text(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    return str(value)


def width_figure(result):
    """The trial's per-layer width profile, drawn by the one width plot (sweeps.width_plot)."""
    import pandas as pd  # lazily, with matplotlib: only a finishing trial draws

    from sweeps.width_plot import plot_width_profiles

    row = {"widths": dict(result.config.widths), "base_widths": dict(result.base_config.widths),
           keys.METRIC_ACCURACY: result.accuracy}
    return plot_width_profiles(pd.DataFrame([row]), max_profiles=1)
