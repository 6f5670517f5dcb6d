"""What ``hetero sweep`` prints while it runs: one live progress line instead of Ray Tune's tables.

Three output modes (``hetero sweep --verbose`` / default / ``--quiet``):

- ``verbose``: Ray's and MLflow's own output, Tune's tables, the trials' printed output.
- ``progress``: one line, trials done / running / failed, the best accuracy so far, elapsed time
  and an ETA. On a terminal the line is redrawn in place; elsewhere (a log file, a pipe) a new
  line is printed only when a trial ends, so a log holds one line per trial.
- ``quiet``: nothing until the sweep's summary.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray import tune

from sweeps import keys

__all__ = ["OUTPUT_MODES", "SweepProgress", "ray_output", "progress_line"]

OUTPUT_MODES = ("verbose", "progress", "quiet")
REDRAW_SECONDS = 0.5     # a terminal line is redrawn at most this often
# Ray's and MLflow's own output, shown with --verbose only (logger: the level kept without it):
# their INFO lines, Ray's token-authentication notice, and Tune's traceback of every failed
# attempt of a trial (a retry may still finish it; the summary names the trials that failed).
QUIET_LOGGERS = {"ray": logging.WARNING, "mlflow": logging.WARNING,
                 "ray._private.authentication.authentication_token_setup": logging.ERROR,
                 "ray.tune.execution.tune_controller": logging.CRITICAL}


@contextmanager
def ray_output(mode: str) -> Iterator[dict[str, Any]]:
    """Around a sweep: Ray's and MLflow's own output as ``mode`` wants it. Yields the extra
    ``ray.init`` arguments (without --verbose: trial workers' output stays in Ray's log files)."""
    if mode == "verbose":
        yield {}
        return
    import mlflow  # noqa: F401  (its import configures its loggers: set their levels after it)

    saved = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    # Tune's newer output engine prints its experiment table whatever the verbosity; the
    # classic one, at verbosity 0, prints nothing.
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield {"log_to_driver": False, "logging_level": logging.WARNING}
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if previous is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous


def progress_line(*, done: int, running: int, failed: int, total: int, best: float | None,
                  elapsed: float, eta: float | None) -> str:
    """E.g. ``trials 3/6 done, 2 running, 0 failed · best accuracy 0.9917 · 0:41 elapsed,
    ETA 0:25``."""
    best_text = f"best accuracy {best:.4f}" if best is not None else "best accuracy –"
    eta_text = f", ETA {_clock(eta)}" if eta is not None else ""
    return (f"trials {done}/{total} done, {running} running, {failed} failed · {best_text} · "
            f"{_clock(elapsed)} elapsed{eta_text}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class SweepProgress(tune.Callback):
    """A Tune callback (on the driver) that keeps the progress line of a whole sweep.

    One instance serves every Tune experiment of the sweep (baselines, then the search):
    ``total`` counts all their trials; trials that finished before a resume count as done.
    ``epochs``: every trial's planned epochs, for the ETA (epochs done over epochs planned).
    """

    def __init__(self, total: int, epochs: int, *, stream=None) -> None:
        self.total, self.epochs = total, max(1, epochs)
        self.stream = stream
        self.start = time.monotonic()
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.running: dict[str, int] = {}    # trial id -> epochs done
        self.best: float | None = None
        self.shown, self.last_draw = "", 0.0

    # ---- Tune's hooks (trials: every trial of the current experiment)
    def on_trial_start(self, iteration, trials, trial, **info):
        self._seen(trials)
        self.running.setdefault(trial.trial_id, 0)
        self._draw()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._seen(trials)
        self.running[trial.trial_id] = int(result.get(keys.METRIC_EPOCH, 0))
        self._draw()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, failed=True)

    def on_experiment_end(self, trials, **info):
        self._seen(trials)

    # ---- state
    def _seen(self, trials) -> None:
        # A resumed experiment starts with its finished trials already there.
        for trial in trials:
            if trial.status == "TERMINATED" and trial.trial_id not in self.failed:
                self._record(trial, failed=False)
            elif trial.status == "ERROR" and trial.trial_id not in self.done:
                self._record(trial, failed=True)

    def _end(self, trial, *, failed: bool) -> None:
        self._record(trial, failed=failed)
        self._draw(force=True)

    def _record(self, trial, *, failed: bool) -> None:
        self.running.pop(trial.trial_id, None)
        (self.failed if failed else self.done).add(trial.trial_id)
        accuracy = (trial.last_result or {}).get(keys.METRIC_ACCURACY)
        if not failed and accuracy is not None:
            self.best = accuracy if self.best is None else max(self.best, accuracy)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        ended = len(self.done) + len(self.failed)
        progress = (ended * self.epochs + sum(self.running.values())) / (self.total * self.epochs)
        eta = elapsed * (1 - progress) / progress if 0 < progress < 1 else None
        return progress_line(done=len(self.done), running=len(self.running),
                             failed=len(self.failed), total=self.total, best=self.best,
                             elapsed=elapsed, eta=eta if ended < self.total else 0.0)

    # ---- output
    def _draw(self, force: bool = False) -> None:
        stream = self.stream or sys.stdout
        now = time.monotonic()
        if stream.isatty():
            if force or now - self.last_draw >= REDRAW_SECONDS:
                stream.write("\r" + self.line() + "\x1b[K")
                stream.flush()
                self.last_draw = now
            return
        if force:  # a log: one line per ended trial
            stream.write(self.line() + "\n")
            stream.flush()

    def close(self) -> None:
        """End the terminal line (the summary starts on its own line)."""
        stream = self.stream or sys.stdout
        if stream.isatty() and self.last_draw:
            stream.write("\n")
            stream.flush()
