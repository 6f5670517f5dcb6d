"""Nothing reported that did not happen: Ctrl-C, divergence, all-failed sweeps, exposure.

Real Ray, real MLflow, real training on digits (slow: a driver subprocess is interrupted with
SIGINT and resumed; in-process sweeps share one private Ray).
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys

import _sweeps
import pytest
import yaml
from _injected import diverging, lose_the_last_report
from _sweeps import (
    TINY,
    child_runs,
    descendants,
    duplicate_rows,
    logged_models,
    parent_runs,
    start_driver,
    wait_for_log,
    wait_for_trial_runs,
    wait_until_gone,
)

from sweeps import keys
from sweeps.spec import spec_from_dict

pytestmark = pytest.mark.slow
# The module-scoped local Ray the in-process sweeps share (a fixture of _sweeps).
local_ray = _sweeps.local_ray


# -------------------------------------------------------------------- exposure
def listening_sockets(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of every TCP listener owned by one of ``pids`` (``ss -ltnp``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append((line.split()[3], re.findall(r'\("([^"]+)"', line)[0]))
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False   # "*", "0.0.0.0", "::": every interface


@pytest.mark.skipif(sys.platform != "linux", reason="ss and /proc are Linux tools")
def test_a_local_sweep_listens_on_loopback_only(local_ray, tmp_path):
    import ray

    from sweeps.server import MlflowServer

    @ray.remote
    def node_ip() -> str:
        return ray.util.get_node_ip_address()

    assert ray.get(node_ip.remote()) == "127.0.0.1"   # a worker is up, listening too
    with MlflowServer(f"sqlite:///{tmp_path / 'mlflow.db'}") as server:
        sockets = listening_sockets({os.getpid(), *descendants(os.getpid())})
        mlflow_tree = {server.process.pid, *descendants(server.process.pid)}
        served = {address for address, _ in listening_sockets(mlflow_tree)}
    names = {name for _, name in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets
    # the MLflow server's own process tree listens on its port, on loopback
    assert f"127.0.0.1:{server.port}" in served, (server.port, served, sockets)
    assert f"127.0.0.1:{server.port}" in {address for address, _ in sockets}
    exposed = [s for s in sockets if not is_loopback(s[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"


# -------------------------------------------------------------------- divergence
def test_a_diverged_trial_fails_alone_and_stays_out_of_the_report(local_ray, tmp_path):
    from mlflow import MlflowClient

    from analysis.report import create_report
    from sweeps.runner import run_sweep

    # The baseline trains at lr 1e6 (an injected trainable wrapper): a real NaN loss.
    spec = spec_from_dict({**TINY, "name": "nan", "space": {**TINY["space"], "targets": [1.0]},
                           "resources": {"cpus": 1, "max_concurrent": 1},
                           "storage": str(tmp_path / "ray_results")})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = run_sweep(spec, tracking_uri=uri, trainable=diverging(keys.KIND_BASELINE))
    by_kind = {t.kind: t for t in results.trials}
    assert by_kind["lwdna"].finished and by_kind["lwdna"].error is None
    error = by_kind["baseline"].error
    assert "diverged in epoch 1" in error and "lower the learning rate" in error
    assert "failed: " in results.summary() and "diverged in epoch 1" in results.summary()

    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("nan").experiment_id
    (parent,) = parent_runs(client, experiment_id)
    assert parent.info.status == "FINISHED"   # the sweep carried on: one trial did finish
    runs = {r.data.tags[keys.TAG_KIND]: r for r in child_runs(client, experiment_id,
                                                               parent.info.run_id)}
    assert runs["baseline"].info.status == "FAILED"
    assert "diverged in epoch 1" in runs["baseline"].data.tags[keys.TAG_FAILURE]
    assert keys.METRIC_ACCURACY not in runs["baseline"].data.metrics  # no epoch reported
    assert runs["lwdna"].info.status == "FINISHED"

    report = create_report(tracking_uri=uri, experiment="nan", out_dir=tmp_path / "report",
                           log_to_mlflow=False)
    assert list(report.sweep.trials["kind"]) == ["lwdna"]
    assert runs["baseline"].info.run_id not in set(report.front.points["run_id"])
    assert report.sweep.n_failed == 1
    assert "1 failed" in (tmp_path / "report" / "summary.md").read_text()


def stale_sweep(uri: str, sweep: str) -> tuple[str, str]:
    """A parent and a child run left RUNNING by a driver that was SIGKILLed."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(sweep)
    parent = client.create_run(experiment, tags={keys.TAG_KIND: keys.KIND_SWEEP,
                                                 keys.TAG_SWEEP: sweep})
    child = client.create_run(experiment, tags={keys.TAG_KIND: keys.KIND_LWDNA,
                                                keys.TAG_PARENT_RUN_ID: parent.info.run_id})
    return parent.info.run_id, child.info.run_id


