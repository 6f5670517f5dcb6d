"""Latency as a cost the shrinker can target: a per-layer lookup table measured on the device.

The approach of NetAdapt: every conv and linear of the channel graph is rebuilt alone at the
input and output widths a candidate network gives it and timed at batch 1. A layer's time is a
staircase in its widths, not a line (on this CPU a 3x3 conv at 32x32 costs the same from 17 to
32 output channels and nearly twice as much at 33; PyTorch also switches convolution kernels on
the input's size), so the table holds the widths asked for, timed when first asked and cached
per device in ``$HETERO_CACHE/latency/``: a device times each layer shape once.

Timings on a shared machine drift by tens of percent between one minute and the next, and a
cached entry outlives the minute it was timed in. So no entry is an absolute time: each is the
layer's time over a fixed reference convolution timed in alternation with it
(:func:`hetero.latency.latency_ratio`), and entries timed at different moments stay comparable.
A network's prediction is the sum over its layers, mapped by one affine calibration through the
baseline (ratio 1) and the widened network (its ratio to the baseline, timed the same way); the
map absorbs what the table does not see (batch norms, activations, adds, framework overhead).

The model is a guide, not a measurement: a derived network's mix of widths is one it was never
calibrated on. :func:`shrink_to_latency` settles the answer on real timings: it times candidate
networks against the baseline and brackets the target along the shrinker's path (see there),
until the timed ratio is within ``LOOP_TOLERANCE`` of the target.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hetero.config import ChannelConfig
from hetero.graph import ChannelGraph, ConvOp, LinearOp
from hetero.latency import latency_ratio, measure_latency

__all__ = ["LatencyModel", "LatencyStep", "build_latency_model", "measure_network",
           "shrink_to_latency", "device_name"]

LAYER_PAIRS = (7, 0.002)        # (block pairs, seconds per block) timing a layer shape
REFERENCE = (16, 16)            # the reference: a 3x3 conv, 16 -> 16 channels, 16x16 input
NETWORK_BLOCKS = (15, 0.04)     # (blocks, seconds each) timing the baseline's latency
LOOP_TOLERANCE = 0.025          # timed ratio this close to the target: done (half the 5 % promise,
LOOP_STEPS = 12                 # leaving the other half to the timing's own spread)


@dataclass
class LatencyModel:
    """Predicted batch-1 latency (seconds) of the graph's network at any unit widths, and what
    the timed loop needs to check a prediction: the baseline network on the device."""

    graph: ChannelGraph
    layers: list[tuple[ConvOp | LinearOp, nn.Module]]   # every timed op and its wide module
    table: _Table
    baseline: nn.Module                     # the width-1.0 network: every timing is against it
    wide: ChannelConfig                     # the widened network the model was calibrated on
    base_seconds: float = float("nan")      # the baseline, timed end to end (median)
    wide_ratio: float = float("nan")        # the widened network's latency over the baseline's
    base_sum: float = 0.0                   # the table's sum at the baseline's widths
    slope: float = 0.0                      # calibration: ratio = 1 + slope * (sum - base_sum)
    _memo: dict[tuple[int, int, int], float] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.table.device

    @property
    def device_name(self) -> str:
        return device_name(self.device)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.wide.in_channels, self.wide.input_size, self.wide.input_size)

    def __call__(self, widths: Sequence[int] | np.ndarray) -> float:
        return self.base_seconds * self.ratio(widths)

    @property
    def wide_seconds(self) -> float:
        return self.base_seconds * self.wide_ratio

    def ratio(self, widths: Sequence[int] | np.ndarray) -> float:
        """Predicted latency at ``widths`` over the baseline's."""
        return 1.0 + self.slope * (self.table_sum(widths) - self.base_sum)

    def table_sum(self, widths: Sequence[int] | np.ndarray) -> float:
        """Sum of the layers' table entries at ``widths`` (in reference-convolution units)."""
        total = 0.0
        for i, (op, layer) in enumerate(self.layers):
            cin = self.graph.channels(op.inputs, widths)
            cout = self.graph.channels(op.output, widths)
            key = (i, cin, cout)
            if key not in self._memo:
                self._memo[key] = self.table.time(op, layer, cin, cout)
            total += self._memo[key]
        return total

    def timed_ratio(self, network: nn.Module):
        """``network``'s batch-1 latency over the baseline's, timed now on the model's device."""
        return latency_ratio(network, self.baseline, self.input_shape, device=self.device)

    def save(self) -> None:
        """Write the layer timings measured so far to the device's cache."""
        self.table.save()


