"""EfficientNet-B0 (Tan & Le 2019) as the paper's CIFAR-100 baseline (the authors' model files).

Mobile inverted bottlenecks: 1x1 expansion-BN-swish (absent at expansion 1), depthwise kxk-BN-swish,
squeeze-excitation, 1x1 projection-BN, plus the input when the stride is 1 and the width is kept.
As in the authors' code, SE squeezes to the *block input* width // 4 with biased 1x1 convs and swish
inside, the head is 1x1 320->1280-BN-swish, and there is no dropout.

swish is a small module computing ``x * sigmoid(x)`` rather than ``nn.SiLU``: the paper's counter
charges it nothing (the authors' model files), and the hook counter only charges ``PAPER_ACTIVATIONS``.

The layout follows the input size, as in the authors' code:

* ``<= 32`` (CIFAR): stem stride 1 and stages 1 and 2 forced to stride 1 (final map 8x8);
* ``<= 64`` (Tiny-ImageNet): stem stride 1, the standard stage strides (final map 4x4);
* larger (ImageNet): stem stride 2, the standard stage strides (224 -> 7x7).
"""

from __future__ import annotations

import torch
from torch import nn

from hetero.models._registry import register_family
from hetero.models.common import SqueezeExcite

__all__ = ["EfficientNet", "Swish", "build_efficientnet"]

STEM_WIDTH = 32
HEAD_WIDTH = 1280
# B0 stages: (expansion, output width, blocks, kernel, first block's stride)
STAGES = ((1, 16, 1, 3, 1), (6, 24, 2, 3, 2), (6, 40, 2, 5, 2), (6, 80, 3, 3, 2),
          (6, 112, 3, 5, 1), (6, 192, 4, 5, 2), (6, 320, 1, 3, 1))
CIFAR_STRIDE_1_STAGES = (1, 2)  # keeps a 32x32 input at 8x8 before the head
SE_REDUCTION = 4


class Swish(nn.Module):
    """x * sigmoid(x), out of place (``inplace`` is accepted for SqueezeExcite's sake)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             swish: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, Swish()) if swish else nn.Sequential(*layers)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = _conv_bn(cin, hidden, 1) if expansion != 1 else nn.Identity()
        self.dw = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.se = SqueezeExcite(hidden, cin // SE_REDUCTION, act=Swish)
        self.project = _conv_bn(hidden, cout, 1, swish=False)
        self.residual = stride == 1 and cin == cout  # fixed at build time: fx sees no branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return out + x if self.residual else out


def layout_strides(input_size: int) -> tuple[int, tuple[int, ...]]:
    """(stem stride, first-block stride of each stage) for an input of ``input_size`` pixels."""
    standard = tuple(s for *_, s in STAGES)
    if input_size <= 32:
        return 1, tuple(1 if i in CIFAR_STRIDE_1_STAGES else s for i, s in enumerate(standard))
    return (1 if input_size <= 64 else 2), standard


class EfficientNet(nn.Module):
    def __init__(self, num_classes: int, input_size: int, in_channels: int = 3) -> None:
        super().__init__()
        stem_stride, stage_strides = layout_strides(input_size)
        self.stem = _conv_bn(in_channels, STEM_WIDTH, 3, stem_stride)
        blocks: list[nn.Module] = []
        cin = STEM_WIDTH
        for (expansion, cout, depth, kernel, _), stride in zip(STAGES, stage_strides, strict=True):
            for i in range(depth):
                blocks.append(MBConv(cin, cout, expansion, kernel, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn(cin, HEAD_WIDTH, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(HEAD_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.head(self.blocks(self.stem(x)))), 1))


@register_family("efficientnet", variants=("b0",), default_variant="b0",
                 aliases={"efficientnet_b0": "b0"},
                 description="EfficientNet-B0 (CIFAR layout at <=32 px, Tiny at <=64, ImageNet above)")
def build_efficientnet(variant: str, *, num_classes: int, input_size: int,
                       in_channels: int = 3) -> nn.Module:
    """EfficientNet-``variant`` at its regular widths, laid out for ``input_size``."""
    return EfficientNet(num_classes, input_size, in_channels)
