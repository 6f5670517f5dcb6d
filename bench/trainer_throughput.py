"""Trainer vs a bare PyTorch loop: training images/s for resnet20 (goal: trainer >= 0.95x bare).

Same model (same init), same data tensors, same batch size, same optimizer. The bare loop is the
minimal hand-written loop (index, forward, cross-entropy, backward, step) with no augmentation and
no metrics, so everything the Trainer adds (batched crop/flip, metric sums, schedule) counts as its
overhead. Passes are interleaved (trainer epoch, then a bare pass of the same images) so that a
change in machine load hits both arms alike; the first pass of each is the warm-up.

    python bench/trainer_throughput.py                     # cifar10-subset, else digits
    python bench/trainer_throughput.py --images 4096 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hetero.data import load_dataset
from hetero.models import create_model
from hetero.protocol import TrainProtocol
from hetero.train import Trainer, resolve_device

CIFAR_SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-subset"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(CIFAR_SUBSET),
                        help="image folder (train/ and test/); digits when it is absent")
    parser.add_argument("--images", type=int, default=2048, help="training images per pass")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per arm")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser.parse_args(argv)


def load(args):
    device = resolve_device(args.device)
    name, folder = ("imagefolder", args.data) if Path(args.data).is_dir() else ("digits", None)
    full = load_dataset(name, folder, device=device)
    fraction = min(1.0, args.images / full.num_train)
    return load_dataset(name, folder, fraction=fraction, seed=0, device=device) if fraction < 1 \
        else full


def build_model(data, device, memory_format):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=data.num_classes, input_size=data.input_size,
                         in_channels=data.in_channels)
    return model.to(device, memory_format=memory_format)


class BareLoop:
    """The plain PyTorch loop, on the same normalized tensors the Trainer draws from."""

    def __init__(self, data, protocol: TrainProtocol, device: torch.device) -> None:
        cuda = device.type == "cuda"
        self.amp = cuda and protocol.amp
        self.memory_format = torch.channels_last if cuda and protocol.channels_last \
            else torch.contiguous_format
        self.model = build_model(data, device, self.memory_format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=protocol.lr,
                                         momentum=protocol.momentum,
                                         weight_decay=protocol.weight_decay)
        batches = list(data.train_batches(data.num_train, augment=False, device=device))
        self.x, self.y = batches[0]
        self.x = self.x.contiguous(memory_format=self.memory_format)
        self.batch_size, self.device = protocol.batch_size, device

    def images_per_second(self) -> float:
        self.model.train()
        order = torch.randperm(len(self.y), device=self.device)
        start = time.perf_counter()
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss = F.cross_entropy(self.model(self.x[idx]).float(), self.y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return len(order) / (time.perf_counter() - start)


def main(argv=None) -> None:
    args = parse_args(argv)
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load(args)
    device = resolve_device(args.device)
    protocol = TrainProtocol(epochs=args.repeats + 1, batch_size=args.batch_size, lr=0.1,
                             momentum=0.9, weight_decay=5e-4, device=str(device))
    print(f"data: {data!r}; batch {args.batch_size}; device {device}; "
          f"torch threads {torch.get_num_threads()}; torch {torch.__version__}")
    bare = BareLoop(data, protocol, device)
    bare_ips: list[float] = []

    def bare_pass_after_each_epoch(metrics, trainer) -> None:
        bare_ips.append(bare.images_per_second())
        print(f"pass {metrics['epoch']}: trainer {metrics['images_per_second']:8.1f} img/s"
              f"   bare {bare_ips[-1]:8.1f} img/s", flush=True)

    trainer = Trainer(build_model(data, device, torch.contiguous_format), data, protocol)
    summary = trainer.fit(on_epoch=bare_pass_after_each_epoch)
    report([m["images_per_second"] for m in summary.history][1:], bare_ips[1:])
    pipeline_seconds = time_pipeline(data, protocol, device)
    bare_seconds = data.num_train / statistics.median(bare_ips[1:])
    print(f"  the Trainer's data pipeline alone (index, crop, flip, normalize): "
          f"{pipeline_seconds / bare_seconds:.1%} of a bare pass's time")


def time_pipeline(data, protocol: TrainProtocol, device: torch.device) -> float:
    """Seconds to draw one augmented epoch: the part of the Trainer's overhead load can't hide."""
    best = float("inf")
    for epoch in range(3):
        start = time.perf_counter()
        for _batch in data.train_batches(protocol.batch_size, seed=0, epoch=epoch,
                                         device=device):
            pass
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def report(trainer_ips: list[float], bare_ips: list[float]) -> None:
    best_t, best_b = max(trainer_ips), max(bare_ips)
    med_t, med_b = statistics.median(trainer_ips), statistics.median(bare_ips)
    print(f"after warm-up, {len(trainer_ips)} passes each:")
    print(f"  best    trainer {best_t:8.1f} img/s   bare {best_b:8.1f} img/s   "
          f"ratio {best_t / best_b:.3f}x")
    print(f"  median  trainer {med_t:8.1f} img/s   bare {med_b:8.1f} img/s   "
          f"ratio {med_t / med_b:.3f}x   (goal >= 0.95x)")


if __name__ == "__main__":
    main()
