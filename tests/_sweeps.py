"""What the sweep tests share: a tiny real sweep spec, a module-wide local Ray, its MLflow runs,
and a `hetero sweep` driver run as a subprocess (to signal, kill and resume) with the processes it
started."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweeps import keys

TINY = {
    "name": "tiny",
    "model": "resnet20",
    "dataset": "digits",
    "protocol": {"epochs": 2, "batch_size": 64},
    "space": {"width_mults": [1.5], "targets": [0.5, 1.0], "remain_ratios": [0.25],
              "data_fractions": [0.25]},
    "baselines": [1.0],
    "resources": {"cpus": 1, "max_concurrent": 2},  # overlapping trials: a server fronts SQLite
    "retries": 1,
}


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def local_ray():
    """One private local Ray for the in-process sweeps of a module (run_sweep reuses it).

    A test module imports it (``from _sweeps import local_ray``) to use it as a fixture."""
    from sweeps.runner import ray_session

    with ray_session(num_cpus=2):
        yield


# ---------------------------------------------------------------------------- MLflow runs
def child_runs(client, experiment_id: str, parent_id: str) -> list:
    return list(client.search_runs(
        [experiment_id], filter_string=f"tags.`{keys.TAG_PARENT_RUN_ID}` = '{parent_id}'"))


def parent_runs(client, experiment_id: str) -> list:
    return list(client.search_runs(
        [experiment_id], filter_string=f"tags.{keys.TAG_KIND} = '{keys.KIND_SWEEP}'"))


def trial_run_statuses(db: Path) -> list[str]:
    """Statuses of the trial runs in a sweep's SQLite store, read while the sweep writes it."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            rows = con.execute("SELECT r.status FROM runs r JOIN tags t ON t.run_uuid = "
                               "r.run_uuid WHERE t.key = ?", (keys.TAG_TRIAL_ID,)).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    return [status for (status,) in rows]


# ---------------------------------------------------------------------------- the driver
def start_driver(tmp_path: Path, spec: dict, *args: str) -> tuple[subprocess.Popen, Path, list]:
    """Write ``spec`` and start `hetero sweep spec.yaml ARGS` in its own process group; returns
    the process, its log file and the command (to run again with --resume)."""
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "hetero_cli", "sweep", "spec.yaml", *args]
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    return driver, log, command


def wait_for_trial_runs(driver: subprocess.Popen, db: Path, log: Path, *statuses: str,
                        seconds: float = 300) -> None:
    """Until the store holds a trial run in each of ``statuses``; fails if the driver ends."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if set(statuses) <= set(trial_run_statuses(db)):
            return
        assert driver.poll() is None, f"driver ended early:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    pytest.fail(f"no trial runs {statuses} within {seconds:g} s:\n{log.read_text()[-3000:]}")


# ---------------------------------------------------------------------------- processes
def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children first found through /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until_gone(pids, seconds: float) -> list[int]:
    """The ones of ``pids`` still alive after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    return [p for p in pids if alive(p)]


def logged_models(client, experiment_id: str, run_id: str) -> list:
    """The MLflow models a run logged."""
    return list(client.search_logged_models(experiment_ids=[experiment_id],
                                            filter_string=f"source_run_id = '{run_id}'"))


def duplicate_rows(client, run) -> dict[str, list[int]]:
    """Metric keys of ``run`` logged more than once at one step: key -> steps."""
    found = {}
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        if len(steps) != len(set(steps)):
            found[key] = steps
    return found


def wait_for_log(driver: subprocess.Popen, log: Path, text: str, seconds: float = 300) -> None:
    """Until the driver's log holds ``text``; fails if the driver ends first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert driver.poll() is None, f"driver ended early:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    pytest.fail(f"no {text!r} within {seconds:g} s:\n{log.read_text()[-3000:]}")
