"""MobileNetV1 (Howard et al. 2017): a stem and 13 depthwise-separable ConvBN-ReLU6 pairs.

The paper's Tiny-ImageNet network (the authors' ``model/mobilenet.py``):
stem 3x3 ConvBN-ReLU6 3->32, then per entry of ``CFG`` a 3x3 depthwise and a 1x1 pointwise
ConvBN-ReLU6; global mean pool, Dropout(0.2), Linear(1024, classes). 0.0478 G / 3.412 M in the
paper's accounting at 64 px and 200 classes.

Layouts (by input size): ``tiny`` and ``imagenet`` use a stride-2 stem (64 -> 2x2 and
224 -> 7x7 final maps; ``imagenet`` is the original 1.0-224 network); ``cifar`` runs the stem at
stride 1, as the authors' file does for CIFAR (32 -> 2x2).
"""

from __future__ import annotations

import torch
from torch import nn

from hetero.models._mobile import MOBILE_VARIANTS, mobile_variant
from hetero.models._registry import register_family
from hetero.models.common import ConvBN

__all__ = ["DepthwiseSeparable", "MobileNetV1", "build_mobilenet_v1"]

STEM_WIDTH = 32
# (output channels, stride) of each depthwise-separable pair.
CFG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
STEM_STRIDE = {"cifar": 1, "tiny": 2, "imagenet": 2}
DROPOUT = 0.2


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvBN(cin, cin, 3, stride, groups=cin, act=nn.ReLU6)
        self.pw = ConvBN(cin, cout, 1, act=nn.ReLU6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    def __init__(self, stem_stride: int, *, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = ConvBN(in_channels, STEM_WIDTH, 3, stem_stride, act=nn.ReLU6)
        blocks, cin = [], STEM_WIDTH
        for cout, stride in CFG:
            blocks.append(DepthwiseSeparable(cin, cout, stride))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


@register_family("mobilenet_v1", variants=MOBILE_VARIANTS, default_variant=mobile_variant,
                 aliases={"mobilenet_v1": None},
                 description="MobileNetV1 (Howard et al. 2017); 'cifar': stem at stride 1")
def build_mobilenet_v1(variant: str, *, num_classes: int, input_size: int,
                       in_channels: int = 3) -> nn.Module:
    return MobileNetV1(STEM_STRIDE[variant], num_classes=num_classes, in_channels=in_channels)
