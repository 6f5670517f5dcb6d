"""MobileNetV2 (Sandler et al. 2018), torchvision layout; plus a CIFAR variant for 32x32 inputs.

Layer names: ``stem`` (3x3 conv), ``features.{i}.expand`` (1x1, absent when the expansion t is
1), ``features.{i}.dw`` (3x3 depthwise), ``features.{i}.project`` (1x1 linear bottleneck, no
activation) for blocks i = 0..16, and ``head`` (the 1x1 conv to 1280). Activations are ReLU6.

Coupled groups: a depthwise conv has as many outputs as inputs, so ``dw`` is grouped with the
layer feeding it (``expand``, or the stem for the first, t=1 block); the blocks of a stage after
its first add their input to their output, so a stage's ``project`` outputs form one group.
The ``cifar`` variant keeps every width but runs the stem and the c=24 stage at stride 1.
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

STEM_WIDTH = 32
HEAD_WIDTH = 1280
# (expansion t, output channels c, blocks n, first block's stride s), as in the paper's Table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_STRIDE = {"imagenet": 2, "cifar": 1}
# The CIFAR variant drops two of the five stride-2 steps (total stride 8: 32x32 -> 4x4).
CIFAR_STRIDE_1_STAGES = (1,)  # index into STAGES: the c=24 stage
DROPOUT = 0.2


@dataclass(frozen=True)
class BlockSpec:
    prefix: str     # "features.{i}"
    stage: int      # index into STAGES
    cin: int        # base input width
    expand: int     # base expanded width (= cin when t == 1: no expand conv)
    cout: int
    stride: int
    residual: bool  # stride 1 and cin == cout at base widths


def _block_specs(variant: str) -> Iterator[BlockSpec]:
    cin, index = STEM_WIDTH, 0
    for stage, (t, c, n, s) in enumerate(STAGES):
        if variant == "cifar" and stage in CIFAR_STRIDE_1_STAGES:
            s = 1
        for b in range(n):
            stride = s if b == 0 else 1
            yield BlockSpec(f"features.{index}", stage, cin, cin * t, c, stride,
                            residual=stride == 1 and cin == c)
            cin, index = c, index + 1


def _has_expand(spec: BlockSpec) -> bool:
    return spec.expand != spec.cin


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, expand: int | None, dw: int, cout: int, stride: int,
                 residual: bool) -> None:
        super().__init__()
        self.expand = ConvBN(cin, expand, 1, act=nn.ReLU6) if expand is not None else None
        self.dw = ConvBN(dw, dw, 3, stride, groups=dw, act=nn.ReLU6)
        self.project = ConvBN(dw, cout, 1, act=None)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.dw(out))
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(self, config: ChannelConfig) -> None:
        super().__init__()
        w = config.widths
        self.stem = ConvBN(config.in_channels, w["stem"], 3, STEM_STRIDE[config.variant],
                           act=nn.ReLU6)
        blocks, cin = [], w["stem"]
        for spec in _block_specs(config.variant):
            p = spec.prefix
            expand = w[f"{p}.expand"] if _has_expand(spec) else None
            blocks.append(InvertedResidual(cin, expand, w[f"{p}.dw"], w[f"{p}.project"],
                                           spec.stride, spec.residual))
            cin = w[f"{p}.project"]
        self.features = nn.Sequential(*blocks)
        self.head = ConvBN(cin, w["head"], 1, act=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(DROPOUT),
                                        nn.Linear(w["head"], config.num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        init_convs(self)
        linear = self.classifier[1]
        # torchvision's MobileNetV2 starts the classifier small.
        nn.init.normal_(linear.weight, 0, 0.01)
        nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def _block_ops(config: ChannelConfig, spec: BlockSpec, cin: int, h: int) -> tuple[list[Op], int]:
    w, p = config.widths, spec.prefix
    ops: list[Op] = []
    if _has_expand(spec):
        ops += [Conv(cin, w[f"{p}.expand"], 1, (h, h)), BatchNorm(w[f"{p}.expand"], (h, h)),
                Act(w[f"{p}.expand"] * h * h)]
    dw, cout = w[f"{p}.dw"], w[f"{p}.project"]
    h = conv_out(h, 3, spec.stride)
    ops += [Conv(dw, dw, 3, (h, h), groups=dw), BatchNorm(dw, (h, h)), Act(dw * h * h),
            Conv(dw, cout, 1, (h, h)), BatchNorm(cout, (h, h))]
    return ops, h


@register_family
class MobileNetV2Family(Family):
    name = "mobilenet_v2"
    variants = ("imagenet", "cifar")
    default_variant = "imagenet"
    classifier = "classifier.1"
    description = "MobileNetV2 (torchvision layout; 'cifar': stem and c=24 stage at stride 1)"

    def default_variant_for(self, input_size: int | None) -> str:
        return "imagenet" if input_size is None or input_size >= 128 else "cifar"

    def layout(self, variant: str, options: dict[str, Any]):
        widths: dict[str, int] = {"stem": STEM_WIDTH}
        groups: list[tuple[str, ...]] = []
        prev, stream = "stem", []
        for spec in _block_specs(variant):
            p = spec.prefix
            if not spec.residual:
                stream = self._close_stream(stream, groups)
            feeder = f"{p}.expand" if _has_expand(spec) else prev
            if _has_expand(spec):
                widths[feeder] = spec.expand
            widths[f"{p}.dw"] = spec.expand
            widths[f"{p}.project"] = spec.cout
            # Only the first block (t=1) is fed by the stem; a t=1 block fed by a residual
            # stream would need the two groups merged.
            groups.append((feeder, f"{p}.dw"))
            stream.append(f"{p}.project")
            prev = f"{p}.project"
        self._close_stream(stream, groups)
        widths["head"] = HEAD_WIDTH
        return widths, tuple(groups)

    @staticmethod
    def _close_stream(stream: list[str], groups: list[tuple[str, ...]]) -> list[str]:
        """Record a stage's projects as a group if residual adds join them; start a new one."""
        if len(stream) > 1:
            groups.append(tuple(stream))
        return []

    def wiring(self, config: ChannelConfig) -> dict[str, str | None]:
        wires: dict[str, str | None] = {"stem": None}
        prev = "stem"
        for spec in _block_specs(config.variant):
            p = spec.prefix
            if _has_expand(spec):
                wires[f"{p}.expand"] = prev
                wires[f"{p}.dw"] = f"{p}.expand"
            else:
                wires[f"{p}.dw"] = prev
            wires[f"{p}.project"] = f"{p}.dw"
            prev = f"{p}.project"
        wires["head"] = prev
        return {name: wires[name] for name in config.widths}

    def classifier_input(self, config: ChannelConfig) -> str:
        return "head"

    def ops(self, config: ChannelConfig) -> list[Op]:
        w = config.widths
        h = conv_out(config.input_size, 3, STEM_STRIDE[config.variant])
        ops: list[Op] = [Conv(config.in_channels, w["stem"], 3, (h, h)),
                         BatchNorm(w["stem"], (h, h)), Act(w["stem"] * h * h)]
        cin = w["stem"]
        for spec in _block_specs(config.variant):
            block_ops, h = _block_ops(config, spec, cin, h)
            ops += block_ops
            cin = w[f"{spec.prefix}.project"]
        ops += [Conv(cin, w["head"], 1, (h, h)), BatchNorm(w["head"], (h, h)),
                Act(w["head"] * h * h), Linear(w["head"], config.num_classes)]
        return ops

    def build(self, config: ChannelConfig) -> nn.Module:
        return MobileNetV2(config)
