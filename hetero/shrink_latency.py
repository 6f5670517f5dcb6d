"""The timed loop: shrink a widened network until its batch-1 latency, timed on the device, is
a target times the baseline's.

The latency model (:mod:`hetero.latency_model`) is a guide, not a measurement: a derived
network's mix of widths is one it was never calibrated on. :func:`shrink_to_latency` settles
the answer on real timings: it times candidate networks against the baseline and brackets the
target along the shrinker's path (see there), until the timed ratio is within
``LOOP_TOLERANCE`` of the target.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hetero.config import ChannelConfig

if TYPE_CHECKING:
    from hetero.latency_model import LatencyModel

__all__ = ["LatencyStep", "shrink_to_latency"]

LOOP_TOLERANCE = 0.025          # timed ratio this close to the target: done (half the 5 % promise,
LOOP_STEPS = 12                 # leaving the other half to the timing's own spread)


@dataclass(frozen=True)
class LatencyStep:
    flops: float        # the FLOPs target this network was shrunk to (x the baseline's FLOPs)
    timed: float        # its latency over the baseline's, as timed
    spread: float       # IQR of that ratio over its interleaved pairs


def shrink_to_latency(wide: ChannelConfig, scores, *, base_config: ChannelConfig,
                      target: float, latency: LatencyModel,
                      tolerance: float = LOOP_TOLERANCE, steps: int = LOOP_STEPS, **options):
    """Shrink ``wide`` until the derived network, timed on the latency model's device, is
    ``target`` x the baseline's batch-1 latency within ``tolerance``.

    Whatever the metric, the shrinker's networks lie on one path: a global score threshold, so
    a cost target only says where on the path to stop. The loop walks that path by its FLOPs,
    which are exact and fine-grained, and lets the device say where the latency target lies:
    it times the two ends (every unit at its floor, the whole widened network; a target outside
    them is an error naming the timed range), starts from the FLOPs of the network the latency
    model picks, and then shrinks between two timed networks adjacent in FLOPs, one faster and
    one slower than the target, the pair next to the last timing (interpolating, kept off the
    pair's ends). Latency is only roughly monotone in FLOPs: a layer's time is a staircase in
    its widths, and on a CPU PyTorch switches a conv to a faster kernel (mkldnn) once its input
    grows past about 20k elements at batch 1, so a few more channels can even be faster and
    the timings can cross the target more than once (:func:`_crossing`). Where the target
    falls in a jump, the loop ends off its tolerance and warns; the best network it timed is
    kept.
    ``options`` go to :func:`hetero.shrink.shrink_to_target` (floors, divisor, ...).

    Returns the :class:`~hetero.shrink.ShrinkResult` timed closest to the target (its
    ``target_value`` is the latency asked for, in seconds), that network's timed ratio, and
    every step.
    """
    from dataclasses import replace

    from hetero.models.factory import complexity, create_model
    from hetero.shrink import TOLERANCE, reachable_range, shrink_to_target

    floor_options = {k: options[k] for k in ("remain_ratio", "linear_ratio", "divisor")
                     if k in options}
    if wide != latency.wide:
        raise ValueError("the latency model was calibrated on another widened network: build "
                         "it with build_latency_model(wide, base_config, device)")
    base_flops = complexity(base_config).flops
    history: list[LatencyStep] = []
    # widths -> timed ratio: one timing per network (the widened one was timed at calibration)
    seen: dict[tuple, float] = {_key_of(wide): latency.wide_ratio}

    def shrink(flops: float):
        return shrink_to_target(wide, scores, base_config=base_config, target=flops,
                                target_metric="flops", **options)

    def time_it(result, confirm: bool) -> float:
        key = _key_of(result.config)
        if key not in seen:
            timings = [latency.timed_ratio(create_model(config=result.config))]
            if confirm and abs(timings[0].median / target - 1) <= tolerance:
                # Within tolerance: confirm on a second copy before stopping, so that one
                # lucky timing does not end the search (fresh copies time a few % apart).
                timings.append(latency.timed_ratio(create_model(config=result.config)))
            seen[key] = float(np.mean([t.median for t in timings]))
            history.append(LatencyStep(result.flops / base_flops, seen[key],
                                       max(t.iqr for t in timings)))
        return seen[key]

    f_lo, f_hi = reachable_range(wide, base_config=base_config, **floor_options)
    floor_net, wide_net = shrink(f_lo), shrink(f_hi)
    # Brackets: (FLOPs, timed ratio, network), one timed too fast and one too slow.
    fast = (f_lo, time_it(floor_net, confirm=False), floor_net)
    slow = (f_hi, time_it(wide_net, confirm=False), wide_net)
    if not fast[1] * (1 - tolerance) <= target <= slow[1] * (1 + tolerance):
        raise ValueError(
            f"latency target {target:g} x the baseline is outside what this device times for "
            f"{wide.family}/{wide.variant}: every unit at its floor {fast[1]:.3f} x, the whole "
            f"widened network {slow[1]:.3f} x the baseline's batch-1 latency: "
            + ("lower remain_ratio / linear_ratio or raise the target" if target < fast[1]
               else "raise the width multiplier or lower the target"))
    best = min(((abs(r / target - 1), net, r) for _, r, net in (fast, slow)),
               key=lambda item: item[0])
    lo_m, hi_m = reachable_range(wide, base_config=base_config, target_metric="latency",
                                 latency=latency, **floor_options)
    result = shrink_to_target(wide, scores, base_config=base_config,
                              target=min(max(target, lo_m), hi_m), target_metric="latency",
                              latency=latency, **options)
    timed = [fast, slow]                    # every (FLOPs, timed ratio, network) so far
    exhausted: set[tuple[float, float]] = set()   # crossings with no other network inside

    def next_candidate(latest: float):
        while (crossing := _crossing(timed, target, latest=latest, band=2 * TOLERANCE,
                                     exhausted=exhausted)) is not None:
            (f0, r0, _), (f1, r1, _) = crossing
            share = (target - r0) / (r1 - r0)
            candidate = shrink(f0 + min(max(share, 0.25), 0.75) * (f1 - f0))
            if _key_of(candidate.config) not in seen:
                return candidate
            exhausted.add((min(f0, f1), max(f0, f1)))
        return None

    for _ in range(max(1, steps)):
        ratio = time_it(result, confirm=True)
        miss = abs(ratio / target - 1)
        if miss < best[0]:
            best = (miss, result, ratio)
        if miss <= tolerance:
            break
        timed.append((result.flops / base_flops, ratio, result))
        result = next_candidate(latest=timed[-1][0])
        if result is None:
            break
    if best[0] > tolerance:
        crossing = _crossing(timed, target, latest=best[1].flops / base_flops, band=0.0,
                             exhausted=set())
        if crossing is not None:
            best = min(best, _off_the_path(*crossing, target, latency, time_it, wide, scores,
                                           base_config, options), key=lambda item: item[0])
    latency.save()
    miss, result, ratio = best
    if miss > tolerance:
        # Said, not hidden: the trial still runs (its timed ratio is logged), but a user
        # reading only the target would otherwise believe it was met.
        trace = ", ".join(f"{s.flops:.3f} -> {s.timed:.3f}" for s in history)
        warnings.warn(f"latency target {target:g}: the closest derived network times "
                      f"{ratio:.3f} x the baseline ({ratio / target - 1:+.1%}) after "
                      f"{len(history)} shrinks (FLOPs -> timed: {trace}); between those "
                      "networks no other global threshold exists, latency is not monotone there, "
                      "or timing drifted",
                      stacklevel=2)
    return replace(result, target_value=float(target) * latency.base_seconds), ratio, history


def _key_of(config: ChannelConfig) -> tuple:
    return tuple(sorted(config.widths.items()))


def _crossing(timed, target: float, *, latest: float, band: float, exhausted: set):
    """Two networks adjacent in FLOPs among those timed, one faster and one slower than the
    target, the pair nearest ``latest`` (FLOPs), wider than ``band`` (relative FLOPs) and not
    ``exhausted`` (known to hold no other network).

    Latency is not monotone in FLOPs along the path (CPU kernel switches), so the timings can
    cross the target more than once; searching the crossing next to the last timing keeps the
    search local instead of trusting a single bracket."""
    points = sorted(timed, key=lambda point: point[0])
    pairs = [(a, b) for a, b in itertools.pairwise(points)
             if (a[1] - target) * (b[1] - target) < 0 and b[0] - a[0] > band * b[0]
             and (a[0], b[0]) not in exhausted]
    if not pairs:
        return None
    a, b = min(pairs, key=lambda pair: min(abs(pair[0][0] - latest), abs(pair[1][0] - latest)))
    return (a, b) if a[1] < b[1] else (b, a)     # (the faster, the slower)


def _off_the_path(fast, slow, target, latency, time_it, wide, scores, base_config, options):
    """The last resort when the two bracketing networks are neighbours on the threshold path
    and the target falls in the jump between them (one unit crossing a kernel's tile): ask
    the latency model for the point between them it predicts, mapped through their timings.
    The model sees each layer's staircase, so its fine adjustment grows the fast network one
    channel at a time in units whose next channel does not cross a tile."""
    from hetero.shrink import shrink_to_target

    (_, r0, net0), (_, r1, net1) = fast, slow
    m0, m1 = (latency.ratio(latency.graph.unit_widths(dict(n.config.widths),
                                                       n.config.in_channels))
              for n in (net0, net1))
    if not (m1 > m0 and r1 > r0):
        return (float("inf"), None, None)
    asked = m0 + (target - r0) * (m1 - m0) / (r1 - r0)
    try:
        result = shrink_to_target(wide, scores, base_config=base_config, target=asked,
                                  target_metric="latency", latency=latency, **options)
    except ValueError:              # no network in the model's band: nothing off the path
        return (float("inf"), None, None)
    ratio = time_it(result, confirm=True)
    return (abs(ratio / target - 1), result, ratio)
