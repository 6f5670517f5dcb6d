"""First science check: uniform ResNet-20 vs its LW-DNA (width 2, target 1.0, dhp), same protocol.

    python bench/science_check.py [--data-dir ../shared/data/cifar10-subset] [--seeds 0 1 2]
        [--epochs 10] [--data-fraction 0.5] [--workers 2]

Each arm x seed is one `hetero.method.run_trial` call, run `--workers` at a time with one torch
thread each. Prints per-run accuracy and FLOPs, then mean +/- std per arm. On a CPU the protocol
is cut to fit (fewer epochs, part of the training split); the output says which protocol ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-subset"


def run_one(job: dict) -> dict:
    import torch

    from hetero.method import TrialSpec, run_trial

    torch.set_num_threads(1)
    result = run_trial(TrialSpec.from_dict(job))
    return {"kind": result.kind, "seed": job["seed"], "accuracy": result.accuracy,
            "flops": result.flops, "params": result.params, "flops_ratio": result.flops_ratio,
            "params_ratio": result.params_ratio, "search_seconds": result.search_seconds,
            "train_seconds": result.train_seconds}


def jobs(args: argparse.Namespace) -> list[dict]:
    protocol = {"epochs": args.epochs, "batch_size": 128, "lr": 0.1, "schedule": "cosine",
                "device": "cpu"}
    common = {"model": "resnet20", "dataset": "imagefolder", "data_dir": args.data_dir,
              "data_fraction": args.data_fraction, "protocol": protocol}
    out = []
    for seed in args.seeds:
        out.append({**common, "seed": seed, "baseline": True, "width_mult": 1.0})
        out.append({**common, "seed": seed, "width_mult": 2.0, "target": 1.0, "criterion": "dhp"})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data-fraction", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv), flush=True)
    print(f"protocol: resnet20, imagefolder {args.data_dir} (train fraction {args.data_fraction}, "
          f"full test split), {args.epochs} epochs, batch 128, SGD lr 0.1 cosine, wd 1e-4, "
          f"crop+flip, CPU", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs(args)))
    for r in results:
        print(f"  {r['kind']:<8} seed {r['seed']}  acc {r['accuracy']:.4f}  "
              f"FLOPs {r['flops'] / 1e6:.2f} M ({r['flops_ratio']:.2%})  "
              f"params {r['params'] / 1e6:.3f} M ({r['params_ratio']:.2%})  "
              f"search {r['search_seconds']:.1f} s  train {r['train_seconds']:.0f} s")
    for kind in ("baseline", "lwdna"):
        accs = [r["accuracy"] for r in results if r["kind"] == kind]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{kind:<8} top-1 {100 * statistics.mean(accs):.2f} +/- {100 * sd:.2f} % "
              f"(n={len(accs)})")
    print(f"wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
