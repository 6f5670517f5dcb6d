"""ResNet for ImageNet (He et al. 2016), torchvision v1.5 layout: 7x7 stem + max pool, four stages.

Bottlenecks put the stride on the 3x3 conv; a 1x1 conv + BN projection ("downsample") joins a block
whose shape changes. Like torchvision, each block owns ONE ReLU module, called after every inner BN
and after the add; the paper's counter counts it once, at its post-add output. The parameter
tensors are torchvision's ``resnet18`` / ``resnet50``, shape for shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hetero.models._registry import register_family
from hetero.models.common import ConvBN

__all__ = ["Block", "ResNetImageNet", "build_resnet_imagenet"]

STEM_WIDTH = 64
STAGE_PLANES = (64, 128, 256, 512)


@dataclass(frozen=True)
class BlockKind:
    kernels: tuple[int, ...]  # one per conv, in order
    stride_at: int            # index of the conv that carries the stage's stride
    expansion: int            # block output = planes * expansion


BASIC = BlockKind(kernels=(3, 3), stride_at=0, expansion=1)
BOTTLENECK = BlockKind(kernels=(1, 3, 1), stride_at=1, expansion=4)
VARIANTS: dict[str, tuple[BlockKind, tuple[int, ...]]] = {
    "18": (BASIC, (2, 2, 2, 2)),
    "50": (BOTTLENECK, (3, 4, 6, 3)),
}


class Block(nn.Module):
    """Basic or bottleneck block; ``relu`` is shared by every conv and the post-add output."""

    def __init__(self, kind: BlockKind, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        widths = [planes] * (len(kind.kernels) - 1) + [planes * kind.expansion]
        self.conv_names = [f"conv{i}" for i in range(1, len(widths) + 1)]
        c = cin
        for i, (name, kernel, width) in enumerate(zip(self.conv_names, kind.kernels, widths,
                                                      strict=True)):
            setattr(self, name, ConvBN(c, width, kernel, stride if i == kind.stride_at else 1,
                                       act=None))
            c = width
        self.relu = nn.ReLU(inplace=True)
        # Decided at the regular widths: stage 1 of a bottleneck net still goes 64 -> 256.
        needs_projection = stride != 1 or cin != c
        self.downsample = ConvBN(cin, c, 1, stride, act=None) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = x
        for name in self.conv_names[:-1]:
            out = self.relu(getattr(self, name)(out))
        return self.relu(getattr(self, self.conv_names[-1])(out) + identity)


class ResNetImageNet(nn.Module):
    def __init__(self, kind: BlockKind, depths: tuple[int, ...], *, num_classes: int,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.stem = ConvBN(in_channels, STEM_WIDTH, 7, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = STEM_WIDTH
        for s, (planes, blocks) in enumerate(zip(STAGE_PLANES, depths, strict=True), start=1):
            stage = []
            for b in range(blocks):
                stage.append(Block(kind, cin, planes, 2 if s > 1 and b == 0 else 1))
                cin = planes * kind.expansion
            setattr(self, f"layer{s}", nn.Sequential(*stage))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_family("resnet_imagenet", variants=tuple(VARIANTS), default_variant="50",
                 aliases={f"resnet{v}": v for v in VARIANTS},
                 description="ImageNet ResNet (torchvision v1.5: stride on the 3x3, projection "
                             "shortcuts)")
def build_resnet_imagenet(variant: str, *, num_classes: int, input_size: int,
                          in_channels: int = 3) -> nn.Module:
    kind, depths = VARIANTS[variant]
    return ResNetImageNet(kind, depths, num_classes=num_classes, in_channels=in_channels)
