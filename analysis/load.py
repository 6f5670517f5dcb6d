"""Load one sweep's trials from MLflow into a tidy DataFrame (one row per finished trial).

Columns (see TRIAL_COLUMNS): hyperparameters from params (numbers as floats, ``seed`` as Int64),
final metrics (latency ones NaN where not measured), ``run_id``/``run_name``, ``model_uri``
(the logged network, None without one), ``latency_device``, ``stopped_early`` (bool: an
ASHA-style scheduler stopped the trial; kept here, left out of fronts), and the layer widths
from the config artifacts: ``widths`` (dict layer -> channels, forward order, from
keys.ARTIFACT_CONFIG) and ``base_widths`` (the width-1.0 baseline, keys.ARTIFACT_BASE_CONFIG);
``None`` where the artifact is missing.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import mlflow.artifacts
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from analysis.errors import AnalysisError
from hetero.trial import defaults as trial_defaults
from sweeps import keys
from sweeps.tracking import TrackingError, check_tracking, no_artifact_progress_bars
from sweeps.tracking import resolve_tracking_uri as _resolve_tracking_uri

TRIAL_KINDS = (keys.KIND_LWDNA, keys.KIND_BASELINE)
# Columns from the trial's own settings (hetero.trial.TrialSpec declares them): numbers as
# floats (the seed as Int64), text as text, plus the protocol's epochs.
_DEFAULTS = {**trial_defaults(), keys.PARAM_EPOCHS: 0}
NUMERIC_PARAMS = tuple(n for n, v in _DEFAULTS.items() if n != keys.PARAM_SEED
                       and isinstance(v, int | float) and not isinstance(v, bool))
# booleans as their logged text ("True" / "False"): a column to group by, never a number
TEXT_PARAMS = tuple(n for n, v in _DEFAULTS.items() if v is None or isinstance(v, str | bool))
# train_accuracy: MLflow's latest value of the per-epoch metric, i.e. the last epoch's running
# accuracy over its (augmented, train-mode) mini-batches
FINAL_METRICS = (keys.METRIC_ACCURACY, keys.METRIC_TRAIN_ACCURACY, keys.METRIC_FLOPS,
                 keys.METRIC_PARAMS,
                 keys.METRIC_FLOPS_PAPER, keys.METRIC_PARAMS_PAPER, keys.METRIC_BASELINE_FLOPS,
                 keys.METRIC_BASELINE_PARAMS, keys.METRIC_FLOPS_RATIO, keys.METRIC_PARAMS_RATIO,
                 keys.METRIC_SEARCH_SECONDS, keys.METRIC_TRAIN_SECONDS,
                 keys.METRIC_IMAGES_PER_SECOND, keys.METRIC_EPOCHS_COMPLETED,
                 keys.METRIC_TEACHER_ACCURACY,
                 *keys.LATENCY_METRICS)
TRIAL_COLUMNS = ("kind", *TEXT_PARAMS, *NUMERIC_PARAMS, keys.PARAM_SEED, *FINAL_METRICS,
                 keys.METRIC_SECONDS_PER_IMAGE, "run_id", "run_name", "stopped_early",
                 "start_time", "widths", "base_widths", "model_uri", "latency_device", "num_test")


@dataclass(frozen=True)
class Sweep:
    """One sweep: its parent run, where it lives, and its finished trials."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str
    parent_run_id: str
    name: str                      # the parent's keys.TAG_SWEEP tag (or its run name)
    trials: pd.DataFrame
    n_unfinished: int              # child runs skipped because status != FINISHED
    other_parent_run_ids: tuple[str, ...] = ()  # older re-runs of the sweep in the experiment
    n_failed: int = 0              # of n_unfinished: FAILED (diverged, crashed), never on a front
    status: str = keys.STATUS_FINISHED  # the parent's: KILLED when the sweep was interrupted


def load_sweep(experiment: str | None = None, *, parent_run_id: str | None = None,
               tracking_uri: str | None = None) -> Sweep:
    """The sweep's finished trials; the most recent parent run of ``experiment`` unless
    ``parent_run_id`` picks one."""
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    parent, exp, others = _find_parent(client, uri, experiment, parent_run_id)
    children = _search_children(client, exp.experiment_id, parent.info.run_id)
    finished = [r for r in children if r.info.status == keys.STATUS_FINISHED
                and r.data.tags.get(keys.TAG_KIND) in TRIAL_KINDS]
    name = parent.data.tags.get(keys.TAG_SWEEP) or parent.info.run_name
    if not finished:
        raise AnalysisError(
            f"sweep {name!r} (parent run {parent.info.run_id} in experiment {exp.name!r}) has no "
            f"finished trial ({len(children)} child runs, none FINISHED with kind "
            f"{'/'.join(TRIAL_KINDS)}): wait for the sweep to finish, or pick another sweep "
            "with --parent-run-id")
    with tempfile.TemporaryDirectory() as tmp, no_artifact_progress_bars():
        rows = [_trial_row(run, uri, Path(tmp)) for run in finished]
    return Sweep(uri, exp.name, exp.experiment_id, parent.info.run_id, name, _to_frame(rows),
                 n_unfinished=sum(r.info.status != keys.STATUS_FINISHED for r in children),
                 other_parent_run_ids=tuple(others),
                 n_failed=sum(r.info.status == keys.STATUS_FAILED for r in children),
                 status=parent.info.status)


