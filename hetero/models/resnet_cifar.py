"""ResNet for 32x32 inputs (He et al. 2016, section 4.2): depths 6n+2, basic blocks, 16/32/64.

Layer names: ``stem``, ``layer{s}.{b}.conv1`` (block inner width), ``layer{s}.{b}.conv2`` (block
output) and, with projection shortcuts, ``layer{s}.0.shortcut``. One coupled group per stage: the
stage's residual stream, shared by the stem (stage 1) or the projection shortcut and every block
output. Shortcut options: ``projection`` (1x1 conv + BN where the shape changes; the paper's
ResNet-56) or ``zeropad`` (parameter-free: subsample, then zero-pad or slice the channels).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hetero.complexity import Act, BatchNorm, Conv, Linear, Op, conv_out
from hetero.config import ChannelConfig
from hetero.models.common import ConvBN, Family, init_convs
from hetero.models.registry import register_family

BASE_WIDTHS = (16, 32, 64)
DEPTHS = ("20", "32", "44", "56", "110")


def _blocks(variant: str) -> int:
    return (int(variant) - 2) // 6


def _needs_shortcut(stage: int, block: int) -> bool:
    return stage > 1 and block == 0


class ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut: stride-2 subsampling, channels zero-padded (or sliced) to fit."""

    def __init__(self, cout: int, stride: int) -> None:
        super().__init__()
        self.cout, self.stride = cout, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.cout - x.shape[1]
        return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra >= 0 else x[:, : self.cout]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, inner: int, cout: int, stride: int, shortcut: nn.Module | None):
        super().__init__()
        self.conv1 = ConvBN(cin, inner, 3, stride)
        self.conv2 = ConvBN(inner, cout, 3, act=None)
        if shortcut is not None:
            self.shortcut = shortcut
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x) if hasattr(self, "shortcut") else x
        return self.relu(self.conv2(self.conv1(x)) + identity)


class ResNetCifar(nn.Module):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__()
        w = config.widths
        projection = config.options["shortcut"] == "projection"
        self.stem = ConvBN(config.in_channels, w["stem"], 3)
        cin = w["stem"]
        for s in (1, 2, 3):
            blocks = []
            for b in range(_blocks(config.variant)):
                p = f"layer{s}.{b}"
                stride = 2 if _needs_shortcut(s, b) else 1
                cout = w[f"{p}.conv2"]
                shortcut = None
                if _needs_shortcut(s, b):
                    shortcut = (ConvBN(cin, w[f"{p}.shortcut"], 1, stride, act=None) if projection
                                else ZeroPadShortcut(cout, stride))
                blocks.append(BasicBlock(cin, w[f"{p}.conv1"], cout, stride, shortcut))
                cin = cout
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, config.num_classes)
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_family
class ResNetCifarFamily(Family):
    name = "resnet_cifar"
    variants = DEPTHS
    default_variant = "56"
    option_defaults = {"shortcut": "projection"}
    option_choices = {"shortcut": ("projection", "zeropad")}
    aliases = {f"resnet{d}": d for d in DEPTHS}
    description = "CIFAR ResNet (basic blocks, 16/32/64), depth = 6n+2"

    def layout(self, variant: str, options: dict[str, Any]):
        projection = options["shortcut"] == "projection"
        widths: dict[str, int] = {"stem": BASE_WIDTHS[0]}
        groups = []
        for s, base in zip((1, 2, 3), BASE_WIDTHS, strict=True):
            stream = ["stem"] if s == 1 else []
            for b in range(_blocks(variant)):
                p = f"layer{s}.{b}"
                widths[f"{p}.conv1"] = base
                widths[f"{p}.conv2"] = base
                if _needs_shortcut(s, b) and projection:
                    widths[f"{p}.shortcut"] = base
                    stream.append(f"{p}.shortcut")
                stream.append(f"{p}.conv2")
            groups.append(tuple(stream))
        return widths, tuple(groups)

    def wiring(self, config: ChannelConfig) -> dict[str, str | None]:
        wires: dict[str, str | None] = {"stem": None}
        prev = "stem"
        for s in (1, 2, 3):
            for b in range(_blocks(config.variant)):
                p = f"layer{s}.{b}"
                wires[f"{p}.conv1"] = prev
                if f"{p}.shortcut" in config.widths:
                    wires[f"{p}.shortcut"] = prev
                wires[f"{p}.conv2"] = f"{p}.conv1"
                prev = f"{p}.conv2"
        return {name: wires[name] for name in config.widths}

    def classifier_input(self, config: ChannelConfig) -> str:
        return f"layer3.{_blocks(config.variant) - 1}.conv2"

    def ops(self, config: ChannelConfig) -> list[Op]:
        w, h = config.widths, config.input_size
        ops: list[Op] = [Conv(config.in_channels, w["stem"], 3, (h, h)),
                         BatchNorm(w["stem"], (h, h)), Act(w["stem"] * h * h)]
        cin = w["stem"]
        for s in (1, 2, 3):
            for b in range(_blocks(config.variant)):
                p = f"layer{s}.{b}"
                h = conv_out(h, 3, 2 if _needs_shortcut(s, b) else 1)
                inner, cout = w[f"{p}.conv1"], w[f"{p}.conv2"]
                ops += [Conv(cin, inner, 3, (h, h)), BatchNorm(inner, (h, h)), Act(inner * h * h),
                        Conv(inner, cout, 3, (h, h)), BatchNorm(cout, (h, h))]
                if f"{p}.shortcut" in w:
                    ops += [Conv(cin, cout, 1, (h, h)), BatchNorm(cout, (h, h))]
                ops.append(Act(cout * h * h))
                cin = cout
        ops.append(Linear(cin, config.num_classes))
        return ops

    def build(self, config: ChannelConfig) -> nn.Module:
        return ResNetCifar(config)
