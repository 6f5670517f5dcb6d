"""Channel-importance criteria: every criterion on every model family, on real digits.

Each family is tested on its cheapest variant, as a reduced but structurally complete instance
(the uniform net scaled so it has at most ~300k parameters), 8x8 single-channel input, width 2.
"""

import pytest
import torch
from sklearn.datasets import load_digits

from hetero.complexity import complexity
from hetero.config import uniform, widen
from hetero.importance import list_criteria, register_criterion, score_channels
from hetero.materialize import materialize
from hetero.models import create_model, get_family, list_models
from hetero.shrink import shrink_to_target

PARAM_BUDGET = 300_000


def digits_batches(count=2, size=16, offset=0):
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    return [(x[offset + i * size: offset + (i + 1) * size],
             y[offset + i * size: offset + (i + 1) * size]) for i in range(count)]


def small_instance(family, variant):
    """The family's uniform 8x8 net, scaled down to at most PARAM_BUDGET parameters."""
    base = uniform(family, variant, num_classes=10, input_size=8, in_channels=1)
    mult = min(1.0, (PARAM_BUDGET / complexity(base).params) ** 0.5)
    return widen(base, mult) if mult < 1 else base


def cheapest_variant(family):
    return min(list_models()[family], key=lambda v: complexity(
        uniform(family, v, num_classes=10, input_size=8, in_channels=1)).flops)


FAMILIES = sorted(list_models())
CASES = [(c, f) for c in list_criteria() for f in FAMILIES]


@pytest.fixture(scope="module")
def wide_nets():
    """family -> (base config, widened config, widened model), built once per module."""
    nets = {}
    for family in FAMILIES:
        base = small_instance(family, cheapest_variant(family))
        wide = widen(base, 2.0)
        torch.manual_seed(0)
        nets[family] = (base, wide, create_model(config=wide))
    return nets


def test_registry_lists_the_four_criteria_and_rejects_unknown_names():
    assert {"dhp", "gate", "bn", "l1"} <= set(list_criteria())
    wide = uniform("resnet_cifar", "20", input_size=8, in_channels=1)
    model = create_model(config=wide)
    with pytest.raises(ValueError, match="choose one of .*dhp"):
        score_channels("nope", model, wide, digits_batches())


def test_registered_criterion_is_called_and_its_scores_checked():
    config = uniform("resnet_cifar", "20", input_size=8, in_channels=1)
    model = create_model(config=config)

    @register_criterion("_test_ones")
    def ones(model, config, batches, settings):
        return {unit[0]: torch.ones(config.widths[unit[0]]) for unit in config.units()}

    @register_criterion("_test_short")
    def short(model, config, batches, settings):
        return {unit[0]: torch.ones(1) for unit in config.units()}

    try:
        scores = score_channels("_test_ones", model, config, [])
        assert set(scores) == {unit[0] for unit in config.units()}
        with pytest.raises(RuntimeError, match="bad score vector"):
            score_channels("_test_short", model, config, [])
    finally:
        from hetero import importance
        importance._CRITERIA.pop("_test_ones")
        importance._CRITERIA.pop("_test_short")


@pytest.mark.parametrize("criterion,family", CASES)
def test_criterion_scores_every_unit_and_shrinks_to_target(criterion, family, wide_nets):
    base, wide, model = wide_nets[family]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = score_channels(criterion, model, wide, digits_batches())

    units = wide.units()
    assert list(scores) == [unit[0] for unit in units]
    for unit in units:
        vector = scores[unit[0]]
        assert vector.shape == (wide.widths[unit[0]],) and vector.device.type == "cpu"
        assert torch.isfinite(vector).all() and (vector >= 0).all()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "scoring changed the model"

    result = shrink_to_target(wide, scores, base_config=base, target=1.0, width_mult=2.0)
    assert abs(result.flops / result.target_value - 1) <= 0.005
    get_family(family).check(result.config)
    for unit in units:
        assert all(result.kept[name] == result.kept[unit[0]] for name in unit)
    x, _ = digits_batches(1, 4)[0]
    for net in (materialize(result.config), materialize(result.config, source=model,
                                                        kept=result.kept)):
        assert net.eval()(x).shape == (4, 10)


def test_dhp_scores_vary_across_channels_and_repeat_for_a_seed(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    first = score_channels("dhp", model, wide, digits_batches(), seed=3)
    again = score_channels("dhp", model, wide, digits_batches(), seed=3)
    other = score_channels("dhp", model, wide, digits_batches(), seed=4)
    for key, vector in first.items():
        assert torch.equal(vector, again[key])
        assert vector.std() > 0, f"unit {key}: all channels scored alike"
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_dhp_accepts_a_smaller_embedding_and_more_batches(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    scores = score_channels("dhp", model, wide, digits_batches(3), num_batches=3,
                            embedding_dim=2)
    assert all(v.shape == (wide.widths[k],) for k, v in scores.items())


def test_gate_scores_sum_over_the_batches(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    batches = digits_batches(2)
    both = score_channels("gate", model, wide, batches, num_batches=2)
    one = score_channels("gate", model, wide, batches[:1], num_batches=1)
    two = score_channels("gate", model, wide, batches[1:], num_batches=1)
    for key in both:
        torch.testing.assert_close(both[key], one[key] + two[key])


def test_l1_is_the_filter_norm_summed_over_the_unit(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    scores = score_channels("l1", model, wide, [])
    unit = max(wide.units(), key=len)  # a residual stream: several layers
    expected = sum(model.get_submodule(n).conv.weight.abs().sum((1, 2, 3)) for n in unit)
    torch.testing.assert_close(scores[unit[0]], expected.detach())


def test_scoring_a_model_of_another_config_names_the_layer():
    config = uniform("resnet_cifar", "20", input_size=8, in_channels=1)
    model = create_model(config=config)
    with pytest.raises(ValueError, match="layer 'stem'.*create_model"):
        score_channels("l1", model, widen(config, 2.0), [])


def test_data_criteria_refuse_empty_batches(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    with pytest.raises(ValueError, match="mini-batch"):
        score_channels("gate", model, wide, [])
