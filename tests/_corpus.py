"""A corpus of user networks with the constructs real CNNs use beyond plain conv stacks (issue 17).

Each entry builds a small network for 3x16x16 inputs and ``num_classes`` classes. ``HANDLED``:
the channel graph follows them exactly. ``REFUSED``: it cannot, and must say so in one line
naming the op (the needles) before anything runs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Outputs(NamedTuple):
    logits: torch.Tensor
    features: torch.Tensor


class NamedTupleOut(nn.Module):
    """Returns (logits, features) as a NamedTuple in both modes."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(cbr(3, 16), cbr(16, 24, stride=2))
        self.embed = nn.Conv2d(24, 12, 1)
        self.head = Head(24, num_classes)

    def forward(self, x):
        x = self.body(x)
        return Outputs(self.head(x), self.embed(x).mean((2, 3)))


class DictOut(nn.Module):
    """Returns a dict whose first entry is the logits; a second head is an auxiliary one."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem, self.mid = cbr(3, 16), cbr(16, 32, stride=2)
        self.head, self.side = Head(32, num_classes), Head(16, num_classes)

    def forward(self, x):
        early = self.stem(x)
        return {"logits": self.head(self.mid(early)), "side": self.side(early)}


class AuxInTraining(nn.Module):
    """torchvision's pattern: an auxiliary head only the training forward runs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.a, self.b = cbr(3, 16), cbr(16, 32, stride=2)
        self.aux = nn.Sequential(cbr(16, 8, k=1), nn.Flatten(), nn.Linear(8 * 256, num_classes))
        self.head = Head(32, num_classes)

    def forward(self, x):
        x = self.a(x)
        aux = self.aux(x) if self.training else None
        logits = self.head(self.b(x))
        return Outputs(logits, aux) if self.training else logits


class ShuffleBlockNet(nn.Module):
    """ShuffleNet-style: a chunk, a concatenation, and a channel shuffle three ways."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.branch = nn.Sequential(cbr(8, 8, 1), cbr(8, 8, 3, groups=8), cbr(8, 8, 1))
        self.shuffle = nn.ChannelShuffle(2)
        self.mix = cbr(16, 24)
        self.head = Head(24, num_classes)

    def forward(self, x):
        x = self.stem(x)
        left, right = x.chunk(2, dim=1)
        x = torch.cat([left, self.branch(right)], 1)
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
        x = F.channel_shuffle(self.shuffle(x), 4)
        return self.head(self.mix(x))


class LayerScale(nn.Module):
    """ConvNeXt's per-channel scale on a residual branch, as a (C, 1, 1) and a (C,) parameter."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.block1, self.block2 = cbr(16, 16), cbr(16, 16)
        self.gamma1 = nn.Parameter(torch.full((16, 1, 1), 0.5))
        self.gamma2 = nn.Parameter(torch.linspace(0.1, 1.0, 16))
        self.head = Head(16, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.gamma1 * self.block1(x)
        x = x + self.block2(x) * self.gamma2.view(1, -1, 1, 1)
        return self.head(x)


class PadShortcut(nn.Module):
    """The CIFAR ResNet option-A shortcut: subsample, then zero-pad the channels by constants."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.block = nn.Sequential(cbr(16, 32, stride=2), cbr(32, 32))
        self.head = Head(32, num_classes)

    def forward(self, x):
        x = self.stem(x)
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
        return self.head(torch.relu(self.block(x) + shortcut))


class DoubledConv(nn.Conv2d):
    """A conv subclass with its own forward, calling the conv through ``_conv_forward``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3, padding=1, bias=True)
        self.scale = 2.0

    def forward(self, x):
        return self._conv_forward(x, self.weight, self.bias) * self.scale


class ConvSubclass(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.conv = DoubledConv(16, 16)   # in = out channels: the old graph thought it free
        self.bn = nn.BatchNorm2d(16)
        self.head = Head(16, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(self.stem(x)))))


