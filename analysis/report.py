"""One sweep's report: plots, CSV tables and a markdown summary, also logged on the parent run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from analysis.compare import Comparison, arm_statistics, compare_to_uniform
from analysis.errors import AnalysisError
from analysis.load import Sweep, load_history, load_sweep
from analysis.pareto import (
    ACC_FLOPS,
    HYPERPARAMETERS,
    Front,
    default_reference,
    hypervolume,
    pareto_front,
)
from analysis.plots import (
    plot_accuracy_vs_cost,
    plot_data_size,
    plot_training_curves,
    plot_width_profiles,
    save_figure,
)
from analysis.summary import summary_markdown
from analysis.units import format_count
from sweeps import keys

MAX_PROFILES = 6   # width profiles overlaid in widths.png (more lines stop being readable)
MAX_CURVES = 5     # trials in curves.png


@dataclass(frozen=True)
class Report:
    sweep: Sweep
    front: Front
    comparison: Comparison
    aggregated: bool            # seeds were averaged before the front was taken
    paths: dict[str, Path]      # file name -> where it was written
    logged_to_run: str | None   # parent run that holds the copies, None when not logged


def create_report(*, experiment: str | None = None, parent_run_id: str | None = None,
                  tracking_uri: str | None = None, out_dir: str | Path, log_x: bool = False,
                  log_to_mlflow: bool = True) -> Report:
    """Write the report files into ``out_dir`` and return everything computed on the way
    (``.paths``: file name -> path; the verdict, the front, the comparison)."""
    sweep = load_sweep(experiment, parent_run_id=parent_run_id, tracking_uri=tracking_uri)
    if _candidates(sweep.trials).empty:   # checked before any file is written
        raise AnalysisError(f"sweep {sweep.name!r}: none of its {len(sweep.trials)} finished "
                            "trial(s) ran every epoch (a scheduler stopped them early), so no "
                            "point can be compared; run the sweep to the end (--resume) or "
                            "without an early-stopping scheduler")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    aggregated = has_repeated_seeds(sweep.trials)
    front = pareto_front(sweep.trials, ACC_FLOPS, aggregate=aggregated)
    comparison = compare_to_uniform(sweep.trials, aggregate=True)
    arms = arm_statistics(sweep.trials)
    paths = _write_figures(sweep, front, out, aggregated, log_x)
    if _has_data_size_axis(comparison.paired_summary):
        fig = plot_data_size(comparison.paired_summary, arms,
                             title=f"Sweep {sweep.name}: LW-DNA vs uniform by training-set size")
        paths["datasize.png"] = save_figure(fig, out / "datasize", ("png",))[0]
    paths["front.csv"] = _write_csv(front.points, out / "front.csv")
    paths["trials.csv"] = _write_csv(sweep.trials, out / "trials.csv")
    paths["paired.csv"] = _write_csv(comparison.paired_summary, out / "paired.csv")
    paths["arms.csv"] = _write_csv(arms, out / "arms.csv")
    reference = default_reference(_candidates(sweep.trials), ACC_FLOPS)
    text = summary_markdown(sweep, front, comparison, aggregated,
                            volume=hypervolume(front.points, ACC_FLOPS, reference),
                            reference=reference, arms=arms)
    paths["summary.md"] = out / "summary.md"
    paths["summary.md"].write_text(text, encoding="utf-8")
    logged = _log_to_parent(sweep, paths) if log_to_mlflow else None
    return Report(sweep, front, comparison, aggregated, paths, logged)


def _has_data_size_axis(paired_summary: pd.DataFrame) -> bool:
    column = keys.PARAM_DATA_FRACTION
    return column in paired_summary and paired_summary[column].nunique() > 1


def has_repeated_seeds(trials: pd.DataFrame) -> bool:
    """True when some hyperparameter setting was run with more than one seed."""
    by = [c for c in HYPERPARAMETERS if c in trials.columns]
    return bool(len(trials)) and bool(trials.groupby(by, dropna=False).size().max() > 1)


def _write_figures(sweep: Sweep, front: Front, out: Path, aggregated: bool, log_x: bool
                   ) -> dict[str, Path]:
    title = f"Sweep {sweep.name}: accuracy vs FLOPs"
    fig = plot_accuracy_vs_cost(sweep.trials, aggregate=aggregated, log_x=log_x, title=title)
    png, svg = save_figure(fig, out / "pareto", ("png", "svg"))
    chosen = _profile_trials(sweep.trials, front)
    widths = save_figure(plot_width_profiles(chosen, max_profiles=MAX_PROFILES),
                         out / "widths", ("png",))[0]
    histories = {_curve_label(row): load_history(row["run_id"], tracking_uri=sweep.tracking_uri)
                 for _, row in chosen.head(MAX_CURVES).iterrows()}
    curves = save_figure(plot_training_curves(histories, title="Training curves (front LW-DNAs)"),
                         out / "curves", ("png",))[0]
    return {"pareto.png": png, "pareto.svg": svg, "widths.png": widths, "curves.png": curves}


def _profile_trials(trials: pd.DataFrame, front: Front) -> pd.DataFrame:
    """The LW-DNA trials behind the front points (cheapest first); the most accurate LW-DNAs when
    none made the front."""
    lwdna = trials[(trials["kind"] == keys.KIND_LWDNA) & ~trials["stopped_early"]]
    on_front = set(front.points.loc[front.points["kind"] == keys.KIND_LWDNA, "run_id"])
    chosen = lwdna[lwdna["run_id"].isin(on_front)]
    if chosen.empty:
        chosen = lwdna.nlargest(MAX_PROFILES, keys.METRIC_ACCURACY)
    return chosen.sort_values(keys.METRIC_FLOPS).head(MAX_PROFILES)


def _curve_label(row: pd.Series) -> str:
    return (f"{row[keys.PARAM_CRITERION]}, ×{row[keys.PARAM_WIDTH_MULT]:g}, "
            f"{format_count(row[keys.METRIC_FLOPS])} FLOPs, seed {row[keys.PARAM_SEED]}")


def _candidates(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[~trials["stopped_early"]].dropna(subset=[c for c, _ in ACC_FLOPS])


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame = frame.copy()
    for column in ("widths", "base_widths"):  # dicts -> JSON text, readable back with json.loads
        if column in frame:
            frame[column] = [json.dumps(v) if isinstance(v, dict) else "" for v in frame[column]]
    frame.to_csv(path, index=False)
    return path


def _log_to_parent(sweep: Sweep, paths: dict[str, Path]) -> str:
    client = MlflowClient(tracking_uri=sweep.tracking_uri)
    for path in paths.values():
        client.log_artifact(sweep.parent_run_id, str(path), artifact_path=keys.ARTIFACT_REPORT_DIR)
    return sweep.parent_run_id
