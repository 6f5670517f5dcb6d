"""ResNet for ImageNet (He et al. 2016), torchvision v1.5 layout: 7x7 stem + max pool, four stages.

Layer names: ``stem``, ``layer{s}.{b}.conv{i}`` (``conv2`` is a block's last conv for basic
blocks, ``conv3`` for bottlenecks) and ``layer{s}.0.downsample`` (1x1 conv + BN projection where the
shape changes). Bottlenecks put the stride on the 3x3 conv. One coupled group per stage: the
stage's residual stream, i.e. the projection and every block's last conv, plus the stem when stage
1 has no projection (ResNet-18: the stem's 64 channels are added to stage 1's outputs).

Like torchvision, each block owns ONE ReLU module, called after every inner BN and after the add;
the paper's counter counts it once, at its post-add output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hetero.complexity import Act, BatchNorm, Conv, Linear, Op, conv_out
from hetero.config import ChannelConfig
from hetero.models.common import ConvBN, Family, init_convs
from hetero.models.registry import register_family

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


@dataclass(frozen=True)
class BlockSpec:
    prefix: str       # "layer{s}.{b}"
    planes: int       # base inner width
    stride: int
    downsample: bool  # has a projection shortcut


def _block_specs(variant: str) -> Iterator[BlockSpec]:
    kind, depths = VARIANTS[variant]
    for s, (planes, blocks) in enumerate(zip(STAGE_PLANES, depths, strict=True), start=1):
        for b in range(blocks):
            stride = 2 if s > 1 and b == 0 else 1
            # Decided at base widths: stage 1 of a bottleneck net still goes 64 -> 256.
            downsample = b == 0 and (stride != 1 or kind.expansion != 1)
            yield BlockSpec(f"layer{s}.{b}", planes, stride, downsample)


def _conv_names(variant: str, prefix: str) -> list[str]:
    kind = VARIANTS[variant][0]
    return [f"{prefix}.conv{i}" for i in range(1, len(kind.kernels) + 1)]


def _named_kernels(variant: str, prefix: str) -> list[tuple[str, int]]:
    return list(zip(_conv_names(variant, prefix), VARIANTS[variant][0].kernels, strict=True))


class Block(nn.Module):
    """Basic or bottleneck block; ``relu`` is shared by every conv and the post-add output."""

    def __init__(self, convs: list[ConvBN], downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv_names = [f"conv{i}" for i in range(1, len(convs) + 1)]
        for name, conv in zip(self.conv_names, convs, strict=True):
            setattr(self, name, conv)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = x
        for name in self.conv_names[:-1]:
            out = self.relu(getattr(self, name)(out))
        return self.relu(getattr(self, self.conv_names[-1])(out) + identity)


def _make_block(config: ChannelConfig, spec: BlockSpec, cin: int) -> Block:
    kind = VARIANTS[config.variant][0]
    convs, c = [], cin
    for i, (name, kernel) in enumerate(_named_kernels(config.variant, spec.prefix)):
        stride = spec.stride if i == kind.stride_at else 1
        convs.append(ConvBN(c, config.widths[name], kernel, stride, act=None))
        c = config.widths[name]
    downsample = (ConvBN(cin, config.widths[f"{spec.prefix}.downsample"], 1, spec.stride, act=None)
                  if spec.downsample else None)
    return Block(convs, downsample)


class ResNetImageNet(nn.Module):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__()
        w = config.widths
        self.stem = ConvBN(config.in_channels, w["stem"], 7, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = w["stem"]
        stages: dict[str, list[Block]] = {}
        for spec in _block_specs(config.variant):
            stages.setdefault(spec.prefix.split(".")[0], []).append(_make_block(config, spec, cin))
            cin = w[_conv_names(config.variant, spec.prefix)[-1]]
        for stage, blocks in stages.items():
            setattr(self, stage, nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, config.num_classes)
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _block_ops(config: ChannelConfig, spec: BlockSpec, cin: int, h: int) -> tuple[list[Op], int]:
    """The block's ops and its output size; one Act for the shared ReLU's post-add output."""
    kind = VARIANTS[config.variant][0]
    ops: list[Op] = []
    c, hc = cin, h
    for i, (name, kernel) in enumerate(_named_kernels(config.variant, spec.prefix)):
        hc = conv_out(hc, kernel, spec.stride if i == kind.stride_at else 1)
        cout = config.widths[name]
        ops += [Conv(c, cout, kernel, (hc, hc)), BatchNorm(cout, (hc, hc))]
        c = cout
    if spec.downsample:
        hd = conv_out(h, 1, spec.stride)
        cd = config.widths[f"{spec.prefix}.downsample"]
        ops += [Conv(cin, cd, 1, (hd, hd)), BatchNorm(cd, (hd, hd))]
    ops.append(Act(c * hc * hc))
    return ops, hc


@register_family
class ResNetImageNetFamily(Family):
    name = "resnet_imagenet"
    variants = tuple(VARIANTS)
    default_variant = "50"
    aliases = {f"resnet{v}": v for v in VARIANTS}
    description = "ImageNet ResNet (torchvision v1.5: stride on the 3x3, projection shortcuts)"

    def layout(self, variant: str, options: dict[str, Any]):
        kind = VARIANTS[variant][0]
        widths: dict[str, int] = {"stem": STEM_WIDTH}
        streams: dict[str, list[str]] = {}
        for spec in _block_specs(variant):
            stage = spec.prefix.split(".")[0]
            stream = streams.setdefault(stage, [] if spec.downsample else ["stem"])
            names = _conv_names(variant, spec.prefix)
            for name in names[:-1]:
                widths[name] = spec.planes
            widths[names[-1]] = spec.planes * kind.expansion
            if spec.downsample:
                widths[f"{spec.prefix}.downsample"] = spec.planes * kind.expansion
                stream.append(f"{spec.prefix}.downsample")
            stream.append(names[-1])
        return widths, tuple(tuple(s) for s in streams.values())

    def wiring(self, config: ChannelConfig) -> dict[str, str | None]:
        wires: dict[str, str | None] = {"stem": None}
        prev = "stem"
        for spec in _block_specs(config.variant):
            names = _conv_names(config.variant, spec.prefix)
            for reads, name in zip([prev] + names[:-1], names, strict=True):
                wires[name] = reads
            if spec.downsample:
                wires[f"{spec.prefix}.downsample"] = prev
            prev = names[-1]
        return {name: wires[name] for name in config.widths}

    def classifier_input(self, config: ChannelConfig) -> str:
        *_, last = _block_specs(config.variant)
        return _conv_names(config.variant, last.prefix)[-1]

    def ops(self, config: ChannelConfig) -> list[Op]:
        w, h = config.widths, conv_out(config.input_size, 7, 2)
        ops: list[Op] = [Conv(config.in_channels, w["stem"], 7, (h, h)),
                         BatchNorm(w["stem"], (h, h)), Act(w["stem"] * h * h)]
        h = conv_out(h, 3, 2)  # max pool (not counted)
        cin = w["stem"]
        for spec in _block_specs(config.variant):
            block_ops, h = _block_ops(config, spec, cin, h)
            ops += block_ops
            cin = w[_conv_names(config.variant, spec.prefix)[-1]]
        ops.append(Linear(cin, config.num_classes))
        return ops

    def build(self, config: ChannelConfig) -> nn.Module:
        return ResNetImageNet(config)
