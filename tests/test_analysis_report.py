"""End to end on a real MLflow SQLite store: load a sweep, write the report, log it."""

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from analysis import AnalysisError, create_report, list_sweeps, load_history, load_sweep
from sweeps import keys

BASE_WIDTHS = {"stem": 16, **{f"layer1.{b}.conv{c}": 16 for b in range(3) for c in (1, 2)},
               **{f"layer2.{b}.conv{c}": 32 for b in range(3) for c in (1, 2)},
               **{f"layer3.{b}.conv{c}": 64 for b in range(3) for c in (1, 2)}}
BASE_FLOPS = 40e6
EPOCHS = 3

# (kind, width_mult, target, criterion, flops, accuracy of seed 0); seed 1 adds one point
TRIALS = [
    ("baseline", 0.5, None, "uniform", 10e6, 0.80),
    ("baseline", 1.0, None, "uniform", 40e6, 0.90),
    ("baseline", 2.0, None, "uniform", 160e6, 0.94),
    ("lwdna", 2.0, 0.5, "dhp", 20e6, 0.88),
    ("lwdna", 2.0, 1.0, "dhp", 40e6, 0.915),
    ("lwdna", 1.5, 0.5, "l1", 20e6, 0.86),
]
SEEDS = (0, 1)


def channel_config(widths: dict) -> dict:
    return {"family": "resnet_cifar", "variant": "20", "num_classes": 10, "input_size": 32,
            "in_channels": 3, "widths": widths, "groups": [], "options": {}}


def profiled_widths(target: float) -> dict:
    """Early layers wider, late layers narrower (the shape the paper reports)."""
    n = len(BASE_WIDTHS)
    return {name: max(1, round(w * (1.6 - 1.0 * i / n) * target ** 0.5))
            for i, (name, w) in enumerate(BASE_WIDTHS.items())}


def add_trial(client, exp_id, parent_id, *, kind, width_mult, target, criterion, flops,
              accuracy, seed, status="FINISHED", stopped=False):
    tags = {keys.TAG_KIND: kind, keys.TAG_PARENT_RUN_ID: parent_id, keys.TAG_SWEEP: "demo",
            keys.TAG_MODEL: "resnet_cifar", keys.TAG_CRITERION: criterion}
    if stopped:
        tags[keys.TAG_STOPPED_EARLY] = "true"
    run = client.create_run(exp_id, tags=tags, run_name=f"{kind}-{width_mult}-{target}-s{seed}")
    rid = run.info.run_id
    params = {keys.PARAM_WIDTH_MULT: width_mult, keys.PARAM_CRITERION: criterion,
              keys.PARAM_TARGET_METRIC: "flops", keys.PARAM_SEED: seed,
              keys.PARAM_DATA_FRACTION: 1.0, keys.PARAM_REMAIN_RATIO: 0.5,
              keys.PARAM_LINEAR_RATIO: 0.5, keys.PARAM_EPOCHS: EPOCHS,
              keys.PARAM_MODEL: "resnet_cifar", keys.PARAM_VARIANT: "20",
              keys.PARAM_DATASET: "digits"}
    if target is not None:
        params[keys.PARAM_TARGET] = target
    finals = {keys.METRIC_FLOPS: flops, keys.METRIC_PARAMS: flops / 150,
              keys.METRIC_FLOPS_PAPER: flops * 1.02, keys.METRIC_PARAMS_PAPER: flops / 149,
              keys.METRIC_BASELINE_FLOPS: BASE_FLOPS, keys.METRIC_BASELINE_PARAMS: BASE_FLOPS / 150,
              keys.METRIC_FLOPS_RATIO: flops / BASE_FLOPS,
              keys.METRIC_PARAMS_RATIO: flops / BASE_FLOPS, keys.METRIC_SEARCH_SECONDS: 1.5,
              keys.METRIC_TRAIN_SECONDS: 9.0, keys.METRIC_EPOCHS_COMPLETED: EPOCHS}
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in finals.items()]
    for epoch in range(1, EPOCHS + 1):  # the last epoch's accuracy is the final accuracy
        share = epoch / EPOCHS
        for key, value in ((keys.METRIC_ACCURACY, accuracy * share ** 0.2),
                           (keys.METRIC_TRAIN_ACCURACY, min(1.0, accuracy * share ** 0.1 + 0.02)),
                           (keys.METRIC_TRAIN_LOSS, 2.0 / (epoch + 1)),
                           (keys.METRIC_TEST_LOSS, 2.2 / (epoch + 1) + 0.1)):
            metrics.append(Metric(key, value, now + epoch, epoch))
    client.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()],
                     tags=[RunTag(keys.TAG_RUN_NAME, run.info.run_name)])
    client.log_inputs(rid, datasets=[_dataset_input()])
    client.log_dict(rid, channel_config(BASE_WIDTHS), keys.ARTIFACT_BASE_CONFIG)
    if kind == keys.KIND_LWDNA:
        client.log_dict(rid, channel_config(profiled_widths(target)), keys.ARTIFACT_CONFIG)
    client.set_terminated(rid, status=status)
    return rid


