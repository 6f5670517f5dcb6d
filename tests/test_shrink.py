"""The allocator: global threshold + fine adjustment to a fraction of the baseline's cost.

Runs on every family and variant and on eight torchvision CNNs, at their test input sizes, with
seeded random scores: shrinking is analytic, so no model is built except where weights are the
scores.
"""

import re

import pytest
import torch
from _families import NETWORK_IDS, NETWORKS, input_size, random_scores

from hetero.importance import score_channels
from hetero.models.factory import check_config, complexity, create_model, uniform, widen
from hetero.shrink import reachable_range, shrink_to_target, uniform_width_at, unit_floors


def configs(family, variant, width=2.0, size=None):
    base = uniform(family, variant, num_classes=10, input_size=size or input_size(family, variant),
                   in_channels=3)
    return base, widen(base, width)


def expected_floor(unit, n, rho, tau):
    floor = max(int(n * (tau if unit.feeds_classifier else rho)), 1)
    step = unit.granularity
    return min(n, -(-floor // step) * step)


def assert_valid(result, wide, scores, rho, tau):
    graph = check_config(result.config)
    for unit in graph.free_units():
        key, n = unit.layers[0], wide.widths[unit.layers[0]]
        width = result.config.widths[key]
        floor = expected_floor(unit, n, rho, tau)
        assert floor <= width <= n and result.floors[key] == floor, key
        assert width % unit.granularity == 0, key
        kept = result.kept[key]
        assert kept == sorted(kept) and len(kept) == width == len(set(kept))
        assert all(result.kept[name] == kept for name in unit.layers)
        # The kept channels are the unit's best; a grouped conv's unit keeps its best groups.
        g = unit.granularity
        values = scores[key].reshape(-1, g).sum(1)
        kept_groups = sorted({i // g for i in kept})
        assert kept == [c for k in kept_groups for c in range(k * g, (k + 1) * g)], key
        dropped = sorted(set(range(n // g)) - set(kept_groups))
        if dropped:
            assert values[kept_groups].min() >= values[dropped].max(), key


@pytest.mark.parametrize(("family", "variant"), NETWORKS, ids=NETWORK_IDS)
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
    base, wide = configs("resnet_cifar", "56", size=8)
    torch.manual_seed(0)
    scores = score_channels("l1", create_model(config=wide), wide, [])
    result = shrink_to_target(wide, scores, base_config=base, target=1.0)
    assert abs(result.flops / result.target_value - 1) <= 0.005
    assert_valid(result, wide, scores, 0.4, 0.45)


@pytest.mark.parametrize(("family", "variant"), NETWORKS, ids=NETWORK_IDS)
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
    assert floors["layer1.0.conv1.conv"] == int(32 * 0.4)          # 2 x 16 widened
    assert floors["layer3.0.conv2.conv"] == int(128 * 0.45)        # the classifier input's stream


def test_grouped_floors_are_whole_groups():
    # RegNet X-400MF's grouped convs have 16 channels per group: floors and widths move by 16.
    base, wide = configs("regnet", "x_400mf")
    floors = unit_floors(wide, remain_ratio=0.4, linear_ratio=0.45)
    assert floors["blocks.0.conv1.conv"] == 32     # int(64 * 0.4) = 25, rounded up to 2 groups
    result = shrink_to_target(wide, random_scores(wide), base_config=base, target=1.0)
    assert result.config.widths["blocks.0.conv1.conv"] % 16 == 0


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
    base, wide = configs("resnet_cifar", "20", size=8)
    with pytest.raises(ValueError, match="raise tolerance"):
        shrink_to_target(wide, random_scores(wide), base_config=base, target=1.0, tolerance=0.0)


def test_scores_must_cover_every_unit_with_its_width():
    base, wide = configs("resnet_cifar", "20")
    scores = random_scores(wide)
    missing = dict(scores)
    missing.pop("stem.conv")
    with pytest.raises(ValueError, match="'stem.conv'"):
        shrink_to_target(wide, missing, base_config=base)
    short = {**scores, "stem.conv": scores["stem.conv"][:3]}
    with pytest.raises(ValueError, match="'stem.conv'.*widened width"):
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


@pytest.mark.parametrize(("family", "variant"), NETWORKS, ids=NETWORK_IDS)
@pytest.mark.parametrize("metric", ["flops", "params"])
def test_the_matched_uniform_width_is_the_closest_uniform_cost(family, variant, metric):
    # The uniform arm at an LW-DNA's exact cost: no uniform width on the 1e-4 grid lands closer
    # to the target than the one chosen, and the target's own width 1.0 matches target 1.0.
    base, _ = configs(family, variant)

    def cost(width):
        return getattr(complexity(widen(base, width)), metric)

    baseline = cost(1.0)
    assert uniform_width_at(base, 1.0, target_metric=metric) == 1.0
    for target in (0.5, 0.75, 1.3):
        width = uniform_width_at(base, target, target_metric=metric)
        miss = abs(cost(width) / baseline - target)
        grid = [width + d for d in (-0.05, -0.01, -0.001, -1e-4, 1e-4, 0.001, 0.01, 0.05)]
        assert all(miss <= abs(cost(w) / baseline - target) + 1e-12 for w in grid), (target,
                                                                                   width)
        assert miss < 0.1  # whole channels: a uniform network moves in steps of all its layers


def test_only_flops_or_params_targets_have_a_matched_uniform_width():
    base, _ = configs("resnet_cifar", "20")
    with pytest.raises(ValueError, match="FLOPs or params"):
        uniform_width_at(base, 1.0, target_metric="latency")
