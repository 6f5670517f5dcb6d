"""What the mobile families share: their three layouts, picked by the dataset's input size.

The paper trains its mobile networks on Tiny-ImageNet (64 px) and ImageNet (224 px); each family's
module says which strides its ``cifar``, ``tiny`` and ``imagenet`` layouts use (the authors' model files).
"""

from __future__ import annotations

__all__ = ["MOBILE_VARIANTS", "mobile_variant"]

MOBILE_VARIANTS = ("cifar", "tiny", "imagenet")


def mobile_variant(input_size: int) -> str:
    """The layout for an input size: <= 32 px CIFAR, <= 64 px Tiny-ImageNet, larger ImageNet."""
    return "cifar" if input_size <= 32 else "tiny" if input_size <= 64 else "imagenet"
