"""Latency-targeted shrinking: how close a re-timed derived network lands to its budget.

    python bench/latency_target.py [--model resnet20] [--targets 0.8 1.0 1.5] [--rounds 5]

Builds the device's latency model (per-layer table, cached in $HETERO_CACHE/latency), shrinks
the 2x network to each target x the baseline's batch-1 latency, then times the baseline and the
derived network in alternation (``--rounds`` times, so drift hits both) and prints the median
ratio against the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from hetero.importance import score_channels
from hetero.latency_model import build_latency_model, measure_network
from hetero.models import create_model, graph_of, uniform, widen
from hetero.shrink import shrink_to_target


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--targets", type=float, nargs="+", default=[0.8, 1.0, 1.5])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    print("command: python " + " ".join(sys.argv))
    cpu = torch.device("cpu")
    base = uniform(args.model, num_classes=10, input_size=args.input_size)
    wide = widen(base, 2.0)
    model = build_latency_model(graph_of(wide), wide, base, cpu)
    print(f"{model.device}: baseline {1e3 * model.base_seconds:.3f} ms, 2x "
          f"{1e3 * model.wide_seconds:.3f} ms (batch 1)")
    scores = score_channels("l1", create_model(config=wide), wide, [])
    base_net = create_model(config=base)
    for target in args.targets:
        result = shrink_to_target(wide, scores, base_config=base, target=target,
                                  target_metric="latency", latency=model, remain_ratio=0.1,
                                  linear_ratio=0.1)
        derived = create_model(config=result.config)
        ratios = [measure_network(derived, result.config, cpu)
                  / measure_network(base_net, base, cpu) for _ in range(args.rounds)]
        ratio = statistics.median(ratios)
        print(f"target {target:.2f} x baseline latency: re-timed {ratio:.3f} "
              f"({ratio / target - 1:+.1%}); rounds {', '.join(f'{r:.3f}' for r in ratios)}")


if __name__ == "__main__":
    main()
