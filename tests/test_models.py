"""Every registered model family: builds from any valid configuration, follows the layer
conventions, and its declared coupled groups are exactly what the residual adds need."""

from __future__ import annotations

import random

import pytest
import torch
from _families import CASES, IDS, random_widths
from torch import nn

from hetero.config import ChannelConfig, uniform, widen
from hetero.models import create_model, get_family, list_models, resolve_model
from hetero.models.common import ConvBN

# (in_channels, input_size): a CIFAR-sized colour image and a digits image. ImageNet layouts
# also run at 32 here; their 224 cost is only spent where a reference value needs it.
SHAPES = {"rgb32": (3, 32), "digits": (1, 8)}



def config_for(family: str, variant: str, shape: str, num_classes: int = 10) -> ChannelConfig:
    in_channels, size = SHAPES[shape]
    return uniform(family, variant, num_classes=num_classes, input_size=size,
                   in_channels=in_channels)


def run(model: nn.Module, config: ChannelConfig, batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, config.in_channels, config.input_size, config.input_size))


def test_registry_has_every_builtin_family():
    assert {"resnet_cifar", "resnet_imagenet", "vgg_cifar", "mobilenet_v2"} <= set(list_models())


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_random_widths_build_and_run(family, variant, shape):
    config = random_widths(config_for(family, variant, shape, num_classes=7),
                           random.Random(f"{family}{variant}{shape}"))
    out = run(create_model(config=config), config, batch=3)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_layers_follow_the_module_convention(family, variant):
    fam = get_family(family)
    config = random_widths(config_for(family, variant, "digits"), random.Random(1), low=2)
    model = fam.build(config)
    wiring = fam.wiring(config)
    assert tuple(wiring) == config.layers
    seen: set[str] = set()
    for name, width in config.widths.items():
        module = model.get_submodule(name)
        assert isinstance(module, ConvBN), f"{name} is a {type(module).__name__}, not ConvBN"
        source = wiring[name]
        assert source is None or source in seen, f"{name} reads {source}, not an earlier layer"
        cin = config.in_channels if source is None else config.widths[source]
        conv = module.conv
        assert (conv.in_channels, conv.out_channels) == (cin, width), name
        if conv.groups > 1:  # depthwise: tied to the layer it reads
            assert conv.groups == cin == width, name
        seen.add(name)
    fc = model.get_submodule(fam.classifier)
    assert isinstance(fc, nn.Linear)
    assert fc.in_features == config.widths[fam.classifier_input(config)]
    assert fc.out_features == config.num_classes


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_groups_cover_every_residual_add(family, variant):
    # Pairwise distinct unit widths (>= 2, so nothing broadcasts): any add or depthwise conv
    # joining two different units would fail, so a clean run proves the groups cover them.
    base = config_for(family, variant, "digits")
    config = base.with_unit_widths({unit[0]: 2 + i for i, unit in enumerate(base.units())})
    assert run(create_model(config=config), config).shape == (2, 10)


# resnet_cifar builds its projection shortcut at the block output's width, not at the
# shortcut's own entry (resnet_cifar.py: ConvBN(cin, cout, ...) should read w[f"{p}.shortcut"]).
@pytest.mark.parametrize(
    ("family", "variant"),
    CASES,
    ids=IDS,
)
def test_every_group_member_is_really_coupled(family, variant):
    # Drop the groups so ChannelConfig accepts unequal widths: the graph itself must reject a
    # group member that differs from the rest (else the group is declared for nothing).
    fam = get_family(family)
    base = widen(config_for(family, variant, "digits"), 0.25)
    for group in base.groups:
        for member in dict.fromkeys((group[0], group[-1])):
            widths = dict(base.widths)
            widths[member] += 1
            loose = base.replace(widths=widths, groups=[])
            with pytest.raises(RuntimeError):
                run(fam.build(loose), loose)


@pytest.mark.parametrize(
    ("name", "family", "variant"),
    [("resnet20", "resnet_cifar", "20"), ("resnet56", "resnet_cifar", "56"),
     ("resnet18", "resnet_imagenet", "18"), ("resnet50", "resnet_imagenet", "50"),
     ("vgg16", "vgg_cifar", "16"), ("mobilenet_v2", "mobilenet_v2", "imagenet")],
)
def test_create_model_by_short_name(name, family, variant):
    assert resolve_model(name) == (family, variant)
    model = create_model(name, num_classes=5, input_size=16)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_mobilenet_v2_picks_its_layout_from_the_input_size():
    assert resolve_model("mobilenet_v2", input_size=32) == ("mobilenet_v2", "cifar")
    assert resolve_model("mobilenet_v2", input_size=224) == ("mobilenet_v2", "imagenet")
    assert resolve_model("mobilenet_v2", "imagenet", input_size=32) == ("mobilenet_v2", "imagenet")


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
