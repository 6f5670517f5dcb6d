"""Exact FLOPs and parameter counts, from a channel configuration (no forward pass).

Each model family lists its operations (:class:`Conv`, :class:`Linear`, :class:`BatchNorm`,
:class:`Act`) with their channel counts and spatial sizes; this module sums them in one of two
accountings:

- ``macs``: conv + fully-connected multiply-accumulates and their weights (+ biases). This is what
  the paper's reference search code counts (BN, ReLU and pooling are not counted).
- ``paper``: ``macs`` + batch norm (2 FLOPs per output element) + activation (1 per element,
  counted once per activation *module*) and BN's affine parameters. This reproduces the FLOPs and
  params in the paper's tables exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hetero.config import ChannelConfig

__all__ = [
    "ACCOUNTINGS", "Conv", "Linear", "BatchNorm", "Act", "Op", "Complexity",
    "count_ops", "complexity", "conv_out",
]

ACCOUNTINGS = ("macs", "paper")


@dataclass(frozen=True)
class Conv:
    cin: int
    cout: int
    kernel: int
    out_hw: tuple[int, int]
    groups: int = 1
    bias: bool = False


@dataclass(frozen=True)
class Linear:
    cin: int
    cout: int
    bias: bool = True


@dataclass(frozen=True)
class BatchNorm:
    channels: int
    hw: tuple[int, int]


@dataclass(frozen=True)
class Act:
    """One activation module; ``elements`` is the size of its (last) output, batch size 1."""

    elements: int


Op = Conv | Linear | BatchNorm | Act


@dataclass(frozen=True)
class Complexity:
    flops: int
    params: int


def conv_out(size: int, kernel: int, stride: int = 1, padding: int | None = None) -> int:
    """Spatial output size of a conv or pool (padding defaults to ``kernel // 2``)."""
    if padding is None:
        padding = kernel // 2
    return (size + 2 * padding - kernel) // stride + 1


def count_ops(ops: Iterable[Op], accounting: str = "macs") -> Complexity:
    """Sum FLOPs and params over an operation list in the chosen accounting."""
    if accounting not in ACCOUNTINGS:
        raise ValueError(f"unknown accounting {accounting!r}; choose one of {ACCOUNTINGS}")
    paper = accounting == "paper"
    flops = params = 0
    for op in ops:
        if isinstance(op, Conv):
            weights = op.kernel * op.kernel * (op.cin // op.groups) * op.cout
            flops += weights * op.out_hw[0] * op.out_hw[1]
            params += weights + (op.cout if op.bias else 0)
        elif isinstance(op, Linear):
            flops += op.cin * op.cout
            params += op.cin * op.cout + (op.cout if op.bias else 0)
        elif isinstance(op, BatchNorm):
            if paper:
                flops += 2 * op.channels * op.hw[0] * op.hw[1]
                params += 2 * op.channels
        elif isinstance(op, Act):
            if paper:
                flops += op.elements
        else:  # pragma: no cover - families only emit the four kinds above
            raise TypeError(f"unknown op {op!r}")
    return Complexity(flops=flops, params=params)


def complexity(config: ChannelConfig, accounting: str = "macs") -> Complexity:
    """FLOPs and params of the network described by ``config``."""
    from hetero.models.registry import get_family

    return count_ops(get_family(config.family).ops(config), accounting)
