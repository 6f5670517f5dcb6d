"""Every torchvision classification network through ``hetero shrink``: handled or refused (issue 17).

    python bench/torchvision_models.py [--data-dir DIR] [--models NAME ...] [--markdown]
                                       [--json FILE] [--workers N]

Each network runs in a process of its own, as a user would run it:
``hetero shrink --model torchvision:NAME --dataset imagefolder --data-dir DIR --width-mult 2
--target 1.0 --criterion l1 --json`` (DIR: the CIFAR-10 subset, 32 px), and when the network
does not run at that size, again at the next input size (``--input-size``) of
:data:`SIZES` until it runs. Outcomes:

- ``handled``: the derived network lands within 0.5 % of the target, the baseline cost equals
  what ``torch.utils.flop_counter.FlopCounterMode`` counts for the network in eval mode (total/2),
  and the derived network built from the configuration still returns the 10 class logits;
- ``refused``: one line (exit 2) naming the op, or why the network does not run;
- ``FAILED``: anything else (a traceback, a wrong cost, a missed target): a bug.

``--markdown`` prints the README's table. The slow test tests/test_torchvision_models.py runs
:func:`outcome` for every model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-subset"
SIZES = (None, 64, 128, 224, 299)   # None: the data's own (32 px for the CIFAR-10 subset)
TOLERANCE = 0.005
NUM_CLASSES = 10

# Runs in the child process: hetero_cli.main as the user's command, then the independent checks.
_CHILD = r"""
import contextlib, io, json, sys, warnings
warnings.filterwarnings("ignore")
import torch
from hetero_cli import main

name, argv = sys.argv[1], json.loads(sys.argv[2])
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = main(argv)
result = {"code": code, "stderr": err.getvalue().strip()}
if code == 0:
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    from hetero.config import ChannelConfig
    from hetero.models.factory import create_model
    summary = json.loads(out.getvalue())
    config = ChannelConfig.from_dict(summary["config"])
    size = config.input_size
    net = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, size, size))
    derived = create_model(config=config).eval()
    with torch.no_grad():
        logits = derived(torch.zeros(2, 3, size, size))
    result.update(flops=summary["flops"], target=summary["target_flops"],
                  baseline=summary["baseline_flops"], eval_macs=counter.get_total_flops() // 2,
                  logits=list(logits.shape), size=size, layers=len(config.widths))
print(json.dumps(result))
""".replace("NUM_CLASSES", str(NUM_CLASSES))


def torchvision_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _run(name: str, data_dir: Path, size: int | None, timeout: float) -> dict:
    argv = ["shrink", "--model", f"torchvision:{name}", "--dataset", "imagefolder",
            "--data-dir", str(data_dir), "--width-mult", "2", "--target", "1.0",
            "--criterion", "l1", "--json"]
    if size is not None:   # resizing 12,000 images to 299 px is slow: l1 reads no data anyway
        argv += ["--input-size", str(size), "--data-fraction", "0.01"]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, name, json.dumps(argv)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"code": None, "stderr": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"code": proc.returncode, "stderr": proc.stderr.strip()}
    return json.loads(lines[-1])


def outcome(name: str, data_dir: Path = DATA_DIR, timeout: float = 3600) -> dict:
    """The network's outcome: ``status`` handled / refused / FAILED, ``why``, and the figures."""
    start = time.perf_counter()
    for size in SIZES:
        run = _run(name, data_dir, size, timeout)
        if run.get("code") != 2 or "does not run on input" not in run["stderr"] \
                or size == SIZES[-1]:
            break
    run.update(name=name, seconds=time.perf_counter() - start, tried=size)
    run["status"], run["why"] = _judge(run)
    return run


def _judge(run: dict) -> tuple[str, str]:
    err = run["stderr"]
    if run["code"] == 2:
        one_line = len(err.splitlines()) == 1 and "Traceback" not in err
        why = err.split("error: ", 1)[-1]
        return ("refused" if one_line else "FAILED"), why
    if run["code"] != 0:
        return "FAILED", (err.splitlines() or ["no output"])[-1]
    ratio = run["flops"] / run["target"]
    problems = [f"baseline {run['baseline']} MACs but FlopCounterMode counts {run['eval_macs']}"
                ] if run["baseline"] != run["eval_macs"] else []
    if abs(ratio - 1) > TOLERANCE:
        problems.append(f"{ratio:.4f} of its target")
    if run["logits"] != [2, NUM_CLASSES]:
        problems.append(f"the derived network returns {run['logits']}")
    if problems:
        return "FAILED", "; ".join(problems)
    return "handled", f"{ratio:.4f} of the target, {run['layers']} prunable layers"


def markdown(rows: list[dict]) -> str:
    lines = ["| model | input | outcome | why / result |", "| --- | --- | --- | --- |"]
    for r in rows:
        size = r.get("size") or r.get("tried") or 32
        lines.append(f"| `{r['name']}` | {size} | {r['status']} | {_short(r['why'])} |")
    return "\n".join(lines)


def _short(why: str, limit: int = 160) -> str:
    # The fix hint is the same on every refusal; the table keeps the op and the reason.
    why = why.split("; leave that sub-module")[0].split("; pass an input size")[0]
    why = why.replace("|", "\\|")
    return why if len(why) <= limit else why[: limit - 3] + "..."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--workers", type=int, default=1,
                        help="networks run at once (each child then uses 2 threads)")
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        print(f"no data at {args.data_dir}: pass --data-dir", file=sys.stderr)
        return 2
    if args.workers > 1:
        os.environ["OMP_NUM_THREADS"] = "2"
    names = args.models or torchvision_models()
    rows = []
    with ThreadPoolExecutor(args.workers) as pool:
        for row in pool.map(lambda n: outcome(n, args.data_dir), names):
            rows.append(row)
            print(f"{row['name']:<22} {row['status']:<8} {row['seconds']:6.1f} s  "
                  f"{_short(row['why'])}", file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        print(markdown(rows))
    return 1 if any(r["status"] == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
