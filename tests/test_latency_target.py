"""Shrinking to a latency budget on this device (target_metric latency): the per-layer table is
measured once and cached, the device model goes through its calibration points (and those
agree with the two networks timed independently here), the shrinker meets the model's budget,
and the timed loop's network re-times within 5 % of the budget.
Figures per target: bench/latency_target.py."""

from __future__ import annotations

import json
import math
import statistics
import time

import pytest
import torch

from hetero import latency_model
from hetero.importance import score_channels
from hetero.latency import latency_ratio
from hetero.latency_model import build_latency_model
from hetero.models import create_model, graph_of, uniform, widen
from hetero.shrink import shrink_to_target
from hetero.shrink_latency import shrink_to_latency

pytestmark = pytest.mark.slow


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path))
    return tmp_path


def test_latency_targeted_shrink_lands_on_the_models_prediction(cache):
    """The shrinker hits the device model's budget within its 0.5 % band, and the model
    reproduces the two networks it was calibrated on."""
    base = uniform("resnet20", num_classes=10, input_size=32)
    wide = widen(base, 2.0)
    model = build_latency_model(wide, base, "cpu")
    table = next((cache / "latency").glob("*.json"))
    graph = graph_of(wide)
    # Cached for this device: one entry per layer shape the two calibration networks hold.
    shapes = {latency_model._key(op, layer, graph.channels(op.inputs, w),
                                 graph.channels(op.output, w))
              for c in (base, wide) for w in [graph.unit_widths(dict(c.widths), c.in_channels)]
              for op, layer in model.layers}
    assert set(json.loads(table.read_text())) == shapes
    for config, timed in ((base, model.base_seconds), (wide, model.wide_seconds)):
        widths = graph.unit_widths(dict(config.widths), config.in_channels)
        assert model(widths) == pytest.approx(timed, rel=1e-6)
    assert model.wide_ratio > 1.5        # twice the channels: well over the baseline's time
    scores = score_channels("l1", create_model(config=wide), wide, [])
    result = shrink_to_target(wide, scores, base_config=base, target=1.5,
                              target_metric="latency", latency=model, remain_ratio=0.1,
                              linear_ratio=0.1)
    derived = graph.unit_widths(dict(result.config.widths), result.config.in_channels)
    assert model(derived) == pytest.approx(1.5 * model.base_seconds, rel=0.005)
    assert result.target_value == pytest.approx(1.5 * model.base_seconds)


def test_the_timed_loop_lands_within_five_percent_when_re_timed(cache):
    """The issue's promise: shrink to 1.2x the baseline's latency, then time the derived network
    again, on fresh copies (three of them, the median: one copy of a network times a few %
    apart from another). Timing on a shared machine also drifts between minutes, so a miss
    gets one more full attempt; a systematic miss (a model or a loop that does not converge)
    fails both."""
    base = uniform("resnet20", num_classes=10, input_size=32)
    wide = widen(base, 2.0)
    scores = score_channels("l1", create_model(config=wide), wide, [])
    shape = (base.in_channels, base.input_size, base.input_size)
    misses = []
    for _ in range(2):
        model = build_latency_model(wide, base, "cpu")
        result, timed, steps = shrink_to_latency(wide, scores, base_config=base, target=1.2,
                                                 latency=model, remain_ratio=0.1,
                                                 linear_ratio=0.1)
        assert steps and result.target_value == pytest.approx(1.2 * model.base_seconds)
        reference = create_model(config=base)
        retimed = statistics.median(
            latency_ratio(create_model(config=result.config), reference, shape).median
            for _ in range(3))
        misses.append((timed / 1.2 - 1, retimed / 1.2 - 1))
        if abs(retimed / 1.2 - 1) <= 0.05:
            break
    loop_miss, retimed_miss = misses[-1]
    assert abs(retimed_miss) <= 0.05, f"(loop, re-timed) misses per attempt: {misses}"
    assert abs(loop_miss) <= 0.05


