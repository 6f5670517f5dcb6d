"""VGG with batch norm for small inputs (Simonyan & Zisserman 2015, the usual CIFAR variant).

Layer names: ``stage{s}.{j}``, the ``j``-th 3x3 conv of stage ``s`` (both counted from the
image: stage 1 .. 5, conv 0 ..). There are no residual adds, so every conv is its own channel unit
(no coupled groups). A 2x2 max pool follows every stage unless its input is already 1x1 (an 8x8
digits image reaches 1x1 after three stages); global average pooling then feeds a single Linear.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hetero.complexity import Act, BatchNorm, Conv, Linear, Op
from hetero.config import ChannelConfig
from hetero.models.common import ConvBN, Family, init_convs
from hetero.models.registry import register_family

# Base widths per stage; every stage ends with a max pool.
STAGES: dict[str, tuple[tuple[int, ...], ...]] = {
    "16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
}


def _stage_layers(variant: str) -> list[list[str]]:
    return [[f"stage{s}.{j}" for j in range(len(widths))]
            for s, widths in enumerate(STAGES[variant], start=1)]


def _pooled(size: int) -> int:
    # A 2x2 pool on a 1x1 map would leave nothing; small inputs skip the late pools.
    return size // 2 if size > 1 else size


class VGG(nn.Module):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__()
        w = config.widths
        cin = config.in_channels
        self.stage_names: list[str] = []
        for s, names in enumerate(_stage_layers(config.variant), start=1):
            convs = []
            for name in names:
                convs.append(ConvBN(cin, w[name], 3))
                cin = w[name]
            setattr(self, f"stage{s}", nn.Sequential(*convs))
            self.stage_names.append(f"stage{s}")
        self.pool = nn.MaxPool2d(2)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, config.num_classes)
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if min(x.shape[-2:]) > 1:
                x = self.pool(x)
        return self.fc(torch.flatten(self.global_pool(x), 1))


@register_family
class VGGCifarFamily(Family):
    name = "vgg_cifar"
    variants = tuple(STAGES)
    default_variant = "16"
    aliases = {f"vgg{v}": v for v in STAGES}
    description = "VGG with batch norm for 32x32 inputs, global pooling + one Linear"

    def layout(self, variant: str, options: dict[str, Any]):
        widths = {name: base
                  for names, bases in zip(_stage_layers(variant), STAGES[variant], strict=True)
                  for name, base in zip(names, bases, strict=True)}
        return widths, ()

    def wiring(self, config: ChannelConfig) -> dict[str, str | None]:
        order = [name for names in _stage_layers(config.variant) for name in names]
        return {name: (order[i - 1] if i else None) for i, name in enumerate(order)}

    def classifier_input(self, config: ChannelConfig) -> str:
        return _stage_layers(config.variant)[-1][-1]

    def ops(self, config: ChannelConfig) -> list[Op]:
        w, h = config.widths, config.input_size
        ops: list[Op] = []
        cin = config.in_channels
        for names in _stage_layers(config.variant):
            for name in names:
                ops += [Conv(cin, w[name], 3, (h, h)), BatchNorm(w[name], (h, h)),
                        Act(w[name] * h * h)]
                cin = w[name]
            h = _pooled(h)
        ops.append(Linear(cin, config.num_classes))
        return ops

    def build(self, config: ChannelConfig) -> nn.Module:
        return VGG(config)
