"""Training step time of LW-DNAs against uniform networks, each timed alone: what "equal time"
means beside "equal FLOPs" (issue 16).

A sweep's ``images_per_second`` is measured while other trials share the cores; this times one
SGD step (forward, backward, update) of each network on its own, in interleaved blocks against the
width-1.0 uniform network (A B A B ..., the order alternating), and reports the median of the
per-pair ratios, so a drifting shared machine cancels out. The LW-DNAs are derived exactly as a
sweep's trials derive them (``hetero.method.derive``), on the same data.

    python bench/step_time.py                                  # the cifar10_ablation networks
    python bench/step_time.py --data digits --criteria dhp --seeds 0   # a quick CPU check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hetero.data import load_dataset  # noqa: E402
from hetero.materialize import materialize  # noqa: E402
from hetero.method import TrialSpec, derive  # noqa: E402
from hetero.models.factory import complexity, widen  # noqa: E402
from hetero.protocol import TrainProtocol  # noqa: E402

CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(CIFAR10), help="image folder, or 'digits'")
    p.add_argument("--fraction", type=float, default=0.02, help="training images used to score")
    p.add_argument("--criteria", nargs="+", default=["dhp", "random", "l1"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--widths", type=float, nargs="+", default=[1.25, 1.5],
                   help="uniform widths to time besides 1.0")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pairs", type=int, default=15, help="interleaved A/B blocks per network")
    p.add_argument("--steps", type=int, default=5, help="SGD steps per block")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def block_seconds(model, x, y, optimizer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def step_ratio(model, reference, x, y, *, pairs: int, steps: int) -> tuple[float, float]:
    """(median per-pair ratio of step times model / reference, reference's median step s)."""
    runs = []
    for net in (model, reference):
        net.train()
        runs.append((net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)))
    for net, opt in runs:  # warm-up: allocator, kernels
        block_seconds(net, x, y, opt, steps)
    ratios, ref_times = [], []
    for i in range(pairs):
        order = runs if i % 2 == 0 else runs[::-1]
        times = {id(net): block_seconds(net, x, y, opt, steps) for net, opt in order}
        ratios.append(times[id(model)] / times[id(reference)])
        ref_times.append(times[id(reference)] / steps)
    return statistics.median(ratios), statistics.median(ref_times)


def networks(args, data) -> tuple[object, list[tuple[str, object]]]:
    """The width-1.0 configuration, and (label, ChannelConfig) of the other uniform widths and
    the LW-DNAs of the ablation."""
    protocol = TrainProtocol(epochs=1, batch_size=args.batch_size, device="cpu")
    common = dict(model="resnet20", dataset="digits" if args.data == "digits" else "imagefolder",
                  data_dir=None if args.data == "digits" else args.data, width_mult=2.0,
                  target=1.0, remain_ratio=0.1, linear_ratio=1.0,
                  data_fraction=args.fraction, protocol=protocol)
    base = derive(TrialSpec(**common, baseline=True), data).base_config
    out = [(f"uniform {w:g}", widen(base, w)) for w in args.widths]
    for criterion in args.criteria:
        for seed in args.seeds:
            spec = TrialSpec(**common, criterion=criterion, seed=seed)
            out.append((f"{criterion} seed {seed}", derive(spec, data).config))
    return base, out


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = (load_dataset("digits") if args.data == "digits"
            else load_dataset("imagefolder", args.data, fraction=args.fraction, seed=0))
    base, nets = networks(args, data)
    x, y = next(iter(data.train_batches(args.batch_size, augment=False)))
    torch.manual_seed(0)
    reference = materialize(base)
    base_flops = complexity(base).flops
    print(f"{data!r}; batch {args.batch_size}, {args.threads} thread(s), {args.pairs} pairs of "
          f"{args.steps}-step blocks")
    print("| network | FLOPs / uniform 1.0 | params / uniform 1.0 | step time / uniform 1.0 |")
    print("| --- | --- | --- | --- |")
    for label, config in nets:
        torch.manual_seed(0)
        ratio, ref_step = step_ratio(materialize(config), reference, x, y, pairs=args.pairs,
                                     steps=args.steps)
        cost = complexity(config)
        print(f"| {label} | {cost.flops / base_flops:.3f} | "
              f"{cost.params / complexity(base).params:.3f} | {ratio:.2f}x |", flush=True)
    print(f"uniform 1.0: {1000 * ref_step:.1f} ms per step (median over the last network's pairs)")


if __name__ == "__main__":
    main()
