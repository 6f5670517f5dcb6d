"""Tune + MLflow overhead per trial of a sweep (default: the quickstart), on a local Ray.

    python bench/sweep_overhead.py                 # the quickstart as shipped (2 trials at a time)
    python bench/sweep_overhead.py --sequential    # the same trials one at a time

Overhead per trial = (sweep wall time x trial slots - the trials' own time) / trials, where a
trial's own time is its search (score + shrink) plus its training (all epochs, evaluation
included), as measured by hetero. Reported with and without the one-time start of Ray and of
the local MLflow server, and split into what happens inside the trial worker (MLflow calls,
tune.report + checkpoints, data loading and first-use imports).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "sweeps" / "configs" / "quickstart.yaml"


def finished_trial_runs(results) -> list:
    from mlflow import MlflowClient

    from sweeps import keys

    client = MlflowClient(results.tracking_uri)
    experiment = client.get_experiment_by_name(results.experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{keys.TAG_PARENT_RUN_ID}` = '{results.parent_run_id}'")
    finished = [run for run in runs if run.info.status == "FINISHED"]
    return sorted(finished, key=lambda run: run.info.start_time)


def own_seconds(run) -> float:
    from sweeps import keys

    metrics = run.data.metrics
    return metrics[keys.METRIC_SEARCH_SECONDS] + metrics[keys.METRIC_TRAIN_SECONDS]


def overhead_report(results, slots: int) -> list[str]:
    from sweeps import keys

    runs = finished_trial_runs(results)
    n, own = len(runs), sum(own_seconds(r) for r in runs)
    # A child run lives from the worker's first MLflow call to its last: its wall time minus
    # search and training is the per-trial work Tune and MLflow add inside the worker.
    in_run = [(r.info.end_time - r.info.start_time) / 1000 - own_seconds(r) for r in runs]
    gaps = [(b.info.start_time - a.info.end_time) / 1000 for a, b in zip(runs, runs[1:], strict=False)]
    mean = statistics.mean
    lines = [
        f"trials: {n}, trial slots: {slots}",
        f"sweep wall time: {results.wall_seconds:.1f} s (Ray start {results.ray_seconds:.1f} s; "
        f"everything outside Tuner.fit, incl. the MLflow server: "
        f"{results.wall_seconds - results.tune_seconds:.1f} s; Tuner.fit: {results.tune_seconds:.1f} s)",
        f"trials' own time (search + training): {own:.1f} s in total",
        f"overhead per trial, whole sweep (wall x slots - own) / trials: "
        f"{(results.wall_seconds * slots - own) / n:.2f} s",
        f"overhead per trial, Tuner.fit only:                            "
        f"{(results.tune_seconds * slots - own) / n:.2f} s",
        f"per trial inside its child run (run wall - own): median {statistics.median(in_run):.2f} s, "
        f"first trial of a worker (imports) up to {max(in_run):.2f} s",
        f"  MLflow calls {mean(r.data.metrics[keys.METRIC_TRACKING_SECONDS] for r in runs):.2f} s, "
        f"tune.report + checkpoints {mean(r.data.metrics[keys.METRIC_REPORT_SECONDS] for r in runs):.2f} s"
        " (means)",
    ]
    if slots == 1 and gaps:
        lines.append(f"between trials (one run's end to the next one's start): median "
                     f"{statistics.median(gaps):.2f} s")
        lines.append(f"steady-state Tune + MLflow overhead per trial: "
                     f"{statistics.median(in_run) + statistics.median(gaps):.2f} s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=str(QUICKSTART))
    parser.add_argument("--sequential", action="store_true", help="one trial at a time")
    parser.add_argument("--workdir", default=None,
                        help="where mlflow.db and ray_results go (default: a new temp folder)")
    args = parser.parse_args()
    from sweeps.runner import run_sweep
    from sweeps.spec import load_spec

    spec = load_spec(args.spec)
    if args.sequential:
        spec = replace(spec, resources=replace(spec.resources, max_concurrent=1))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hetero-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    spec = replace(spec, storage=str(workdir / "ray_results"))
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]), f"(in {workdir})")
    results = run_sweep(spec)
    slots = spec.resources.max_concurrent or os.cpu_count() or 1
    print("\n".join(["", "== Tune + MLflow overhead ==", *overhead_report(results, slots)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
