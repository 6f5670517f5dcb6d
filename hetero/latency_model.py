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
calibrated on. :func:`hetero.shrink_latency.shrink_to_latency` settles the answer on real
timings (the timed loop, in its own module).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hetero.config import ChannelConfig
from hetero.graph import ChannelGraph, ConvOp, LinearOp
from hetero.latency import latency_ratio, measure_latency
from hetero.shrink_latency import LatencyStep, shrink_to_latency

# shrink_to_latency and LatencyStep (the timed loop) live in hetero.shrink_latency; they stay
# importable from here, where they were first.
__all__ = ["LatencyModel", "LatencyStep", "build_latency_model", "measure_network",
           "shrink_to_latency", "device_name"]

LAYER_PAIRS = (7, 0.002)        # (block pairs, seconds per block) timing a layer shape
REFERENCE = (16, 16)            # the reference: a 3x3 conv, 16 -> 16 channels, 16x16 input
NETWORK_BLOCKS = (15, 0.04)     # (blocks, seconds each) timing the baseline's latency


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
