"""What several families share: the conv-BN-activation unit, the inverted-residual block, the
conv squeeze-excitation and the one initialisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ConvBN", "InvertedResidual", "SqueezeExcite", "init_weights"]


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional activation module."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act(inplace=True) if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """[1x1 expand] -> kxk depthwise -> [SE] -> 1x1 linear projection, + input if kept.

    The block of MobileNetV2 (ReLU6, 3x3, no SE), MnasNet (ReLU, 3x3 or 5x5, no SE) and
    MobileNetV3 (ReLU or h_swish, optional SE). ``se`` builds the gate for the expanded width.
    """

    def __init__(self, cin: int, hidden: int, cout: int, *, kernel: int = 3, stride: int = 1,
                 act: type[nn.Module] = nn.ReLU,
                 se: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        # No expansion where the widths already match (MobileNetV2's t = 1 block, MobileNetV3's
        # first block).
        self.expand = ConvBN(cin, hidden, 1, act=act) if hidden != cin else None
        self.dw = ConvBN(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.se = se(hidden) if se is not None else None
        self.project = ConvBN(hidden, cout, 1, act=None)
        # Decided at the regular widths and kept: the add is part of the architecture.
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.dw(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return x + out if self.residual else out


class SqueezeExcite(nn.Module):
    """Gate channels by sigmoid(conv(act(conv(global mean)))); the gate multiplies the input.

    The 1x1 convs carry biases, and ``squeeze`` is the caller's (RegNet-Y and EfficientNet
    squeeze to their *block input* width // 4). ``act`` is built as ConvBN builds its
    activation, ``act(inplace=True)``.
    """

    def __init__(self, width: int, squeeze: int, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(width, squeeze, 1)
        self.act = act(inplace=True)
        self.expand = nn.Conv2d(squeeze, width, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """The one initialisation every network gets, both arms alike (the factory applies it to
    built-in, torchvision and user networks): He (fan-out) convs with zero biases, BN at (1, 0),
    PyTorch's default for linears. The built-in constructors do not initialise: the factory owns
    it, so a built-in network starts exactly as a torchvision or user one does."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
        elif isinstance(m, nn.Linear):
            m.reset_parameters()
