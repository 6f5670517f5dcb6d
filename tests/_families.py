"""The one list of the networks the parametrized tests run over, and helpers shared by them.

``CASES``: every registered family and variant. ``TORCHVISION``: the torchvision CNNs hetero
must handle without a hand-written line (issue 8). ``NETWORKS`` = both, as model names for
:func:`hetero.models.factory.uniform` with a variant (``None`` for torchvision). Every case is
built at a small input (:func:`input_size`) and 10 classes, to keep the suite fast.
"""

from __future__ import annotations

import copy
import random

import torch
from torch import nn

from hetero.config import ChannelConfig
from hetero.models import list_models
from hetero.models.factory import complexity, graph_of, uniform, widen

CASES = [(family, variant) for family, variants in list_models().items() for variant in variants]
IDS = [f"{family}-{variant}" for family, variant in CASES]

TORCHVISION = ["densenet121", "regnet_x_400mf", "regnet_y_400mf", "efficientnet_b0",
               "mobilenet_v2", "mobilenet_v3_small", "mnasnet1_0", "resnet50"]
TV_CASES = [(f"torchvision:{name}", None) for name in TORCHVISION]
TV_IDS = [f"tv-{name}" for name in TORCHVISION]

NETWORKS = CASES + TV_CASES
NETWORK_IDS = IDS + TV_IDS

# ImageNet layouts still run at 16 px (their final map is 1x1 there); the 4 GF RegNet's
# CIFAR-sized stem makes 32 px cost ~5 GMACs, so it gets 16 too.
SMALL_INPUT = {("resnet_imagenet", "18"), ("resnet_imagenet", "50"), ("regnet", "x_4gf"),
               ("mobilenet_v1", "imagenet"), ("mobilenet_v2", "imagenet"),
               ("mobilenet_v3", "imagenet"), ("mnasnet", "imagenet")}


def input_size(family: str, variant: str | None) -> int:
    return 16 if (family, variant) in SMALL_INPUT else 32


def config_of(family: str, variant: str | None, *, num_classes: int = 10,
              in_channels: int = 3) -> ChannelConfig:
    """The case's regular-width configuration at its test input size."""
    return uniform(family, variant, num_classes=num_classes,
                   input_size=input_size(family, variant), in_channels=in_channels)


def scaled_config(family: str, variant: str | None, param_budget: int = 300_000,
                  **kw) -> ChannelConfig:
    """The case's configuration narrowed uniformly to at most ~``param_budget`` parameters
    (a structurally complete but cheap instance)."""
    base = config_of(family, variant, **kw)
    mult = min(1.0, (param_budget / complexity(base).params) ** 0.5)
    return widen(base, mult) if mult < 1 else base


def random_widths(config: ChannelConfig, rng: random.Random, low: int = 1) -> ChannelConfig:
    """Every unit (coupled group or lone layer) its own random width in [low, its width],
    a multiple of the unit's granularity (a grouped conv's group width)."""
    graph = graph_of(config)
    widths = {}
    for unit in graph.free_units():
        step, width = unit.granularity, config.widths[unit.layers[0]]
        most = width // step
        least = min(most, max(1, -(-low // step)))
        widths[unit.layers[0]] = step * rng.randint(least, most)
    return config.with_unit_widths(widths)


def example(config: ChannelConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.in_channels, config.input_size, config.input_size,
                       generator=generator)


def random_batches(config: ChannelConfig, count: int = 2, batch: int = 8,
                   seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) mini-batches of noise images with random labels, at the config's input."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, config.in_channels, config.input_size, config.input_size,
                         generator=generator),
             torch.randint(0, config.num_classes, (batch,), generator=generator))
            for _ in range(count)]


@torch.no_grad()
def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch norms away from their init (gamma 1, beta 0, mean 0, var 1), so that slicing or
    mixing up their channels shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model


def random_scores(config: ChannelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {u[0]: torch.rand(config.widths[u[0]], generator=generator) for u in config.units()}


def masked(model: nn.Module, config, kept: dict[str, list[int]]) -> nn.Module:
    """A copy of the wide ``model`` whose dense convs and linears ignore the removed channels."""
    graph = graph_of(config)
    widths = graph.unit_widths(dict(config.widths), config.in_channels)
    keep = {u.id: torch.ones(widths[u.id], dtype=torch.bool) for u in graph.units}
    for unit in graph.free_units():
        keep[unit.id] = torch.zeros(widths[unit.id], dtype=torch.bool)
        keep[unit.id][kept[unit.layers[0]]] = True
    net = copy.deepcopy(model)
    with torch.no_grad():
        for path, layout in graph.module_inputs.items():
            if path in graph.group_widths:      # grouped/depthwise: whole groups, no columns
                continue
            module = net.get_submodule(path)
            columns = torch.cat([keep[u] for u in layout.units]).repeat_interleave(layout.repeat)
            assert columns.numel() == module.weight.shape[1], path
            module.weight[:, ~columns] = 0
    return net
