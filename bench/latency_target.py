"""Latency-targeted shrinking: how close a re-timed derived network lands to its budget.

    python bench/latency_target.py [--model resnet20] [--targets 0.8 1.0 1.5] [--repeats 3]

Builds the device's latency model (per-layer table, cached in $HETERO_CACHE/latency), then per
target x the baseline's batch-1 latency: shrinks the 2x network with the model alone (open loop)
and with the timed loop (:func:`hetero.shrink_latency.shrink_to_latency`), and re-times both
derived networks against the baseline afresh: ``--repeats`` fresh copies, each timed in
interleaved blocks (:meth:`LatencyModel.timed_ratio`); the median of those is the figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from hetero.importance import score_channels
from hetero.latency_model import build_latency_model
from hetero.models import create_model, uniform, widen
from hetero.shrink import shrink_to_target
from hetero.shrink_latency import shrink_to_latency

FLOORS = {"remain_ratio": 0.1, "linear_ratio": 0.1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--targets", type=float, nargs="+", default=[0.8, 1.0, 1.5])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    print("command: python " + " ".join(sys.argv))
    cpu = torch.device("cpu")
    base = uniform(args.model, num_classes=10, input_size=args.input_size)
    wide = widen(base, 2.0)
    model = build_latency_model(wide, base, cpu)
    print(f"{model.device_name}: baseline {1e3 * model.base_seconds:.3f} ms, 2x "
          f"{1e3 * model.wide_seconds:.3f} ms (batch 1)")
    scores = score_channels("l1", create_model(config=wide), wide, [])

    def retime(config) -> str:
        ratios = [model.timed_ratio(create_model(config=config)).median
                  for _ in range(args.repeats)]
        ratio = statistics.median(ratios)
        return (f"{ratio:.3f} ({ratio / target - 1:+.1%}; copies "
                f"{', '.join(f'{r:.3f}' for r in ratios)})")

    for target in args.targets:
        open_loop = shrink_to_target(wide, scores, base_config=base, target=target,
                                     target_metric="latency", latency=model, **FLOORS)
        start = time.perf_counter()
        closed, timed, steps = shrink_to_latency(wide, scores, base_config=base, target=target,
                                                 latency=model, **FLOORS)
        seconds = time.perf_counter() - start
        trace = ", ".join(f"FLOPs {s.flops:.3f} -> timed {s.timed:.3f}" for s in steps)
        print(f"target {target:.2f}: model alone re-timed {retime(open_loop.config)}")
        print(f"    timed loop re-timed {retime(closed.config)}")
        print(f"    loop: {len(steps)} networks timed in {seconds:.1f} s: {trace}")


if __name__ == "__main__":
    main()
