"""Cost arithmetic: FLOPs and parameters as polynomials in the channel widths (a leaf module).

The channel graph (:mod:`hetero.graph`) turns every op of a network into terms of these
polynomials, once; evaluating them at any widths is then a few array products, which is what the
shrinker's bisection needs. Two accountings:

- ``macs``: conv + fully-connected multiply-accumulates and their weights (+ biases). What the
  paper's reference search code counts, and what targets are measured in.
- ``paper``: ``macs`` + batch norm (2 FLOPs per output element) + ReLU/ReLU6 (1 per element,
  counted once per activation *module*) and BN's affine parameters. This reproduces the FLOPs and
  params of the paper's tables.

``hetero.complexity(config)`` (the factory) counts a :class:`~hetero.config.ChannelConfig`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ACCOUNTINGS", "Complexity", "CostTerms", "CostModel"]

ACCOUNTINGS = ("macs", "paper")


@dataclass(frozen=True)
class Complexity:
    flops: int      # multiply-accumulates (+ BN and ReLU in the paper accounting)
    params: int


@dataclass
class CostTerms:
    """constant + sum(linear[u] * w[u]) + sum(product[u, v] * w[u] * w[v]), w the unit widths.

    Integer coefficients: FLOPs and params are counted exactly. The constant is what never
    changes with the widths (an excluded sub-module).
    """

    constant: int = 0

    linear: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    product: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))

    def add_linear(self, unit: int, coefficient: int) -> None:
        self.linear[unit] += coefficient

    def add_product(self, a: int, b: int, coefficient: int) -> None:
        self.product[(min(a, b), max(a, b))] += coefficient


class _Compiled:
    def __init__(self, terms: CostTerms) -> None:
        self.constant = int(terms.constant)
        self.lin_index = np.array(list(terms.linear), dtype=np.int64)
        self.lin_coef = np.array(list(terms.linear.values()), dtype=np.int64)
        pairs = list(terms.product)
        self.a = np.array([p[0] for p in pairs], dtype=np.int64)
        self.b = np.array([p[1] for p in pairs], dtype=np.int64)
        self.prod_coef = np.array(list(terms.product.values()), dtype=np.int64)

    def __call__(self, w: np.ndarray) -> int:
        total = self.constant
        if self.lin_index.size:
            total += self.lin_coef @ w[self.lin_index]
        if self.a.size:
            total += self.prod_coef @ (w[self.a] * w[self.b])
        return int(total)


class CostModel:
    """FLOPs and params of one network at any unit widths, in either accounting."""

    def __init__(self, terms: dict[str, CostTerms]) -> None:
        self._compiled = {key: _Compiled(t) for key, t in terms.items()}

    def __call__(self, widths: Sequence[int] | np.ndarray, accounting: str = "macs"
                 ) -> Complexity:
        if accounting not in ACCOUNTINGS:
            raise ValueError(f"unknown accounting {accounting!r}; choose one of {ACCOUNTINGS}")
        w = np.asarray(widths, dtype=np.int64)
        return Complexity(flops=self.metric(w, "flops", accounting),
                          params=self.metric(w, "params", accounting))

    def metric(self, widths: np.ndarray, metric: str, accounting: str = "macs") -> int:
        """One metric (``flops`` or ``params``) at unit ``widths``: the shrinker's inner loop."""
        return self._compiled[f"{accounting}_{metric}"](widths)
