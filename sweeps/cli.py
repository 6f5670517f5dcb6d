"""The sweeps' subcommands of ``hetero``: ``sweep`` (Ray Tune + MLflow) and ``export`` (a
trained network from a run or a model folder), added to the one parser by ``hetero_cli``.

Importing this module is cheap: Ray, MLflow and torch load only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeps.tracking import TrackingError

__all__ = ["add_commands", "save_model_folder", "TrackingError"]


def add_commands(sub) -> None:
    p = sub.add_parser("sweep", help="run a sweep spec with Ray Tune, tracked in MLflow")
    add_arguments(p)
    p.set_defaults(func=command)
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
    p.set_defaults(func=export_command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC",
                        help="sweep spec (YAML), e.g. sweeps/configs/quickstart.yaml")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join: 'auto', HOST:PORT or ray://HOST:PORT "
                             "(default: start a private local Ray)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: the spec's, else "
                             "sqlite:///mlflow.db in the current folder)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="shrink the sweep to two 1-epoch lwdna trials + one baseline on "
                             "digits and the CPU, to check the setup in a minute; the spec's "
                             "data folders, stores and GPUs are left alone (Tune state in "
                             "./ray_results, MLflow experiment <experiment>-smoke)")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment (default: the spec's; <it>-smoke with "
                             "--smoke-test)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted sweep as it was started (its tracking "
                             "URI, experiment, --smoke-test and spec are kept with it): "
                             "finished trials are kept, unfinished ones go on from their last "
                             "checkpoint")
    parser.add_argument("--name", default=None,
                        help="sweep name (Tune experiment folder and MLflow sweep tag); "
                             "default: the spec's name")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--verbose", dest="output", action="store_const", const="verbose",
                       help="show Ray Tune's own tables and logs (and the trials' output) "
                            "instead of the one progress line")
    shown.add_argument("--quiet", dest="output", action="store_const", const="quiet",
                       help="print nothing but the summary at the end")
    parser.set_defaults(output="progress")


def command(args: argparse.Namespace) -> int:
    """``hetero sweep``: a spec or tracking problem raises (``hetero_cli`` prints one line);
    an interrupt says how to resume; a sweep with failed trials exits 1."""
    from sweeps.runner import (
        StoreFailed,
        SweepFinished,
        SweepInterrupted,
        run_sweep,
        sigterm_as_interrupt,
    )
    from sweeps.spec import load_spec

    try:
        with sigterm_as_interrupt():
            # Checked by run_sweep: a smoke test must not look into the spec's data folders.
            spec = load_spec(args.spec, check=False)
            results = run_sweep(spec, address=args.address, tracking_uri=args.tracking_uri,
                                resume=args.resume, name=args.name, smoke_test=args.smoke_test,
                                experiment=args.experiment, output=args.output)
    except SweepFinished as exc:
        print(f"hetero sweep: {exc}", file=sys.stderr)
        return 0
    except StoreFailed as exc:   # a failed run: exit 1, one line
        print(f"hetero sweep: failed: {exc}", file=sys.stderr)
        return 1
    except SweepInterrupted as exc:
        print(f"hetero sweep: interrupted; unfinished trials are marked KILLED and left out of "
              f"results. Continue with: hetero sweep {args.spec} {exc.resume_hint}",
              file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("hetero sweep: interrupted before the sweep started; nothing was recorded",
              file=sys.stderr)
        return 130
    return 1 if any(t.error for t in results.trials) else 0


def export_command(args: argparse.Namespace) -> int:
    from hetero.export import DEFAULT_TOLERANCE, export_and_check
    from sweeps.mlmodel import load_network

    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder: pass a file to write, e.g. "
                         f"{Path(args.out) / ('lwdna.' + args.format)}")
    model, folder = load_network(args.model, args.tracking_uri)
    batch, source = _check_batch(model, folder, args.batch)
    check = export_and_check(model, batch[:1], args.format, args.out, check_batch=batch)
    ok = check.ok()
    print(f"wrote {check.path} ({args.format}); max |{args.format} - PyTorch| over "
          f"{check.batch_size} {source}: {check.max_abs_diff:.3g} "
          f"({'<=' if ok else '>'} {DEFAULT_TOLERANCE:g}: {'ok' if ok else 'MISMATCH'})")
    return 0 if ok else 1


def _check_batch(model, folder, size: int):
    """Real images to export with and check on: the model's test split when its dataset loads
    here, else the input example stored with the model. A network with its normalisation inside
    (every one logged now) takes them scaled to [0, 1]; an older folder's bare network takes
    them normalised."""
    from hetero.preprocess import Normalize
    from sweeps.mlmodel import EXTRA_DIR, stored_example, test_batch

    raw = isinstance(getattr(model, "normalize", None), Normalize)
    batch = test_batch(folder, size, raw=raw)
    if batch is not None:
        return batch, "test images"
    batch = stored_example(folder) if raw else None
    if batch is None:
        raise FileNotFoundError(f"model folder {folder} has neither a loadable dataset "
                                f"({EXTRA_DIR}/trial.json) nor an input example: pass a sweep "
                                "trial's run id or the model/ folder `hetero run` wrote, where "
                                "its dataset is available")
    return batch, "images of the model's input example (its dataset is not available here)"


def save_model_folder(folder, state, result, spec) -> None:
    """``hetero run``'s network as an MLflow model folder, the same as a sweep's child run logs."""
    from sweeps.mlmodel import rebuild_network, save_network

    model = rebuild_network(state["config"], state["trainer"])
    info = {"accuracy": result.accuracy, "flops": result.flops, "flops_ratio": result.flops_ratio}
    # the trial's dataset (loaded again, on the CPU) gives the normalisation put in the model
    save_network(model, folder, config=result.config, trial={"kind": spec.kind, **spec.to_dict()},
                 metadata=info)
