"""RegNet X/Y (Radosavovic et al. 2020) as the paper's Table 1 baselines (the authors' model files).

Every block is 1x1-BN-ReLU, grouped 3x3-BN-ReLU (groups = width // group width), [SE], 1x1-BN,
added to the input (through a 1x1 conv-BN projection when the stride or the width changes) and
followed by its own ReLU. Y variants put squeeze-excitation after the 3x3 conv, squeezing to the
*block input* width // 4 with biased 1x1 convs (ReLU inside, sigmoid gate).

The layout follows the input size, as in the authors' code:

* ``<= 32`` (CIFAR): stem stride 1 and stages 0 and 1 at stride 1, so the maps go 32-32-32-16-8;
* ``<= 64`` (Tiny-ImageNet): stem stride 1, every stage stride 2 (64-32-16-8-4); the authors'
  trainer gives every non-CIFAR, non-ImageNet dataset this layout;
* larger (ImageNet): stem stride 2, every stage stride 2 (224-112-56-28-14-7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hetero.models._registry import register_family
from hetero.models.common import ConvBN, SqueezeExcite

__all__ = ["RegNet", "RegNetSpec", "SPECS", "build_regnet"]

STEM_WIDTH = 32


@dataclass(frozen=True)
class RegNetSpec:
    depths: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    group_width: int
    se: bool   # Y variants


SPECS = {
    "x_400mf": RegNetSpec((1, 2, 7, 12), (32, 64, 160, 384), 16, se=False),
    "y_400mf": RegNetSpec((1, 3, 6, 6), (48, 104, 208, 440), 8, se=True),
    "x_4gf": RegNetSpec((2, 5, 14, 2), (80, 240, 560, 1360), 40, se=False),
}
SE_REDUCTION = 4


def layout_strides(input_size: int) -> tuple[int, tuple[int, int, int, int]]:
    """(stem stride, first-block stride of each stage) for an input of ``input_size`` pixels."""
    if input_size <= 32:
        return 1, (1, 1, 2, 2)
    if input_size <= 64:
        return 1, (2, 2, 2, 2)
    return 2, (2, 2, 2, 2)


class ResBottleneck(nn.Module):
    """RegNet's residual block (bottleneck ratio 1)."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int, se: bool) -> None:
        super().__init__()
        if cout % group_width:
            raise ValueError(f"RegNet width {cout} is not a multiple of the group width "
                             f"{group_width}: pick widths divisible by it")
        self.conv1 = ConvBN(cin, cout, 1)
        self.conv2 = ConvBN(cout, cout, 3, stride, groups=cout // group_width)
        self.se = SqueezeExcite(cout, cin // SE_REDUCTION) if se else nn.Identity()
        self.conv3 = ConvBN(cout, cout, 1, act=None)
        needs_proj = stride != 1 or cin != cout
        self.proj = ConvBN(cin, cout, 1, stride, act=None) if needs_proj else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv3(self.se(self.conv2(self.conv1(x)))) + self.proj(x))


class RegNet(nn.Module):
    def __init__(self, spec: RegNetSpec, num_classes: int, input_size: int,
                 in_channels: int = 3) -> None:
        super().__init__()
        stem_stride, stage_strides = layout_strides(input_size)
        self.stem = ConvBN(in_channels, STEM_WIDTH, 3, stem_stride)
        blocks: list[nn.Module] = []
        cin = STEM_WIDTH
        for depth, width, stride in zip(spec.depths, spec.widths, stage_strides, strict=True):
            for i in range(depth):
                blocks.append(ResBottleneck(cin, width, stride if i == 0 else 1,
                                            spec.group_width, spec.se))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def _default_variant(input_size: int) -> str:
    # The paper runs the 4GF model on ImageNet and the 400MF models on CIFAR-100.
    return "x_4gf" if input_size > 64 else "x_400mf"


@register_family("regnet", variants=tuple(SPECS), default_variant=_default_variant,
                 aliases={"regnetx_400mf": "x_400mf", "regnety_400mf": "y_400mf",
                          "regnetx_4gf": "x_4gf"},
                 description="RegNet X/Y (CIFAR layout at <=32 px, Tiny at <=64, ImageNet above)")
def build_regnet(variant: str, *, num_classes: int, input_size: int,
                 in_channels: int = 3) -> nn.Module:
    """RegNet-``variant`` at its regular widths, laid out for ``input_size`` (see the module doc)."""
    return RegNet(SPECS[variant], num_classes, input_size, in_channels)
