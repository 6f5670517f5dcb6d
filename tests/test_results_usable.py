"""Issue 11 end to end: one real Optuna sweep on digits (local Ray, SQLite MLflow), then its
networks are loaded, exported, registered; its latency, datasets and Optuna study checked.

The sweep is the quickstart's model, data and protocol, shrunk to one epoch on a quarter of the
training split, with continuous Optuna ranges for width and target.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _models import score_in_new_process

from sweeps import keys
from sweeps.spec import spec_from_dict

pytestmark = pytest.mark.slow

SPEC = {
    "name": "results",
    "model": "resnet20",
    "dataset": "digits",
    "protocol": {"epochs": 1, "batch_size": 64, "device": "cpu"},
    "space": {"width_mults": {"low": 1.5, "high": 2.0}, "targets": {"low": 0.5, "high": 1.0},
              "remain_ratios": [0.25], "data_fractions": [0.25]},
    "baselines": [1.0],
    "search": {"type": "optuna", "num_samples": 2, "sampler": "random"},
    "resources": {"cpus": 1, "max_concurrent": 1},
    "tracking": {"latency_batch": 8},
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from mlflow import MlflowClient

    from sweeps.runner import ray_session, run_sweep

    folder = tmp_path_factory.mktemp("results")
    spec = spec_from_dict({**SPEC, "storage": str(folder / "ray_results")})
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with ray_session(num_cpus=2):
        results = run_sweep(spec, tracking_uri=uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(spec.experiment)
    runs = [r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get(keys.TAG_KIND) in (keys.KIND_LWDNA, keys.KIND_BASELINE)]
    return results, client, uri, runs, folder


def test_every_trial_finished_with_a_model(sweep):
    results, _, _, runs, _ = sweep
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags[keys.TAG_MODEL_URI].startswith("models:/") for r in runs)


def test_logged_model_scores_its_accuracy_on_raw_images_in_a_new_process(sweep, tmp_path):
    """What a user does: a fresh interpreter, mlflow.pytorch.load_model, the digits scaled to
    [0, 1] (no hetero data pipeline), and the same through the ONNX export."""
    pytest.importorskip("onnxruntime")
    _, _, uri, runs, _ = sweep
    scored = score_in_new_process(uri, [r.info.run_id for r in runs], tmp_path)
    for run in runs:
        logged = run.data.metrics[keys.METRIC_ACCURACY]
        assert scored[run.info.run_id] == {"torch": logged, "onnx": logged}


def test_model_carries_its_channel_config_and_protocol(sweep):
    from sweeps.mlmodel import load_network, read_extra

    _, _, uri, runs, _ = sweep
    lwdna = next(r for r in runs if r.data.tags[keys.TAG_KIND] == keys.KIND_LWDNA)
    _, folder = load_network(lwdna.info.run_id, uri)
    config = json.loads(read_extra(folder, keys.ARTIFACT_CONFIG))
    assert config["family"] == "resnet_cifar" and config["widths"]
    assert json.loads(read_extra(folder, "protocol.json"))["epochs"] == 1
    assert (folder / "MLmodel").read_text().count("tensor-spec") == 2  # signature in and out


def test_latency_metrics_exist_and_are_positive(sweep):
    _, client, _, runs, _ = sweep
    for run in runs:
        metrics = run.data.metrics
        assert set(keys.LATENCY_METRICS) <= set(metrics), sorted(metrics)
        assert all(metrics[m] > 0 for m in (keys.METRIC_LATENCY_MS, keys.METRIC_BATCH_LATENCY_MS,
                                             keys.METRIC_THROUGHPUT))
        assert metrics[keys.METRIC_LATENCY_IQR_MS] >= 0
        assert metrics[keys.METRIC_BATCH_LATENCY_IQR_MS] >= 0
        # throughput is the latency batch (8 images) per batch call
        assert metrics[keys.METRIC_THROUGHPUT] == pytest.approx(
            8 * 1000 / metrics[keys.METRIC_BATCH_LATENCY_MS], rel=1e-5)   # 6 digits logged
        assert run.data.params[keys.PARAM_LATENCY_BATCH] == "8"
        assert run.data.tags[keys.TAG_LATENCY_DEVICE] == "cpu"
        assert run.data.tags[keys.TAG_LATENCY_TIMING] == keys.LATENCY_TIMING_EXCLUSIVE
    # timed once no trial was running: after the last trial's run ended
    last_end = max(r.info.end_time for r in runs)
    for run in runs:
        timed = client.get_metric_history(run.info.run_id, keys.METRIC_LATENCY_MS)
        assert len(timed) == 1 and timed[0].timestamp >= last_end


def test_every_child_logs_its_dataset(sweep):
    _, client, _, runs, _ = sweep
    for run in runs:
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert len(inputs) == 1
        dataset = inputs[0].dataset
        profile = json.loads(dataset.profile)
        assert dataset.name == "digits" and len(dataset.digest) == 12
        assert dataset.digest == run.data.tags[keys.TAG_DATASET_DIGEST]
        assert profile["train_fraction"] == 0.25 and profile["num_test"] == 360
        assert "load_digits" in dataset.source


def test_optuna_study_persisted_with_one_trial_per_tune_trial(sweep):
    results, _, _, runs, folder = sweep
    db = folder / "ray_results" / "results" / "results.optuna.db"
    with sqlite3.connect(db) as con:
        (study,), = con.execute("select study_name from studies").fetchall()
        (count,), = con.execute("select count(*) from trials").fetchall()
    lwdna = [t for t in results.trials if t.kind == keys.KIND_LWDNA]
    baselines = [t for t in results.trials if t.kind == keys.KIND_BASELINE]
    assert study == "results" and count == len(lwdna) + len(baselines) == 3
    # continuous ranges: Optuna samples inside them, not only their ends
    widths = [t.hp["width_mult"] for t in lwdna]
    assert all(1.5 <= w <= 2.0 for w in widths) and not set(widths) <= {1.5, 2.0}


def test_optuna_study_names_its_objectives_links_runs_and_holds_the_baselines(sweep):
    import optuna

    results, _, _, runs, folder = sweep
    db = folder / "ray_results" / "results" / "results.optuna.db"
    study = optuna.load_study(study_name="results", storage=f"sqlite:///{db}")
    assert study.metric_names == [keys.METRIC_ACCURACY, keys.METRIC_FLOPS_RATIO]
    by_run = {r.info.run_id: r for r in runs}
    kinds = sorted(t.user_attrs["kind"] for t in study.trials)
    assert kinds == [keys.KIND_BASELINE, keys.KIND_LWDNA, keys.KIND_LWDNA]
    for trial in study.trials:
        run = by_run[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags[keys.TAG_KIND] == trial.user_attrs["kind"]
        assert run.data.tags[keys.TAG_TRIAL_ID] == trial.user_attrs["tune_trial_id"]
        metrics = run.data.metrics
        assert trial.values == pytest.approx([metrics[keys.METRIC_ACCURACY],
                                              metrics[keys.METRIC_FLOPS_RATIO]], rel=1e-5)
    baseline = next(t for t in study.trials if t.user_attrs["kind"] == keys.KIND_BASELINE)
    assert baseline.params == {} and baseline.user_attrs[keys.PARAM_WIDTH_MULT] == 1.0


def _hetero(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-m", "hetero_cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_export_of_a_run_prints_a_small_onnx_difference(sweep, tmp_path):
    pytest.importorskip("onnxruntime")
    _, _, uri, runs, _ = sweep
    run_id = next(r for r in runs if r.data.tags[keys.TAG_KIND] == keys.KIND_LWDNA).info.run_id
    out = _hetero("export", run_id, "--format", "onnx", "--out", "net.onnx",
                  "--tracking-uri", uri, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "over 64 test images" in out.stdout and "ok" in out.stdout
    assert float(out.stdout.split(": ")[1].split()[0]) <= 1e-4
    assert (tmp_path / "net.onnx").stat().st_size > 0


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_register_puts_front_and_baseline_in_the_registry(sweep, store, tmp_path):
    from mlflow import MlflowClient

    from sweeps.server import MlflowServer

    _, _, uri, runs, _ = sweep
    name = f"results-{store}"
    if store == "sqlite":
        out = _register(uri, name, tmp_path)
        target = uri
    else:
        with MlflowServer(uri) as server:
            out = _register(server.url, name, tmp_path)
            target = server.url
            versions = MlflowClient(target).search_model_versions(f"name = '{name}'")
            baseline = MlflowClient(target).get_model_version_by_alias(name, "baseline")
    assert out.returncode == 0, out.stderr
    if store == "sqlite":
        client = MlflowClient(target)
        versions = client.search_model_versions(f"name = '{name}'")
        baseline = client.get_model_version_by_alias(name, "baseline")
    assert len(versions) >= 2
    assert baseline.tags[keys.TAG_KIND] == keys.KIND_BASELINE
    assert float(baseline.tags[keys.METRIC_FLOPS_RATIO]) == 1.0
    by_run = {r.info.run_id: r for r in runs}
    for version in versions:
        logged = by_run[version.run_id].data.metrics
        assert float(version.tags[keys.METRIC_ACCURACY]) == logged[keys.METRIC_ACCURACY]
        assert float(version.tags[keys.METRIC_FLOPS]) == logged[keys.METRIC_FLOPS]


def _register(uri: str, name: str, cwd: Path) -> subprocess.CompletedProcess:
    return _hetero("pareto", "--experiment", "results", "--tracking-uri", uri, "--out", "report",
                   "--register", name, "--no-log-to-mlflow", cwd=cwd)