TEST_IMAGES = 200


def _dataset_input():
    # as sweeps.inputs logs it: the profile carries the split sizes
    from mlflow.entities import Dataset, DatasetInput

    profile = json.dumps({"num_train": 800, "num_test": TEST_IMAGES})
    return DatasetInput(Dataset(name="digits", digest="0123456789ab", source_type="code",
                                source="{}", profile=profile))


def add_parent(client, exp_id, name, start_time=None):
    run = client.create_run(exp_id, start_time=start_time, run_name=name,
                            tags={keys.TAG_KIND: keys.KIND_SWEEP, keys.TAG_SWEEP: name})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def build_demo_experiment(client, name, trials=TRIALS, seeds=SEEDS, artifact_root=None):
    """One old sweep (one trial) and the current one: TRIALS x SEEDS, one stopped-early trial
    that would dominate everything, one FAILED and one RUNNING run."""
    exp_id = client.create_experiment(name, artifact_location=artifact_root)
    old = add_parent(client, exp_id, "demo-old", start_time=int(time.time() * 1000) - 3_600_000)
    add_trial(client, exp_id, old, kind="baseline", width_mult=1.0, target=None,
              criterion="uniform", flops=BASE_FLOPS, accuracy=0.5, seed=0)
    parent = add_parent(client, exp_id, "demo")
    for kind, width, target, criterion, flops, acc in trials:
        for seed in seeds:
            add_trial(client, exp_id, parent, kind=kind, width_mult=width, target=target,
                      criterion=criterion, flops=flops, accuracy=acc + 0.01 * seed, seed=seed)
    extra = dict(kind="lwdna", width_mult=2.0, target=0.4, criterion="dhp", flops=15e6,
                 accuracy=0.99, seed=0)
    add_trial(client, exp_id, parent, stopped=True, **extra)
    add_trial(client, exp_id, parent, status="FAILED", **extra)
    add_trial(client, exp_id, parent, status="RUNNING", **extra)
    return parent, old


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    parent, old = build_demo_experiment(client, "demo", artifact_root=(root / "art").as_uri())
    empty_exp = client.create_experiment("empty", artifact_location=(root / "art").as_uri())
    add_parent(client, empty_exp, "nothing-yet")
    yield {"uri": uri, "root": root, "parent": parent, "old": old}
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def report(store):
    out = store["root"] / "report"
    paths = create_report(experiment="demo", tracking_uri=store["uri"], out_dir=out).paths
    return {"out": out, "paths": paths}


def test_report_writes_every_file(report):
    expected = {"pareto.png", "pareto.svg", "widths.png", "curves.png", "front.csv",
                "trials.csv", "paired.csv", "arms.csv", "summary.md"}
    assert set(report["paths"]) == expected
    for path in report["paths"].values():
        assert path.is_file() and path.stat().st_size > 0 and path.parent == report["out"]


