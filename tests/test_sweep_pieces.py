"""Pure pieces of a sweep, without Ray or a store: a trial's outcome, the sweep's front and
numbers (sweeps.results), a failed store told from other errors (sweeps.parent_run), what Ray's
nodes must offer (sweeps.ray_env) and how many trials a Tune plan holds (sweeps.plans)."""

import errno
from types import SimpleNamespace

import pytest

from sweeps import keys
from sweeps.parent_run import StoreFailed, store_failure
from sweeps.plans import _Plan, _planned_trials
from sweeps.ray_env import cluster_tracking_problem, resource_problem
from sweeps.results import SweepResults, TrialOutcome, _last_line, sweep_status


def outcome(trial_id, accuracy=None, flops=None, *, kind=keys.KIND_LWDNA, **state):
    metrics = {} if accuracy is None else {keys.METRIC_ACCURACY: accuracy,
                                          keys.METRIC_FLOPS: flops,
                                          keys.METRIC_FLOPS_RATIO: flops / 100}
    return TrialOutcome(trial_id, {"kind": kind}, metrics, **state)


def test_only_a_trial_that_reported_and_ran_to_the_end_is_finished():
    assert outcome("a", 0.9, 50).finished
    assert not outcome("b").finished                       # never reported
    assert not outcome("c", 0.9, 50, stopped_early=True).finished
    assert not outcome("d", 0.9, 50, interrupted=True).finished
    assert not outcome("e", 0.9, 50, error="boom").finished


def test_the_front_and_summary_numbers_leave_unfinished_trials_out():
    trials = [outcome("a", 0.90, 80), outcome("b", 0.85, 40), outcome("c", 0.80, 60),
              outcome("d", 0.95, 30, stopped_early=True),
              outcome("e", 0.70, 100, kind=keys.KIND_BASELINE), outcome("f", error="x")]
    results = SweepResults("s", "e", "p", "sqlite:///x.db", "/tmp/s", trials=trials)
    assert [t.trial_id for t in results.pareto()] == ["b", "a"]   # by FLOPs; c is dominated
    numbers = results.summary_metrics()
    assert numbers[keys.METRIC_SWEEP_TRIALS] == 6
    assert numbers[keys.METRIC_SWEEP_FINISHED] == 4
    assert numbers[keys.METRIC_SWEEP_FAILED] == 1
    assert numbers[keys.METRIC_SWEEP_STOPPED] == 1
    assert numbers[keys.METRIC_FRONT_POINTS] == 2
    assert numbers[keys.METRIC_BEST_ACCURACY] == 0.90
    assert numbers[keys.METRIC_BEST_BASELINE_ACCURACY] == 0.70
    # against the worst finished values (0.70, 100): b adds 0.15 x 60, a 0.05 x 20 more
    assert numbers[keys.METRIC_HYPERVOLUME] == pytest.approx(0.15 * 60 + 0.05 * 20)


def test_a_sweep_in_which_every_trial_failed_did_not_happen():
    assert sweep_status([outcome("a", error="x"), outcome("b", error="y")]) == keys.STATUS_FAILED
    assert sweep_status([outcome("a", error="x"), outcome("b", 0.9, 50)]) == keys.STATUS_FINISHED
    assert sweep_status([]) == keys.STATUS_FINISHED


def test_a_wrapped_trial_error_reads_as_its_last_line():
    assert _last_line("Traceback (most recent call last):\n  File x\nValueError: bad lr\n\n") \
        == "ValueError: bad lr"
    assert _last_line("") == ""


def test_a_full_disk_or_failed_store_is_a_store_failure_other_errors_are_not(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    failed = store_failure(OSError(errno.ENOSPC, "No space left on device"), uri, "s")
    assert isinstance(failed, StoreFailed)
    assert f"the tracking store {uri} failed" in str(failed) and "--resume --name s" in str(failed)
    assert store_failure(ValueError("a bug"), uri, "s") is None
    assert store_failure(KeyboardInterrupt(), uri, "s") is None


def test_a_trial_no_node_can_run_is_named_with_the_fix():
    spec = SimpleNamespace(resources=SimpleNamespace(cpus=4, gpus=1))
    assert resource_problem(spec, [{"CPU": 8, "GPU": 1}], "here") is None
    assert "here has no GPU" in resource_problem(spec, [{"CPU": 8}], "here")
    assert "at most 2 CPUs" in resource_problem(spec, [{"CPU": 2, "GPU": 1}], "here")


def test_a_store_local_to_this_machine_is_refused_only_for_nodes_elsewhere():
    assert cluster_tracking_problem("sqlite:////tmp/m.db", ["127.0.0.1"]) is None
    # 192.0.2.0/24 is reserved for documentation: never an address of this machine
    problem = cluster_tracking_problem("http://127.0.0.1:5000", ["127.0.0.1", "192.0.2.7"])
    assert "192.0.2.7" in problem and "--tracking-uri" in problem
    assert cluster_tracking_problem("http://192.0.2.1:5000", ["192.0.2.7"]) is None


def test_a_plan_holds_its_grid_times_its_samples():
    assert _planned_trials(_Plan("g", {"hp": {"grid_search": [1, 2, 3]}})) == 3
    assert _planned_trials(_Plan("o", {"hp": {"kind": "lwdna"}}, num_samples=5)) == 5
