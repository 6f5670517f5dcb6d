"""MobileNetV3-small (Howard et al. 2019) as the paper trained it (the authors' ``model/mobilenetv3.py``).

Not torchvision's ``mobilenet_v3_small`` (-0.97 % FLOPs, -18.2 % params at 224):
here the squeeze-excitation is Linear(c, c // 4)-ReLU-Linear-h_sigmoid on the pooled vector (no
make_divisible), the last 1x1 conv 96->576 + h_swish is followed by SE(576), and the head is
Linear(576, 1280)-h_swish-Linear(1280, classes) with no BN or dropout. Paper cost: 0.0207 G /
2.083 M at 64 px and 200 classes, 0.0612 G / 3.108 M at 224 px and 1000 classes.

h_swish and h_sigmoid each wrap their own ``nn.ReLU6``, so the paper's counter charges them 1 FLOP
per element (the only way its MobileNetV3 figures come out). Layouts (by input size): ``imagenet``
has a stride-2 stem; ``cifar`` and ``tiny`` a stride-1 stem (the authors' choice for every dataset
but ImageNet), ending at 2x2 (32 px) and 4x4 (64 px).
"""

from __future__ import annotations

import torch
from torch import nn

from hetero.models._mobile import MOBILE_VARIANTS, mobile_variant
from hetero.models._registry import register_family
from hetero.models.common import ConvBN, InvertedResidual

__all__ = ["HSigmoid", "HSwish", "MobileNetV3", "SqueezeExcite", "build_mobilenet_v3"]

STEM_WIDTH = 16
LAST_WIDTH = 576
HEAD_WIDTH = 1280
# Small mode, per block: kernel, expanded width, output width, SE, h_swish (else ReLU), stride.
SMALL = ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
         (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
         (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
         (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1))
STEM_STRIDE = {"cifar": 1, "tiny": 1, "imagenet": 2}


class HSigmoid(nn.Module):
    """ReLU6(x + 3) / 6 around its own ReLU6 (``inplace`` is accepted for ConvBN's sake)."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.relu6 = nn.ReLU6(inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu6(x + 3) / 6


class HSwish(nn.Module):
    """x * ReLU6(x + 3) / 6 around its own ReLU6."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.relu6 = nn.ReLU6(inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.relu6(x + 3) / 6


class SqueezeExcite(nn.Module):
    """Gate each channel by an MLP of the channel means: Linear(c, c // 4)-ReLU-Linear-h_sigmoid
    (the authors' MobileNetV3; RegNet-Y and EfficientNet gate through 1x1 convs, see
    :class:`hetero.models.common.SqueezeExcite`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // 4), nn.ReLU(inplace=True),
                                nn.Linear(channels // 4, channels), HSigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(torch.flatten(self.pool(x), 1))
        return x * gate[:, :, None, None]


class MobileNetV3(nn.Module):
    def __init__(self, stem_stride: int, *, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = ConvBN(in_channels, STEM_WIDTH, 3, stem_stride, act=HSwish)
        blocks, cin = [], STEM_WIDTH
        for kernel, hidden, cout, se, hswish, stride in SMALL:
            # The authors expand only where the widths differ (the first block has none).
            blocks.append(InvertedResidual(cin, hidden, cout, kernel=kernel, stride=stride,
                                           act=HSwish if hswish else nn.ReLU,
                                           se=SqueezeExcite if se else None))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.last = ConvBN(cin, LAST_WIDTH, 1, act=HSwish)
        self.last_se = SqueezeExcite(LAST_WIDTH)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(LAST_WIDTH, HEAD_WIDTH), HSwish(),
                                        nn.Linear(HEAD_WIDTH, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last_se(self.last(self.features(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))


@register_family("mobilenet_v3", variants=MOBILE_VARIANTS, default_variant=mobile_variant,
                 aliases={"mobilenet_v3_small": None},
                 description="MobileNetV3-small as the paper trained it (SE with Linear layers, "
                             "Linear head); stride-1 stem below ImageNet size")
def build_mobilenet_v3(variant: str, *, num_classes: int, input_size: int,
                       in_channels: int = 3) -> nn.Module:
    return MobileNetV3(STEM_STRIDE[variant], num_classes=num_classes, in_channels=in_channels)
