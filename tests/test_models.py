"""Every registered model family: builds from any valid configuration at the widths it asks for,
its prunable layers are its convs and linears, and its coupled groups are exactly what the
residual adds, gates and depthwise convs need."""

from __future__ import annotations

import random

import pytest
import torch
from _families import CASES, IDS, input_size, random_widths
from torch import nn

from hetero.config import ChannelConfig
from hetero.models import create_model, list_models, resolve_model
from hetero.models.factory import check_config, graph_of, uniform, widen

# (in_channels, input_size): a colour image at the case's test size and a digits image.
SHAPES = ("rgb", "digits")


def config_for(family: str, variant: str, shape: str, num_classes: int = 10) -> ChannelConfig:
    in_channels, size = (3, input_size(family, variant)) if shape == "rgb" else (1, 8)
    return uniform(family, variant, num_classes=num_classes, input_size=size,
                   in_channels=in_channels)


def run(model: nn.Module, config: ChannelConfig, batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, config.in_channels, config.input_size, config.input_size))


def test_registry_has_every_builtin_family():
    assert {"resnet_cifar", "resnet_imagenet", "vgg_cifar", "mobilenet_v2", "densenet_cifar",
            "regnet", "efficientnet", "mobilenet_v1", "mobilenet_v3", "mnasnet"} <= set(
        list_models())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_random_widths_build_and_run(family, variant, shape):
    config = random_widths(config_for(family, variant, shape, num_classes=7),
                           random.Random(f"{family}{variant}{shape}"))
    out = run(create_model(config=config), config, batch=3)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_layers_are_convs_and_linears_at_the_config_widths(family, variant):
    config = random_widths(config_for(family, variant, "digits"), random.Random(1), low=2)
    graph = check_config(config)
    model = create_model(config=config)
    for name, width in config.widths.items():
        module = model.get_submodule(name)
        assert isinstance(module, (nn.Conv2d, nn.Linear)), f"{name} is {type(module).__name__}"
        out = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        assert out == width, name
        if isinstance(module, nn.Conv2d) and module.groups > 1:  # grouped: whole groups
            assert module.in_channels == width
            assert width % graph.units[graph.layer_unit[name]].granularity == 0
    classifiers = [m for m in model.modules() if isinstance(m, nn.Linear)
                   and m.out_features == config.num_classes]
    assert classifiers, "no linear layer produces the class scores"


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_groups_cover_every_residual_add(family, variant):
    # Pairwise distinct unit widths (>= 2 channels, a multiple of the unit's group width, so
    # nothing broadcasts): any add, gate or depthwise conv joining two different units would fail,
    # so a clean run proves the derived groups cover them.
    base = config_for(family, variant, "digits")
    graph = graph_of(base)
    widths, used = {}, set()
    for unit in graph.free_units():
        width = max(2, unit.granularity)
        while width in used:
            width += unit.granularity
        used.add(width)
        widths[unit.layers[0]] = width
    config = base.with_unit_widths(widths)
    assert run(create_model(config=config), config).shape == (2, 10)


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_a_loosened_group_is_refused(family, variant):
    base = widen(config_for(family, variant, "digits"), 0.5)
    for group in base.groups[:3]:
        widths = dict(base.widths)
        widths[group[-1]] += 1
        loose = base.replace(widths=widths, groups=[g for g in base.groups if g != group])
        with pytest.raises(ValueError, match="coupled groups do not match"):
            create_model(config=loose)


@pytest.mark.parametrize(
    ("name", "family", "variant"),
    [("resnet20", "resnet_cifar", "20"), ("resnet56", "resnet_cifar", "56"),
     ("resnet18", "resnet_imagenet", "18"), ("resnet50", "resnet_imagenet", "50"),
     ("vgg16", "vgg_cifar", "16"), ("densenet40", "densenet_cifar", "40"),
     ("regnetx_400mf", "regnet", "x_400mf"), ("regnety_400mf", "regnet", "y_400mf"),
     ("efficientnet_b0", "efficientnet", "b0"), ("mobilenet_v2", "mobilenet_v2", "cifar"),
     ("mobilenet_v3_small", "mobilenet_v3", "cifar"), ("mnasnet", "mnasnet", "cifar")],
)
def test_create_model_by_short_name(name, family, variant):
    assert resolve_model(name, input_size=16) == (family, variant)
    model = create_model(name, num_classes=5, input_size=16)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small",
                                  "mnasnet"])
def test_mobile_networks_pick_their_layout_from_the_input_size(name):
    family = resolve_model(name)[0]
    assert resolve_model(name, input_size=32) == (family, "cifar")
    assert resolve_model(name, input_size=64) == (family, "tiny")
    assert resolve_model(name, input_size=224) == (family, "imagenet")
    assert resolve_model(name, "imagenet", input_size=32) == (family, "imagenet")


def test_short_name_with_contradicting_variant_raises():
    with pytest.raises(ValueError, match="resnet50 implies variant 50"):
        resolve_model("resnet50", "18")


def test_unknown_model_lists_the_known_names():
    with pytest.raises(ValueError, match="unknown model 'resnet7'") as info:
        create_model("resnet7")
    for known in (*list_models(), "resnet20", "resnet56", "resnet50", "vgg16"):
        assert known in str(info.value)


def test_unknown_variant_lists_the_variants():
    with pytest.raises(ValueError, match="choose one of 18, 50"):
        uniform("resnet_imagenet", "34")


def test_config_of_another_family_is_refused():
    config = uniform("resnet_cifar", "20")
    with pytest.raises(ValueError, match="does not match"):
        create_model("vgg16", config=config)


@pytest.mark.parametrize("family", ["resnet_cifar", "mobilenet_v2", "densenet40"])
def test_a_seed_initialises_the_same_whether_or_not_the_graph_was_derived_before(family):
    # The first create_model of a configuration derives (builds and traces) its channel graph;
    # that must not draw from the caller's random stream (a reused worker would init otherwise).
    from hetero.models.factory import _graph

    _graph.cache_clear()
    size = 10 + len(family)  # an input size no other test caches

    def fresh():
        torch.manual_seed(0)
        return create_model(family, num_classes=10, input_size=size, in_channels=1)

    cold, warm = fresh(), fresh()
    for key, value in cold.state_dict().items():
        assert torch.equal(value, warm.state_dict()[key]), key
