"""What a sweep produced: each trial's outcome, the sweep's results and summary, and the
reconciliation of Tune's view of the trials with their MLflow runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps import keys
from sweeps.tracking import TrialTracking, child_runs, is_sqlite, mark_child_run, ui_url

__all__ = ["TrialOutcome", "SweepResults", "SweepInterrupted", "SweepFinished", "sweep_status",
           "read_outcomes", "reconcile"]


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


def sweep_status(trials: list[TrialOutcome]) -> str:
    # A sweep in which no trial produced a result did not happen: the UI must not show success.
    failed = trials and all(t.error is not None for t in trials)
    return keys.STATUS_FAILED if failed else keys.STATUS_FINISHED


def read_outcomes(grid, epochs: int) -> list[TrialOutcome]:
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


def reconcile(client, tracking: TrialTracking, outcomes: list[TrialOutcome]) -> None:
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
