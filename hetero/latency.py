"""Inference latency of a network on a device, measured with ``torch.utils.benchmark``.

:func:`measure_latency` is the one API: a model, the input's (channels, height, width), the
device, and the batch sizes; it returns one :class:`Latency` per batch size (median and IQR of
the per-call time after a warm-up). Sweeps log it per trial; a latency-targeted shrinker can call
it on candidate networks or single layers the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["Latency", "measure_latency", "THROUGHPUT_BATCH"]

THROUGHPUT_BATCH = 64      # a batch large enough to fill a CPU's cores with these networks
WARMUP_CALLS = 3           # first calls pay for allocation and kernel selection (cudnn.benchmark)
SAMPLES = 9                # timed blocks per batch size: enough for quartiles
BLOCK_SECONDS = 0.02       # each block repeats the call to last about this long


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
    from torch.utils import benchmark

    device = torch.device(device)
    model = model.to(device).eval()
    threads = threads or torch.get_num_threads()
    out = {}
    for batch in batch_sizes:
        x = torch.randn(batch, *input_shape, device=device)
        with torch.no_grad():
            for _ in range(WARMUP_CALLS):
                model(x)
        # Timer synchronises CUDA itself around each measured block.
        # No grad for the timed calls, scoped here: a Timer `setup` runs in this very thread and
        # would switch autograd off for the whole process (and every later training step).
        timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x},
                                num_threads=threads)
        with torch.no_grad():
            times = _block_times(timer, samples, block_seconds)
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        out[batch] = Latency(batch, float(median), float(q3 - q1), str(device))
    return out


def _block_times(timer, samples: int, block_seconds: float) -> list[float]:
    # A fixed number of blocks, unlike blocked_autorange: on a busy machine one slow block
    # would otherwise fill the whole budget and leave a single sample (IQR 0).
    once = timer.timeit(1).median
    number = max(1, int(block_seconds / max(once, 1e-9)))
    return [timer.timeit(number).median for _ in range(samples)]
