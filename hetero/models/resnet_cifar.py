"""ResNet for 32x32 inputs (He et al. 2016, section 4.2): depths 6n+2, basic blocks, 16/32/64.

Shortcut options: ``projection`` (1x1 conv + BN where the shape changes; the paper's ResNet-56) or
``zeropad`` (parameter-free: subsample, then zero-pad or crop the channels to the block's output,
whatever widths the two sides end up with).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hetero.models._registry import register_family
from hetero.models.common import ConvBN

__all__ = ["BasicBlock", "ResNetCifar", "Subsample", "build_resnet_cifar"]

BASE_WIDTHS = (16, 32, 64)
DEPTHS = ("20", "32", "44", "56", "110")


class Subsample(nn.Module):
    """The spatial half of a zero-pad shortcut; the block pads the channels (it sees both sides)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, inner: int, cout: int, stride: int,
                 shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, inner, 3, stride)
        self.conv2 = ConvBN(inner, cout, 3, act=None)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        # A zero-pad shortcut's channel count follows the two tensors it joins, so no rebuilt
        # width can leave it behind; negative padding crops when the input is the wider one.
        self.pad_channels = isinstance(shortcut, Subsample)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        identity = self.shortcut(x)
        if self.pad_channels:
            identity = F.pad(identity, (0, 0, 0, 0, 0, out.shape[1] - identity.shape[1]))
        return self.relu(out + identity)


def _stage(cin: int, width: int, blocks: int, stride: int, projection: bool) -> nn.Sequential:
    layers = []
    for b in range(blocks):
        shortcut = None
        if b == 0 and stride != 1:
            shortcut = ConvBN(cin, width, 1, stride, act=None) if projection else Subsample(stride)
        layers.append(BasicBlock(cin, width, width, stride if b == 0 else 1, shortcut))
        cin = width
    return nn.Sequential(*layers)


class ResNetCifar(nn.Module):
    def __init__(self, blocks: int, *, num_classes: int, in_channels: int = 3,
                 projection: bool = True) -> None:
        super().__init__()
        self.stem = ConvBN(in_channels, BASE_WIDTHS[0], 3)
        cin = BASE_WIDTHS[0]
        for s, width in enumerate(BASE_WIDTHS, start=1):
            setattr(self, f"layer{s}", _stage(cin, width, blocks, 1 if s == 1 else 2, projection))
            cin = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_family("resnet_cifar", variants=DEPTHS, default_variant="56",
                 aliases={f"resnet{d}": d for d in DEPTHS},
                 options={"shortcut": ("projection", "zeropad")},
                 description="CIFAR ResNet (basic blocks, 16/32/64), depth = 6n+2")
def build_resnet_cifar(variant: str, *, num_classes: int, input_size: int, in_channels: int = 3,
                       shortcut: str = "projection") -> nn.Module:
    # Global pooling makes the network independent of the input size.
    return ResNetCifar((int(variant) - 2) // 6, num_classes=num_classes, in_channels=in_channels,
                       projection=shortcut == "projection")