def load_trials(experiment: str | None = None, *, parent_run_id: str | None = None,
                tracking_uri: str | None = None) -> pd.DataFrame:
    """Just the trials DataFrame of :func:`load_sweep`."""
    return load_sweep(experiment, parent_run_id=parent_run_id, tracking_uri=tracking_uri).trials


def list_sweeps(experiment: str, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """The experiment's sweep parent runs, newest first (to choose one with parent_run_id).
    ``latest``: the newest parent of its sweep name, the one :func:`load_sweep` reads for that
    name; an older one is a re-run it superseded (pool only the latest, or seeds count twice)."""
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    exp = _get_experiment(client, uri, experiment)
    parents = _search_parents(client, exp.experiment_id)
    sweeps = pd.DataFrame([{"parent_run_id": p.info.run_id,
                            "sweep": p.data.tags.get(keys.TAG_SWEEP) or p.info.run_name,
                            "status": p.info.status,
                            "start_time": pd.to_datetime(p.info.start_time, unit="ms")}
                           for p in parents], columns=["parent_run_id", "sweep", "status",
                                                       "start_time"])
    sweeps["latest"] = ~sweeps["sweep"].duplicated()   # newest first: the first of each name
    return sweeps


def load_history(run_id: str, *, tracking_uri: str | None = None,
                 metrics: tuple[str, ...] = keys.PER_EPOCH_METRICS) -> pd.DataFrame:
    """One trial's per-epoch metrics: index ``epoch`` (the MLflow step), one column per metric."""
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    series = {}
    for metric in metrics:
        history = _call(uri, lambda m=metric: client.get_metric_history(run_id, m))
        if history:
            # a resumed trial may log an epoch twice: the later value wins
            points = sorted(history, key=lambda p: (p.step, p.timestamp))
            series[metric] = pd.Series({p.step: p.value for p in points}, dtype=float)
    frame = pd.DataFrame(series).sort_index()
    frame.index.name = "epoch"
    return frame


# ---- tracking store -------------------------------------------------------------------------

def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """The store to read, resolved and checked as every hetero command does (sweeps.tracking):
    it must exist, since MLflow would silently create an empty SQLite file or retry an absent
    server."""
    try:
        uri = _resolve_tracking_uri(tracking_uri)
    except TrackingError as exc:
        raise AnalysisError(f"{exc} (--tracking-uri)") from None
    try:
        check_tracking(uri, existing=True)
    except TrackingError as exc:
        raise AnalysisError(str(exc)) from None
    return uri


def _call(uri, fn):
    """Run one MLflow request, turning store failures into an AnalysisError."""
    try:
        return fn()
    except MlflowException as exc:
        raise AnalysisError(f"MLflow at {uri} failed: {exc.message}: check --tracking-uri "
                            "and that the store is an MLflow store") from None


# ---- finding the runs -------------------------------------------------------------------------

def _get_experiment(client: MlflowClient, uri: str, name: str):
    exp = _call(uri, lambda: client.get_experiment_by_name(name))
    if exp is None:
        known = [e.name for e in _call(uri, lambda: client.search_experiments(max_results=50))]
        raise AnalysisError(
            f"no experiment named {name!r} at {uri} (experiments there: "
            f"{', '.join(map(repr, known)) or 'none'}): pass one of those with --experiment, "
            "or the store the sweep wrote to with --tracking-uri")
    return exp


def _find_parent(client, uri, experiment, parent_run_id):
    """(parent run, experiment, ids of the other parents) for a name and/or a parent run id."""
    if parent_run_id:
        parent = _get_run(client, uri, parent_run_id)
        kind = parent.data.tags.get(keys.TAG_KIND)
        if kind in TRIAL_KINDS:
            raise AnalysisError(
                f"run {parent_run_id} is a {kind} trial, not a sweep parent: pass its parent "
                f"run id {parent.data.tags.get(keys.TAG_PARENT_RUN_ID)} with --parent-run-id")
        exp = _call(uri, lambda: client.get_experiment(parent.info.experiment_id))
        if experiment and exp.name != experiment:
            raise AnalysisError(f"run {parent_run_id} belongs to experiment {exp.name!r}, not "
                                f"{experiment!r}: drop --experiment or fix the run id")
        return parent, exp, []
    if not experiment:
        raise AnalysisError("name the sweep: pass --experiment NAME (its most recent sweep is "
                            "used) or --parent-run-id ID")
    exp = _get_experiment(client, uri, experiment)
    parents = _search_parents(client, exp.experiment_id)
    if not parents:
        raise AnalysisError(
            f"experiment {experiment!r} has no sweep parent run (tag {keys.TAG_KIND}="
            f"{keys.KIND_SWEEP}): it is empty or was not written by a sweep; run the sweep, or "
            "pass --parent-run-id of the parent run")
    return parents[0], exp, [p.info.run_id for p in parents[1:]]


def _get_run(client, uri, run_id) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise AnalysisError(f"no run {run_id!r} at {uri}: check --parent-run-id (or pass "
                            "--experiment NAME to use its most recent sweep)") from None


def _search_parents(client, experiment_id) -> list[Run]:
    query = f"tags.`{keys.TAG_KIND}` = '{keys.KIND_SWEEP}'"
    return _search_all(client, experiment_id, query, order_by=["attributes.start_time DESC"])


def _search_children(client, experiment_id, parent_run_id) -> list[Run]:
    query = f"tags.`{keys.TAG_PARENT_RUN_ID}` = '{parent_run_id}'"
    return _search_all(client, experiment_id, query)


def _search_all(client, experiment_id, query, order_by=None) -> list[Run]:
    runs, token = [], None
    while True:
        page = _call(client.tracking_uri, lambda t=token: client.search_runs(
            [experiment_id], filter_string=query, max_results=1000, order_by=order_by,
            page_token=t))
        runs.extend(page)
        token = page.token
        if not token:
            return runs


# ---- one row per trial ----------------------------------------------------------------------

def _trial_row(run: Run, uri: str, tmp: Path) -> dict:
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    row = {"kind": tags.get(keys.TAG_KIND)}
    row.update({p: params.get(p) for p in TEXT_PARAMS})
    # older runs may carry these only as tags
    for name, tag in ((keys.PARAM_MODEL, keys.TAG_MODEL), (keys.PARAM_VARIANT, keys.TAG_VARIANT),
                      (keys.PARAM_DATASET, keys.TAG_DATASET),
                      (keys.PARAM_CRITERION, keys.TAG_CRITERION)):
        row[name] = row[name] if row[name] is not None else tags.get(tag)
    row.update({p: _number(params.get(p)) for p in (*NUMERIC_PARAMS, keys.PARAM_SEED)})
    row.update({m: metrics.get(m, float("nan")) for m in FINAL_METRICS})
    row.update(run_id=run.info.run_id, run_name=run.info.run_name,
               stopped_early=tags.get(keys.TAG_STOPPED_EARLY, "").lower() == "true",
               start_time=pd.to_datetime(run.info.start_time, unit="ms"),
               model_uri=tags.get(keys.TAG_MODEL_URI),
               latency_device=tags.get(keys.TAG_LATENCY_DEVICE), num_test=_test_images(run))
    configs = _call(uri, lambda: _config_widths(run, uri, tmp))
    row["widths"] = configs[keys.ARTIFACT_CONFIG]
    row["base_widths"] = configs[keys.ARTIFACT_BASE_CONFIG]
    return row


def _test_images(run: Run) -> float:
    """Test-split size from the run's logged dataset profile (NaN when it has none)."""
    for entry in getattr(run.inputs, "dataset_inputs", None) or []:
        try:
            return float(json.loads(entry.dataset.profile)["num_test"])
        except (TypeError, ValueError, KeyError):
            continue
    return float("nan")


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _config_widths(run: Run, uri: str, tmp: Path) -> dict[str, dict[str, int] | None]:
    """{artifact name: widths or None} for the two config artifacts of one run."""
    # by the run's artifact URI: the runs:/ route costs several store queries per file
    root = run.info.artifact_uri
    # names only: by artifact URI, MLflow lists paths prefixed with the URI's last folder
    listed = mlflow.artifacts.list_artifacts(artifact_uri=root, tracking_uri=uri)
    present = {PurePosixPath(f.path).name for f in listed if not f.is_dir}
    found = {}
    for name in (keys.ARTIFACT_CONFIG, keys.ARTIFACT_BASE_CONFIG):
        found[name] = None  # not every run logs both configs (a baseline has no LW-DNA)
        if name in present:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{root}/{name}", dst_path=str(tmp / run.info.run_id),
                tracking_uri=uri)
            found[name] = _read_widths(Path(local))
    return found


def _read_widths(path: Path) -> dict[str, int] | None:
    try:
        widths = json.loads(path.read_text()).get("widths", {})
        return {layer: int(w) for layer, w in widths.items()}
    except (ValueError, AttributeError):
        return None  # a damaged config should not hide the rest of the sweep


def _to_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    frame[keys.PARAM_SEED] = frame[keys.PARAM_SEED].astype("Int64")
    frame["stopped_early"] = frame["stopped_early"].astype(bool)
    frame[keys.METRIC_SECONDS_PER_IMAGE] = 1.0 / frame[keys.METRIC_IMAGES_PER_SECOND]
    return frame.sort_values(["kind", keys.METRIC_FLOPS], ignore_index=True)
