"""VGG with batch norm for small inputs (Simonyan & Zisserman 2015, the usual CIFAR variant).

Stages of 3x3 ConvBN-ReLU, a 2x2 max pool after each stage while the map is larger than 1x1 (an
8x8 digits image reaches 1x1 after three stages, so its last two stages skip the pool), then global
average pooling into a single Linear. The pools are fixed when the network is built, from the input
size, so the forward pass has no branch on a tensor's shape.
"""

from __future__ import annotations

import torch
from torch import nn

from hetero.models._registry import register_family
from hetero.models.common import ConvBN

__all__ = ["VGG", "build_vgg_cifar"]

# Base widths per stage.
STAGES: dict[str, tuple[tuple[int, ...], ...]] = {
    "16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
}


def pooled_stages(num_stages: int, input_size: int) -> tuple[int, ...]:
    """Indices of the stages followed by a pool: a 2x2 pool on a 1x1 map would leave nothing."""
    pooled, size = [], input_size
    for s in range(num_stages):
        if size > 1:
            pooled.append(s)
            size //= 2
    return tuple(pooled)


class VGG(nn.Module):
    def __init__(self, stages: tuple[tuple[int, ...], ...], *, num_classes: int, input_size: int,
                 in_channels: int = 3) -> None:
        super().__init__()
        cin = in_channels
        self.stage_names = [f"stage{s}" for s in range(1, len(stages) + 1)]
        for name, widths in zip(self.stage_names, stages, strict=True):
            convs = []
            for width in widths:
                convs.append(ConvBN(cin, width, 3))
                cin = width
            setattr(self, name, nn.Sequential(*convs))
        self.pooled = {self.stage_names[s] for s in pooled_stages(len(stages), input_size)}
        self.pool = nn.MaxPool2d(2)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.pooled:
                x = self.pool(x)
        return self.fc(torch.flatten(self.global_pool(x), 1))


@register_family("vgg_cifar", variants=tuple(STAGES), default_variant="16",
                 aliases={f"vgg{v}": v for v in STAGES},
                 description="VGG with batch norm for 32x32 inputs, global pooling + one Linear")
def build_vgg_cifar(variant: str, *, num_classes: int, input_size: int,
                    in_channels: int = 3) -> nn.Module:
    return VGG(STAGES[variant], num_classes=num_classes, input_size=input_size,
               in_channels=in_channels)
