"""The ``hetero`` command. Subcommands import their heavy dependencies only when they run, so
``hetero --help`` answers at once."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hetero.dataset_info import DATASET_SHAPES, DATASETS


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


# ---------------------------------------------------------------------------- helpers
def _add_model_args(p: argparse.ArgumentParser, *, positional: bool = False) -> None:
    if positional:
        p.add_argument("model", help="family or short name: resnet20, resnet56, resnet50, vgg16, "
                                     "mobilenet_v2, resnet_cifar, ... (see `hetero models`)")
    else:
        p.add_argument("--model", default="resnet20", help="family or short name (default resnet20)")
    p.add_argument("--variant", "--depth", dest="variant", default=None,
                   help="family variant, e.g. depth 56 for resnet_cifar, cifar|imagenet for mobilenet_v2")
    p.add_argument("--shortcut", choices=("projection", "zeropad"), default=None,
                   help="resnet_cifar shortcut type (default projection, as the paper's ResNet-56)")


def _add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width-mult", type=float, default=2.0, help="widening multiplier beta (default 2)")
    p.add_argument("--target", type=float, default=1.0,
                   help="cost target as a fraction of the width-1.0 baseline (default 1.0)")
    p.add_argument("--target-metric", choices=("flops", "params"), default="flops")
    p.add_argument("--criterion", default="dhp", help="dhp | gate | bn | l1 (default dhp)")
    p.add_argument("--remain-ratio", type=float, default=0.4, help="rho floor (default 0.4)")
    p.add_argument("--linear-ratio", type=float, default=0.45, help="tau floor (default 0.45)")
    p.add_argument("--score-batches", type=int, default=2, help="scoring mini-batches (default 2)")
    p.add_argument("--divisor", type=int, default=1, help="round widths to a multiple of this")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits (bundled, default) | cifar10 | cifar100 | imagefolder | imagenet")
    p.add_argument("--data-dir", default=None, help="dataset folder (cifar, imagefolder, imagenet)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR")
    p.add_argument("--data-fraction", type=float, default=1.0,
                   help="fraction of the training split to use (default 1.0)")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"shortcut": args.shortcut} if getattr(args, "shortcut", None) else {}


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _fmt(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:g}"


# ---------------------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    from hetero.models.registry import ALIASES, get_family, list_models

    rows = []
    for name, variants in list_models().items():
        fam = get_family(name)
        short = sorted(a for a, (f, _v) in ALIASES.items() if f == name)
        rows.append({"family": name, "variants": list(variants), "default": fam.default_variant,
                     "short_names": short, "description": fam.description})
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['family']:<16} variants: {', '.join(r['variants']):<24} "
              f"short names: {', '.join(r['short_names']) or '-'}")
        if r["description"]:
            print(f"{'':<16} {r['description']}")
    return 0


# ---------------------------------------------------------------------------- complexity
def _shape_for(dataset: str, data_dir: str | None) -> tuple[int, int, int]:
    if dataset == "imagefolder" and data_dir is None:
        raise CliError("--dataset imagefolder needs --data-dir")
    if dataset != "imagefolder":
        return DATASET_SHAPES[dataset]
    from hetero.data import dataset_shape

    return dataset_shape(dataset, data_dir)


def cmd_complexity(args: argparse.Namespace) -> int:
    from hetero.complexity import complexity
    from hetero.config import ChannelConfig, uniform
    from hetero.models.registry import resolve_model

    if args.config:
        config = ChannelConfig.load(args.config)
    else:
        in_ch, size, classes = _shape_for(args.dataset, args.data_dir)
        family, variant = resolve_model(args.model, args.variant, size)
        config = uniform(family, variant, args.width_mult, num_classes=classes, input_size=size,
                         in_channels=in_ch, **_options(args))
    result = complexity(config, args.accounting)
    out = {"model": config.family, "variant": config.variant, "dataset": args.dataset,
           "input": [config.in_channels, config.input_size, config.input_size],
           "num_classes": config.num_classes, "accounting": args.accounting,
           "width_mult": None if args.config else args.width_mult,
           "flops": result.flops, "params": result.params}
    if args.json:
        _print_json(out)
    else:
        print(f"{config.family}/{config.variant} on {args.dataset} "
              f"({config.in_channels}x{config.input_size}x{config.input_size}, "
              f"{config.num_classes} classes), {args.accounting} accounting:")
        print(f"  FLOPs  {_fmt(result.flops)}  ({result.flops:,})")
        print(f"  params {_fmt(result.params)}  ({result.params:,})")
    return 0


# ---------------------------------------------------------------------------- shrink / run
def _protocol(args: argparse.Namespace):
    from hetero.protocol import TrainProtocol

    keys = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "warmup_epochs",
            "label_smoothing", "kd_weight", "device")
    return TrainProtocol(**{k: getattr(args, k) for k in keys if getattr(args, k, None) is not None})


def _spec(args: argparse.Namespace, *, baseline: bool = False):
    from hetero.method import TrialSpec

    return TrialSpec(
        model=args.model, variant=args.variant, dataset=args.dataset, data_dir=args.data_dir,
        download=args.download, data_fraction=args.data_fraction, baseline=baseline,
        width_mult=args.width_mult if args.width_mult is not None else 1.0,
        target=args.target, target_metric=args.target_metric, criterion=args.criterion,
        remain_ratio=args.remain_ratio, linear_ratio=args.linear_ratio,
        score_batches=args.score_batches, divisor=args.divisor,
        inherit=getattr(args, "inherit", False), seed=args.seed,
        protocol=_protocol(args), options=_options(args),
    )


def cmd_shrink(args: argparse.Namespace) -> int:
    from hetero.data import load_dataset
    from hetero.method import derive
    from hetero.train import resolve_device

    spec = _spec(args)
    device = resolve_device(spec.protocol.device)
    data = load_dataset(spec.dataset, spec.data_dir, download=spec.download,
                        fraction=spec.data_fraction, seed=spec.seed, device=device)
    summary = derive(spec, data, device=device).summary()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary["config"], indent=2) + "\n")
    if args.json:
        _print_json(summary)
        return 0
    print(f"LW-DNA for {summary['family']}/{summary['variant']} (width {spec.width_mult}, "
          f"target {spec.target} of baseline {spec.target_metric}, criterion {spec.criterion}):")
    print(f"  FLOPs  {_fmt(summary['flops'])} = {summary['flops_ratio']:.2%} of baseline "
          f"{_fmt(summary['baseline_flops'])}")
    print(f"  params {_fmt(summary['params'])} = {summary['params_ratio']:.2%} of baseline "
          f"{_fmt(summary['baseline_params'])}")
    print(f"  scoring + shrinking: {summary['search_seconds']:.2f} s")
    for name, ratio in summary["width_ratios"].items():
        print(f"  {name:<28} {summary['channels'][name]:>5}  x{ratio:.2f}")
    return 0


def _print_epoch(metrics: dict[str, Any], epochs: int) -> None:
    print(f"epoch {metrics['epoch']:>3}/{epochs}  loss {metrics['train_loss']:.4f}  "
          f"train acc {metrics['train_accuracy']:.4f}  test acc {metrics['accuracy']:.4f}  "
          f"top5 {metrics['top5']:.4f}  lr {metrics['lr']:.4g}  "
          f"{metrics['images_per_second']:.0f} img/s", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from hetero.method import run_trial

    if args.width_mult is None:
        args.width_mult = 1.0 if args.baseline else 2.0
    spec = _spec(args, baseline=args.baseline)
    out = Path(args.out or f"runs/{spec.model}_{spec.kind}_w{spec.width_mult:g}_s{spec.seed}")
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = None
    if args.resume and checkpoint_path.exists():
        checkpoint = torch.load(checkpoint_path, weights_only=False)
        print(f"resuming from {checkpoint_path}", file=sys.stderr)

    last: dict[str, Any] = {"state": checkpoint}

    def on_epoch(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        torch.save(state, checkpoint_path)
        last["state"] = state
        if not args.quiet:
            _print_epoch(metrics, spec.protocol.epochs)

    result = run_trial(spec, on_epoch=on_epoch, checkpoint=checkpoint)
    result.config.save(out / "lwdna.json")
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    _save_model_folder(out / "model", last["state"], result, spec)
    if args.json:
        _print_json({k: v for k, v in result.to_dict().items() if k not in ("history", "config")})
    else:
        print(f"{spec.kind}: accuracy {result.accuracy:.4f}, FLOPs {_fmt(result.flops)} "
              f"({result.flops_ratio:.2%} of baseline), params {_fmt(result.params)} "
              f"({result.params_ratio:.2%}); wrote {out}/lwdna.json, checkpoint.pt, result.json, model/")
    return 0


def _save_model_folder(folder: Path, state: dict[str, Any] | None, result, spec) -> None:
    """The trained network as an MLflow model folder, the same as a sweep's child run logs."""
    try:
        from sweeps.mlmodel import rebuild_network, save_network
    except ImportError as exc:  # mlflow is not installed: the rest of the output stands
        print(f"note: no model folder ({exc}); pip install mlflow to write one", file=sys.stderr)
        return
    model = rebuild_network(state["config"], state["trainer"])
    info = {"accuracy": result.accuracy, "flops": result.flops, "flops_ratio": result.flops_ratio}
    save_network(model, folder, config=result.config, trial={"kind": spec.kind, **spec.to_dict()},
                 metadata=info)


