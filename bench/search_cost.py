"""Search cost: scoring + shrinking wall time as a percentage of the LW-DNA's training time.

    python bench/search_cost.py [--model resnet56] [--width-mult 2] [--criterion dhp]
        [--data-dir ../shared/data/cifar10-subset] [--epochs 30] [--measure-epochs 1]

Training all `--epochs` on a CPU takes hours, so the script times `--measure-epochs` full epochs
of the derived network (after a warm-up of a few batches) and scales that to `--epochs`; it says
so in its output. On a GPU pass `--measure-epochs` equal to `--epochs` to time the whole run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from hetero.data import load_dataset
from hetero.materialize import materialize
from hetero.method import TrialSpec, derive
from hetero.protocol import TrainProtocol
from hetero.train import Trainer, resolve_device

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-subset"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56")
    p.add_argument("--width-mult", type=float, default=2.0)
    p.add_argument("--criterion", default="dhp")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--measure-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv))

    device = resolve_device(args.device)
    protocol = TrainProtocol(epochs=args.epochs, batch_size=args.batch_size, device=str(device))
    data = load_dataset("imagefolder", args.data_dir, device=device)
    spec = TrialSpec(model=args.model, dataset="imagefolder", data_dir=args.data_dir,
                     width_mult=args.width_mult, target=1.0, criterion=args.criterion,
                     protocol=protocol)
    derivation = derive(spec, data, device=device)
    search = derivation.search_seconds
    summary = derivation.summary()
    print(f"device {device}, torch threads {torch.get_num_threads()}, {data.num_train} train images")
    print(f"derived {args.model} w{args.width_mult} {args.criterion}: "
          f"{summary['flops_ratio']:.2%} of baseline FLOPs; scoring + shrinking {search:.2f} s")

    model = materialize(derivation.config)
    trainer = Trainer(model, data, protocol.replace(epochs=args.measure_epochs), seed=0)
    start = time.perf_counter()
    result = trainer.fit()
    measured = time.perf_counter() - start
    per_epoch = measured / args.measure_epochs
    total = per_epoch * args.epochs
    how = "measured" if args.measure_epochs == args.epochs else (
        f"{args.measure_epochs} epoch(s) measured ({per_epoch:.1f} s each, incl. evaluation), "
        f"scaled to {args.epochs}")
    print(f"training: {total:.0f} s for {args.epochs} epochs ({how}); "
          f"{result.images_per_second:.0f} images/s")
    print(f"search cost = {search:.2f} s / {total:.0f} s = {100 * search / total:.3f} % "
          f"of training (goal <= 1 %)")


if __name__ == "__main__":
    main()
