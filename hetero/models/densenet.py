"""DenseNet-40 for CIFAR (Huang et al. 2017): the paper's Table 1 baseline (the authors' model files).

Depth 40, growth rate k = 12, no bottleneck, no compression: a 3x3 stem to 2k = 24 channels, three
dense blocks of 12 pre-activation layers (BN-ReLU-conv3x3 to k channels, concatenated onto their
input), BN-ReLU-conv1x1 transitions that keep the width (168, 312) followed by 2x2 average pooling,
and a BN-ReLU-global-pool-linear head on 456 channels.

Every dense layer reads the concatenation of all earlier features of its block, so the channel
graph has concat offsets rather than residual adds; the builder keeps them as plain ``torch.cat``.
"""

from __future__ import annotations

import torch
from torch import nn

from hetero.models._registry import register_family

__all__ = ["DenseNet", "build_densenet_cifar"]

# variant -> (growth rate k, dense layers per block); depth 40 = 3 blocks x 12 + stem + 2 transitions + fc
VARIANTS = {"40": (12, 12)}
BLOCKS = 3


def _bn_relu_conv(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False))


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 whose ``growth`` new channels are appended to its input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = _bn_relu_conv(cin, growth, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.body(x)), 1)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1 at the same width, then 2x2 average pooling."""

    def __init__(self, width: int) -> None:
        super().__init__(*_bn_relu_conv(width, width, 1), nn.AvgPool2d(2))


class DenseNet(nn.Module):
    def __init__(self, growth: int, layers_per_block: int, num_classes: int,
                 in_channels: int = 3) -> None:
        super().__init__()
        width = 2 * growth
        stages: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False)]
        for block in range(BLOCKS):
            for _ in range(layers_per_block):
                stages.append(DenseLayer(width, growth))
                width += growth
            if block < BLOCKS - 1:
                stages.append(Transition(width))
        # Global pooling: at 32x32 this is the reference's AvgPool2d(8) on the 8x8 map, and it lets
        # other input sizes reach the classifier with the same width.
        stages += [nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*stages)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_family("densenet_cifar", variants=tuple(VARIANTS), default_variant="40",
                 aliases={"densenet40": "40"},
                 description="CIFAR DenseNet (k=12, no bottleneck, no compression)")
def build_densenet_cifar(variant: str, *, num_classes: int, input_size: int,
                         in_channels: int = 3) -> nn.Module:
    """DenseNet-``variant`` at its regular widths; any input size (the head pools globally)."""
    growth, layers_per_block = VARIANTS[variant]
    return DenseNet(growth, layers_per_block, num_classes, in_channels)
