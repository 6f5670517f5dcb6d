"""Analytic FLOPs/params (the channel graph's cost polynomial) against a hooked forward pass, for
every family on odd and tiny inputs, and against the published reference values and
torchvision's parameter counts. (``test_graph`` checks every family and torchvision CNN at its
test input against FlopCounterMode too.)"""

from __future__ import annotations

import random

import pytest
import torch
import torchvision
from _families import CASES, IDS, random_widths
from _hook_count import hook_complexity

from hetero.complexity import ACCOUNTINGS
from hetero.config import ChannelConfig
from hetero.models import create_model, resolve_model
from hetero.models.factory import complexity, graph_of, uniform, widen

# (in_channels, input_size); "odd" catches off-by-one spatial sizes.
SHAPES = {"digits": (1, 8), "odd": (3, 13)}


def assert_analytic_matches_hooks(config: ChannelConfig) -> None:
    model = create_model(config=config)
    shape = (config.in_channels, config.input_size, config.input_size)
    for accounting in ACCOUNTINGS:
        assert complexity(config, accounting) == hook_complexity(model, shape, accounting), (
            f"{config.family}/{config.variant} {accounting} at {shape}"
        )


@pytest.mark.parametrize(("family", "variant"), [("resnet_imagenet", "18"),
                                                 ("mobilenet_v2", "imagenet")])
def test_analytic_matches_hooks_at_imagenet_size(family, variant):
    assert_analytic_matches_hooks(uniform(family, variant, num_classes=1000, input_size=224))


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_analytic_matches_hooks_on_small_inputs(family, variant, shape):
    in_channels, size = SHAPES[shape]
    config = uniform(family, variant, num_classes=10, input_size=size, in_channels=in_channels)
    assert_analytic_matches_hooks(config)
    assert_analytic_matches_hooks(random_widths(config, random.Random(shape)))


@pytest.mark.parametrize(("family", "variant"), CASES, ids=IDS)
def test_cost_grows_with_width(family, variant):
    base = uniform(family, variant)
    wide = widen(base, 2.0)
    for accounting in ACCOUNTINGS:
        small, big = complexity(base, accounting), complexity(wide, accounting)
        # Inner layers cost 4x; the image input and the class outputs are not widened.
        assert 2 * small.flops < big.flops <= 4 * small.flops
        assert 2 * small.params < big.params <= 4 * small.params


# (model, options, accounting, input size, classes, flops, params, tolerance on the last digit)
REFERENCES = [
    ("resnet20", {"shortcut": "projection"}, "macs", 32, 10, 40.81e6, 0.271e6),
    ("resnet20", {"shortcut": "zeropad"}, "macs", 32, 10, 40.55e6, 0.268e6),
    ("resnet56", {"shortcut": "projection"}, "macs", 32, 10, 125.75e6, 0.8515e6),
    ("resnet56", {"shortcut": "projection"}, "paper", 32, 10, 0.1274e9, 0.856e6),
    ("resnet50", {}, "macs", 224, 1000, 4.0892e9, 25.50e6),
    ("resnet50", {}, "paper", 224, 1000, 4.1177e9, 25.557e6),
]
# Half a unit in the last quoted digit, per row above.
TOLERANCES = [(0.005e6, 0.0005e6), (0.005e6, 0.0005e6), (0.005e6, 0.00005e6),
              (0.00005e9, 0.0005e6), (0.00005e9, 0.005e6), (0.00005e9, 0.0005e6)]


@pytest.mark.parametrize(
    ("row", "tolerance"), list(zip(REFERENCES, TOLERANCES, strict=True)),
    ids=[f"{r[0]}-{next(iter(r[1].values()), '')}-{r[2]}" for r in REFERENCES],
)
def test_reference_values(row, tolerance):
    name, options, accounting, size, classes, flops, params = row
    config = uniform(*resolve_model(name), num_classes=classes, input_size=size, **options)
    measured = complexity(config, accounting)
    assert abs(measured.flops - flops) <= tolerance[0], measured
    assert abs(measured.params - params) <= tolerance[1], measured


@pytest.mark.parametrize(
    ("family", "variant", "torchvision_name", "expected"),
    [("resnet_imagenet", "18", "resnet18", 11_689_512),
     ("resnet_imagenet", "50", "resnet50", 25_557_032),
     ("mobilenet_v2", "imagenet", "mobilenet_v2", 3_504_872)],
)
def test_parameters_equal_torchvision(family, variant, torchvision_name, expected):
    config = uniform(family, variant, num_classes=1000, input_size=224)
    ours = create_model(config=config)
    theirs = getattr(torchvision.models, torchvision_name)(weights=None)
    assert sum(p.numel() for p in theirs.parameters()) == expected
    assert sum(p.numel() for p in ours.parameters()) == expected
    assert complexity(config, "paper").params == expected  # the paper's params include BN
    # Same tensors, not just the same total.
    shapes = sorted(tuple(p.shape) for p in ours.parameters())
    assert shapes == sorted(tuple(p.shape) for p in theirs.parameters())


def test_mobilenet_v2_imagenet_is_300m_macs():
    config = uniform("mobilenet_v2", "imagenet", num_classes=1000, input_size=224)
    assert complexity(config, "macs").flops == pytest.approx(300e6, rel=0.005)


def test_unknown_accounting_is_refused():
    config = uniform("resnet_cifar", "20")
    with pytest.raises(ValueError, match="choose one of"):
        complexity(config, "flops")
    graph = graph_of(config)
    with pytest.raises(ValueError, match="choose one of"):
        graph.cost(graph.unit_widths(dict(config.widths), 3), "bops")
    with pytest.raises(ValueError, match="choose one of"):
        hook_complexity(torch.nn.Identity(), (3, 8, 8), "bops")
