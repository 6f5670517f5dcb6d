"""The derived network's starting weights: fresh, inherit (the scored wide network's kept slices)
and hyper (what the dhp hypernetwork generates from the kept latents, as the reference code)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hetero.data import load_dataset
from hetero.method import TrialSpec, _initial_model, derive
from hetero.protocol import TrainProtocol


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _derived(digits, criterion: str, init: str):
    spec = TrialSpec(model="resnet20", criterion=criterion, init=init, width_mult=2.0,
                     target=0.8, remain_ratio=0.2, linear_ratio=0.3,
                     protocol=TrainProtocol(batch_size=64))
    derivation = derive(spec, digits)
    torch.manual_seed(0)
    return derivation, _initial_model(spec, derivation)


def _variance_times_fan_in(model: nn.Module, derivation) -> torch.Tensor:
    # fan_in of the *widened* layer: the hypernetwork is initialised for it (hyperfan-in), and
    # the kept slices keep its scale, as the reference's set_parameters(calc_weight=True).
    return torch.tensor([float(model.get_submodule(name).weight.detach().var() * w[0].numel())
                         for name, w in derivation.generated.items()])


def test_hyper_weights_have_variance_about_one_over_fan_in(digits):
    derivation, hyper = _derived(digits, "dhp", "hyper")
    assert 0.5 < float(_variance_times_fan_in(hyper, derivation).median()) < 2.0
    # Kaiming fan-out (fresh) is var 2/fan_out: about twice as large on these convs.
    _, fresh = _derived(digits, "dhp", "fresh")
    assert float(_variance_times_fan_in(fresh, derivation).median()) > 2.5


@pytest.mark.parametrize("criterion", ["bn", "dhp"])
def test_inherit_takes_the_scored_networks_kept_slices(digits, criterion):
    derivation, model = _derived(digits, criterion, "inherit")
    scored = derivation.wide_model
    kept = derivation.kept
    layer = "layer2.1.conv1.conv"           # reads the stage-2 stream, writes its own unit
    stream = "layer2.0.conv2.conv"
    expected = scored.get_submodule(layer).weight[kept[layer]][:, kept[stream]]
    torch.testing.assert_close(model.get_submodule(layer).weight, expected)
    bn = "layer2.1.conv1.bn"
    torch.testing.assert_close(model.get_submodule(bn).running_var,
                               scored.get_submodule(bn).running_var[kept[layer]])
    if criterion == "bn":  # the scored network is the slimming-trained copy, not the untouched one
        assert not torch.equal(scored.get_submodule(bn).weight,
                               torch.ones_like(scored.get_submodule(bn).weight))


def test_hyper_is_the_generated_weights_and_fresh_is_neither(digits):
    derivation, hyper = _derived(digits, "dhp", "hyper")
    layer, stream = "layer2.1.conv1.conv", "layer2.0.conv2.conv"
    generated = derivation.generated[layer][derivation.kept[layer]][:, derivation.kept[stream]]
    torch.testing.assert_close(hyper.get_submodule(layer).weight, generated)
    _, fresh = _derived(digits, "dhp", "fresh")
    assert not torch.allclose(fresh.get_submodule(layer).weight, generated)


def test_hyper_needs_dhp():
    with pytest.raises(ValueError, match="criterion dhp"):
        TrialSpec(criterion="l1", init="hyper")
