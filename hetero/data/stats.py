"""Per-channel normalisation statistics: the paper datasets' fixed ones, and those computed
from decoded images (digits, image folders).
"""

from __future__ import annotations

import torch

# Reference code (option.py): the same statistics for CIFAR-10 and CIFAR-100.
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The reference code's Tiny-ImageNet loader (ofsoundof/dhp).
TINY_MEAN = (0.4802, 0.4481, 0.3975)
TINY_STD = (0.2302, 0.2265, 0.2262)


def _channel_stats(x: torch.Tensor, scale: float, chunk: int = 4096
                   ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images times ``scale`` (chunked: no full float copy)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].to(torch.float64)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = x.numel() / x.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple((mean * scale).tolist()), tuple((std * scale).tolist())
