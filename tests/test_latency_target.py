"""Shrinking to a latency budget on this device (target_metric latency): the per-layer table is
measured once and cached, the device model goes through its calibration points, and the shrinker
meets its budget. How close a re-timed network lands: bench/latency_target.py."""

from __future__ import annotations

import json

import pytest

from hetero.importance import score_channels
from hetero.latency_model import build_latency_model
from hetero.models import create_model, graph_of, uniform, widen
from hetero.shrink import shrink_to_target

pytestmark = pytest.mark.slow


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path))
    return tmp_path


def test_latency_targeted_shrink_lands_on_the_models_prediction(cache):
    """The shrinker hits the device model's budget within its 0.5 % band, and the model
    reproduces the two networks it was calibrated on. (How close a re-timed network lands is a
    benchmark figure, not a test: on a shared 2-core CPU one timing jitters by 5-10 %.)"""
    base = uniform("resnet20", num_classes=10, input_size=32)
    wide = widen(base, 2.0)
    model = build_latency_model(graph_of(wide), wide, base, "cpu")
    table = next((cache / "latency").glob("*.json"))
    assert json.loads(table.read_text())    # the layer timings are cached for this device
    graph = graph_of(wide)
    for config, timed in ((base, model.base_seconds), (wide, model.wide_seconds)):
        widths = graph.unit_widths(dict(config.widths), config.in_channels)
        assert model(widths) == pytest.approx(timed, rel=1e-6)
    scores = score_channels("l1", create_model(config=wide), wide, [])
    result = shrink_to_target(wide, scores, base_config=base, target=1.5,
                              target_metric="latency", latency=model, remain_ratio=0.1,
                              linear_ratio=0.1)
    derived = graph.unit_widths(dict(result.config.widths), result.config.in_channels)
    assert model(derived) == pytest.approx(1.5 * model.base_seconds, rel=0.005)
    assert result.target_value == pytest.approx(1.5 * model.base_seconds)


def test_a_second_model_on_the_same_device_reads_the_cache(cache):
    base = uniform("resnet20", num_classes=10, input_size=32)
    wide = widen(base, 2.0)
    build_latency_model(graph_of(wide), wide, base, "cpu")
    table = next((cache / "latency").glob("*.json"))
    before = table.stat().st_mtime_ns, table.read_text()
    build_latency_model(graph_of(wide), wide, base, "cpu")
    assert (table.stat().st_mtime_ns, table.read_text()) == before   # nothing re-measured


def test_latency_target_needs_the_device_model():
    base = uniform("resnet20", num_classes=10, input_size=32)
    wide = widen(base, 2.0)
    scores = score_channels("l1", create_model(config=wide), wide, [])
    with pytest.raises(ValueError, match="latency model"):
        shrink_to_target(wide, scores, base_config=base, target_metric="latency")
