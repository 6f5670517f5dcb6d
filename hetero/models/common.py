"""The conv-BN-activation unit several hand-written families share."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBN"]


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