def test_paired_csv_has_each_settings_gain_over_both_seeds(report):
    paired = pd.read_csv(report["out"] / "paired.csv")
    # one row per LW-DNA setting; the stopped-early target 0.4 is not among them
    settings = list(zip(paired["width_mult"], paired["target"], paired["criterion"], strict=True))
    assert settings == [(1.5, 0.5, "l1"), (2.0, 0.5, "dhp"), (2.0, 1.0, "dhp")]
    assert list(paired["flops"]) == [20e6, 20e6, 40e6]
    # same-seed curves: at 20M, 0.80 + 0.10 / 3 (+ 0.01 in seed 1); at 40M, 0.90: the same gain
    # in both seeds, so no spread and an interval of zero width above 0
    gains = [100 * (0.86 - (0.80 + 0.10 / 3)), 100 * (0.88 - (0.80 + 0.10 / 3)),
             100 * (0.915 - 0.90)]
    assert paired["gain_mean"].tolist() == pytest.approx(gains)
    assert paired["gain_std"].tolist() == pytest.approx([0.0] * 3, abs=1e-9)
    assert paired["gain_ci_low"].tolist() == pytest.approx(gains)
    assert paired["gain_ci_high"].tolist() == pytest.approx(gains)
    assert list(paired["n_seeds"]) == [2, 2, 2]
    assert list(paired["outcome"]) == ["LW-DNA better"] * 3
    assert [sorted(str(s).split(",")) for s in paired["seeds"]] == [["0", "1"]] * 3


def test_arms_csv_has_each_arms_mean_and_interval_over_seeds(report):
    arms = pd.read_csv(report["out"] / "arms.csv")
    # one row per arm (baselines first, by FLOPs), the stopped-early trial left out
    rows = list(zip(arms["kind"], arms["width_mult"], arms["criterion"], arms["flops"],
                    strict=True))
    assert rows == [("baseline", 0.5, "uniform", 10e6), ("baseline", 1.0, "uniform", 40e6),
                    ("baseline", 2.0, "uniform", 160e6), ("lwdna", 1.5, "l1", 20e6),
                    ("lwdna", 2.0, "dhp", 20e6), ("lwdna", 2.0, "dhp", 40e6)]
    seed0 = [0.80, 0.90, 0.94, 0.86, 0.88, 0.915]   # TRIALS' accuracies in these rows' order
    assert arms["accuracy"].tolist() == pytest.approx([a + 0.005 for a in seed0])
    # the last epoch's train accuracy is the test accuracy + 0.02 (add_trial)
    assert arms["train_accuracy"].tolist() == pytest.approx([a + 0.025 for a in seed0])
    assert arms["train_test_gap"].tolist() == pytest.approx([0.02] * 6)
    assert list(arms["n_seeds"]) == [2] * 6
    # seeds differ by 0.01: std 0.01 / sqrt 2, half width t(0.975, 1) * std / sqrt 2 = 12.706 * 0.005
    assert arms["accuracy_ci"].tolist() == pytest.approx([12.7062047 * 0.005] * 6)
    assert arms["train_accuracy_ci"].tolist() == pytest.approx([12.7062047 * 0.005] * 6)
    assert arms["train_test_gap_ci"].tolist() == pytest.approx([0.0] * 6, abs=1e-9)


def test_trials_csv_has_one_row_per_finished_child(report):
    trials = pd.read_csv(report["out"] / "trials.csv")
    assert len(trials) == len(TRIALS) * len(SEEDS) + 1  # + the stopped-early one
    assert trials["stopped_early"].sum() == 1
    lwdna = trials[trials["kind"] == "lwdna"].iloc[0]
    assert json.loads(lwdna["widths"]).keys() == BASE_WIDTHS.keys()


def test_front_csv_is_the_seed_averaged_front_without_stopped_trials(report):
    front = pd.read_csv(report["out"] / "front.csv")
    assert list(front["flops"]) == [10e6, 20e6, 40e6, 160e6]
    assert list(front["kind"]) == ["baseline", "lwdna", "lwdna", "baseline"]
    assert front["accuracy"].tolist() == pytest.approx([0.805, 0.885, 0.92, 0.945])
    assert (front["n_seeds"] == 2).all()


