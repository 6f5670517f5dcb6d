"""`hetero sweep`'s progress line: what it counts, when it prints, what it leaves quiet.

SweepProgress is driven here through its Tune callback hooks by plain trial records (id, status,
last result), the three things it reads from Tune's trials; a real sweep drives it in
tests/test_readme.py (the quickstart) and tests/test_sweep_output.py.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from types import SimpleNamespace

import pytest

from sweeps import keys
from sweeps.progress import QUIET_LOGGERS, SweepProgress, progress_line, ray_output


def trial(trial_id: str, status: str = "RUNNING", accuracy: float | None = None):
    result = {} if accuracy is None else {keys.METRIC_ACCURACY: accuracy}
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("fields, expected", [
    (dict(done=0, running=2, failed=0, total=6, best=None, elapsed=3, eta=None),
     "trials 0/6 done, 2 running, 0 failed · best accuracy – · 0:03 elapsed"),
    (dict(done=3, running=2, failed=1, total=15, best=0.98612, elapsed=125.4, eta=61),
     "trials 3/15 done, 2 running, 1 failed · best accuracy 0.9861 · 2:05 elapsed, ETA 1:01"),
    (dict(done=6, running=0, failed=0, total=6, best=0.5, elapsed=3725, eta=0),
     "trials 6/6 done, 0 running, 0 failed · best accuracy 0.5000 · 1:02:05 elapsed, ETA 0:00"),
])
def test_progress_line(fields, expected):
    assert progress_line(**fields) == expected


def test_a_log_gets_one_line_per_ended_trial_with_counts_and_best():
    log = io.StringIO()
    progress = SweepProgress(total=3, epochs=4, stream=log)
    a, b, c = trial("a"), trial("b"), trial("c")
    for t in (a, b):
        progress.on_trial_start(0, [a, b], t)
    progress.on_trial_result(0, [a, b], a, {keys.METRIC_EPOCH: 2})
    assert log.getvalue() == ""                       # results alone print nothing in a log
    a.last_result = {keys.METRIC_ACCURACY: 0.9}
    progress.on_trial_complete(0, [a, b], a)
    progress.on_trial_start(0, [a, b, c], c)
    b.last_result = {}
    progress.on_trial_error(0, [a, b, c], b)
    c.last_result = {keys.METRIC_ACCURACY: 0.95}
    progress.on_trial_complete(0, [a, b, c], c)
    lines = log.getvalue().splitlines()
    assert [line.split(" · ")[0] for line in lines] == [
        "trials 1/3 done, 1 running, 0 failed", "trials 1/3 done, 1 running, 1 failed",
        "trials 2/3 done, 0 running, 1 failed"]
    assert "best accuracy 0.9000" in lines[0] and "best accuracy 0.9500" in lines[2]
    assert lines[2].endswith("ETA 0:00")


def test_the_eta_counts_epochs_of_running_trials():
    progress = SweepProgress(total=2, epochs=10, stream=io.StringIO())
    a, b = trial("a"), trial("b")
    progress.on_trial_start(0, [a, b], a)
    progress.on_trial_result(0, [a, b], a, {keys.METRIC_EPOCH: 5})   # 5 of 20 epochs: 25 %
    progress.start -= 30                                              # 30 s in
    eta = progress.line().rsplit("ETA ", 1)[1]
    assert eta in ("1:30", "1:31")                                    # 30 s x 75 / 25


def test_a_resumed_experiment_counts_its_finished_trials_as_done():
    progress = SweepProgress(total=3, epochs=2, stream=io.StringIO())
    old = trial("old", "TERMINATED", accuracy=0.97)
    failed = trial("bad", "ERROR")
    new = trial("new")
    progress.on_trial_start(0, [old, failed, new], new)
    assert progress.line().startswith("trials 1/3 done, 1 running, 1 failed · best accuracy 0.97")


def test_a_terminal_line_is_redrawn_in_place_and_ended_by_close():
    screen = Terminal()
    progress = SweepProgress(total=1, epochs=2, stream=screen)
    a = trial("a")
    progress.on_trial_start(0, [a], a)
    progress.on_trial_result(0, [a], a, {keys.METRIC_EPOCH: 1})   # within REDRAW_SECONDS
    a.last_result = {keys.METRIC_ACCURACY: 0.8}
    progress.on_trial_complete(0, [a], a)
    progress.close()
    text = screen.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "trials 1/1 done" in text.rsplit("\r", 1)[1]


def test_it_pickles_as_tune_saves_it_with_the_run_config():
    progress = SweepProgress(total=4, epochs=3)
    progress.done.add("x")
    copy = pickle.loads(pickle.dumps(progress))
    assert copy.total == 4 and copy.done == {"x"}


@pytest.mark.parametrize("mode", ["progress", "quiet"])
def test_ray_and_mlflow_stay_quiet_and_are_restored_after(mode):
    import mlflow  # noqa: F401  (importing it sets its loggers' levels: compare after that)

    before = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    env = os.environ.get("RAY_AIR_NEW_OUTPUT")
    with ray_output(mode) as init_kwargs:
        assert init_kwargs == {"log_to_driver": False, "logging_level": logging.WARNING}
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
        assert not logging.getLogger("mlflow.store.db.utils").isEnabledFor(logging.INFO)
        assert not logging.getLogger("ray.tune.execution.tune_controller").isEnabledFor(
            logging.ERROR)
    assert {name: logging.getLogger(name).level for name in QUIET_LOGGERS} == before
    assert os.environ.get("RAY_AIR_NEW_OUTPUT") == env


def test_verbose_changes_nothing():
    before = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    with ray_output("verbose") as init_kwargs:
        assert init_kwargs == {}
        assert {name: logging.getLogger(name).level for name in QUIET_LOGGERS} == before
