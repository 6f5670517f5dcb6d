"""A trained network as users feed it: raw images scaled to [0, 1] in, logits out.

hetero trains on normalised images (per-channel mean and std of the dataset, see
:mod:`hetero.data`). A network handed to someone else must not depend on them knowing those
numbers, so a logged or exported network carries them as its first layer: ``Normalize`` (buffers,
so they travel in the state dict and into ONNX, TorchScript and pt2 graphs as constants).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Normalize", "with_normalization", "NETWORK", "PREPROCESS"]

PREPROCESS, NETWORK = "normalize", "network"   # the two children of a deployable network


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel of an N x C x H x W batch scaled to [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need one value per "
                             "channel, std > 0")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def with_normalization(network: nn.Module, mean: Sequence[float], std: Sequence[float]
                       ) -> nn.Sequential:
    """``network`` behind its input normalisation: ``net.normalize``, then ``net.network``
    (the bare network, which takes normalised images as during training)."""
    return nn.Sequential(OrderedDict([(PREPROCESS, Normalize(mean, std)), (NETWORK, network)]))
