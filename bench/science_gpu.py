"""A sweep spec's trials on one GPU without Ray or MLflow, and their report: for a machine that
has PyTorch but none of the orchestration stack (a lent GPU box with no package index).

The trials are exactly the spec's (``SweepSpec.fixed_points()``: every LW-DNA point and every
uniform baseline, seed by seed), each run by ``hetero.method.run_trial`` in one of
``--concurrency`` worker processes that share the GPU, as Ray's fractional-GPU trials would.
Every finished trial is appended to ``results.jsonl`` at once (its params as MLflow would log them,
its final metrics, its widths), so a run cut short keeps the seeds it finished. ``report`` turns
that file into the same tables and figure ``hetero pareto`` writes (analysis functions on the
trials frame; no MLflow).

    python bench/science_gpu.py pack ../shared/data/cifar10 .gpu/cifar10.pack   # here: JPEGs -> 1 file
    python bench/science_gpu.py run sweeps/configs/cifar10_science.yaml --pack .gpu/cifar10.pack \\
        --out OUT --concurrency 8 --deadline 480                                  # on the GPU
    python bench/science_gpu.py report OUT/results.jsonl --out runs/science-gpu   # here
    python bench/science_gpu.py run sweeps/configs/cifar10_science.yaml --smoke --out /tmp/s  # CPU check
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---- carrying a JPEG image folder as one file ------------------------------------------------

def pack(folder: Path, target: Path) -> None:
    """Every file under ``folder`` in one file: a gzip'd JSON index (path, size) and the bytes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    index = [[str(p.relative_to(folder)), p.stat().st_size] for p in files]
    head = gzip.compress(json.dumps(index).encode())
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        out.write(len(head).to_bytes(8, "little") + head)
        for path in files:
            out.write(path.read_bytes())
    print(f"packed {len(files)} files ({target.stat().st_size / 2**20:.1f} MiB) into {target}")


def unpack(source: Path, folder: Path) -> None:
    with open(source, "rb") as src:
        size = int.from_bytes(src.read(8), "little")
        index = json.loads(gzip.decompress(src.read(size)))
        for relative, length in index:
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(src.read(length))
    print(f"unpacked {len(index)} files into {folder}")


# ---- running the spec's trials ----------------------------------------------------------------

_DATA: dict = {}   # per worker process: the dataset, decoded once


