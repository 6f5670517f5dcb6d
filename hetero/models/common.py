"""What several families share: the conv-BN-activation unit and the one initialisation."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBN", "init_weights"]


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


@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """The one initialisation every network gets, both arms alike (the factory applies it to
    built-in, torchvision and user networks): He (fan-out) convs with zero biases, BN at (1, 0),
    PyTorch's default for linears."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
        elif isinstance(m, nn.Linear):
            m.reset_parameters()
