"""The paper's Table 1 networks: cost against the paper, channel-graph derivation and shrink time.

    python bench/table1.py [--width-mult 2] [--target 1.0] [--markdown]

For every Table 1 row: FLOPs and params in the paper accounting (from the channel graph, no
forward pass) against the paper's, the time to derive the channel graph (torch.fx trace, shape
propagation, the walk), and the time to shrink the widened network to ``--target`` of the
baseline's FLOPs with L1 scores (the allocator alone: scoring cost is in bench/search_cost.py).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from hetero.importance import score_channels
from hetero.models import complexity, create_model, uniform, widen
from hetero.models.factory import _graph
from hetero.paper import TABLE1
from hetero.shrink import shrink_to_target


def measure(row, width_mult: float, target: float) -> dict:
    _graph.cache_clear()  # time a cold derivation
    start = time.perf_counter()
    base = uniform(row.model, num_classes=row.num_classes, input_size=row.input_size)
    derive_s = time.perf_counter() - start
    cost = complexity(base, "paper")
    wide = widen(base, width_mult)
    scores = score_channels("l1", create_model(config=wide), wide, [])
    start = time.perf_counter()
    result = shrink_to_target(wide, scores, base_config=base, target=target)
    shrink_s = time.perf_counter() - start
    return {"row": row, "gflops": cost.flops / 1e9, "mparams": cost.params / 1e6,
            "derive_s": derive_s, "shrink_s": shrink_s, "units": len(base.units()),
            "reached": result.flops / complexity(base).flops}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width-mult", type=float, default=2.0)
    p.add_argument("--target", type=float, default=1.0)
    p.add_argument("--markdown", action="store_true", help="print the README's table")
    args = p.parse_args()
    torch.set_num_threads(1)
    print("command: python " + " ".join(sys.argv))
    rows = [measure(row, args.width_mult, args.target) for row in TABLE1]
    if args.markdown:
        print("| dataset (input) | network | `--model` | ours FLOPs [G] / params [M] | paper | "
              "difference |")
        print("| --- | --- | --- | --- | --- | --- |")
    for m in rows:
        r = m["row"]
        df, dp = m["gflops"] / r.gflops - 1, m["mparams"] / r.mparams - 1
        if args.markdown:
            print(f"| {r.dataset} ({r.input_size}) | {r.network} | `{r.model}` | "
                  f"{m['gflops']:.4f} / {m['mparams']:.3f} | {r.gflops:.4f} / {r.mparams:.3f} | "
                  f"{df:+.2%} / {dp:+.2%} |")
        else:
            print(f"{r.dataset:<14} {r.network:<18} {m['gflops']:.4f} G ({df:+.2%}) "
                  f"{m['mparams']:.3f} M ({dp:+.2%})  units {m['units']:>3}  graph "
                  f"{m['derive_s']:.2f} s  shrink to {args.target:g} (w{args.width_mult:g}) "
                  f"{m['shrink_s']:.2f} s -> {m['reached']:.4f}")


if __name__ == "__main__":
    main()
