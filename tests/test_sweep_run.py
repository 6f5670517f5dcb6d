"""Real sweeps on digits: local Ray, real MLflow (SQLite + the sweep's own mlflow server).

Slow (Ray and the MLflow server take several seconds each to start): one in-process sweep is
shared by the content checks, and one driver subprocess is killed with SIGKILL and resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import _sweeps
import pytest
from _injected import fail_after_first_checkpoint, worse_after_the_first
from _sweeps import (
    TINY,
    child_runs,
    cmdline,
    descendants,
    parent_runs,
    start_driver,
    wait_for_trial_runs,
    wait_until_gone,
)

from sweeps import keys
from sweeps.spec import spec_from_dict

pytestmark = pytest.mark.slow
# The module-scoped local Ray the in-process sweeps share (a fixture of _sweeps).
local_ray = _sweeps.local_ray


# -------------------------------------------------------------------- one sweep, many checks
@pytest.fixture(scope="module")
def tiny_sweep(local_ray, tmp_path_factory):
    from mlflow import MlflowClient

    from sweeps.runner import run_sweep

    folder = tmp_path_factory.mktemp("sweep")
    spec = spec_from_dict({**TINY, "storage": str(folder / "ray_results")})
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    # The baseline's first attempt dies after its first checkpoint (an injected wrapper).
    failing = fail_after_first_checkpoint(keys.KIND_BASELINE, folder / "failed-once")
    results = run_sweep(spec, tracking_uri=uri, trainable=failing)
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(spec.experiment).experiment_id
    return results, client, experiment_id, folder


def test_every_trial_finishes(tiny_sweep):
    results, *_ = tiny_sweep
    assert len(results.trials) == 3
    assert [t.error for t in results.trials] == [None] * 3
    assert all(t.finished for t in results.trials)
    assert {t.kind for t in results.trials} == {"lwdna", "baseline"}


def test_one_parent_and_one_finished_child_run_per_trial(tiny_sweep):
    results, client, experiment_id, _ = tiny_sweep
    parents = parent_runs(client, experiment_id)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.tags[keys.TAG_SWEEP] == "tiny" and parent.data.tags[keys.TAG_GIT_COMMIT]
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == [keys.ARTIFACT_SPEC]
    children = child_runs(client, experiment_id, parent.info.run_id)
    assert sorted(r.data.tags[keys.TAG_TRIAL_ID] for r in children) == \
        sorted(t.trial_id for t in results.trials)
    assert [r.info.status for r in children] == ["FINISHED"] * 3


def test_child_runs_carry_params_metrics_tags_and_artifacts(tiny_sweep):
    results, client, experiment_id, _ = tiny_sweep
    for run in child_runs(client, experiment_id, results.parent_run_id):
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        kind = tags[keys.TAG_KIND]
        assert tags[keys.TAG_MODEL] == "resnet_cifar" and tags[keys.TAG_DATASET] == "digits"
        assert tags[keys.TAG_SWEEP] == "tiny" and tags[keys.TAG_STOPPED_EARLY] == "false"
        assert tags[keys.TAG_NODE_IP].startswith("127.")
        assert params[keys.PARAM_EPOCHS] == "2" and params[keys.PARAM_DATA_FRACTION] == "0.25"
        if kind == keys.KIND_LWDNA:
            assert params[keys.PARAM_TARGET] in ("0.5", "1.0")
            assert tags[keys.TAG_CRITERION] == params[keys.PARAM_CRITERION] == "dhp"
            assert run.info.run_name.startswith("t")  # what differs first
            assert run.info.run_name.endswith("· resnet20 w1.5 dhp f0.25 s0")
            assert abs(metrics[keys.METRIC_FLOPS_RATIO] - float(params[keys.PARAM_TARGET])) < 0.01
        else:
            assert tags[keys.TAG_CRITERION] == "uniform"
            assert run.info.run_name == "uniform w1.0 · resnet20 f0.25 s0"
        assert 0 <= metrics[keys.METRIC_ACCURACY] <= 1
        for name in (keys.METRIC_FLOPS, keys.METRIC_PARAMS, keys.METRIC_FLOPS_PAPER,
                     keys.METRIC_PARAMS_RATIO, keys.METRIC_SEARCH_SECONDS,
                     keys.METRIC_TRAIN_SECONDS, keys.METRIC_IMAGES_PER_SECOND):
            assert name in metrics, name
        check_artifacts(client, run)


def check_artifacts(client, run) -> None:
    from hetero.config import ChannelConfig

    folder = Path(client.download_artifacts(run.info.run_id, ""))
    config = ChannelConfig.from_json((folder / keys.ARTIFACT_CONFIG).read_text())
    base = ChannelConfig.from_json((folder / keys.ARTIFACT_BASE_CONFIG).read_text())
    assert config.layers == base.layers
    assert (folder / keys.ARTIFACT_WIDTH_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_first_attempt_is_retried_from_its_checkpoint(tiny_sweep):
    results, client, experiment_id, folder = tiny_sweep
    baseline = next(t for t in results.trials if t.kind == "baseline")
    # The wrapper left a marker: the first attempt really failed.
    assert (folder / "failed-once" / baseline.trial_id).exists()
    run = next(r for r in child_runs(client, experiment_id, results.parent_run_id)
               if r.data.tags[keys.TAG_TRIAL_ID] == baseline.trial_id)
    # Epoch 1 was logged by the failed attempt, epoch 2 by the retry resuming from epoch 1's
    # checkpoint: a restart from scratch would have logged epoch 1 twice.
    history = client.get_metric_history(run.info.run_id, keys.METRIC_ACCURACY)
    assert sorted(m.step for m in history) == [1, 2]


def test_summary_lists_pareto_points_and_where_the_data_is(tiny_sweep):
    results, *_ = tiny_sweep
    text = results.summary()
    assert "Best points" in text and "mlflow ui --backend-store-uri sqlite:///" in text
    front = results.pareto()
    assert front and all(t.finished for t in front)
    flops = [t.metrics[keys.METRIC_FLOPS] for t in front]
    accuracy = [t.metrics[keys.METRIC_ACCURACY] for t in front]
    assert flops == sorted(flops) and accuracy == sorted(accuracy)  # cheaper => less accurate


def test_the_local_mlflow_server_is_gone_after_the_sweep(tiny_sweep):
    assert not [pid for pid in descendants(os.getpid()) if "mlflow" in cmdline(pid)]


# -------------------------------------------------------------------- Optuna + ASHA
def test_optuna_with_asha_tags_early_stopped_trials_and_leaves_them_off_the_front(
        local_ray, tmp_path):
    from mlflow import MlflowClient

    from sweeps.runner import run_sweep

    spec = spec_from_dict({
        **TINY, "name": "moo", "protocol": {"epochs": 3, "batch_size": 64},
        "space": {"width_mults": [1.5, 2.0], "targets": [0.5, 1.0], "remain_ratios": [0.25],
                  "data_fractions": [0.25]},
        "baselines": [0.5, 1.0],
        "search": {"type": "optuna", "num_samples": 3, "sampler": "nsga2", "seed": 0},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1, "max_concurrent": 1}, "storage": str(tmp_path / "results")})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The first LW-DNA trial reports its real accuracy to Tune, the two after it (one at a time)
    # report -1 (an injected wrapper): ASHA stops both at their first rung, epoch 1.
    worse = worse_after_the_first(keys.KIND_LWDNA, tmp_path / "first-lwdna")
    results = run_sweep(spec, tracking_uri=uri, trainable=worse)
    assert [t.error for t in results.trials] == [None] * 5
    assert sorted(t.kind for t in results.trials) == ["baseline"] * 2 + ["lwdna"] * 3
    lwdna = [t for t in results.trials if t.kind == keys.KIND_LWDNA]
    stopped = {t.trial_id for t in lwdna if t.stopped_early}
    assert sorted(t.stopped_early for t in lwdna) == [False, True, True], results.summary()
    assert "2 stopped early" in results.summary()
    # Baselines ran as their own FIFO experiment: never stopped by ASHA.
    assert (tmp_path / "results" / "moo-baselines").is_dir()
    assert not any(t.stopped_early for t in results.trials if t.kind == "baseline")
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("moo").experiment_id
    runs = {r.data.tags[keys.TAG_TRIAL_ID]: r
            for r in child_runs(client, experiment_id, results.parent_run_id)}
    for trial in results.trials:
        run = runs[trial.trial_id]
        assert run.info.status == "FINISHED"
        assert run.data.tags[keys.TAG_STOPPED_EARLY] == str(trial.stopped_early).lower()
        epochs_run = run.data.metrics[keys.METRIC_EPOCH]
        assert epochs_run == (1 if trial.stopped_early else 3)   # stopped at the first rung
        assert keys.METRIC_FLOPS_RATIO in run.data.metrics  # logged even when stopped early
    front = {t.trial_id for t in results.pareto()}
    assert front and not front & stopped, (front, stopped)
    assert all(not t.stopped_early for t in results.pareto())


# -------------------------------------------------------------------- SIGKILL and --resume
def kill_driver_and_ray(driver: subprocess.Popen) -> list[int]:
    """SIGKILL the driver's process group and every Ray process it started (workers have their
    own groups); the MLflow server is left to die on its own (it follows its parent)."""
    tree = descendants(driver.pid)
    server = [p for p in tree if "mlflow" in cmdline(p) or "uvicorn" in cmdline(p)]
    os.killpg(driver.pid, signal.SIGKILL)
    for pid in tree:
        if pid not in server:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    driver.wait(30)
    return server


def test_driver_killed_mid_sweep_resumes_to_exactly_one_finished_run_per_trial(tmp_path):
    from mlflow import MlflowClient

    spec = {**TINY, "name": "killed", "protocol": {"epochs": 3, "batch_size": 64},
            "baselines": [0.5, 1.0], "storage": str(tmp_path / "ray_results")}
    driver, log, command = start_driver(tmp_path, spec, "--name", "killed")
    server: list[int] = []
    try:
        wait_for_trial_runs(driver, tmp_path / "mlflow.db", log, "FINISHED", "RUNNING")
        server = kill_driver_and_ray(driver)
        assert server and not wait_until_gone(server, 60), "mlflow server outlived its driver"
    finally:
        for pid in server + descendants(driver.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    done = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("killed").experiment_id
    parents = parent_runs(client, experiment_id)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # reused on resume
    children = child_runs(client, experiment_id, parents[0].info.run_id)
    finished = [r.data.tags[keys.TAG_TRIAL_ID] for r in children if r.info.status == "FINISHED"]
    assert len(finished) == 4 and len(set(finished)) == 4, json.dumps(
        [(r.info.run_name, r.info.status) for r in children])
