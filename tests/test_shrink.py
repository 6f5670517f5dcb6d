"""The allocator: global threshold + fine adjustment to a fraction of the baseline's cost.

Runs on every family and variant at full size (32x32, 3 channels) with seeded random scores:
shrinking is analytic, so no model is built except where weights are the scores.
"""

import re

import pytest
import torch

from hetero.complexity import complexity
from hetero.config import uniform, widen
from hetero.importance import score_channels
from hetero.models import create_model, get_family, list_models
from hetero.shrink import reachable_range, shrink_to_target, unit_floors

ALL_VARIANTS = [(f, v) for f, variants in sorted(list_models().items()) for v in variants]


def configs(family, variant, width=2.0, input_size=32):
    base = uniform(family, variant, num_classes=10, input_size=input_size, in_channels=3)
    return base, widen(base, width)


def random_scores(config, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {u[0]: torch.rand(config.widths[u[0]], generator=generator) for u in config.units()}


def assert_valid(result, wide, scores, rho, tau):
    family = get_family(wide.family)
    family.check(result.config)
    head = family.classifier_input(wide)
    for unit in wide.units():
        key, n = unit[0], wide.widths[unit[0]]
        width = result.config.widths[key]
        floor = max(int(n * (tau if head in unit else rho)), 1)
        assert floor <= width <= n and result.floors[key] == floor
        kept = result.kept[key]
        assert kept == sorted(kept) and len(kept) == width == len(set(kept))
        assert all(result.kept[name] == kept for name in unit)
        dropped = sorted(set(range(n)) - set(kept))
        if dropped:  # the kept channels are the unit's best
            assert scores[key][kept].min() >= scores[key][dropped].max()


@pytest.mark.parametrize("family,variant", ALL_VARIANTS)
@pytest.mark.parametrize("metric", ["flops", "params"])
@pytest.mark.parametrize("target,rho,tau", [(1.0, 0.4, 0.45), (0.6, 0.2, 0.25)])
def test_target_is_hit_within_tolerance(family, variant, metric, target, rho, tau):
    base, wide = configs(family, variant)
    scores = random_scores(wide)
    result = shrink_to_target(wide, scores, base_config=base, target=target, target_metric=metric,
                              remain_ratio=rho, linear_ratio=tau)
    assert result.target_value == pytest.approx(target * getattr(complexity(base), metric))
    assert abs(getattr(result, metric) / result.target_value - 1) <= 0.005
    assert getattr(complexity(result.config), metric) == getattr(result, metric)
    assert_valid(result, wide, scores, rho, tau)


def test_real_l1_scores_on_a_small_input_still_meet_the_tolerance():
    # 8x8 input: one channel of a wide residual stream costs several % of the baseline, so this
    # needs the fine adjustment after the threshold search.
    base, wide = configs("resnet_cifar", "56", input_size=8)
    torch.manual_seed(0)
    scores = score_channels("l1", create_model(config=wide), wide, [])
    result = shrink_to_target(wide, scores, base_config=base, target=1.0)
    assert abs(result.flops / result.target_value - 1) <= 0.005
    assert_valid(result, wide, scores, 0.4, 0.45)


@pytest.mark.parametrize("family,variant", ALL_VARIANTS)
def test_reachable_range_is_exactly_what_shrink_accepts(family, variant):
    base, wide = configs(family, variant)
    scores = random_scores(wide)
    lo, hi = reachable_range(wide, base_config=base, target_metric="flops",
                             remain_ratio=0.4, linear_ratio=0.45)
    assert 0 < lo < 1 < hi
    for edge in (lo, hi):
        result = shrink_to_target(wide, scores, base_config=base, target=edge)
        assert abs(result.flops / result.target_value - 1) <= 0.005
    for outside in (lo * 0.99, hi * 1.01):
        with pytest.raises(ValueError, match="reachable"):
            shrink_to_target(wide, scores, base_config=base, target=outside)


def test_too_low_target_names_range_model_width_and_floor_knobs():
    base, wide = configs("resnet_cifar", "56")
    lo, hi = reachable_range(wide, base_config=base)
    with pytest.raises(ValueError) as info:
        shrink_to_target(wide, random_scores(wide), base_config=base, target=0.2, width_mult=2.0)
    message = str(info.value)
    assert "below what the floors allow" in message and f"{lo:.3f}" in message
    assert "resnet_cifar/56 at width 2" in message
    assert "remain_ratio" in message and "linear_ratio" in message
    assert re.search(r"\d\.\d+e\+0\d", message), "absolute range missing"


def test_too_high_target_says_to_raise_width_mult():
    base, wide = configs("resnet_cifar", "20")
    _, hi = reachable_range(wide, base_config=base)
    with pytest.raises(ValueError) as info:
        shrink_to_target(wide, random_scores(wide), base_config=base, target=5.0)
    message = str(info.value)
    assert "raise width_mult" in message and f"{hi:.3f}" in message
    assert "resnet_cifar/20" in message


def test_lower_floors_widen_the_reachable_range():
    base, wide = configs("resnet_cifar", "20")
    strict = reachable_range(wide, base_config=base, remain_ratio=0.4, linear_ratio=0.45)
    loose = reachable_range(wide, base_config=base, remain_ratio=0.1, linear_ratio=0.1)
    assert loose[0] < strict[0] and loose[1] == strict[1]


def test_floors_are_relative_to_the_widened_width():
    base, wide = configs("resnet_cifar", "20")
    floors = unit_floors(wide, remain_ratio=0.4, linear_ratio=0.45)
    assert floors["layer1.0.conv1"] == int(32 * 0.4)          # 2 x 16 widened
    assert floors["layer3.0.shortcut"] == int(128 * 0.45)     # the classifier input's stream


def test_divisor_rounds_unit_widths():
    base, wide = configs("resnet_cifar", "56")
    scores = random_scores(wide)
    result = shrink_to_target(wide, scores, base_config=base, target=1.0, divisor=8)
    assert all(w % 8 == 0 for w in result.config.widths.values())
    assert abs(result.flops / result.target_value - 1) <= 0.005
    for key, floor in result.floors.items():  # floors rounded up to the divisor, never below
        assert floor % 8 == 0 and result.config.widths[key] >= floor
        assert floor >= max(int(wide.widths[key] * 0.4), 1)


def test_impossible_tolerance_is_an_error_not_a_silent_miss():
    base, wide = configs("resnet_cifar", "20", input_size=8)
    with pytest.raises(ValueError, match="raise tolerance"):
        shrink_to_target(wide, random_scores(wide), base_config=base, target=1.0, tolerance=0.0)


def test_scores_must_cover_every_unit_with_its_width():
    base, wide = configs("resnet_cifar", "20")
    scores = random_scores(wide)
    missing = dict(scores)
    missing.pop("stem")
    with pytest.raises(ValueError, match="'stem'"):
        shrink_to_target(wide, missing, base_config=base)
    short = {**scores, "stem": scores["stem"][:3]}
    with pytest.raises(ValueError, match="'stem'.*widened width"):
        shrink_to_target(wide, short, base_config=base)


def test_base_config_must_be_the_same_network():
    base, wide = configs("resnet_cifar", "20")
    other, _ = configs("resnet_cifar", "32")
    with pytest.raises(ValueError, match="base_config"):
        shrink_to_target(wide, random_scores(wide), base_config=other)


def test_shrink_is_deterministic():
    base, wide = configs("resnet_cifar", "56")
    scores = random_scores(wide, seed=7)
    first = shrink_to_target(wide, scores, base_config=base, target=0.9)
    second = shrink_to_target(wide, scores, base_config=base, target=0.9)
    assert first.config == second.config and first.kept == second.kept