def test_a_sweep_whose_trials_all_fail_is_failed_and_exits_non_zero(local_ray, tmp_path,
                                                                     monkeypatch, capsys):
    """Also: a new sweep of a name whose last driver was killed marks its leftovers KILLED."""
    from mlflow import MlflowClient

    from hetero_cli import main

    # Every trial trains at lr 1e6: a real NaN loss in epoch 1, no hook needed.
    spec = {**TINY, "name": "allnan", "space": {**TINY["space"], "targets": [1.0]},
            "baselines": [], "protocol": {"epochs": 1, "batch_size": 64, "lr": 1.0e6},
            "retries": 0, "storage": str(tmp_path / "ray_results")}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stale = stale_sweep(uri, "allnan")
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--tracking-uri", uri]) == 1
    out, err = capsys.readouterr()
    assert "0 finished" in out and "marked it and its running trials KILLED" in err
    client = MlflowClient(uri)
    assert [client.get_run(r).info.status for r in stale] == ["KILLED", "KILLED"]
    parents = parent_runs(client, client.get_experiment_by_name("allnan").experiment_id)
    new = [p for p in parents if p.info.run_id != stale[0]]
    assert [p.info.status for p in new] == ["FAILED"]


# -------------------------------------------------------------------- Ctrl-C and --resume
def test_sigint_exits_non_zero_marks_killed_and_resume_finishes_each_trial_once(tmp_path):
    from mlflow import MlflowClient

    spec = {**TINY, "name": "intr", "protocol": {"epochs": 3, "batch_size": 64},
            "baselines": [0.5, 1.0], "storage": str(tmp_path / "ray_results")}
    driver, log, command = start_driver(tmp_path, spec, "--name", "intr")
    try:
        wait_for_trial_runs(driver, tmp_path / "mlflow.db", log, "FINISHED", "RUNNING")
        tree = descendants(driver.pid)
        driver.send_signal(signal.SIGINT)   # what `kill -INT` does; Ctrl-C signals the group
        assert driver.wait(180) == 130, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    text = log.read_text()
    assert "--resume --name intr" in text, text[-3000:]
    assert not wait_until_gone(tree, 30), "Ray or MLflow processes outlived the driver"

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("intr").experiment_id
    (parent,) = parent_runs(client, experiment_id)
    assert parent.info.status == "KILLED"
    children = child_runs(client, experiment_id, parent.info.run_id)
    statuses = sorted(r.info.status for r in children)
    assert "KILLED" in statuses and "RUNNING" not in statuses, statuses
    # the trial seen FINISHED before the signal stays so (the loop below checks something)
    assert "FINISHED" in statuses, statuses
    for run in children:   # a finished trial ran every epoch; an interrupted one is not "done"
        if run.info.status == "FINISHED":
            assert run.data.metrics[keys.METRIC_EPOCH] == 3
            assert run.data.tags[keys.TAG_STOPPED_EARLY] == "false"

    done = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (parent,) = parent_runs(client, experiment_id)
    assert parent.info.status == "FINISHED"
    children = child_runs(client, experiment_id, parent.info.run_id)
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 4
    assert len({r.data.tags[keys.TAG_TRIAL_ID] for r in children}) == 4
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id,
                                                           keys.METRIC_ACCURACY)]
        assert sorted(steps) == [1, 2, 3], (run.info.run_name, steps)


