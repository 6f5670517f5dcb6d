"""The channel graph derived from the module (issue 8): its cost polynomial against two
independent counters on every family and eight torchvision CNNs, at uniform and at random valid
widths; its coupled groups against the hand-declared ones the families used to carry (and
Torch-Pruning's); and the one-line refusal of what it cannot follow."""

from __future__ import annotations

import random

import pytest
import torch
from _families import NETWORK_IDS, NETWORKS, config_of, random_widths
from _hook_count import hook_complexity
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hetero.complexity import ACCOUNTINGS
from hetero.graph import ConvOp, LinearOp, UnsupportedModel, derive_graph
from hetero.models.factory import complexity, create_model, graph_of, uniform


def flop_counter_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2  # FlopCounterMode counts a multiply-add as 2


@pytest.mark.parametrize(("family", "variant"), NETWORKS, ids=NETWORK_IDS)
def test_analytic_cost_equals_flop_counter_and_hooks(family, variant):
    base = config_of(family, variant)
    shape = (base.in_channels, base.input_size, base.input_size)
    for label, config in (("uniform", base),
                          ("random", random_widths(base, random.Random(f"{family}{variant}")))):
        model = create_model(config=config)
        where = f"{family}/{config.variant} at {label} widths"
        macs = complexity(config, "macs")
        assert macs.flops == flop_counter_macs(model, shape), where
        for accounting in ACCOUNTINGS:
            assert complexity(config, accounting) == hook_complexity(model, shape, accounting), (
                f"{where}, {accounting} accounting")


@pytest.mark.parametrize(("family", "variant"), NETWORKS, ids=NETWORK_IDS)
def test_units_partition_the_layers_and_pin_the_image_and_outputs(family, variant):
    config = config_of(family, variant)
    graph = graph_of(config)
    assert graph.units[graph.image_unit].fixed
    assert graph.layers == config.layers
    members = [layer for unit in graph.free_units() for layer in unit.layers]
    assert sorted(members) == sorted(config.layers)
    producers = {op.path for op in graph.ops if isinstance(op, (ConvOp, LinearOp))
                 and not all(graph.units[u].fixed for u in op.output.units)}
    assert producers == set(config.layers)
    for unit in graph.free_units():
        assert unit.width % unit.granularity == 0
    # Something feeds the classifier, and the class outputs are never a free unit.
    assert any(u.feeds_classifier for u in graph.free_units())
    assert all(layer in graph.layer_unit for layer in config.layers)


# ---------------------------------------------------------------------------- declared groups
def resnet_cifar_declared(blocks: int, projection: bool) -> set[tuple[str, ...]]:
    """The groups resnet_cifar declared by hand before issue 8, in module paths."""
    groups = set()
    for stage in (1, 2, 3):
        stream = ["stem.conv"] if stage == 1 else []
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            if stage > 1 and block == 0 and projection:
                stream.append(f"{prefix}.shortcut.conv")
            stream.append(f"{prefix}.conv2.conv")
        if len(stream) > 1:
            groups.add(tuple(sorted(stream)))
    return groups


@pytest.mark.parametrize("shortcut", ["projection", "zeropad"])
@pytest.mark.parametrize("depth", ["20", "56"])
def test_derived_groups_equal_the_former_resnet_declarations(depth, shortcut):
    config = uniform("resnet_cifar", depth, shortcut=shortcut)
    derived = {tuple(sorted(g)) for g in config.groups}
    expected = resnet_cifar_declared((int(depth) - 2) // 6, shortcut == "projection")
    # (The zero-padded shortcut has no conv and couples nothing across stages.)
    assert derived == expected


def test_derived_groups_equal_the_former_mobilenet_v2_declarations():
    # Declared by hand before issue 8: every (feeder, depthwise) pair and every stage's residual
    # stream of projects.
    config = uniform("mobilenet_v2", "cifar")
    derived = {tuple(sorted(g)) for g in config.groups}
    pairs = {g for g in derived if any(".dw." in name for name in g)}
    for group in pairs:
        assert len(group) == 2, group
        (dw,) = [n for n in group if ".dw." in n]
        (feeder,) = [n for n in group if n != dw]
        block = dw.split(".dw.")[0]
        assert feeder in (f"{block}.expand.conv", "stem.conv"), group
    streams = derived - pairs
    assert all(all(n.endswith(".project.conv") for n in g) for g in streams)
    assert len(pairs) == 17 and len(streams) == 5  # 17 blocks; 5 stages repeat their block


def test_vgg_has_no_groups_and_regnet_groups_are_grouped_convs():
    assert uniform("vgg16").groups == ()
    graph = graph_of(uniform("regnetx_400mf"))
    grouped = [u for u in graph.free_units() if u.granularity > 1]
    assert grouped and all(u.granularity == 16 for u in grouped)
    for unit in grouped:  # conv1 and the grouped conv2 reading it share the unit
        assert len(unit.layers) == 2 and unit.layers[1].endswith("conv2.conv")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "regnet_x_400mf"])
def test_groups_agree_with_torch_pruning(name):
    tp = pytest.importorskip("torch_pruning")
    import torchvision

    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    example = torch.zeros(1, 3, 32, 32)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    paths = {m: p for p, m in model.named_modules()}
    theirs = set()
    for group in dg.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear]):
        members = set()
        for dep, _ in group:
            target = dep.target.module
            if dep.handler in (tp.prune_conv_out_channels, tp.prune_linear_out_channels) or (
                    isinstance(target, nn.Conv2d) and target.groups > 1
                    and dep.handler == tp.prune_depthwise_conv_out_channels):
                members.add(paths[target])
        members.discard("fc")
        members.discard("classifier.1")
        if members:
            theirs.add(tuple(sorted(members)))
    # Torch-Pruning leaves a grouped (not depthwise) conv's in/out coupling to its pruners, so
    # its dependency groups keep such a conv apart from the layer it reads: split ours alike.
    grouped = {p for p, m in model.named_modules() if isinstance(m, nn.Conv2d)
               and 1 < m.groups < m.in_channels}
    graph = derive_graph(model, example)
    ours = set()
    for unit in graph.free_units():
        rest = [layer for layer in unit.layers if layer not in grouped]
        ours |= {(layer,) for layer in unit.layers if layer in grouped}
        if rest:
            ours.add(tuple(sorted(rest)))
    assert grouped or name != "regnet_x_400mf"
    assert ours == theirs


# ---------------------------------------------------------------------------- refusals
class Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.up = nn.PixelShuffle(2)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(self.up(self.conv(x)).mean((2, 3)))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:
            y = y * 2
        return self.head(y.mean((2, 3)))


def test_pixel_shuffle_is_refused_naming_the_op_and_module():
    with pytest.raises(UnsupportedModel, match=r"PixelShuffle at 'up'"):
        derive_graph(Shuffle(), torch.zeros(1, 3, 8, 8))


def test_data_dependent_branch_is_refused_naming_the_module():
    with pytest.raises(UnsupportedModel, match="cannot trace Branchy") as info:
        derive_graph(Branchy(), torch.zeros(1, 3, 8, 8))
    assert "control flow" in str(info.value) and "\n" not in str(info.value)