def _trial(spec_dict: dict, threads: int) -> dict:
    import torch

    from hetero.data import load_dataset
    from hetero.method import run_trial
    from hetero.trial import TrialSpec, params_of

    torch.set_num_threads(threads)
    spec = TrialSpec.from_dict(spec_dict)
    key = (spec.dataset, spec.data_dir, spec.data_fraction, spec.seed)
    if key not in _DATA:
        from hetero.train import resolve_device

        _DATA.clear()
        _DATA[key] = load_dataset(spec.dataset, spec.data_dir, fraction=spec.data_fraction,
                                  seed=spec.seed, device=resolve_device(spec.protocol.device))
    start = time.perf_counter()
    result = run_trial(spec, data=_DATA[key])
    metrics = result.metrics()
    return {"kind": spec.kind, "params": {k: v for k, v in params_of(spec).items()
                                          if k != "options"},
            "metrics": metrics, "widths": dict(result.config.widths),
            "base_widths": dict(result.base_config.widths),
            "trial_seconds": time.perf_counter() - start,
            "epoch_seconds": [h["epoch_seconds"] for h in result.history],
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def _trial_specs(spec_path: str, data_dir: str | None, smoke: bool) -> list[dict]:
    from hetero.trial import TrialSpec
    from sweeps.spec import load_spec, smoke_test

    spec = load_spec(spec_path, check=False)
    if smoke:
        spec = smoke_test(spec)
    elif data_dir:
        spec = replace(spec, dataset=replace(spec.dataset, data_dir=data_dir))
    fixed = TrialSpec(model=spec.model.name, variant=spec.model.variant,
                      options=dict(spec.model.options), dataset=spec.dataset.name,
                      data_dir=str(Path(spec.dataset.data_dir).resolve())
                      if spec.dataset.data_dir else None,
                      **spec.space.fixed_settings(), protocol=spec.protocol)
    return [replace(fixed, **{k: v for k, v in hp.items() if k != "kind"},
                    baseline=hp["kind"] == "baseline").to_dict()
            for hp in spec.fixed_points()]


def run(args: argparse.Namespace) -> None:
    data_dir = None
    if args.pack:  # beside, not inside, OUT: the device tool sends OUT's files back
        data_dir = str(Path(tempfile.gettempdir()) / "hetero-data" / Path(args.pack).stem)
        unpack(Path(args.pack), Path(data_dir))
    specs = _trial_specs(args.spec, data_dir or args.data, args.smoke)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _decode_once(specs[0])
    print(f"{len(specs)} trials, {args.concurrency} at a time; data ready after "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    threads = max(1, (os.cpu_count() or 1) // args.concurrency)
    import multiprocessing

    done = 0
    with open(out / "results.jsonl", "a") as results, ProcessPoolExecutor(
            args.concurrency, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(_trial, s, threads): s for s in specs}
        while pending:
            finished, _ = wait(pending, timeout=5, return_when=FIRST_COMPLETED)
            for future in finished:
                spec = pending.pop(future)
                try:
                    row = future.result()
                except Exception as exc:  # one failed trial is a row too, never a silent gap
                    row = {"kind": "failed", "params": spec, "error": repr(exc)}
                results.write(json.dumps(row) + "\n")
                results.flush()
                done += 1
                m = row.get("metrics", {})
                print(f"[{time.perf_counter() - start:5.0f} s] {done}/{len(specs)} "
                      f"{row['kind']} acc {m.get('accuracy', float('nan')):.4f} "
                      f"{row.get('trial_seconds', 0):.0f} s", flush=True)
            if args.deadline and time.perf_counter() - start > args.deadline:
                cancelled = sum(f.cancel() for f in pending)
                print(f"deadline: {cancelled} trials not started were cancelled", flush=True)
                pending = {f: s for f, s in pending.items() if not f.cancelled()}
                args.deadline = 0
    print(f"all done in {time.perf_counter() - start:.0f} s", flush=True)


def _decode_once(spec_dict: dict) -> None:
    """Decode the image folder into hetero's cache before the workers start (once, not N times)."""
    from hetero.data import load_dataset

    load_dataset(spec_dict["dataset"], spec_dict["data_dir"], fraction=1.0, seed=0)


# ---- report -------------------------------------------------------------------------------------

def trials_frame(rows: list[dict]):
    """The trials as analysis reads them from MLflow (analysis.load's columns)."""
    import pandas as pd

    from sweeps import keys

    records = []
    for i, row in enumerate(r for r in rows if r["kind"] in (keys.KIND_LWDNA, keys.KIND_BASELINE)):
        params = dict(row["params"])
        if row["kind"] == keys.KIND_BASELINE:
            params[keys.PARAM_CRITERION] = keys.BASELINE_CRITERION
        records.append({"kind": row["kind"], **params, **row["metrics"],
                        "run_id": f"trial-{i}", "run_name": f"trial-{i}",
                        "stopped_early": False, "widths": row["widths"],
                        "base_widths": row["base_widths"]})
    frame = pd.DataFrame(records)
    frame[keys.METRIC_SECONDS_PER_IMAGE] = 1.0 / frame[keys.METRIC_IMAGES_PER_SECOND]
    frame[keys.PARAM_SEED] = frame[keys.PARAM_SEED].astype("Int64")
    for name in (*keys.LATENCY_METRICS, ):
        frame[name] = float("nan")
    return frame


def report(args: argparse.Namespace) -> None:
    from analysis.compare import compare_to_uniform
    from analysis.load import Sweep
    from analysis.pareto import ACC_FLOPS, default_reference, hypervolume, pareto_front
    from analysis.plots import plot_accuracy_vs_cost, plot_width_profiles, save_figure
    from analysis.summary import summary_markdown

    rows = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line]
    failed = [r for r in rows if r["kind"] == "failed"]
    trials = trials_frame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.results).parent.name
    sweep = Sweep("none (bench/science_gpu.py)", name, "-", "-", name, trials,
                  n_unfinished=len(failed), n_failed=len(failed))
    front = pareto_front(trials, ACC_FLOPS, aggregate=True)
    reference = default_reference(trials, ACC_FLOPS)
    text = summary_markdown(sweep, front, compare_to_uniform(trials), True,
                            volume=hypervolume(front.points, ACC_FLOPS, reference),
                            reference=reference)
    timing = _timing(rows)
    (out / "summary.md").write_text(text + "\n" + timing + "\n")
    trials.drop(columns=["widths", "base_widths"]).to_csv(out / "trials.csv", index=False)
    save_figure(plot_accuracy_vs_cost(trials, aggregate=True, title=f"{name}: accuracy vs FLOPs"),
                out / "pareto", ("png",))
    lwdna = trials[trials["kind"] == "lwdna"].sort_values("flops").head(6)
    save_figure(plot_width_profiles(lwdna, max_profiles=6), out / "widths", ("png",))
    print(text + "\n" + timing)


def _timing(rows: list[dict]) -> str:
    import statistics

    done = [r for r in rows if "trial_seconds" in r]
    if not done:
        return ""
    epochs = [s for r in done for s in (r["epoch_seconds"][1:] or r["epoch_seconds"])]
    return (f"## Timing\n\n{len(done)} trials on {done[0]['device']}: trial time median "
            f"{statistics.median(r['trial_seconds'] for r in done):.0f} s, epoch (train + eval) "
            f"median {statistics.median(epochs):.2f} s with the other trials running beside it.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("folder")
    p.add_argument("file")
    p = sub.add_parser("run")
    p.add_argument("spec")
    p.add_argument("--out", required=True)
    p.add_argument("--data", help="the spec's data folder, if not where the spec says")
    p.add_argument("--pack", help="a file written by `pack`: unpacked into OUT/data first")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--deadline", type=float, default=0,
                   help="seconds after which trials not yet started are cancelled")
    p.add_argument("--smoke", action="store_true", help="the spec's --smoke-test version (CPU)")
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(Path(args.folder), Path(args.file))
    elif args.command == "run":
        run(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