class CoordConv(nn.Module):
    """Concatenates coordinate channels built in forward before a conv."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.conv = cbr(18, 24)
        self.head = Head(24, num_classes)

    def forward(self, x):
        x = self.stem(x)
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
        return self.head(self.conv(torch.cat([x, ys, xs], dim=1)))


class Splits(nn.Module):
    """chunk at a concatenation's boundary, split at fixed sizes, and a GLU on one conv."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.left, self.right = cbr(3, 12), cbr(3, 12)
        self.glu = nn.Conv2d(24, 32, 1)
        self.mix = cbr(16, 20)
        self.head = Head(20 + 12, num_classes)

    def forward(self, x):
        a, b = torch.cat([self.left(x), self.right(x)], 1).chunk(2, dim=1)
        value, gate = self.glu(torch.cat([a, b], 1)).chunk(2, dim=1)
        y = self.mix(value * torch.sigmoid(gate))
        first, _rest = torch.split(a + b, [8, 4], dim=1)
        return self.head(torch.cat([y, first, _rest], 1))


class SpatialAttention(nn.Module):
    """CBAM: a spatial gate from the channel mean and max, and a softmax over channels."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem, self.body = cbr(3, 16), cbr(16, 16)
        self.gate = nn.Conv2d(2, 1, 7, padding=3)
        self.head = Head(16, num_classes)

    def forward(self, x):
        x = self.body(self.stem(x))
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        x = x * torch.sigmoid(self.gate(pooled))
        return self.head(x * x.softmax(dim=1))


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:   # control flow on a tensor value: untraceable
            return x * 2
        return x


class Branchy(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem, self.conv, self.block = cbr(3, 8), cbr(8, 8), Gate()
        self.head = Head(8, num_classes)

    def forward(self, x):
        return self.head(self.block(self.conv(self.stem(x))))


class OpaqueBlock(nn.Module):
    """A block the graph cannot follow (a channel permute), left unpruned with exclude."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        y = self.fc(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + y


class WithOpaqueBlock(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem, self.block, self.tail = cbr(3, 16), OpaqueBlock(), cbr(16, 24)
        self.head = Head(24, num_classes)

    def forward(self, x):
        return self.head(self.tail(self.block(self.stem(x))))


class StandardizedConv(nn.Conv2d):
    """Weight standardisation: the weight is computed in forward."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class WSNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem, self.conv, self.head = cbr(3, 16), StandardizedConv(16, 16, 3, padding=1), \
            Head(16, num_classes)

    def forward(self, x):
        return self.head(self.conv(self.stem(x)))


class PixelShuffleNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv, self.up, self.head = cbr(3, 16), nn.PixelShuffle(2), Head(4, num_classes)

    def forward(self, x):
        return self.head(self.up(self.conv(x)))


class ChannelsLast(nn.Module):
    """ConvNeXt's channels-last block: a permute moves the channel dimension."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem, self.block, self.head = cbr(3, 16), OpaqueBlock(), Head(16, num_classes)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


class GroupNormNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv, self.norm, self.head = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), \
            Head(16, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.conv(x)))


class Scaled(nn.Module):
    """A parameter built in forward that scales every channel (its width written in code)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem, self.conv, self.head = cbr(3, 8), cbr(8, 16), Head(16, num_classes)

    def forward(self, x):
        scale = torch.arange(16, device=x.device).view(1, 16, 1, 1)
        return self.head(self.conv(self.stem(x)) * scale)


# (name, builder, options for uniform(): exclude)
HANDLED = [
    ("namedtuple", NamedTupleOut, {}),
    ("dict", DictOut, {}),
    ("aux-in-training", AuxInTraining, {}),
    ("channel-shuffle", ShuffleBlockNet, {}),
    ("layer-scale", LayerScale, {}),
    ("pad-shortcut", PadShortcut, {}),
    ("conv-subclass", ConvSubclass, {}),
    ("coordconv", CoordConv, {}),
    ("chunk-split", Splits, {}),
    ("spatial-attention", SpatialAttention, {}),
    ("built-tensor-scale", Scaled, {}),
    ("excluded-untraceable", Branchy, {"exclude": "block"}),
    ("excluded-permute", WithOpaqueBlock, {"exclude": "block"}),
]
# (name, builder, what the one-line error must contain)
REFUSED = [
    ("standardized-weight", WSNet, ("conv2d", "'conv'", "--exclude conv")),
    ("pixel-shuffle", PixelShuffleNet, ("PixelShuffle", "'up'", "--exclude up")),
    ("channels-last", ChannelsLast, ("permute", "'block'", "--exclude block")),
    ("group-norm", GroupNormNet, ("GroupNorm", "'norm'", "hetero.register_op")),
    ("untraceable", Branchy, ("cannot trace", "'block'", "--exclude block")),
]
