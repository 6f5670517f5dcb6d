"""The method's subcommands of ``hetero`` (models, complexity, shrink, run), added to the one
parser by ``hetero_cli``. They import torch only when they run; their flags are derived from the
declared settings of :class:`~hetero.trial.TrialSpec` and :class:`~hetero.protocol.TrainProtocol`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hetero.dataset_info import DATASET_SHAPES, DATASETS


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming the fix, not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ---------------------------------------------------------------------------- helpers
# Extra spellings of derived flags (kept for users of earlier versions).
FLAG_ALIASES = {"variant": ("--depth",)}


def _add_settings(p: argparse.ArgumentParser, cls: type, *, only: tuple[str, ...] | None = None,
                  skip: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> None:
    """One flag per declared setting of ``cls`` (``--width-mult`` for ``width_mult``), with its
    help, choices and range from the declaration; a flag not given stays None (the default)."""
    from dataclasses import fields

    from hetero.settings import declared

    defaults = {**{f.name: f.default for f in fields(cls)}, **(defaults or {})}
    for name, s in declared(cls).items():
        if not s.cli or name in skip or (only is not None and name not in only):
            continue
        default = defaults[name]
        flags = ("--" + name.replace("_", "-"), *FLAG_ALIASES.get(name, ()))
        help_text = f"{s.help} (default {default})" if default not in (None, False) else s.help
        if isinstance(default, bool):  # --x / --no-x: either way away from the default
            p.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            p.add_argument(*flags, dest=name, default=None, help=help_text,
                           choices=s.choices, type=_checked_type(name, s, default))


def _checked_type(name: str, s, default: Any):
    base = int if s.integer else float if isinstance(default, float) else str

    def parse(text: str):
        try:
            value = base(text)
            s.check(name, value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = base.__name__  # argparse names the type in its messages
    return parse


def _given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    from hetero.settings import declared

    return {name: getattr(args, name) for name in declared(cls)
            if getattr(args, name, None) is not None}


def _add_model_args(p: argparse.ArgumentParser, *, positional: bool = False) -> None:
    from hetero.trial import TrialSpec

    if positional:
        p.add_argument("model", help="family or short name (resnet56, densenet40, regnetx_400mf, "
                                     "mobilenet_v3_small, ...: see `hetero models`), "
                                     "torchvision:NAME, or package.module:callable")
        _add_settings(p, TrialSpec, only=("variant",))
    else:
        _add_settings(p, TrialSpec, only=("model", "variant"))
    p.add_argument("--shortcut", choices=("projection", "zeropad"), default=None,
                   help="resnet_cifar shortcut type (default projection, as the paper's ResNet-56)")


def _add_trial_args(p: argparse.ArgumentParser) -> None:
    """Every other trial setting (data, widening, scoring, shrinking, init, seed)."""
    from hetero.trial import TrialSpec

    _add_settings(p, TrialSpec, skip=("model", "variant"))


def _device(spec: str | None):
    """The torch device, or a one-line error when it is not there (e.g. cuda without a GPU)."""
    from hetero.train import resolve_device

    try:
        return resolve_device(spec or "auto")
    except RuntimeError as exc:
        raise CliError(str(exc)) from None


def _load_config(path: str):
    """A channel-configuration JSON, or a one-line error naming the file."""
    from hetero.config import ChannelConfig
    from hetero.files import UserFileError, read_user_text

    try:
        text = read_user_text(path, "--config", "an LW-DNA JSON file (lwdna.json written by "
                              "hetero run)")
    except UserFileError as exc:
        raise CliError(str(exc)) from None
    try:
        return ChannelConfig.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:  # JSON or field errors
        raise CliError(f"--config {path} is not a valid channel configuration ({exc}): pass "
                       "an LW-DNA JSON written by hetero shrink/run") from None


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
    from hetero.models._registry import ALIASES
    from hetero.models.factory import family_spec, list_models

    rows = []
    for name, variants in list_models().items():
        fam = family_spec(name)
        short = sorted(a for a, (f, _v) in ALIASES.items() if f == name)
        default = fam.default_variant if isinstance(fam.default_variant, str) else "by input size"
        rows.append({"family": name, "variants": list(variants), "default": default,
                     "short_names": short, "description": fam.description})
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        print(f"{r['family']:<16} variants: {', '.join(r['variants']):<24} "
              f"short names: {', '.join(r['short_names']) or '-'}")
        if r["description"]:
            print(f"{'':<16} {r['description']}")
    print("\nAlso: torchvision:NAME (any torchvision classification CNN) and "
          "package.module:callable (a function returning an nn.Module, called with num_classes).")
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
    from hetero.models.factory import complexity, family_spec, uniform

    if args.config:
        config = _load_config(args.config)
        if family_spec(args.model).name != config.family:
            raise CliError(f"--config {args.config} is a {config.family} configuration, but the "
                           f"model is {args.model}: pass the model the configuration was made "
                           f"for (`hetero complexity {config.family} --config {args.config}`)")
    else:
        in_ch, size, classes = _shape_for(args.dataset, args.data_dir)
        options = {**_options(args), **({"exclude": args.exclude} if args.exclude else {})}
        config = uniform(args.model, args.variant, args.width_mult, num_classes=classes,
                         input_size=args.input_size or size, in_channels=in_ch, **options)
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
        what = "MACs" if args.accounting == "macs" else "FLOPs"  # macs: multiply-accumulates
        print(f"  {what:<6} {_fmt(result.flops)}  ({result.flops:,})")
        print(f"  params {_fmt(result.params)}  ({result.params:,})")
    return 0


# ---------------------------------------------------------------------------- shrink / run
def _protocol(args: argparse.Namespace):
    from hetero.protocol import TrainProtocol

    return TrainProtocol(**_given(args, TrainProtocol))


def _spec(args: argparse.Namespace, *, baseline: bool = False):
    from hetero.trial import TrialSpec

    given = {**_given(args, TrialSpec), "baseline": baseline}
    return TrialSpec(**given, protocol=_protocol(args), options=_options(args))


def _check_model(spec) -> None:
    """Derive the network's channel graph from the data's shape (read, not loaded): a network
    hetero cannot follow is refused before any data is decoded."""
    from hetero.method import base_config_for

    base_config_for(spec, _shape_for(spec.dataset, spec.data_dir))


def cmd_shrink(args: argparse.Namespace) -> int:
    from hetero.data import load_dataset
    from hetero.method import derive

    if args.out and Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a folder: pass a file to write the LW-DNA JSON to, "
                       f"e.g. {Path(args.out) / 'lwdna.json'}")
    spec = _spec(args)
    device = _device(spec.protocol.device)
    _check_model(spec)
    data = load_dataset(spec.dataset, spec.data_dir, download=spec.download,
                        fraction=spec.data_fraction, seed=spec.seed, device=device,
                        input_size=spec.input_size)
    summary = derive(spec, data, device=device).summary()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary["config"], indent=2) + "\n")
    if args.json:
        _print_json(summary)
        return 0
    print(f"LW-DNA for {summary['family']}/{summary['variant']} (width {spec.width_mult}, "
          f"target {spec.target} of baseline {spec.target_metric}, criterion {spec.criterion}):")
    print(f"  MACs   {_fmt(summary['flops'])} = {summary['flops_ratio']:.2%} of baseline "
          f"{_fmt(summary['baseline_flops'])}")
    print(f"  params {_fmt(summary['params'])} = {summary['params_ratio']:.2%} of baseline "
          f"{_fmt(summary['baseline_params'])}")
    print(f"  scoring + shrinking: {summary['search_seconds']:.2f} s")
    for name, ratio in summary["width_ratios"].items():
        print(f"  {name:<28} {summary['channels'][name]:>5}  x{ratio:.2f}")
    return 0


def _load_checkpoint(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    try:
        # Tensors and plain data only: a planted pickle cannot run code when it is loaded.
        return torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"{path} is not a hetero checkpoint of tensors and plain data ({first}): "
                       "delete it, or drop --resume to start over") from None


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
    _device(spec.protocol.device)
    _check_model(spec)
    out = Path(args.out or f"runs/{spec.model}_{spec.kind}_w{spec.width_mult:g}_s{spec.seed}")
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file: pass a folder for the run's outputs")
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = None
    if args.resume and checkpoint_path.exists():
        checkpoint = _load_checkpoint(checkpoint_path)
        print(f"resuming from {checkpoint_path}", file=sys.stderr)

    last: dict[str, Any] = {"state": checkpoint}

    def on_epoch(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)  # only once there is something to keep
        torch.save(state, checkpoint_path)
        last["state"] = state
        if not args.quiet:
            _print_epoch(metrics, spec.protocol.epochs)

    result = run_trial(spec, on_epoch=on_epoch, checkpoint=checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    result.config.save(out / "lwdna.json")
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    if args.save_model is not None and last["state"] is not None:
        args.save_model(out / "model", last["state"], result, spec)
    if args.json:
        _print_json({k: v for k, v in result.to_dict().items() if k not in ("history", "config")})
    else:
        print(f"{spec.kind}: accuracy {result.accuracy:.4f}, MACs {_fmt(result.flops)} "
              f"({result.flops_ratio:.2%} of baseline), params {_fmt(result.params)} "
              f"({result.params_ratio:.2%}); wrote {out}/lwdna.json, checkpoint.pt, result.json, model/")
    return 0


# ---------------------------------------------------------------------------- parser
def _train_args(p: argparse.ArgumentParser) -> None:
    from hetero.protocol import TrainProtocol

    _add_settings(p, TrainProtocol)


def add_commands(sub) -> None:
    """The method's subcommands: models, complexity, shrink, run."""
    from hetero.protocol import TrainProtocol
    from hetero.trial import TrialSpec

    p = sub.add_parser("models", help="list model families and variants")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("complexity", help="FLOPs and params of a model, counted analytically")
    _add_model_args(p, positional=True)
    p.add_argument("--dataset", choices=DATASETS, default="cifar10")
    p.add_argument("--data-dir", default=None)
    _add_settings(p, TrialSpec, only=("width_mult", "input_size", "exclude"),
                  defaults={"width_mult": 1.0})
    p.set_defaults(width_mult=1.0)
    p.add_argument("--config", default=None, help="a channel-configuration JSON (LW-DNA)")
    p.add_argument("--accounting", choices=("macs", "paper"), default="macs",
                   help="macs: conv+fc (the reference search); paper: + BN, ReLU (paper tables)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_complexity)

    p = sub.add_parser("shrink", help="derive an LW-DNA (widen, score, shrink) without training")
    _add_model_args(p)
    _add_trial_args(p)
    _add_settings(p, TrainProtocol, only=("batch_size", "lr", "weight_decay", "device",
                                          "aux_weight", "logits"))
    p.add_argument("--out", default=None, help="write the LW-DNA configuration JSON here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_shrink)

    p = sub.add_parser("run", help="run one trial: derive and train an LW-DNA, or a baseline")
    _add_model_args(p)
    _add_trial_args(p)
    p.add_argument("--baseline", action="store_true",
                   help="train the uniform network at --width-mult (default 1.0) instead")
    _train_args(p)
    p.add_argument("--out", default=None, help="output folder (default runs/...)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run, save_model=None)
