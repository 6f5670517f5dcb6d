"""The trainer: accuracy on digits, determinism, exact resume, schedules, KD, callback keys."""

from __future__ import annotations

import io
import math
import random

import pytest
import torch

from hetero.data import load_dataset
from hetero.models import create_model
from hetero.protocol import TrainProtocol
from hetero.train import Distillation, Trainer, TrainSummary, lr_factor, resolve_device

METRIC_KEYS = {"epoch", "train_loss", "train_accuracy", "test_loss", "accuracy", "top5", "lr",
               "epoch_seconds", "images_per_second"}
# Fast on CPU: resnet20 reaches ~0.96-0.98 on digits in 8 epochs (about 1,400 images each).
DIGITS_PROTOCOL = TrainProtocol(epochs=8, batch_size=128, lr=0.1, weight_decay=5e-4,
                                schedule="cosine", device="cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small_digits():
    return load_dataset("digits", fraction=0.15, seed=0)


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("resnet20", num_classes=10, input_size=8, in_channels=1)


def _short(**changes):
    return TrainProtocol(epochs=3, batch_size=32, lr=0.05, device="cpu").replace(**changes)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_resnet20_on_digits_reaches_90_percent(digits):
    summary = Trainer(_model(), digits, DIGITS_PROTOCOL, seed=0).fit()
    assert isinstance(summary, TrainSummary)
    assert summary.accuracy >= 0.90
    assert summary.epochs == 8 and len(summary.history) == 8
    assert summary.history[-1]["train_loss"] < summary.history[0]["train_loss"]


def test_callback_receives_every_key(small_digits):
    seen = []
    summary = Trainer(_model(), small_digits, _short(epochs=2), seed=0).fit(
        on_epoch=lambda metrics, trainer: seen.append((dict(metrics), trainer.epoch)))
    assert [m["epoch"] for m, _ in seen] == [1, 2] and [e for _, e in seen] == [1, 2]
    for metrics, _ in seen:
        assert set(metrics) == METRIC_KEYS
        assert 0 <= metrics["accuracy"] <= metrics["top5"] <= 1
        assert 0 <= metrics["train_accuracy"] <= 1
        assert metrics["images_per_second"] > 0 and metrics["epoch_seconds"] > 0
    assert summary.accuracy == seen[-1][0]["accuracy"]
    assert summary.history == [m for m, _ in seen]


def test_same_seed_gives_identical_weights(small_digits):
    runs = []
    for seed in (0, 0, 1):
        trainer = Trainer(_model(), small_digits, _short(epochs=2), seed=seed)
        runs.append((trainer, trainer.fit()))
    (a, sum_a), (b, sum_b), (c, _) = runs
    _assert_same_weights(a.model, b.model)
    assert [m["train_loss"] for m in sum_a.history] == [m["train_loss"] for m in sum_b.history]
    # the trial seed changes the batch order, hence the weights
    assert not torch.equal(a.model.fc.weight, c.model.fc.weight)


def test_resume_from_checkpoint_equals_uninterrupted(small_digits):
    protocol = _short(epochs=3)
    saved = {}

    def keep_epoch_one(metrics, trainer):
        if metrics["epoch"] == 1:
            buffer = io.BytesIO()
            torch.save(trainer.state_dict(), buffer)  # what a sweep would write to disk
            saved["bytes"] = buffer.getvalue()
        torch.rand(3), random.random()  # a callback that draws random numbers changes nothing

    full = Trainer(_model(seed=0), small_digits, protocol, seed=4)
    full_summary = full.fit(on_epoch=keep_epoch_one)

    state = torch.load(io.BytesIO(saved["bytes"]), weights_only=True)
    resumed = Trainer(_model(seed=123), small_digits, protocol, seed=4)  # different fresh init
    resumed.load_state_dict(state)
    assert resumed.epoch == 1 and len(resumed.history) == 1
    resumed_summary = resumed.fit()

    _assert_same_weights(full.model, resumed.model)
    assert resumed_summary.accuracy == full_summary.accuracy
    assert resumed_summary.test_loss == full_summary.test_loss
    for key in ("train_loss", "accuracy", "lr"):
        assert [m[key] for m in resumed_summary.history] == [m[key] for m in full_summary.history]


def test_resume_refuses_a_different_protocol(small_digits):
    state = Trainer(_model(), small_digits, _short(epochs=1), seed=0).state_dict()
    other = Trainer(_model(), small_digits, _short(epochs=1, lr=0.2), seed=0)
    with pytest.raises(ValueError, match="lr"):
        other.load_state_dict(state)


def test_step_schedule_with_warmup_gives_the_expected_lrs(small_digits):
    protocol = TrainProtocol(epochs=8, batch_size=256, lr=0.1, schedule="step",
                             milestones=(0.5, 0.75), gamma=0.1, warmup_epochs=2, device="cpu")
    expected = [0.01, 0.055, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    tiny = load_dataset("digits", fraction=0.03, seed=0)
    summary = Trainer(_model(), tiny, protocol, seed=0).fit()
    assert [m["lr"] for m in summary.history] == pytest.approx(expected, rel=1e-9)


def test_cosine_schedule_decays_to_zero_over_the_epochs():
    protocol = TrainProtocol(epochs=10, lr=0.1, schedule="cosine", warmup_epochs=1)
    factors = [lr_factor(protocol, e) for e in range(10)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[1:] == pytest.approx([0.5 * (1 + math.cos(math.pi * e / 10))
                                         for e in range(1, 10)])
    assert factors[1:] == sorted(factors[1:], reverse=True) and factors[-1] > 0


def test_kd_runs_and_changes_the_loss(small_digits):
    teacher = _model(seed=9)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    plain = Trainer(_model(), small_digits, _short(epochs=1), seed=0).fit()
    distilled = Trainer(_model(), small_digits, _short(epochs=1), seed=0,
                        distill=Distillation(teacher, weight=0.5)).fit()
    assert distilled.history[0]["train_loss"] != pytest.approx(plain.history[0]["train_loss"])
    assert not teacher.training  # evaluated in eval mode
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key  # never trained, BN stats untouched


def test_kd_loss_is_the_papers_formula(small_digits):
    """0.4 * KL(softmax(teacher/T) || softmax(student/T)) * T^2 + 0.6 * CE, batch mean (T = 4),
    written out here with explicit sums: a different loss or weighting fails."""
    teacher = _model(seed=9).eval()
    trainer = Trainer(_model(), small_digits, _short(epochs=1), seed=0,
                      distill=Distillation(teacher, weight=0.4, temperature=4.0))
    x, y = next(iter(small_digits.train_batches(16, augment=False)))
    logits = trainer.model(x)
    t = 4.0
    p_teacher = torch.softmax(teacher(x).detach() / t, dim=1)
    log_p_student = torch.log_softmax(logits / t, dim=1)
    kl = (p_teacher * (torch.log(p_teacher) - log_p_student)).sum(1).mean() * t * t
    ce = -torch.log_softmax(logits, dim=1)[torch.arange(len(y)), y].mean()
    expected = 0.4 * kl + 0.6 * ce
    torch.testing.assert_close(trainer._loss(x, logits, y), expected, rtol=1e-5, atol=1e-6)


def test_label_smoothing_enters_the_training_loss(small_digits):
    """protocol.label_smoothing reaches the loss the trainer minimises: one batch's loss is the
    smoothed cross-entropy written out here, and a training step from the same init reports
    another loss than the unsmoothed trainer's."""
    eps = 0.2
    smooth = Trainer(_model(), small_digits, _short(label_smoothing=eps), seed=0)
    plain = Trainer(_model(), small_digits, _short(), seed=0)
    x, y = next(iter(small_digits.train_batches(16, augment=False)))
    with torch.no_grad():
        logits = _model().eval()(x)
    log_p = torch.log_softmax(logits, dim=1)
    # Target (1 - eps) on the label plus eps / classes everywhere.
    expected = (-(1 - eps) * log_p[torch.arange(len(y)), y] - eps * log_p.mean(1)).mean()
    torch.testing.assert_close(smooth._loss(x, logits, y), expected, rtol=1e-5, atol=1e-6)
    assert smooth._step(x, y)[0].item() != pytest.approx(plain._step(x, y)[0].item())


def test_nesterov_reaches_the_optimizer_and_changes_a_step(small_digits):
    """protocol.nesterov builds a Nesterov SGD. On the first step the momentum buffer is the
    gradient g (weight decay included), so plain momentum moves a weight by -lr g and Nesterov
    by -lr (1 + momentum) g: the same batch from the same init gives exactly that."""
    x, y = next(iter(small_digits.train_batches(32, augment=False)))
    w0 = _model().fc.weight.detach().clone()
    moved = {}
    for nesterov in (False, True):
        trainer = Trainer(_model(), small_digits, _short(nesterov=nesterov), seed=0)
        assert trainer.optimizer.param_groups[0]["nesterov"] is nesterov
        trainer._step(x, y)
        moved[nesterov] = trainer.model.fc.weight.detach() - w0
    momentum = _short().momentum
    assert moved[False].abs().max() > 0
    torch.testing.assert_close(moved[True], (1 + momentum) * moved[False], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("weight, temperature", [(0.0, 4.0), (1.5, 4.0), (0.4, 0.0)])
def test_distillation_outside_its_range_is_an_error(weight, temperature):
    with pytest.raises(ValueError, match="weight in"):
        Distillation(_model(), weight=weight, temperature=temperature)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="auto"):
            resolve_device("cuda")


def test_eval_every_scores_the_test_split_less_often_and_trains_the_same(small_digits):
    every = Trainer(_model(), small_digits, _short(epochs=3), seed=0).fit()
    sparse = Trainer(_model(), small_digits, _short(epochs=3, eval_every=2), seed=0).fit()
    measured = [not math.isnan(h["accuracy"]) for h in sparse.history]
    assert measured == [False, True, True]  # epoch 2, and always the last
    assert [h["train_loss"] for h in sparse.history] == [h["train_loss"] for h in every.history]
    assert sparse.accuracy == every.accuracy and sparse.history[1]["accuracy"] == (
        every.history[1]["accuracy"])