def test_summary_has_front_table_and_verdict(report):
    text = (report["out"] / "summary.md").read_text()
    assert "LW-DNA minus uniform at 3 budgets" in text
    # differences by hand: dhp@20M 88.5 - 83.83, l1@20M 86.5 - 83.83, dhp@40M 92.0 - 90.5
    assert "+2.94 points on average" in text
    assert "by the paired 95 % intervals, 3 setting(s) are better and 0 worse" in text
    # paired: seed 1 shifts both arms by one point, so each setting gains the same in both seeds
    assert "3 setting(s) LW-DNA better, 0 LW-DNA worse, 0 not distinguishable" in text
    assert "+4.67 points [+4.67, +4.67], n = 2 seeds" in text
    assert "| kind | criterion |" in text and "demo-old" not in text


def test_every_plus_minus_in_the_summary_is_the_95_ci_its_header_names(report):
    text = (report["out"] / "summary.md").read_text()
    assert "sample std" not in text and "±" in text
    for table in _tables(text):
        header, rows = table[0], table[2:]
        cells = [row.split("|") for row in rows]
        for i, name in enumerate(header.split("|")):
            if any(len(c) > i and "±" in c[i] for c in cells):
                assert "± 95 % CI" in name, (name, table[:3])


def test_summary_says_what_one_test_image_is_worth(report):
    text = (report["out"] / "summary.md").read_text()
    assert f"{TEST_IMAGES:,} images: one image = 0.5 points of accuracy" in text


def _tables(markdown: str) -> list[list[str]]:
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_parent_run_lists_the_report_artifacts(store, report):
    client = MlflowClient(tracking_uri=store["uri"])
    listed = {f.path.split("/")[-1]
              for f in client.list_artifacts(store["parent"], keys.ARTIFACT_REPORT_DIR)}
    assert set(report["paths"]) <= listed


def test_load_defaults_to_latest_parent_and_can_choose(store):
    latest = load_sweep("demo", tracking_uri=store["uri"])
    assert latest.parent_run_id == store["parent"] and latest.n_unfinished == 2
    assert latest.other_parent_run_ids == (store["old"],)
    old = load_sweep(parent_run_id=store["old"], tracking_uri=store["uri"])
    assert len(old.trials) == 1 and old.trials["accuracy"].iloc[0] == pytest.approx(0.5)


def test_loaded_columns_and_types(store):
    trials = load_sweep("demo", tracking_uri=store["uri"]).trials
    base = trials[trials["kind"] == "baseline"]
    assert base["target"].isna().all() and base["widths"].isna().all()
    assert base["base_widths"].iloc[0] == BASE_WIDTHS
    assert trials["seed"].dtype == "Int64" and trials["stopped_early"].dtype == bool
    assert trials["run_id"].is_unique and set(trials["dataset"]) == {"digits"}


def test_load_history_per_epoch(store):
    trials = load_sweep("demo", tracking_uri=store["uri"]).trials
    row = trials[trials["kind"] == "lwdna"].iloc[0]
    history = load_history(row["run_id"], tracking_uri=store["uri"])
    assert list(history.index) == [1, 2, 3]
    assert history["accuracy"].iloc[-1] == pytest.approx(row["accuracy"])
    assert {"train_loss", "test_loss", "train_accuracy"} <= set(history.columns)


def test_a_trial_id_instead_of_the_parent_names_the_parent(store):
    child = load_sweep("demo", tracking_uri=store["uri"]).trials["run_id"].iloc[0]
    with pytest.raises(AnalysisError, match=f"not a sweep parent.*{store['parent']}"):
        load_sweep(parent_run_id=child, tracking_uri=store["uri"])


def test_missing_experiment_names_the_fix(store):
    with pytest.raises(AnalysisError, match=r"no experiment named 'nope'.*'demo'.*--experiment"):
        load_sweep("nope", tracking_uri=store["uri"])


def test_empty_sweep_names_the_fix(store):
    with pytest.raises(AnalysisError, match="no finished trial.*--parent-run-id"):
        load_sweep("empty", tracking_uri=store["uri"])


