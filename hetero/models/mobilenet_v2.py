"""MobileNetV2 (Sandler et al. 2018) in three layouts, picked by the input size.

- ``imagenet``: torchvision's network (stem stride 2, the paper's Table 2 strides).
- ``cifar``: the usual CIFAR network (the authors' ``model/mobilenetv2.py`` for CIFAR): the stem
  and the c=24 stage at stride 1, total stride 8 (32x32 -> 4x4).
- ``tiny``: the paper's Tiny-ImageNet network (the authors' model files): stem stride 2, then the CIFAR
  strides (64x64 -> 4x4); 0.0930 G / 2.480 M in the paper's accounting at 200 classes.

Every layout ends in a 1x1 ConvBN-ReLU6 to 1280, global pooling, Dropout(0.2) and a Linear.
"""

from __future__ import annotations

import torch
from torch import nn

from hetero.models._mobile import MOBILE_VARIANTS, mobile_variant
from hetero.models._registry import register_family
from hetero.models.common import ConvBN, InvertedResidual

__all__ = ["MobileNetV2", "build_mobilenet_v2"]

STEM_WIDTH = 32
HEAD_WIDTH = 1280
# (expansion t, output channels c, blocks n, first block's stride s), as in the paper's Table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_STRIDE = {"cifar": 1, "tiny": 2, "imagenet": 2}
# Small inputs run the c=24 stage (index 1 of STAGES) at stride 1.
STRIDE_1_STAGES = {"cifar": (1,), "tiny": (1,), "imagenet": ()}
DROPOUT = 0.2


def _blocks(variant: str) -> list[InvertedResidual]:
    blocks, cin = [], STEM_WIDTH
    for stage, (t, c, n, s) in enumerate(STAGES):
        s = 1 if stage in STRIDE_1_STAGES[variant] else s
        for b in range(n):
            stride = s if b == 0 else 1
            blocks.append(InvertedResidual(cin, cin * t, c, stride=stride, act=nn.ReLU6))
            cin = c
    return blocks


class MobileNetV2(nn.Module):
    def __init__(self, variant: str, *, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = ConvBN(in_channels, STEM_WIDTH, 3, STEM_STRIDE[variant], act=nn.ReLU6)
        self.features = nn.Sequential(*_blocks(variant))
        self.head = ConvBN(STAGES[-1][1], HEAD_WIDTH, 1, act=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(HEAD_WIDTH, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


@register_family("mobilenet_v2", variants=MOBILE_VARIANTS, default_variant=mobile_variant,
                 aliases={"mobilenet_v2": None},
                 description="MobileNetV2 (torchvision layout at 224; 'cifar' and 'tiny': the "
                             "c=24 stage at stride 1, 'cifar' also the stem)")
def build_mobilenet_v2(variant: str, *, num_classes: int, input_size: int,
                       in_channels: int = 3) -> nn.Module:
    return MobileNetV2(variant, num_classes=num_classes, in_channels=in_channels)
