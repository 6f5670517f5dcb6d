"""ChannelConfig for every family: JSON round trip, validation that names the layer, units and
coupled groups, widen() and uniform()."""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction

import pytest
from _families import CASES, IDS, config_of, random_widths

from hetero.config import ChannelConfig, make_divisible
from hetero.models import create_model
from hetero.models.factory import (
    MAX_WIDTH_MULT,
    base_config,
    check_config,
    complexity,
    family_spec,
    graph_of,
    uniform,
    widen,
)


def granularity(config: ChannelConfig) -> dict[str, int]:
    graph = graph_of(config)
    return {layer: graph.units[unit].granularity for layer, unit in graph.layer_unit.items()}


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
def test_uniform_is_the_network_read_off_its_graph(family, variant):
    config = uniform(family, variant, num_classes=7, input_size=16, in_channels=1)
    graph = graph_of(config)
    assert dict(config.widths) == {layer: graph.units[u].width
                                   for layer, u in graph.layer_unit.items()}
    assert config.groups == tuple(tuple(u.layers) for u in graph.units if len(u.layers) > 1)
    assert config == base_config(family, variant, num_classes=7, input_size=16, in_channels=1)
    assert (config.family, config.variant) == (family, variant)
    assert (config.num_classes, config.input_size, config.in_channels) == (7, 16, 1)
    check_config(config)
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
    steps = granularity(base)
    for config in (base, random_widths(base, random.Random(3))):
        wide = widen(config, mult)
        for name, width in config.widths.items():  # int(c * mult) of the decimal multiplier
            expected = (make_divisible(width * mult, steps[name]) if steps[name] > 1
                        else max(1, int(width * Fraction(str(mult)))))
            assert wide.widths[name] == expected, name  # a grouped conv: whole groups
        assert (wide.num_classes, wide.in_channels, wide.input_size) == (100, 1, 32)
        assert all(len({wide.widths[n] for n in g}) == 1 for g in wide.groups)


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_widen_with_divisor_rounds_to_multiples(family, variant):
    base = uniform(family, variant)
    steps = granularity(base)
    wide = widen(base, 1.3, divisor=8)
    for name, width in base.widths.items():
        step = math.lcm(8, steps[name])
        assert wide.widths[name] == make_divisible(width * 1.3, step)
        assert wide.widths[name] % step == 0
    assert all(len({wide.widths[n] for n in g}) == 1 for g in wide.groups)


def test_widen_truncation_examples():
    config = uniform("resnet_cifar", "20")
    assert widen(config, 1.5).widths["stem.conv"] == 24
    assert widen(config, 1.3).widths["layer3.0.conv1.conv"] == 83  # int(64 * 1.3) = int(83.2)
    assert widen(uniform("mobilenet_v2", "cifar"), 2.0).widths["head.conv"] == 2560
    # RegNet X-400MF's grouped convs (16 channels per group) stay whole groups: 32 * 1.3 = 41.6
    # rounds to 48, not 41.
    assert widen(uniform("regnetx_400mf"), 1.3).widths["blocks.0.conv2.conv"] == 48
    for bad in (0, -1.0, MAX_WIDTH_MULT * 2):
        with pytest.raises(ValueError, match="width multiplier must be in"):
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
    config = uniform(family, variant)
    extra = with_width(config, "bogus.conv", 8)
    with pytest.raises(ValueError, match="bogus.conv"):
        check_config(extra)
    with pytest.raises(ValueError, match="bogus.conv"):
        create_model(config=extra)
    # Drop one layer (and its place in a coupled group): the missing layer is named.
    dropped = config.layers[len(config.layers) // 2]
    widths = {n: w for n, w in config.widths.items() if n != dropped}
    groups = [kept for g in config.groups if len(kept := [n for n in g if n != dropped]) > 1]
    with pytest.raises(ValueError, match=re.escape(repr(dropped))):
        check_config(config.replace(widths=widths, groups=groups))
    with pytest.raises(ValueError, match="unknown layer"):
        config.replace(groups=[(config.layers[0], "bogus.conv")])


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_layers_of_another_family_are_refused(family, variant):
    own = config_of(family, variant)
    for other, other_variant in CASES:
        if (other, other_variant) == (family, variant):
            continue
        foreign = config_of(other, other_variant).replace(
            family=family, variant=variant, input_size=own.input_size,
            options=family_spec(family).resolve_options({}))
        named = ([n for n in own.widths if n not in foreign.widths]
                 or [n for n in foreign.widths if n not in own.widths])
        if not named:  # same layer names (a family's layouts): only the widths may differ
            continue
        with pytest.raises(ValueError, match=re.escape(repr(named[0]))):
            check_config(foreign)


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