# ---------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from hetero.export import DEFAULT_TOLERANCE, export_and_check
    from sweeps.mlmodel import load_network, test_batch

    model, folder = load_network(args.model, args.tracking_uri)
    batch = test_batch(folder, args.batch)
    source = "test images"
    if batch is None:
        config = json.loads((folder / "extra_files" / "lwdna.json").read_text())
        batch = torch.randn(args.batch, config["in_channels"], config["input_size"],
                            config["input_size"], generator=torch.Generator().manual_seed(0))
        source = "random inputs (the model's dataset is not available here)"
    check = export_and_check(model, batch[:1], args.format, args.out, check_batch=batch)
    ok = check.max_abs_diff <= DEFAULT_TOLERANCE
    print(f"wrote {check.path} ({args.format}); max |{args.format} - PyTorch| over "
          f"{check.batch_size} {source}: {check.max_abs_diff:.3g} "
          f"({'<=' if ok else '>'} {DEFAULT_TOLERANCE:g}: {'ok' if ok else 'MISMATCH'})")
    return 0 if ok else 1


# ---------------------------------------------------------------------------- parser
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", dest="weight_decay", type=float, default=None)
    p.add_argument("--schedule", choices=("cosine", "step"), default=None)
    p.add_argument("--warmup-epochs", dest="warmup_epochs", type=int, default=None)
    p.add_argument("--label-smoothing", dest="label_smoothing", type=float, default=None)
    p.add_argument("--kd-weight", dest="kd_weight", type=float, default=None,
                   help="distil from the trained widened network (paper: 0.4); off by default")
    p.add_argument("--device", default=None, help="auto (default) | cpu | cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hetero", description="Widen-shrink search for layer-wise differentiated channel "
                                   "configurations (LW-DNA), run as distributed sweeps.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list model families and variants")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("complexity", help="FLOPs and params of a model, counted analytically")
    _add_model_args(p, positional=True)
    p.add_argument("--dataset", choices=DATASETS, default="cifar10")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--config", default=None, help="a channel-configuration JSON (LW-DNA)")
    p.add_argument("--accounting", choices=("macs", "paper"), default="macs",
                   help="macs: conv+fc (the reference search); paper: + BN, ReLU (paper tables)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_complexity)

    p = sub.add_parser("shrink", help="derive an LW-DNA (widen, score, shrink) without training")
    _add_model_args(p)
    _add_data_args(p)
    _add_search_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write the LW-DNA configuration JSON here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_shrink)

    p = sub.add_parser("run", help="run one trial: derive and train an LW-DNA, or a baseline")
    _add_model_args(p)
    _add_data_args(p)
    _add_search_args(p)
    p.set_defaults(width_mult=None)
    p.add_argument("--baseline", action="store_true",
                   help="train the uniform network at --width-mult (default 1.0) instead")
    p.add_argument("--inherit", action="store_true",
                   help="start from the scored wide network's kept weights (default: fresh init)")
    p.add_argument("--seed", type=int, default=0)
    _train_args(p)
    p.add_argument("--out", default=None, help="output folder (default runs/...)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("export", help="export a trained network (run id or model folder) to "
                                      "ONNX, TorchScript or pt2, checked against PyTorch")
    p.add_argument("model", metavar="RUN_ID|MODEL_DIR",
                   help="a sweep child run id, a models:/ or runs:/ URI, or the model/ folder "
                        "`hetero run` wrote")
    p.add_argument("--format", choices=("onnx", "torchscript", "pt2"), default="onnx")
    p.add_argument("--out", required=True, help="file to write, e.g. lwdna.onnx")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store of RUN_ID (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///mlflow.db in the current folder)")
    p.add_argument("--batch", type=int, default=64, help="test images to check with (default 64)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sweep", help="run a sweep spec with Ray Tune, tracked in MLflow")
    p.set_defaults(func=_delegate("sweeps.cli"), delegate_add="sweeps.cli")
    p = sub.add_parser("pareto", help="Pareto fronts, LW-DNA vs uniform, plots and report")
    p.set_defaults(func=_delegate("analysis.cli"), delegate_add="analysis.cli")
    return parser


def _delegate(module: str):
    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).command(args)

    return run


def _attach_delegated(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Add the arguments of ``sweep``/``pareto`` only when that subcommand is used (heavy)."""
    import importlib

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        module = p.get_default("delegate_add")
        if module and name in argv:
            importlib.import_module(module).add_arguments(p)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    _attach_delegated(parser, argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("HETERO_DEBUG"):
            raise
        print(f"hetero {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
