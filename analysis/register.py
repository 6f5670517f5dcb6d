"""Register a sweep's winners: the Pareto-front networks and the width-1.0 uniform baseline.

Each becomes a version of one registered model, tagged with its accuracy, FLOPs and FLOPs ratio
(and latency where measured), with aliases ``front-1`` (cheapest) ... ``front-k`` and
``baseline``. Registering the same sweep twice adds no duplicate: a run already registered under
the name keeps its version (aliases are set again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from analysis.errors import AnalysisError
from analysis.load import Sweep
from analysis.pareto import Front
from analysis.units import format_count, format_percent
from sweeps import keys

__all__ = ["RegisteredVersion", "register_winners", "BASELINE_ALIAS", "FRONT_ALIAS"]

BASELINE_ALIAS = "baseline"
FRONT_ALIAS = "front-{}"          # 1 = the cheapest front point
TAGGED_METRICS = (keys.METRIC_ACCURACY, keys.METRIC_FLOPS, keys.METRIC_FLOPS_RATIO,
                  keys.METRIC_PARAMS, keys.METRIC_LATENCY_MS)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    alias: str
    run_id: str
    accuracy: float
    flops: float
    flops_ratio: float


def register_winners(sweep: Sweep, front: Front, name: str) -> list[RegisteredVersion]:
    """Register the front's runs and the width-1.0 uniform baseline as versions of ``name``."""
    chosen = _chosen_runs(sweep.trials, front)
    # MLflow's SQLite registry looks the logged model up with a default MlflowClient() (the
    # process's tracking URI), not with this client's: point the process at the sweep's store.
    import mlflow

    mlflow.set_tracking_uri(sweep.tracking_uri)
    client = MlflowClient(tracking_uri=sweep.tracking_uri, registry_uri=sweep.tracking_uri)
    _ensure_registered_model(client, name, sweep)
    versions = _versions_by_run(client, name, [row["run_id"] for _, row in chosen])
    out = []
    for alias, row in chosen:
        version = versions.get(row["run_id"]) or _new_version(client, name, row, sweep.name)
        versions[row["run_id"]] = version
        client.set_registered_model_alias(name, alias, version)
        out.append(RegisteredVersion(name, version, alias, row["run_id"],
                                     *(float(row[m]) for m in TAGGED_METRICS[:3])))
    return out


def _chosen_runs(trials: pd.DataFrame, front: Front) -> list[tuple[str, pd.Series]]:
    by_run = trials.set_index("run_id", drop=False)
    front_ids = [r for r in front.points.sort_values(keys.METRIC_FLOPS)["run_id"]
                 if by_run.loc[r, "kind"] == keys.KIND_LWDNA]
    chosen = [(FRONT_ALIAS.format(i), by_run.loc[r]) for i, r in enumerate(front_ids, 1)]
    baselines = trials[(trials["kind"] == keys.KIND_BASELINE)
                       & (trials[keys.PARAM_WIDTH_MULT] == 1.0) & ~trials["stopped_early"]]
    if not baselines.empty:
        chosen.append((BASELINE_ALIAS, baselines.sort_values(keys.PARAM_SEED).iloc[0]))
    missing = [row["run_name"] for _, row in chosen if not _text(row.get("model_uri"))]
    if missing:
        raise AnalysisError(f"runs {', '.join(map(repr, missing))} logged no model (the sweep ran "
                            "with tracking.models: none, or before models were logged): re-run "
                            "it with tracking.models: all to register its networks")
    if not chosen:
        raise AnalysisError("nothing to register: the front has no LW-DNA and the sweep no "
                            "finished width-1.0 baseline; add 1.0 to the spec's baselines")
    return chosen


def _text(value) -> str:
    return value if isinstance(value, str) and value else ""


def _ensure_registered_model(client: MlflowClient, name: str, sweep: Sweep) -> None:
    try:
        client.create_registered_model(
            name, description=f"LW-DNA networks found by sweep {sweep.name!r} (experiment "
                              f"{sweep.experiment_name!r}) and its width-1.0 uniform baseline.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise AnalysisError(f"cannot create registered model {name!r} at "
                                f"{sweep.tracking_uri}: {exc.message}") from None


def _versions_by_run(client: MlflowClient, name: str, run_ids: list[str]) -> dict[str, str]:
    """{run id: version of ``name`` holding its model} for the runs already registered (one
    query for all of them)."""
    listed = ", ".join(f"'{r}'" for r in dict.fromkeys(run_ids))
    found: dict[str, str] = {}
    for version in client.search_model_versions(f"name = '{name}' and run_id IN ({listed})"):
        found.setdefault(version.run_id, version.version)
    return found


def _new_version(client: MlflowClient, name: str, row: pd.Series, sweep: str) -> str:
    """A new version of ``name`` holding this run's model."""
    tags = {m: repr(float(row[m])) for m in TAGGED_METRICS if _finite(row.get(m))}
    tags.update({keys.TAG_KIND: row["kind"], keys.TAG_SWEEP: sweep, "run_name": row["run_name"]})
    version = client.create_model_version(name, source=row["model_uri"], run_id=row["run_id"],
                                          tags=tags, description=_description(row),
                                          model_id=row["model_uri"].removeprefix("models:/"))
    return version.version


def _description(row: pd.Series) -> str:
    return (f"{row['run_name']}: accuracy {format_percent(row[keys.METRIC_ACCURACY])}, "
            f"{format_count(row[keys.METRIC_FLOPS])} FLOPs "
            f"({row[keys.METRIC_FLOPS_RATIO]:.3f} of the width-1.0 baseline)")


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