def test_sigterm_marks_the_sweep_killed_and_stops_its_ray_and_mlflow_server(tmp_path):
    from mlflow import MlflowClient

    spec = {**TINY, "name": "term", "storage": str(tmp_path / "ray_results")}
    driver, log, _ = start_driver(tmp_path, spec)
    try:
        wait_for_trial_runs(driver, tmp_path / "mlflow.db", log, "RUNNING")
        tree = descendants(driver.pid)
        driver.terminate()
        assert driver.wait(180) == 130, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert "--resume --name term" in log.read_text()
    assert not wait_until_gone(tree, 30), "Ray or MLflow processes outlived the driver"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("term").experiment_id
    (parent,) = parent_runs(client, experiment_id)
    assert parent.info.status == "KILLED"
    statuses = [r.info.status for r in child_runs(client, experiment_id, parent.info.run_id)]
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses


def resume_command(log_text: str) -> list[str]:
    """The command the interrupted driver printed, as this interpreter runs it."""
    line = next(line for line in log_text.splitlines() if "Continue with: hetero " in line)
    return [sys.executable, "-m", "hetero_cli", *line.split("Continue with: hetero ")[1].split()]


def test_resume_of_an_interrupted_smoke_test_with_its_own_store_needs_only_the_name(tmp_path):
    """The printed command (`--resume --name NAME`) continues the sweep as it was started:
    the --tracking-uri store (no second store), the smoke test's 1-epoch trials (params true),
    each trial finished once with one model and one row per step; a second resume changes
    nothing. The spec names data, stores and GPUs this machine lacks: a smoke test touches
    none of them."""
    from mlflow import MlflowClient

    (tmp_path / "blocker").write_text("a file where the spec's storage would be\n")
    spec = {**TINY, "name": "sm", "protocol": {"epochs": 30, "batch_size": 64, "device": "cuda"},
            "dataset": {"name": "imagefolder", "data_dir": "../no_such_data"},
            "resources": {"cpus": 1, "gpus": 1}, "storage": "blocker/ray_results",
            "tracking": {"uri": "sqlite:///no_such_folder/mlflow.db", "experiment": "sm"}}
    (tmp_path / "store").mkdir()
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    driver, log, _ = start_driver(tmp_path, spec, "--smoke-test", "--tracking-uri", store)
    try:
        wait_for_trial_runs(driver, tmp_path / "store" / "mlflow.db", log, "RUNNING")
        driver.send_signal(signal.SIGINT)
        assert driver.wait(180) == 130, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    command = resume_command(log.read_text())
    assert command[-3:] == ["--resume", "--name", "sm-smoke"], command
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()   # one store: the one the sweep started with

    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name("sm-smoke").experiment_id
    (parent,) = parent_runs(client, experiment_id)
    assert parent.info.status == "FINISHED"
    assert '"smoke_test": true' in parent.data.tags[keys.TAG_SWEEP_ARGS]
    children = child_runs(client, experiment_id, parent.info.run_id)
    assert [r.info.status for r in children] == ["FINISHED"] * 3
    assert len({r.data.tags[keys.TAG_TRIAL_ID] for r in children}) == 3
    for run in children:
        assert run.data.params[keys.PARAM_EPOCHS] == "1" and run.data.metrics["epoch"] == 1
        assert run.data.params[keys.PARAM_DATASET] == "digits"
        assert duplicate_rows(client, run) == {}, run.info.run_name
        assert len(logged_models(client, experiment_id, run.info.run_id)) == 1

    before = (tmp_path / "store" / "mlflow.db").read_bytes()
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "finished already" in again.stderr, again.stderr[-2000:]
    assert (tmp_path / "store" / "mlflow.db").read_bytes() == before


def test_a_trial_whose_last_report_was_lost_is_logged_once(local_ray, tmp_path):
    """Its run was complete when it died (a Ctrl-C, a lost worker): the retry reports what the
    run holds, and logs no second model and no second row."""
    from mlflow import MlflowClient

    from sweeps.runner import run_sweep

    spec = spec_from_dict({**TINY, "name": "lost", "space": {**TINY["space"], "targets": [1.0]},
                           "resources": {"cpus": 1, "max_concurrent": 1},
                           "storage": str(tmp_path / "ray_results")})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = run_sweep(spec, tracking_uri=uri,
                        trainable=lose_the_last_report(keys.KIND_LWDNA, tmp_path / "markers"))
    assert len(list((tmp_path / "markers").iterdir())) == 1   # the failure did happen
    assert [t.finished for t in results.trials] == [True, True]
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("lost").experiment_id
    (parent,) = parent_runs(client, experiment_id)
    children = child_runs(client, experiment_id, parent.info.run_id)
    assert sorted(r.info.status for r in children) == ["FINISHED", "FINISHED"]
    for run in children:
        assert duplicate_rows(client, run) == {}, run.info.run_name
        assert len(logged_models(client, experiment_id, run.info.run_id)) == 1