def test_a_second_model_on_the_same_device_reads_the_cache(cache, monkeypatch):
    base = uniform("resnet20", num_classes=10, input_size=32)
    wide = widen(base, 2.0)
    first = build_latency_model(wide, base, "cpu")
    table = next((cache / "latency").glob("*.json"))
    before = table.stat().st_mtime_ns, table.read_text()

    def no_timing(*args):
        raise AssertionError("a cached layer shape was timed again")

    monkeypatch.setattr(latency_model, "_standalone", no_timing)   # only a cache miss times
    second = build_latency_model(wide, base, "cpu")
    assert (table.stat().st_mtime_ns, table.read_text()) == before
    assert second.base_sum == first.base_sum      # the same entries, read back


def test_latency_target_needs_the_device_model():
    base = uniform("resnet20", num_classes=10, input_size=32)
    wide = widen(base, 2.0)
    scores = score_channels("l1", create_model(config=wide), wide, [])
    with pytest.raises(ValueError, match="latency model"):
        shrink_to_target(wide, scores, base_config=base, target_metric="latency")


def test_a_latency_target_the_device_cannot_reach_names_the_timed_range(cache):
    """Reachability is judged by timing the two ends, not by the model: the error gives both
    timed ratios and the fix."""
    base = uniform("resnet20", num_classes=10, input_size=8, in_channels=1)
    wide = widen(base, 2.0)
    scores = score_channels("l1", create_model(config=wide), wide, [])
    model = build_latency_model(wide, base, "cpu")
    with pytest.raises(ValueError, match=r"floor \d\.\d{3} x, the whole widened network "
                                         r"\d\.\d{3} x .*raise the width multiplier"):
        shrink_to_latency(wide, scores, base_config=base, target=10.0, latency=model)


def _forward_seconds(networks, x, repeats: int = 21, block_seconds: float = 0.02) -> list[float]:
    """Per network: the median over ``repeats`` blocks of its mean batch-1 forward time, timed
    with a plain perf_counter (not hetero.latency). The networks' blocks alternate, so a slow
    minute on a shared machine slows every network alike."""
    seconds: list[list[float]] = [[] for _ in networks]
    with torch.no_grad():
        calls = []
        for net in networks:
            for _ in range(3):      # warm-up: allocation, kernel selection
                net(x)
            start = time.perf_counter()
            net(x)
            calls.append(max(1, int(block_seconds / max(time.perf_counter() - start, 1e-6))))
        for r in range(repeats):
            order = list(enumerate(networks))
            for i, net in order if r % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                for _ in range(calls[i]):
                    net(x)
                seconds[i].append((time.perf_counter() - start) / calls[i])
    return [statistics.median(s) for s in seconds]


def test_the_calibration_points_agree_with_an_independent_timing(cache):
    """The calibration's two points (the baseline's seconds, the widened network's ratio to
    it) against the two networks timed here by other code (perf_counter, alternating blocks):
    the model passes through its own points by construction, so only an outside timing shows
    they are right. Loose bounds: timings on a shared machine move by tens of percent, but a
    swapped pair, a ratio stuck at 1 or a unit slip lands far outside."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = uniform("resnet20", num_classes=10, input_size=16, in_channels=1)
        wide = widen(base, 2.0)
        model = build_latency_model(wide, base, "cpu")
        networks = [create_model(config=c).eval() for c in (base, wide)]
        base_s, wide_s = _forward_seconds(networks, torch.randn(1, 1, 16, 16))
    finally:
        torch.set_num_threads(threads)
    independent = wide_s / base_s
    assert independent > 1.2        # twice the channels: clearly slower, or the check is moot
    assert abs(math.log(model.wide_ratio / independent)) <= math.log(1.4), \
        f"calibration's wide/base ratio {model.wide_ratio:.3f}, timed here {independent:.3f}"
    assert abs(math.log(model.base_seconds / base_s)) <= math.log(2.0), \
        f"calibration's baseline {model.base_seconds * 1e3:.3f} ms, timed here {base_s * 1e3:.3f} ms"
