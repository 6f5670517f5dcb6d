"""Peak memory of dhp scoring: what the hypernetwork of a widened network really takes.

    python bench/dhp_memory.py [--model resnet50] [--width-mult 2] [--embedding-dim 2]
        [--input-size 32] [--batch 8] [--num-batches 2] [--device cpu]

Scores the widened network with ``dhp`` on noise images (memory does not depend on the pixels)
and prints the peak resident set size of this process (``getrusage``; CPU) or the peak CUDA
memory allocated (``torch.cuda.max_memory_allocated``), beside the hypernetwork's size and the
estimate that ``hetero.importance`` compares with the device's free memory before scoring.
Run one configuration per process: the peak RSS of a process never goes down.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from hetero.importance import _dhp_memory_bytes, _hypernet_size, score_network
from hetero.models.factory import create_model, uniform, widen

GIB = 2 ** 30


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--width-mult", type=float, default=2.0)
    p.add_argument("--embedding-dim", type=int, default=2)
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--num-batches", type=int, default=2)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv))

    device = torch.device(args.device)
    wide = widen(uniform(args.model, num_classes=args.classes, input_size=args.input_size),
                 args.width_mult)
    model = create_model(config=wide).to(device)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, 3, args.input_size, args.input_size,
                            generator=generator).to(device),
                torch.randint(0, args.classes, (args.batch,), generator=generator).to(device))
               for _ in range(args.num_batches)]
    size = _hypernet_size(model, wide.layers, args.embedding_dim)
    estimate = _dhp_memory_bytes(model, wide.layers, args.embedding_dim,
                                 momentum=args.num_batches > 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        at_start = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    score_network("dhp", model, wide, batches, num_batches=args.num_batches,
                  embedding_dim=args.embedding_dim)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{args.model} x{args.width_mult:g}, embedding_dim {args.embedding_dim}, input "
          f"{args.input_size}px, batch {args.batch} x {args.num_batches}, {device}: hypernetwork "
          f"{size / 1e6:.0f} M parameters ({size * 4 / GIB:.2f} GiB fp32), estimate "
          f"{estimate / GIB:.2f} GiB")
    print(f"peak RSS {peak / GIB:.2f} GiB (before scoring {before / GIB:.2f} GiB); "
          f"scoring {seconds:.1f} s")
    if device.type == "cuda":
        top = torch.cuda.max_memory_allocated(device) - at_start
        print(f"peak CUDA memory allocated by scoring {top / GIB:.2f} GiB")


if __name__ == "__main__":
    main()
