"""Latency as a cost the shrinker can target, from a per-layer table measured once per device.

The approach of NetAdapt and once-for-all: every conv and linear of the channel graph is rebuilt
alone and timed (batch 1, :func:`hetero.latency.measure_latency`) at a few widths; the timings
are cached per device in ``$HETERO_CACHE/latency/``, so a device measures each layer shape once.
Per layer, time = a + b x MACs (a least-squares line through its timings); the network's
predicted latency is the sum over layers, calibrated by one affine map fitted to the whole
widened and the whole baseline network timed end to end (this absorbs what the table does not
see: batch norms, activations, adds, framework overhead). The result is a polynomial in the unit
widths, like FLOPs, which the shrinker bisects.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hetero.complexity import CostModel, CostTerms
from hetero.config import ChannelConfig
from hetero.graph import ChannelGraph, ConvOp, LinearOp, add_macs
from hetero.latency import measure_latency

__all__ = ["LatencyModel", "build_latency_model", "measure_network", "device_name"]

SCALES = (0.25, 0.5, 1.0)       # widths each layer is timed at (fractions of the widened width)
LAYER_BLOCKS = (5, 0.01)        # (timed blocks, seconds each) per layer shape
NETWORK_BLOCKS = (15, 0.04)     # ... per whole network: its median is the calibration point


@dataclass
class LatencyModel:
    """Predicted batch-1 latency (seconds) at any unit widths; ``cost`` is its polynomial."""

    cost: CostModel
    device: str
    base_seconds: float             # the width-1.0 baseline, timed end to end
    wide_seconds: float             # the widened network, timed end to end

    def __call__(self, widths: Sequence[int] | np.ndarray) -> float:
        return self.cost.evaluate("latency", np.asarray(widths, dtype=np.int64))


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


def build_latency_model(graph: ChannelGraph, wide: ChannelConfig, base: ChannelConfig,
                        device: torch.device | str = "cpu") -> LatencyModel:
    """Time the layers (cached) and the two end points; return the calibrated model."""
    from hetero.models.factory import create_model

    device = torch.device(device)
    table = _Table(device)
    wide_model = create_model(config=wide)
    wide_widths = graph.unit_widths(dict(wide.widths), wide.in_channels)
    terms = CostTerms()
    for op in graph.ops:
        if isinstance(op, (ConvOp, LinearOp)):
            layer = wide_model.get_submodule(op.path)
            a, b = _fit(op, layer, graph, wide_widths, table)
            terms.constant += a
            add_macs(op, terms, b)
    table.save()
    raw = CostModel({"raw": terms}, len(graph.units))
    base_widths = graph.unit_widths(dict(base.widths), base.in_channels)
    predicted = [raw.evaluate("raw", np.asarray(w)) for w in (wide_widths, base_widths)]
    timed = [measure_network(m, c, device)
             for m, c in ((wide_model, wide), (create_model(config=base), base))]
    scale, offset = _affine(predicted, timed)
    calibrated = CostTerms(constant=scale * terms.constant + offset)
    for unit, value in terms.linear.items():
        calibrated.add_linear(unit, scale * value)
    for (u, v), value in terms.product.items():
        calibrated.add_product(u, v, scale * value)
    model = CostModel({"latency": calibrated}, len(graph.units))
    return LatencyModel(model, device_name(device), timed[1], timed[0])


def _affine(predicted: list[float], timed: list[float]) -> tuple[float, float]:
    # Two points fix the map; if the prediction cannot tell them apart, only shift it.
    if abs(predicted[0] - predicted[1]) < 1e-12:
        return 1.0, timed[1] - predicted[1]
    scale = (timed[0] - timed[1]) / (predicted[0] - predicted[1])
    scale = max(scale, 1e-3)  # latency never falls when a network grows
    return scale, timed[1] - scale * predicted[1]


# ---------------------------------------------------------------------------- one layer
def _scaled(widths: list[int], graph: ChannelGraph, scale: float) -> list[int]:
    out = list(widths)
    for unit in graph.free_units():
        step = unit.granularity
        out[unit.id] = max(step, int(widths[unit.id] * scale) // step * step)
    return out


def _standalone(op, layer: nn.Module, graph: ChannelGraph, widths: list[int]
                ) -> tuple[nn.Module, tuple, float]:
    """The layer alone at ``widths``: a module like it, its input shape (no batch), its MACs."""
    cin = graph.channels(op.inputs, widths)
    cout = graph.channels(op.output, widths)
    if isinstance(op, LinearOp):
        return nn.Linear(cin, cout, op.bias), (cin,), float(cin * cout)
    groups = 1 if op.group_width is None else cin // op.group_width
    conv = nn.Conv2d(cin, cout, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                     groups, op.bias, layer.padding_mode)
    macs = op.kernel * (cin // groups) * cout * op.out_hw
    return conv, (cin, *op.in_size), float(macs)


def _fit(op, layer: nn.Module, graph: ChannelGraph, wide_widths: list[int], table: _Table
         ) -> tuple[float, float]:
    """(a, b) of time = a + b * MACs for this layer, from its timings at SCALES."""
    points = []
    for scale in SCALES:
        module, shape, macs = _standalone(op, layer, graph, _scaled(wide_widths, graph, scale))
        points.append((macs, table.time(module, shape)))
    x, y = np.array(points).T
    if np.ptp(x) == 0:
        return float(y.mean()), 0.0
    b, a = np.polyfit(x, y, 1)
    b = max(float(b), 0.0)
    return float(y.mean() - b * x.mean()), b


class _Table:
    """Layer timings of one device, cached in a JSON file (a device measures a shape once)."""

    def __init__(self, device: torch.device) -> None:
        from hetero.data import cache_dir

        self.device = device
        self.path = Path(cache_dir()) / "latency" / f"{device_name(device)}.json"
        self.entries: dict[str, float] = (json.loads(self.path.read_text())
                                          if self.path.exists() else {})
        self.changed = False

    def time(self, module: nn.Module, shape: tuple) -> float:
        key = f"{module!r}|{shape}"
        if key not in self.entries:
            samples, seconds = LAYER_BLOCKS
            timing = measure_latency(module, shape, device=self.device, batch_sizes=(1,),
                                     samples=samples, block_seconds=seconds)
            self.entries[key] = timing[1].median_s
            self.changed = True
        return self.entries[key]

    def save(self) -> None:
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries, indent=0, sort_keys=True))
            tmp.replace(self.path)