def device_name(device: torch.device) -> str:
    """What the cache is keyed by: the GPU's name, or the CPU and the thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).replace(" ", "_")
    cpu = platform.processor() or platform.machine()
    return f"cpu-{cpu}-{torch.get_num_threads()}threads".replace(" ", "_")


def measure_network(model: nn.Module, config: ChannelConfig, device: torch.device) -> float:
    """Median batch-1 latency of a whole network, in seconds."""
    shape = (config.in_channels, config.input_size, config.input_size)
    samples, seconds = NETWORK_BLOCKS
    timing = measure_latency(model, shape, device=device, batch_sizes=(1,), samples=samples,
                             block_seconds=seconds)
    return timing[1].median_s


def build_latency_model(wide: ChannelConfig, base: ChannelConfig,
                        device: torch.device | str = "cpu") -> LatencyModel:
    """Time the two end points (and their layers, cached); return the calibrated model."""
    from hetero.models.factory import create_model, graph_of

    graph = graph_of(wide)
    wide_model = create_model(config=wide)
    layers = [(op, wide_model.get_submodule(op.path)) for op in graph.ops
              if isinstance(op, (ConvOp, LinearOp))]
    model = LatencyModel(graph, layers, _Table(torch.device(device)),
                         create_model(config=base).to(device).eval(), wide)
    base_sum, wide_sum = (model.table_sum(graph.unit_widths(dict(c.widths), c.in_channels))
                          for c in (base, wide))
    model.save()
    model.base_seconds = measure_network(model.baseline, base, model.device)
    model.wide_ratio = model.timed_ratio(wide_model).median
    model.base_sum = base_sum
    # Two points fix the map; a table that cannot tell them apart predicts the baseline's
    # latency everywhere. The slope stays positive: a network never gets faster by growing.
    spread = wide_sum - base_sum
    model.slope = max(model.wide_ratio - 1.0, 1e-3) / spread if spread > 1e-12 else 0.0
    return model


# ---------------------------------------------------------------------------- the loop
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


# ---------------------------------------------------------------------------- one layer
class _Table:
    """Layer timings of one device, cached in a JSON file (a device measures a shape once)."""

    def __init__(self, device: torch.device) -> None:
        from hetero.data import cache_dir

        self.device = device
        channels, size = REFERENCE
        self.reference = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.reference_shape = (channels, size, size)
        # The file names its reference: entries against another one would not compare.
        self.path = (Path(cache_dir()) / "latency"
                     / f"{device_name(device)}-ref{channels}x{size}.json")
        self.entries: dict[str, float] = (json.loads(self.path.read_text())
                                          if self.path.exists() else {})
        self.changed = False

    def time(self, op: ConvOp | LinearOp, layer: nn.Module, cin: int, cout: int) -> float:
        """``layer``'s op alone with ``cin`` input and ``cout`` output channels, timed against
        the reference convolution."""
        key = _key(op, layer, cin, cout)
        if key not in self.entries:
            module, shape = _standalone(op, layer, cin, cout)
            pairs, seconds = LAYER_PAIRS
            self.entries[key] = latency_ratio(
                module, self.reference, shape, reference_shape=self.reference_shape,
                device=self.device, pairs=pairs, block_seconds=seconds).median
            self.changed = True
        return self.entries[key]

    def save(self) -> None:
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries, indent=0, sort_keys=True))
            tmp.replace(self.path)
            self.changed = False


def _groups(op: ConvOp, cin: int) -> int:
    return 1 if op.group_width is None else cin // op.group_width


def _key(op: ConvOp | LinearOp, layer: nn.Module, cin: int, cout: int) -> str:
    """Everything the op's time depends on, and nothing else (not its place in a network)."""
    if isinstance(op, LinearOp):
        return f"linear {cin}->{cout} bias={op.bias}"
    return (f"conv {cin}->{cout} k={tuple(layer.kernel_size)} s={tuple(layer.stride)} "
            f"p={layer.padding} d={tuple(layer.dilation)} g={_groups(op, cin)} "
            f"bias={op.bias} {layer.padding_mode} in={tuple(op.in_size)}")


def _standalone(op: ConvOp | LinearOp, layer: nn.Module, cin: int, cout: int
                ) -> tuple[nn.Module, tuple]:
    """The layer alone at (cin, cout): a module like it and its input shape (no batch)."""
    from hetero.surgery import conv_like, linear_like

    if isinstance(op, LinearOp):
        return linear_like(layer, cin, cout), (cin,)
    return conv_like(layer, cin, cout, _groups(op, cin)), (cin, *op.in_size)
