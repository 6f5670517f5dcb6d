"""ChannelConfig for every family: JSON round trip, validation that names the layer, units and
coupled groups, widen() and uniform()."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest
from _families import CASES, IDS, random_widths

from hetero.complexity import complexity
from hetero.config import ChannelConfig, make_divisible, uniform, widen
from hetero.models import create_model, get_family


def with_width(config: ChannelConfig, layer: str, width) -> ChannelConfig:
    widths = dict(config.widths)
    widths[layer] = width
    return config.replace(widths=widths)


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_json_round_trip(family, variant, tmp_path):
    base = uniform(family, variant, num_classes=100, input_size=8, in_channels=1)
    for config in (base, random_widths(base, random.Random(0))):
        again = ChannelConfig.from_json(config.to_json())
        assert again == config and hash(again) == hash(config)
        assert again.layers == config.layers and again.units() == config.units()
        config.save(tmp_path / "config.json")
        assert ChannelConfig.load(tmp_path / "config.json") == config


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_uniform_is_the_family_layout(family, variant):
    fam = get_family(family)
    config = uniform(family, variant, num_classes=7, input_size=16, in_channels=1)
    widths, groups = fam.layout(variant, fam.resolve_options({}))
    assert dict(config.widths) == widths and config.groups == groups
    assert (config.family, config.variant) == (family, variant)
    assert (config.num_classes, config.input_size, config.in_channels) == (7, 16, 1)
    fam.check(config)
    assert uniform(family, variant, 1.5) == widen(uniform(family, variant), 1.5)


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_units_partition_the_layers(family, variant):
    config = uniform(family, variant)
    units = config.units()
    flat = [name for unit in units for name in unit]
    assert sorted(flat) == sorted(config.layers)
    assert set(config.groups) <= set(units)
    assert all(len(g) >= 2 for g in config.groups)
    # A unit width reaches every member of its group.
    for group in config.groups:
        changed = config.with_unit_widths({group[0]: 3})
        assert {changed.widths[name] for name in group} == {3}


@pytest.mark.parametrize("mult", [0.5, 1.3, 2.0])
@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_widen_truncates_and_keeps_groups_equal(family, variant, mult):
    base = uniform(family, variant, num_classes=100, in_channels=1)
    for config in (base, random_widths(base, random.Random(3))):
        wide = widen(config, mult)
        for name, width in config.widths.items():  # int(c * mult) of the decimal multiplier
            assert wide.widths[name] == max(1, int(width * Fraction(str(mult)))), name
        assert (wide.num_classes, wide.in_channels, wide.input_size) == (100, 1, 32)
        assert all(len({wide.widths[n] for n in g}) == 1 for g in wide.groups)


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_widen_with_divisor_rounds_to_multiples(family, variant):
    base = uniform(family, variant)
    wide = widen(base, 1.3, divisor=8)
    for name, width in base.widths.items():
        assert wide.widths[name] == make_divisible(width * 1.3, 8)
        assert wide.widths[name] % 8 == 0
    assert all(len({wide.widths[n] for n in g}) == 1 for g in wide.groups)


def test_widen_truncation_examples():
    config = uniform("resnet_cifar", "20")
    assert widen(config, 1.5).widths["stem"] == 24
    assert widen(config, 1.3).widths["layer3.0.conv1"] == 83  # int(64 * 1.3) = int(83.2)
    assert widen(uniform("mobilenet_v2", "cifar"), 2.0).widths["head"] == 2560
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="width multiplier must be positive"):
            widen(config, bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "16", None])
@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_invalid_width_names_the_layer(family, variant, bad):
    config = uniform(family, variant)
    layer = config.layers[len(config.layers) // 2]
    with pytest.raises(ValueError, match=re.escape(repr(layer))):
        with_width(config, layer, bad)


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_changing_one_group_member_names_it(family, variant):
    config = uniform(family, variant)
    for group in config.groups:
        for member in group:
            with pytest.raises(ValueError, match=re.escape(repr(member))):
                with_width(config, member, config.widths[member] + 1)


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_unknown_or_missing_layer_is_named(family, variant):
    fam = get_family(family)
    config = uniform(family, variant)
    extra = with_width(config, "bogus.conv", 8)
    with pytest.raises(ValueError, match="bogus.conv"):
        fam.check(extra)
    with pytest.raises(ValueError, match="bogus.conv"):
        create_model(config=extra)
    lone = next(unit[0] for unit in config.units() if len(unit) == 1)
    widths = {n: w for n, w in config.widths.items() if n != lone}
    with pytest.raises(ValueError, match=re.escape(repr(lone))):
        fam.check(config.replace(widths=widths))
    with pytest.raises(ValueError, match="unknown layer"):
        config.replace(groups=[(config.layers[0], "bogus.conv")])


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_layers_of_another_family_are_refused(family, variant):
    fam = get_family(family)
    for other, other_variant in CASES:
        if (other, other_variant) == (family, variant):
            continue
        foreign = uniform(other, other_variant).replace(
            family=family, variant=variant, options=fam.resolve_options({}))
        expected = fam.layout(variant, fam.resolve_options({}))[0]
        named = ([n for n in expected if n not in foreign.widths]
                 or [n for n in foreign.widths if n not in expected])
        if not named:  # same layer names (mobilenet_v2's two variants): a valid configuration
            continue
        with pytest.raises(ValueError, match=re.escape(repr(named[0]))):
            fam.check(foreign)


def test_config_level_checks():
    config = uniform("resnet_cifar", "20")
    for key in ("num_classes", "input_size", "in_channels"):
        with pytest.raises(ValueError, match=key):
            config.replace(**{key: 0})
    with pytest.raises(ValueError, match="unknown channel-config keys"):
        ChannelConfig.from_dict({**config.to_dict(), "depth": 20})
    with pytest.raises(ValueError, match="known families"):
        complexity(config.replace(family="resnet_cifar10"))
    with pytest.raises(ValueError, match="no option"):
        uniform("vgg_cifar", "16", shortcut="projection")
    with pytest.raises(ValueError, match="choose one of"):
        uniform("resnet_cifar", "20", shortcut="identity")
