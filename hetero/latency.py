"""Inference latency of a network on a device, measured with ``torch.utils.benchmark``.

:func:`measure_latency` is the one API for a network's own latency: a model, the input's
(channels, height, width), the device, and the batch sizes; it returns one :class:`Latency` per
batch size (median and IQR of the per-call time after a warm-up). Sweeps log it per trial.

:func:`latency_ratio` compares two networks: how many times slower one is than the other. On a
shared machine one network's timing drifts by tens of percent between seconds (other tenants,
frequency changes), so it times the two in interleaved blocks and takes the median of the
per-pair ratios: whatever slows one block of a pair slows the other alike and cancels. The
latency model (:mod:`hetero.latency_model`) times its layers and its candidates with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["Latency", "LatencyRatio", "measure_latency", "latency_ratio", "THROUGHPUT_BATCH"]

THROUGHPUT_BATCH = 64      # a batch large enough to fill a CPU's cores with these networks
WARMUP_CALLS = 3           # first calls pay for allocation and kernel selection (cudnn.benchmark)
SAMPLES = 9                # timed blocks per batch size: enough for quartiles
BLOCK_SECONDS = 0.02       # each block repeats the call to last about this long
RATIO_PAIRS = 41           # interleaved block pairs per latency_ratio


@dataclass(frozen=True)
class Latency:
    batch_size: int
    median_s: float        # seconds per forward call of the whole batch
    iqr_s: float           # interquartile range of the per-call time
    device: str

    @property
    def median_ms(self) -> float:
        return 1e3 * self.median_s

    @property
    def iqr_ms(self) -> float:
        return 1e3 * self.iqr_s

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.median_s


def measure_latency(model: nn.Module, input_shape: Sequence[int], *,
                    device: torch.device | str = "cpu",
                    batch_sizes: Sequence[int] = (1, THROUGHPUT_BATCH),
                    samples: int = SAMPLES, block_seconds: float = BLOCK_SECONDS,
                    threads: int | None = None) -> dict[int, Latency]:
    """Per batch size: median and IQR of ``model(x)`` (eval mode, no grad) on ``device``.

    ``input_shape`` is (channels, height, width). The model is moved to ``device`` and left
    there in eval mode. Each of ``samples`` blocks times enough calls to last about
    ``block_seconds``; median and IQR are over the blocks' per-call times.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    threads = threads or torch.get_num_threads()
    out = {}
    for batch in batch_sizes:
        timer = _warm_timer(model, torch.randn(batch, *input_shape, device=device), threads)
        with torch.no_grad():   # scoped: see _warm_timer
            number = _calls_per_block(timer, block_seconds)
            times = [timer.timeit(number).median for _ in range(samples)]
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        out[batch] = Latency(batch, float(median), float(q3 - q1), str(device))
    return out


@dataclass(frozen=True)
class LatencyRatio:
    """``model``'s latency over ``reference``'s: median and IQR of the interleaved pairs."""

    median: float
    iqr: float
    pairs: int


def latency_ratio(model: nn.Module, reference: nn.Module, input_shape: Sequence[int], *,
                  reference_shape: Sequence[int] | None = None,
                  device: torch.device | str = "cpu", batch_size: int = 1,
                  pairs: int = RATIO_PAIRS, block_seconds: float = BLOCK_SECONDS,
                  threads: int | None = None) -> LatencyRatio:
    """How many times slower ``model`` is than ``reference`` on ``device`` at ``batch_size``.

    ``input_shape`` (no batch) feeds ``model``, and ``reference`` too unless it has its own
    ``reference_shape``. Blocks of the two alternate (and which goes first alternates too), each
    about ``block_seconds`` long; the answer is the median over the ``pairs`` block ratios.
    """
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    timers = []
    for net, shape in ((model, input_shape), (reference, reference_shape or input_shape)):
        timer = _warm_timer(net.to(device).eval(),
                            torch.randn(batch_size, *shape, device=device), threads)
        with torch.no_grad():
            timers.append((timer, _calls_per_block(timer, block_seconds)))
    ratios = []
    with torch.no_grad():   # scoped: see _warm_timer
        for i in range(pairs):
            order = timers if i % 2 == 0 else timers[::-1]
            seconds = {id(t): t.timeit(n).median for t, n in order}
            ratios.append(seconds[id(timers[0][0])] / seconds[id(timers[1][0])])
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return LatencyRatio(float(median), float(q3 - q1), pairs)


def _warm_timer(model: nn.Module, x: torch.Tensor, threads: int):
    """A ``torch.utils.benchmark`` timer of ``model(x)`` after a few warm-up calls. The Timer
    synchronises CUDA itself around each measured block. Time it under ``torch.no_grad()``,
    scoped at the call: a Timer ``setup`` would run in this very thread and switch autograd off
    for the whole process (and every later training step)."""
    from torch.utils import benchmark

    with torch.no_grad():
        for _ in range(WARMUP_CALLS):
            model(x)
    return benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x},
                           num_threads=threads)


def _calls_per_block(timer, block_seconds: float) -> int:
    # A fixed number of blocks of this many calls, unlike blocked_autorange: on a busy machine
    # one slow block would otherwise fill the whole budget and leave a single sample (IQR 0).
    return max(1, int(block_seconds / max(timer.timeit(1).median, 1e-9)))