def test_missing_database_is_not_created(tmp_path):
    with pytest.raises(AnalysisError, match="no MLflow store at sqlite:///.*--tracking-uri"):
        load_sweep("demo", tracking_uri=f"sqlite:///{tmp_path}/absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_a_file_that_is_no_database_is_named(tmp_path):
    (tmp_path / "notes.db").write_text("not a database, " * 100)
    with pytest.raises(AnalysisError, match="is not an SQLite database.*--tracking-uri"):
        load_sweep("demo", tracking_uri=f"sqlite:///{tmp_path}/notes.db")


def test_unreachable_server_fails_fast():
    # the sweep's own check (sweeps.tracking.check_tracking), so the same words as `hetero sweep`
    with pytest.raises(AnalysisError, match="MLflow tracking server http://127.0.0.1:9 is not "
                                            "reachable.*--tracking-uri of the sweep's store"):
        load_sweep("demo", tracking_uri="http://127.0.0.1:9")


def _run_cli(argv):
    from hetero_cli import main

    return main(["pareto", *argv])


def test_cli_prints_error_without_traceback(store, capsys):
    assert _run_cli(["--experiment", "nope", "--tracking-uri", store["uri"],
                     "--out", str(store["root"] / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hetero pareto: error: no experiment named 'nope'") and "Traceback" not in err


def test_cli_reports_files_and_verdict(store, capsys):
    out = store["root"] / "cli"
    assert _run_cli(["--parent-run-id", store["parent"], "--tracking-uri", store["uri"],
                     "--out", str(out), "--log-x", "--no-log-to-mlflow"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "LW-DNA minus uniform at 3 budgets" in printed
    assert "logged on MLflow" not in printed and (out / "pareto.svg").is_file()


def test_cli_module_imports_stay_light():
    code = ("import sys, argparse, analysis.cli as c; c.add_arguments(argparse.ArgumentParser())\n"
            "print(','.join(m for m in ('mlflow', 'pandas', 'matplotlib', 'torch', 'ray')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_pooling_sweeps_takes_each_names_latest_parent(store):
    """bench/ablation_table pools the sweeps of an experiment (the KD arms run after the rest):
    a superseded re-run of a name must not count its seeds twice, a sweep with no finished trial
    is left out, and the plot's dots are each arm's own trials."""
    import importlib.util

    client = MlflowClient(tracking_uri=store["uri"])
    exp_id = client.create_experiment("pool", artifact_location=(store["root"] / "art").as_uri())
    now = int(time.time() * 1000)
    rerun_old = add_parent(client, exp_id, "ablation", start_time=now - 7_200_000)
    rerun_new = add_parent(client, exp_id, "ablation", start_time=now - 3_600_000)
    kd = add_parent(client, exp_id, "ablation-kd", start_time=now)
    add_parent(client, exp_id, "still-running", start_time=now - 60_000)
    row = dict(kind="baseline", width_mult=1.0, target=None, criterion="uniform",
               flops=BASE_FLOPS)
    for seed in SEEDS:
        add_trial(client, exp_id, rerun_old, accuracy=0.1, seed=seed, **row)
        add_trial(client, exp_id, rerun_new, accuracy=0.5 + 0.01 * seed, seed=seed, **row)
        add_trial(client, exp_id, kd, kind="lwdna", width_mult=2.0, target=1.0, criterion="dhp",
                  flops=BASE_FLOPS, accuracy=0.6, seed=seed)

    sweeps = list_sweeps("pool", tracking_uri=store["uri"])
    assert dict(zip(sweeps["parent_run_id"], sweeps["latest"], strict=True)) == {
        kd: True, rerun_new: True, rerun_old: False,
        sweeps.loc[sweeps["sweep"] == "still-running", "parent_run_id"].item(): True}

    path = Path(__file__).resolve().parents[1] / "bench" / "ablation_table.py"
    spec = importlib.util.spec_from_file_location("ablation_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    trials = table.pooled_trials(store["uri"], ["pool"])
    assert sorted(trials["accuracy"].round(2)) == [0.5, 0.51, 0.6, 0.6]   # not the re-run's 0.1
    points = table.arm_points(trials)
    assert list(points["label"]) == ["uniform, width 1", "dhp LW-DNA"]
    assert [sorted(round(a, 2) for a in s) for s in points["seeds"]] == [[0.5, 0.51], [0.6, 0.6]]
    assert points["mean"].tolist() == pytest.approx([0.505, 0.6])
