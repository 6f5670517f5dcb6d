"""Shrink a widened configuration back to a cost target: the allocator.

Given one score per channel of every unit, a single global threshold decides what stays (the
paper's mask rule: keep channel j of a unit iff its score >= min(threshold, the unit's k-th
largest score), k the unit's floor). The threshold is found by bisection so the derived net costs
``target`` times the *baseline's* (width 1.0) FLOPs or params, within ``tolerance``; a
deterministic fine adjustment then adds or removes single channels when one threshold step is
coarser than the tolerance band. Costs come from the channel graph's cost polynomial.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hetero.config import ChannelConfig
from hetero.trial import TARGET_METRICS

__all__ = ["ShrinkResult", "shrink_to_target", "reachable_range", "unit_floors",
           "uniform_width_at"]

TOLERANCE = 0.005       # the band around the target a derived network's cost must land in


@dataclass(frozen=True)
class ShrinkResult:
    config: ChannelConfig               # the derived network
    kept: dict[str, list[int]]          # layer -> sorted kept channel indices of the wide layer
    flops: int
    params: int
    target_value: float                 # absolute target: target * the baseline's metric
    # The bisection's global threshold; the fine adjustment may then have added or removed a
    # few single channels, so widths follow it only up to those steps.
    threshold: float
    reachable: tuple[int, int]          # (min, max) of the metric under the floors
    floors: dict[str, int] = field(default_factory=dict)  # unit key -> minimum width


def unit_floors(wide_config: ChannelConfig, *, remain_ratio: float = 0.4,
                linear_ratio: float = 0.45, divisor: int = 1) -> dict[str, int]:
    """Minimum width per unit: max(int(n*rho), 1); every unit the classifier reads uses tau.

    ``n`` is the *widened* width (the reference code's rule; the paper's Eq. 11 reads rho*c).
    A floor is rounded up to a multiple of the unit's step (``divisor``, and a grouped conv's
    group width), never above ``n``.
    """
    from hetero.models.factory import check_config

    for name, ratio in (("remain_ratio", remain_ratio), ("linear_ratio", linear_ratio)):
        if not 0 < ratio <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {ratio}: it is the share of a "
                             "layer's widened channels that always stays")
    graph = check_config(wide_config)
    floors = {}
    for unit in graph.free_units():
        n = wide_config.widths[unit.layers[0]]
        ratio = linear_ratio if unit.feeds_classifier else remain_ratio
        floors[unit.layers[0]] = _round_up(max(int(n * ratio), 1), unit.step(divisor), n)
    return floors


def _round_up(width: int, step: int, cap: int) -> int:
    return min(cap, -(-width // step) * step) if step > 1 else width


def reachable_range(wide_config: ChannelConfig, *, base_config: ChannelConfig,
                    target_metric: str = "flops", remain_ratio: float = 0.4,
                    linear_ratio: float = 0.45, divisor: int = 1,
                    accounting: str = "macs", latency=None) -> tuple[float, float]:
    """(lowest, highest) reachable cost as fractions of the baseline's: every unit at its floor,
    and the whole widened net. Targets in this closed range are accepted by shrink_to_target."""
    costing = _Costing(wide_config, base_config, target_metric, accounting, latency)
    floors = unit_floors(wide_config, remain_ratio=remain_ratio, linear_ratio=linear_ratio,
                         divisor=divisor)
    return costing(floors) / costing.base, costing(costing.full) / costing.base


# Uniform widths are searched on this grid: 1e-4 resolves one channel of a 10,000-wide layer.
WIDTH_RESOLUTION = 1e-4


def uniform_width_at(base_config: ChannelConfig, target: float, *, target_metric: str = "flops",
                     divisor: int = 1, accounting: str = "macs") -> float:
    """The uniform width multiplier whose network costs closest to ``target`` x the baseline's.

    The uniform arm at an LW-DNA's exact cost (a control, not only a grid of widths). Widths
    truncate to whole channels, so the cost is a step function of the multiplier: of the two
    steps around the target, the closer one; the smallest multiplier (on a 1e-4 grid) that
    builds it.
    """
    from hetero.models.factory import complexity, widen

    if target_metric not in ("flops", "params") or not target > 0:
        raise ValueError(f"a uniform width matches a positive FLOPs or params target, got "
                         f"{target_metric} {target}")

    def cost(step: int) -> float:
        config = widen(base_config, step * WIDTH_RESOLUTION, divisor=divisor)
        return getattr(complexity(config, accounting), target_metric)

    goal = target * cost(round(1 / WIDTH_RESOLUTION))
    lo, hi = 1, round(16 / WIDTH_RESOLUTION)           # cost(lo) may exceed goal; cost(hi) >= goal
    if cost(hi) < goal:
        raise ValueError(f"no uniform width up to 16 reaches {target} x the baseline's "
                         f"{target_metric}")
    while hi - lo > 1:                                  # smallest step with cost >= goal
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) < goal else (lo, mid)
    above = hi if cost(lo) < goal else lo
    below = _first_step_of(cost, above - 1) if above > 1 else above
    best = min((below, above), key=lambda step: (abs(cost(step) - goal), step))
    return round(best * WIDTH_RESOLUTION, 4)


def _first_step_of(cost, step: int) -> int:
    """The smallest grid step with the same cost as ``step`` (a cost plateau's start)."""
    value, lo, hi = cost(step), 1, step
    while hi - lo > 0:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if cost(mid) < value else (lo, mid)
    return lo


class _Costing:
    """The chosen metric of ``wide`` with some unit widths replaced: the graph's cost polynomial
    (or the latency model's, for ``latency``) evaluated at a width vector (no forward pass)."""

    def __init__(self, wide: ChannelConfig, base: ChannelConfig, metric: str,
                 accounting: str, latency=None) -> None:
        from hetero.models.factory import check_config, complexity

        if metric not in TARGET_METRICS:
            raise ValueError(f"target_metric must be one of {TARGET_METRICS}, got {metric!r}")
        if metric == "latency" and latency is None:
            raise ValueError("target_metric latency needs the device's latency model: pass "
                             "latency=hetero.latency_model.build_latency_model(...)")
        if (wide.family, wide.variant, wide.layers) != (base.family, base.variant, base.layers):
            raise ValueError(f"base_config ({base.family}/{base.variant}) is not the width-1.0 "
                             f"network of the widened {wide.family}/{wide.variant}: pass "
                             "uniform(family, variant, ...) built for the same input")
        self.wide, self.base_config, self.metric, self.accounting = wide, base, metric, accounting
        self.graph = check_config(wide)
        self.units = {u.layers[0]: u for u in self.graph.free_units()}
        self.full = {key: wide.widths[key] for key in self.units}
        self.vector = np.array(self.graph.unit_widths(dict(wide.widths), wide.in_channels))
        self.latency = latency
        # A latency target is a fraction of the baseline as timed on the device.
        self.base = (latency.base_seconds if metric == "latency"
                     else getattr(complexity(base, accounting), metric))

    def config(self, widths: dict[str, int]) -> ChannelConfig:
        return self.wide.with_unit_widths(widths)

    def __call__(self, widths: dict[str, int]) -> float:
        vector = self.vector.copy()
        for key, width in widths.items():
            vector[self.units[key].id] = width
        if self.metric == "latency":
            return self.latency(vector)
        return self.graph.cost.metric(vector, self.metric, self.accounting)


def shrink_to_target(wide_config: ChannelConfig, scores: dict[str, torch.Tensor], *,
                     base_config: ChannelConfig, target: float = 1.0,
                     target_metric: str = "flops", remain_ratio: float = 0.4,
                     linear_ratio: float = 0.45, divisor: int = 1,
                     width_mult: float | None = None, tolerance: float = TOLERANCE,
                     accounting: str = "macs", latency=None) -> ShrinkResult:
    """Keep the best-scored channels so the derived net costs ``target`` x the baseline's.

    ``target_metric="latency"`` shrinks to ``target`` x the baseline's measured batch-1 latency
    with ``latency``, a :class:`~hetero.latency_model.LatencyModel` of the device.

    ``scores`` maps each unit's first layer name to one score per widened channel (higher =
    more important; signs are ignored). Raises ``ValueError`` when the target is outside the
    range the floors and the widened network allow, or when the granularity of single channels
    cannot meet ``tolerance``.
    """
    if not target > 0 or not tolerance >= 0:
        raise ValueError(f"target must be > 0 and tolerance >= 0, got {target}, {tolerance}")
    costing = _Costing(wide_config, base_config, target_metric, accounting, latency)
    floors = unit_floors(wide_config, remain_ratio=remain_ratio, linear_ratio=linear_ratio,
                         divisor=divisor)
    search = _Search(costing, _ranked_scores(costing, scores), floors, divisor)
    target_value = float(target) * costing.base
    lo, hi = costing(floors), costing(costing.full)
    _check_reachable(target, target_value, (lo, hi), costing, width_mult,
                     (remain_ratio, linear_ratio))
    band = tolerance * target_value
    widths, threshold = search.bisect(target_value, band)
    if widths is None:
        raise ValueError(_granularity_message(search, target_value, tolerance, costing))
    derived = costing.config(widths)
    from hetero.models.factory import complexity

    cost = complexity(derived, accounting)
    return ShrinkResult(
        config=derived, kept=search.kept(widths), flops=cost.flops, params=cost.params,
        target_value=target_value, threshold=threshold, reachable=(lo, hi), floors=floors,
    )


Ranked = dict[str, tuple[np.ndarray, np.ndarray]]


def _ranked_scores(costing: _Costing, scores: dict[str, torch.Tensor]) -> Ranked:
    """Unit key -> its channel indices, best first (ties: lower index first), and their scores.

    A grouped conv's unit is pruned in whole groups: every channel carries its group's summed
    score, so a group's channels rank (and are kept) together.
    """
    ranked = {}
    for key, unit in costing.units.items():
        n = costing.full[key]
        if key not in scores:
            raise ValueError(f"no scores for unit {key!r}; score_channels() gives one vector per "
                             "unit of the widened configuration")
        values = torch.as_tensor(scores[key]).detach().double().abs().flatten().cpu().numpy()
        if values.shape != (n,) or not np.isfinite(values).all():
            raise ValueError(f"scores for unit {key!r} must be {n} finite values (its widened "
                             f"width), got shape {values.shape}")
        if unit.granularity > 1:
            values = np.repeat(values.reshape(-1, unit.granularity).sum(1), unit.granularity)
        order = np.argsort(-values, kind="stable")
        ranked[key] = (order, values[order])
    return ranked


def _check_reachable(target, target_value, reach, costing, width_mult, ratios) -> None:
    lo, hi = reach
    slack = 1e-9 * costing.base  # target = reachable_range()[0] must be accepted exactly
    if lo - slack <= target_value <= hi + slack:
        return
    metric = {"flops": "FLOPs", "params": "params", "latency": "seconds"}[costing.metric]
    wide = costing.wide
    width = width_mult if width_mult is not None else _apparent_width(costing)
    where = (f"for {wide.family}/{wide.variant} at width {width:g} (reachable "
             f"{lo / costing.base:.3f}-{hi / costing.base:.3f} of the baseline, i.e. "
             f"{lo:.4g}-{hi:.4g} {metric})")
    if target_value < lo:
        raise ValueError(
            f"target {target:.3f} of the baseline {metric} ({target_value:.4g}) is below what "
            f"the floors allow ({lo / costing.base:.3f}) {where}: lower remain_ratio "
            f"(rho={ratios[0]}) / linear_ratio (tau={ratios[1]}) or raise the target")
    raise ValueError(
        f"target {target:.3f} of the baseline {metric} ({target_value:.4g}) is above the "
        f"widened network's cost ({hi / costing.base:.3f}) {where}: raise width_mult or lower "
        "the target")


def _apparent_width(costing: _Costing) -> float:
    return sum(costing.wide.widths.values()) / sum(costing.base_config.widths.values())


def _granularity_message(search, target_value, tolerance, costing) -> str:
    wide = costing.wide
    return (f"cannot get within ±{tolerance:.2%} of the target ({target_value:.4g} "
            f"{costing.metric}) for {wide.family}/{wide.variant}: no combination of single-channel "
            f"steps (divisor={search.divisor}) lands in the band; raise tolerance, lower divisor "
            "or use a larger input size, where one channel is a smaller share of the cost")


class _Search:
    """Unit widths as a function of a global threshold, plus single-channel adjustments."""

    def __init__(self, costing: _Costing, ranked: Ranked, floors: dict[str, int],
                 divisor: int) -> None:
        self.costing, self.ranked, self.floors = costing, ranked, floors
        self.divisor = max(int(divisor), 1)
        self.steps = {key: unit.step(divisor) for key, unit in costing.units.items()}
        # Ascending copies for counting "scores >= t" with a binary search.
        self.ascending = {key: values[::-1].copy() for key, (_, values) in ranked.items()}

    def widths_at(self, threshold: float) -> dict[str, int]:
        widths = {}
        for key, values in self.ascending.items():
            above = len(values) - int(np.searchsorted(values, threshold, side="left"))
            widths[key] = self._snap(key, max(self.floors[key], above))
        return widths

    def _snap(self, key: str, width: int) -> int:
        return _round_up(width, self.steps[key], self.costing.full[key])

    def kept(self, widths: dict[str, int]) -> dict[str, list[int]]:
        kept_per_unit = {key: sorted(self.ranked[key][0][:w].tolist()) for key, w in widths.items()}
        unit_of = {name: unit[0] for unit in self.costing.wide.units() for name in unit}
        return {name: list(kept_per_unit[unit_of[name]]) for name in self.costing.wide.layers}

    def bisect(self, target: float, band: float) -> tuple[dict[str, int] | None, float]:
        """Widths within ``band`` of ``target`` (None if none found) and the threshold used."""
        thresholds = np.unique(np.concatenate(list(self.ascending.values())))
        thresholds = np.append(thresholds, np.inf)  # +inf: every unit at its floor
        lo, hi = 0, len(thresholds) - 1              # invariant: cost(hi) <= target
        if self.costing(self.widths_at(thresholds[0])) <= target:
            hi = 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.costing(self.widths_at(thresholds[mid])) <= target:
                hi = mid
            else:
                lo = mid
        below = self.widths_at(thresholds[hi])
        above = self.widths_at(thresholds[hi - 1]) if hi > 0 else None
        return self._settle(below, above, target, band), float(thresholds[hi])

    def _settle(self, below, above, target, band) -> dict[str, int] | None:
        """The closer in-band neighbour of the threshold step, else a fine adjustment."""
        candidates = [w for w in (below, above) if w is not None]
        in_band = [w for w in candidates if abs(self.costing(w) - target) <= band]
        if in_band:
            return min(in_band, key=lambda w: abs(self.costing(w) - target))
        adjusted = self._adjust(below, target, band, grow=True)
        if adjusted is None and above is not None:
            adjusted = self._adjust(above, target, band, grow=False)
        return adjusted

    def _adjust(self, widths, target, band, *, grow: bool) -> dict[str, int] | None:
        """Add (grow) or remove one unit step at a time, best (grow) or worst channel first,
        taking only steps that do not jump past the band; None when stuck outside it."""
        widths = dict(widths)
        for _ in range(sum(self.costing.full.values())):
            cost = self.costing(widths)
            if abs(cost - target) <= band:
                return widths
            if (cost < target) != grow:
                return None
            step = self._fitting_step(widths, target, band, grow)
            if step is None:
                return None
            widths = step
        return None

    def _fitting_step(self, widths, target, band, grow: bool) -> dict[str, int] | None:
        for key in self._step_order(widths, grow):
            trial = {**widths, key: self._next_width(key, widths[key], grow)}
            cost = self.costing(trial)
            if (grow and cost <= target + band) or (not grow and cost >= target - band):
                return trial
        return None

    def _step_order(self, widths: dict[str, int], grow: bool) -> list[str]:
        """Units that can step, by the score of the channel that would enter (best first) or
        leave (worst first); ties by forward order."""
        movable = []
        for key, width in widths.items():
            values = self.ranked[key][1]
            if grow and width < self.costing.full[key]:
                movable.append((-values[width], key))
            elif not grow and width > self.floors[key]:
                movable.append((values[width - 1], key))
        order = {key: i for i, key in enumerate(widths)}
        return [key for _, key in sorted(movable, key=lambda item: (item[0], order[item[1]]))]

    def _next_width(self, key: str, width: int, grow: bool) -> int:
        if grow:
            return self._snap(key, width + 1)
        step = self.steps[key]
        lower = (width - 1) // step * step if step > 1 else width - 1
        return max(self.floors[key], lower)
