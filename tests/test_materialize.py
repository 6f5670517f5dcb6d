"""Building the derived network: fresh, or inheriting the kept slices of the wide one.

The inherit check is independent of how slicing is done: a *masked* copy of the wide network,
where every dense conv and every linear has the input columns of the removed channels zeroed,
computes exactly what the derived network computes (grouped and depthwise convs keep whole
groups, channel-wise ops never mix channels, so removed channels contribute nothing). Run on every
family, DenseNet's concatenations and RegNet's groups included, and on eight torchvision CNNs.
"""

from __future__ import annotations

import pytest
import torch
from _families import (
    NETWORK_IDS,
    NETWORKS,
    example,
    masked,
    random_scores,
    randomize_norms,
    scaled_config,
)

from hetero.importance import score_channels
from hetero.materialize import materialize
from hetero.models.factory import create_model, uniform, widen
from hetero.shrink import shrink_to_target

PARAM_BUDGET = 300_000


def wide_net(family, variant, seed=0):
    """(base config, wide config, wide model in eval mode with non-trivial batch norms)."""
    base = scaled_config(family, variant, PARAM_BUDGET)
    wide = widen(base, 2.0)
    torch.manual_seed(seed)
    return base, wide, randomize_norms(create_model(config=wide), seed).eval()


@pytest.mark.parametrize(("family", "variant"), NETWORKS, ids=NETWORK_IDS)
def test_inherited_network_computes_what_the_masked_wide_network_does(family, variant):
    base, wide, model = wide_net(family, variant)
    result = shrink_to_target(wide, random_scores(wide), base_config=base, target=1.0)
    assert result.config != wide
    derived = materialize(result.config, source=model, kept=result.kept).eval()
    x = example(wide, batch=2).double()
    with torch.no_grad():
        want = masked(model, wide, result.kept).double()(x)
        got = derived.double()(x)
        unmasked = model.double()(x)
    assert (got - want).abs().max() <= 1e-4
    assert (unmasked - want).abs().max() > 1e-3, "removing channels changed nothing: weak test"


@pytest.mark.parametrize(("family", "variant"), [("resnet_cifar", "20"), ("densenet_cifar", "40"),
                                                 ("regnet", "x_400mf")])
def test_keeping_everything_reproduces_the_wide_model(family, variant):
    _, wide, model = wide_net(family, variant)
    everything = {name: list(range(width)) for name, width in wide.widths.items()}
    derived = materialize(wide, source=model, kept=everything).eval()
    x = example(wide)
    with torch.no_grad():
        torch.testing.assert_close(derived(x), model(x))


def test_inherited_slices_follow_kept():
    # VGG is a chain: every layer's weight is the kept rows of its own layer and the kept
    # columns of the layer before it, its batch norm the kept entries.
    base, wide, model = wide_net("vgg_cifar", "16")
    result = shrink_to_target(wide, score_channels("l1", model, wide, []), base_config=base)
    derived = materialize(result.config, source=model, kept=result.kept)
    previous = None
    for name in result.config.layers:
        rows = torch.tensor(result.kept[name])
        weight = model.get_submodule(name).weight[rows]
        if previous is not None:
            weight = weight[:, torch.tensor(result.kept[previous])]
        torch.testing.assert_close(derived.get_submodule(name).weight, weight)
        bn = name.rsplit(".", 1)[0] + ".bn"
        torch.testing.assert_close(derived.get_submodule(bn).running_var,
                                   model.get_submodule(bn).running_var[rows])
        torch.testing.assert_close(derived.get_submodule(bn).bias, model.get_submodule(bn).bias[rows])
        previous = name
    torch.testing.assert_close(derived.fc.weight,
                               model.fc.weight[:, torch.tensor(result.kept[previous])])
    torch.testing.assert_close(derived.fc.bias, model.fc.bias)


def test_default_is_a_fresh_model_of_the_config():
    base, wide, model = wide_net("resnet_cifar", "20")
    result = shrink_to_target(wide, score_channels("l1", model, wide, []), base_config=base)
    torch.manual_seed(1)
    fresh = materialize(result.config)
    for name, width in result.config.widths.items():
        assert fresh.get_submodule(name).out_channels == width
    bn = fresh.get_submodule("stem.bn")
    assert float(bn.running_var.mean()) == 1.0
    assert fresh(example(wide)).shape == (2, 10)


def test_source_and_kept_go_together():
    _, wide, model = wide_net("resnet_cifar", "20")
    with pytest.raises(ValueError, match="both source= .* and kept="):
        materialize(wide, source=model)


def test_mismatched_kept_names_the_layer():
    _, wide, model = wide_net("resnet_cifar", "20")
    layer = "layer1.0.conv1.conv"
    kept = {name: list(range(width)) for name, width in wide.widths.items()}
    with pytest.raises(ValueError, match=f"'{layer}'.*width"):
        materialize(wide, source=model, kept={**kept, layer: [0, 1]})
    with pytest.raises(ValueError, match=f"'{layer}'"):
        materialize(wide, source=model, kept={k: v for k, v in kept.items() if k != layer})
    too_far = kept[layer][:-1] + [10_000]
    with pytest.raises(ValueError, match=f"'{layer}'.*out of range"):
        materialize(wide, source=model, kept={**kept, layer: too_far})


def test_source_of_another_network_is_refused():
    base, wide, _ = wide_net("resnet_cifar", "20")
    kept = {name: list(range(width)) for name, width in wide.widths.items()}
    narrow_model = create_model(config=base)
    with pytest.raises(ValueError, match="out of range|expects"):
        materialize(wide, source=narrow_model, kept=kept)


def test_uniform_config_of_a_torchvision_model_builds_it_unchanged():
    import torchvision

    config = uniform("torchvision:mobilenet_v3_small", num_classes=10, input_size=32)
    ours = create_model(config=config)
    theirs = torchvision.models.mobilenet_v3_small(num_classes=10)
    assert sorted((n, tuple(p.shape)) for n, p in ours.named_parameters()) == sorted(
        (n, tuple(p.shape)) for n, p in theirs.named_parameters())


@pytest.mark.xfail(strict=True, reason=(
    "zero-padded ResNet shortcut: the graph lets the padded tensor take the layout of what it is "
    "added to (graph._Walker.pad / free_pad), so the derived net adds stream channel kept[j] to "
    "block channel kept'[j], while the wide net added channel i to channel i; inherit is then "
    "not the masked wide network (max diff ~0.3 on resnet20). Fresh init is unaffected."))
def test_inherit_with_zero_padded_shortcuts_matches_the_masked_network():
    base = uniform("resnet_cifar", "20", shortcut="zeropad")
    wide = widen(base, 2.0)
    torch.manual_seed(0)
    model = randomize_norms(create_model(config=wide)).eval()
    result = shrink_to_target(wide, random_scores(wide), base_config=base, target=1.0)
    derived = materialize(result.config, source=model, kept=result.kept).eval().double()
    x = example(wide).double()
    with torch.no_grad():
        assert (derived(x) - masked(model, wide, result.kept).double()(x)).abs().max() <= 1e-4