def test_ctrl_c_before_any_trial_reports_is_one_line_killed_and_resumable(tmp_path):
    from mlflow import MlflowClient

    spec = {**TINY, "name": "early", "storage": str(tmp_path / "ray_results")}
    driver, log, _ = start_driver(tmp_path, spec, "--verbose")   # Tune's own status table
    try:
        wait_for_log(driver, log, "PENDING")   # Tune has its trials; none has reported
        driver.send_signal(signal.SIGINT)
        assert driver.wait(180) == 130, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Traceback" not in text and "--resume --name early" in text, text[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("early").experiment_id
    (parent,) = parent_runs(client, experiment_id)
    assert parent.info.status == "KILLED"
    statuses = [r.info.status for r in child_runs(client, experiment_id, parent.info.run_id)]
    assert "RUNNING" not in statuses, statuses


def test_a_second_sweep_of_a_running_name_leaves_the_running_one_alone(tmp_path, monkeypatch,
                                                                       capsys):
    """The first sweep holds a lease on its name: a second one is named apart and marks
    nothing KILLED, and `--resume` of the running one is refused."""
    from mlflow import MlflowClient

    from hetero_cli import main

    spec = {**TINY, "name": "live", "protocol": {"epochs": 4, "batch_size": 64},
            "storage": "ray_results"}
    first, log, command = start_driver(tmp_path, spec)
    try:
        wait_for_trial_runs(first, tmp_path / "mlflow.db", log, "RUNNING")
        monkeypatch.chdir(tmp_path)
        assert main(["sweep", "spec.yaml", "--resume", "--name", "live"]) == 2
        err = capsys.readouterr().err
        assert f"sweep 'live' is running (pid {first.pid} on " in err, err
        # a second sweep of the same name in the same experiment (a smoke test: cheap)
        second = subprocess.run([*command, "--smoke-test", "--name", "live", "--experiment",
                                 "live"], cwd=tmp_path, capture_output=True, text=True,
                                timeout=500)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "sweep live is running (pid" in second.stdout and "this run is named live-" \
            in second.stdout, second.stdout[-3000:]
        assert "KILLED" not in second.stderr
        assert first.wait(500) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("live").experiment_id
    parents = {p.data.tags[keys.TAG_SWEEP]: p for p in parent_runs(client, experiment_id)}
    assert parents["live"].info.status == "FINISHED"
    statuses = [r.info.status for r in child_runs(client, experiment_id,
                                                  parents["live"].info.run_id)]
    assert statuses == ["FINISHED"] * 3, statuses


@pytest.fixture
def small_disk(tmp_path):
    """A 60 MB tmpfs (needs root and permission to mount: skipped elsewhere)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_disk_that_fills_up_ends_the_sweep_failed_in_one_line(tmp_path, small_disk):
    """The store and Tune's folder on one disk, filled while trials run: the sweep ends (no
    hours of retries), exit 1, one line naming the full disk and the resume, the parent FAILED
    and no run left RUNNING (the headroom the sweep held beside the store pays for that)."""
    import sqlite3

    spec = {**TINY, "name": "full", "protocol": {"epochs": 3, "batch_size": 64},
            "storage": "disk/ray_results", "tracking": {"uri": "sqlite:///disk/mlflow.db"}}
    driver, log, _ = start_driver(tmp_path, spec)
    try:
        wait_for_trial_runs(driver, small_disk / "mlflow.db", log, "RUNNING")
        with open(small_disk / "fill", "wb") as fill:   # until the disk says no
            with pytest.raises(OSError):
                while True:
                    fill.write(bytes(2**20))
                    fill.flush()
        assert driver.wait(600) == 1, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("hetero sweep: failed: sweep 'full': the disk under ") and \
        "is full" in last and "--resume --name full" in last, last
    (small_disk / "fill").unlink()
    with sqlite3.connect(small_disk / "mlflow.db") as db:
        statuses = dict(db.execute("SELECT name, status FROM runs").fetchall())
    assert statuses.pop("full") == "FAILED" and "RUNNING" not in statuses.values(), statuses
