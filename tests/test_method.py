"""The whole method as one function: what run_trial reports each epoch, and resuming it."""

import pytest

from hetero.data import load_dataset
from hetero.method import TrialSpec, run_trial
from hetero.protocol import TrainProtocol

PROTOCOL = TrainProtocol(epochs=2, batch_size=64, lr=0.05, device="cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", fraction=0.3)


def spec(**kw):
    return TrialSpec(model="resnet20", width_mult=1.5, target=0.8, criterion="l1",
                     protocol=PROTOCOL, **kw)


def test_every_epoch_reports_the_cost_of_the_trained_network(digits):
    seen = []
    result = run_trial(spec(), data=digits, on_epoch=lambda m, _c: seen.append(m))
    assert [m["epoch"] for m in seen] == [1, 2]
    for metrics in seen:
        assert metrics["flops"] == result.flops and metrics["params"] == result.params
        assert metrics["flops_ratio"] == pytest.approx(result.flops_ratio)
    assert result.flops_ratio == pytest.approx(0.8, rel=0.005)
    assert seen[-1]["accuracy"] == result.accuracy


def test_resuming_from_an_epoch_checkpoint_matches_an_uninterrupted_trial(digits):
    checkpoints = []
    full = run_trial(spec(), data=digits, on_epoch=lambda _m, c: checkpoints.append(c))
    resumed = run_trial(spec(), data=digits, checkpoint=checkpoints[0])
    assert resumed.config == full.config
    assert resumed.accuracy == full.accuracy
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_both_arms_of_a_seed_distil_from_one_teacher_trained_once(digits, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path))
    one_epoch = PROTOCOL.replace(epochs=1)
    lwdna = run_trial(TrialSpec(model="resnet20", width_mult=2.0, target=1.0, criterion="l1",
                                kd_weight=0.4, protocol=one_epoch), data=digits)
    uniform = run_trial(TrialSpec(model="resnet20", baseline=True, width_mult=1.0,
                                  kd_weight=0.4, protocol=one_epoch), data=digits)
    assert lwdna.teacher_info["teacher_cached"] == 0.0
    assert uniform.teacher_info["teacher_cached"] == 1.0  # the 2x teacher of the LW-DNA's seed
    assert uniform.teacher_info["teacher_accuracy"] == lwdna.teacher_info["teacher_accuracy"]
    assert len(list((tmp_path / "teachers").glob("*.pt"))) == 1
    other_seed = run_trial(TrialSpec(model="resnet20", baseline=True, width_mult=1.0, seed=1,
                                     kd_weight=0.4, protocol=one_epoch), data=digits)
    assert other_seed.teacher_info["teacher_cached"] == 0.0
    assert len(list((tmp_path / "teachers").glob("*.pt"))) == 2
