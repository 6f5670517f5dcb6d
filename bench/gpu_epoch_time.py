"""GPU cost of the science sweep: epoch time of ResNet-20 and ResNet-56, and trials per GPU-hour
with 1, 2, 4 and 8 training processes sharing one GPU.

Every trial is its own process, as Ray runs fractional-GPU trials: it loads the decoded dataset
from hetero's cache onto the GPU (uint8, augmented and normalised per batch there), builds the
network and trains it for ``--epochs`` epochs with the Trainer (bf16 autocast, channels_last),
printing images/s per epoch. The first epoch of each trial is the warm-up (cuDNN autotuning); the
epoch times are the median of the others. While a group of trials runs, ``nvidia-smi`` is sampled
every 0.5 s. One single-trial run per model also counts the synchronising CUDA calls of one
training epoch (torch's sync debug mode): a number that does not grow with the steps means no host
round trip per step. The parent decodes the dataset once before any trial starts.

    python bench/gpu_epoch_time.py                  # GPU: ../shared/data/cifar10, ~6-8 min on an H100
    python bench/gpu_epoch_time.py --data DIR --epochs 3 --concurrency 1 2 4 8
    python bench/gpu_epoch_time.py --smoke          # CPU check of the script: digits, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from hetero.data import load_dataset
from hetero.models import create_model
from hetero.protocol import TrainProtocol
from hetero.train import Trainer, resolve_device

ROOT = Path(__file__).resolve().parents[1]
CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"
PROJECTED_EPOCHS = 30  # the science sweep's protocol (issue 9)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(CIFAR10), help="image folder (train/, test/)")
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (first: warm-up)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget", type=float, default=450,
                        help="seconds; a group that would end later is skipped")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU check: resnet20 on digits, 1 epoch, 1 and 2 processes")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="resnet20", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--check-syncs", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:  # one thread per trial: a shared CPU slows down badly when oversubscribed
        args.data, args.epochs, args.concurrency = "digits", 1, [1, 2]
        args.models, args.device = ["resnet20"], "cpu"
    return args


def _load(data: str, device="cpu"):
    return load_dataset("digits", device=device) if data == "digits" \
        else load_dataset("imagefolder", data, device=device)


# ---- one trial (a worker process) ---------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = _load(args.data, device)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=data.num_classes, input_size=data.input_size,
                         in_channels=data.in_channels)
    protocol = TrainProtocol(epochs=args.epochs, batch_size=args.batch_size, lr=0.1,
                             weight_decay=5e-4, device=str(device))
    trainer = Trainer(model, data, protocol)
    startup = time.perf_counter() - start

    def progress(metrics, _trainer) -> None:
        print(f"  [{args.tag}] epoch {metrics['epoch']}/{args.epochs}: "
              f"{metrics['images_per_second']:8.0f} img/s, {metrics['epoch_seconds']:.2f} s "
              f"(with eval), test acc {metrics['accuracy']:.3f}", file=sys.stderr, flush=True)

    history = trainer.fit(on_epoch=progress).history
    syncs = count_syncs(trainer) if args.check_syncs and device.type == "cuda" else None
    print(json.dumps({"startup_seconds": startup, "syncs": syncs, "num_train": data.num_train,
                      "images_per_second": [m["images_per_second"] for m in history],
                      "epoch_seconds": [m["epoch_seconds"] for m in history]}))


def count_syncs(trainer: Trainer) -> dict[str, int]:
    """Synchronising CUDA calls in one more training epoch, against that epoch's steps."""
    steps = math.ceil(trainer.data.num_train / trainer.protocol.batch_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer._train_one_epoch()  # private on purpose: the hot loop alone, no evaluation
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return {"syncs": sum("synchroniz" in str(w.message) for w in caught), "steps": steps}


# ---- a group of concurrent trials (the parent) -----------------------------------------------


class GpuSampler:
    """``nvidia-smi`` utilisation and memory every 0.5 s while the block runs (none without it)."""

    def __enter__(self) -> GpuSampler:
        self.util: list[int] = []
        self.memory: list[int] = []
        self._proc = None
        if shutil.which("nvidia-smi"):
            gpu = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
            self._proc = subprocess.Popen(
                ["nvidia-smi", f"--id={gpu}", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "-lms", "500"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        out, _ = self._proc.communicate()
        for line in out.splitlines():
            try:
                util, memory = (int(v) for v in line.split(","))
            except ValueError:
                continue
            self.util.append(util)
            self.memory.append(memory)


def run_group(args: argparse.Namespace, model: str, count: int) -> dict:
    threads = 1 if args.smoke else max(1, (os.cpu_count() or 1) // count)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    start = time.perf_counter()
    with GpuSampler() as gpu:
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--worker", "--model", model, "--data", args.data,
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
             "--device", args.device, "--threads", str(threads), "--tag", f"{model} {i + 1}/{count}",
             *(["--check-syncs"] if count == 1 else [])],
            stdout=subprocess.PIPE, text=True, env=env) for i in range(count)]
        outputs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    failed = [i for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        raise RuntimeError(f"{model} x{count}: trial(s) {failed} failed (see their stderr above)")
    trials = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    return summarise(model, count, wall, trials, gpu)


def _steady(values: list[float]) -> list[float]:
    return values[1:] if len(values) > 1 else values  # the first epoch is the warm-up


def summarise(model: str, count: int, wall: float, trials: list[dict], gpu: GpuSampler) -> dict:
    train_s = [t["num_train"] / ips for t in trials for ips in _steady(t["images_per_second"])]
    epoch_s = [s for t in trials for s in _steady(t["epoch_seconds"])]
    per_trial_ips = [statistics.median(_steady(t["images_per_second"])) for t in trials]
    startup = statistics.mean(t["startup_seconds"] for t in trials)
    projected = startup + PROJECTED_EPOCHS * statistics.mean(epoch_s)
    return {"model": model, "concurrent": count, "wall_seconds": wall,
            "train_epoch_seconds": statistics.median(train_s),
            "epoch_seconds": statistics.median(epoch_s), "startup_seconds": startup,
            "images_per_second_per_trial": statistics.median(per_trial_ips),
            "images_per_second_total": sum(per_trial_ips),
            "trials_per_hour": count * 3600 / wall,
            "projected_trials_per_hour": count * 3600 / projected,
            "gpu_util": gpu.util, "gpu_memory_mib": gpu.memory,
            "syncs": trials[0]["syncs"] if count == 1 else None}


def print_row(row: dict, epochs: int) -> None:
    util = row["gpu_util"]
    print(f"{row['model']} x{row['concurrent']}: wall {row['wall_seconds']:.1f} s, train epoch "
          f"{row['train_epoch_seconds']:.2f} s ({row['epoch_seconds']:.2f} s with eval), "
          f"{row['images_per_second_per_trial']:.0f} img/s per trial, "
          f"{row['images_per_second_total']:.0f} img/s total, start-up "
          f"{row['startup_seconds']:.1f} s; {row['trials_per_hour']:.1f} {epochs}-epoch trials/h, "
          f"{row['projected_trials_per_hour']:.1f} {PROJECTED_EPOCHS}-epoch trials/h (projected)",
          flush=True)
    if util:
        print(f"  nvidia-smi utilisation samples (%): {' '.join(map(str, util))}")
        print(f"  memory used: max {max(row['gpu_memory_mib'])} MiB")
    if row["syncs"] is not None:
        syncs = row["syncs"]
        verdict = ("sync debug mode caught nothing: count not available" if syncs["syncs"] == 0
                   else "no host round trip per step" if syncs["syncs"] < syncs["steps"]
                   else "a host round trip per step or more: fix the hot loop")
        print(f"  synchronising CUDA calls in one training epoch: {syncs['syncs']} for "
              f"{syncs['steps']} steps ({verdict})")


def print_table(rows: list[dict], epochs: int) -> None:
    print(f"\n| model | concurrent trials | train epoch [s] | epoch with eval [s] | img/s per trial "
          f"| img/s total | {epochs}-epoch trials/GPU-h (measured) | "
          f"{PROJECTED_EPOCHS}-epoch trials/GPU-h (projected) | GPU util mean/max [%] |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        util = (f"{statistics.mean(r['gpu_util']):.0f} / {max(r['gpu_util'])}" if r["gpu_util"]
                else "n/a")
        print(f"| {r['model']} | {r['concurrent']} | {r['train_epoch_seconds']:.2f} | "
              f"{r['epoch_seconds']:.2f} | {r['images_per_second_per_trial']:.0f} | "
              f"{r['images_per_second_total']:.0f} | {r['trials_per_hour']:.1f} | "
              f"{r['projected_trials_per_hour']:.1f} | {util} |")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    start = time.perf_counter()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}); torch {torch.__version__}; {os.cpu_count()} CPU cores")
    loaded = time.perf_counter()
    data = _load(args.data)  # decodes and caches once, before trials race for the cache
    print(f"data: {data!r} (ready in {time.perf_counter() - loaded:.1f} s, "
          f"{'from the cache' if getattr(data, 'from_cache', False) else 'decoded'})", flush=True)
    # Single trials first (the epoch times), then the larger groups, each model in turn.
    plan = [(m, k) for k in sorted(args.concurrency) for m in args.models]
    rows, last = [], {}
    for model, count in plan:
        # A group's wall time grows at most linearly with its trials: skip what would overrun.
        previous = last.get(model)
        expected = previous["wall_seconds"] * count / previous["concurrent"] if previous else 0
        if time.perf_counter() - start + expected > args.budget:
            print(f"{model} x{count}: skipped, it would end past the --budget of "
                  f"{args.budget:.0f} s (expected {expected:.0f} s)")
            continue
        rows.append(run_group(args, model, count))
        last[model] = rows[-1]
        print_row(rows[-1], args.epochs)
    print_table(sorted(rows, key=lambda r: (r["model"], r["concurrent"])), args.epochs)
    print(f"total {time.perf_counter() - start:.0f} s. Projected = start-up + "
          f"{PROJECTED_EPOCHS} x (epoch with eval); scoring and Ray/MLflow overhead not included.")


if __name__ == "__main__":
    main()
