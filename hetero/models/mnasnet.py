"""MnasNet-A1 without SE (Tan et al. 2019): torchvision's ``mnasnet1_0`` structure, written here.

Stem 3x3 ConvBN-ReLU 3->32, a depthwise-separable 32->16 (no activation after the pointwise), six
stacks of inverted residuals (ReLU, no SE), 1x1 ConvBN-ReLU 320->1280, global mean pool,
Dropout(0.2), Linear(1280, classes). The parameter tensors are torchvision's, shape for shape; BN
keeps PyTorch's default momentum (the authors' ``model/mnasnet.py``; torchvision uses 3e-4).
Paper cost: 0.0271 G / 3.359 M at 64 px and 200 classes.

Layouts (by input size): ``tiny`` and ``imagenet`` have a stride-2 stem (64 -> 2x2, 224 -> 7x7);
``cifar`` a stride-1 stem, as the authors' file does for CIFAR (32 -> 2x2).
"""

from __future__ import annotations

import torch
from torch import nn

from hetero.models._mobile import MOBILE_VARIANTS, mobile_variant
from hetero.models._registry import register_family
from hetero.models.common import ConvBN, InvertedResidual

__all__ = ["MNASNet", "build_mnasnet"]

STEM_WIDTH = 32
SEPARABLE_WIDTH = 16
HEAD_WIDTH = 1280
# Per stack: output width, kernel, first block's stride, expansion, blocks.
STACKS = ((24, 3, 2, 3, 3), (40, 5, 2, 3, 3), (80, 5, 2, 6, 3), (96, 3, 1, 6, 2),
          (192, 5, 2, 6, 4), (320, 3, 1, 6, 1))
STEM_STRIDE = {"cifar": 1, "tiny": 2, "imagenet": 2}
DROPOUT = 0.2


def _stacks() -> list[nn.Sequential]:
    stacks, cin = [], SEPARABLE_WIDTH
    for cout, kernel, stride, expansion, blocks in STACKS:
        stack = []
        for b in range(blocks):
            stack.append(InvertedResidual(cin, cin * expansion, cout, kernel=kernel,
                                          stride=stride if b == 0 else 1))
            cin = cout
        stacks.append(nn.Sequential(*stack))
    return stacks


class MNASNet(nn.Module):
    def __init__(self, stem_stride: int, *, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = ConvBN(in_channels, STEM_WIDTH, 3, stem_stride)
        self.separable = nn.Sequential(
            ConvBN(STEM_WIDTH, STEM_WIDTH, 3, groups=STEM_WIDTH),
            ConvBN(STEM_WIDTH, SEPARABLE_WIDTH, 1, act=None))
        self.features = nn.Sequential(*_stacks())
        self.head = ConvBN(STACKS[-1][0], HEAD_WIDTH, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(HEAD_WIDTH, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.separable(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))


@register_family("mnasnet", variants=MOBILE_VARIANTS, default_variant=mobile_variant,
                 aliases={"mnasnet": None},
                 description="MnasNet 1.0 (torchvision structure); 'cifar': stem at stride 1")
def build_mnasnet(variant: str, *, num_classes: int, input_size: int,
                  in_channels: int = 3) -> nn.Module:
    return MNASNet(STEM_STRIDE[variant], num_classes=num_classes, in_channels=in_channels)
