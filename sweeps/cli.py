"""``hetero sweep SPEC``: arguments and command (wired into ``hetero.cli`` by the lead).

Importing this module is cheap: Ray, MLflow and torch load only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_arguments", "command"]


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
                             "digits, to check the setup in a minute")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted sweep: finished trials are kept, "
                             "unfinished ones go on from their last checkpoint")
    parser.add_argument("--name", default=None,
                        help="sweep name (Tune experiment folder and MLflow sweep tag); "
                             "default: the spec's name")


def command(args: argparse.Namespace) -> int:
    from sweeps.runner import SweepInterrupted, sigterm_as_interrupt
    from sweeps.spec import SpecError, load_spec
    from sweeps.tracking import TrackingError

    try:
        with sigterm_as_interrupt():
            spec = load_spec(args.spec)
            from sweeps.runner import run_sweep

            results = run_sweep(spec, address=args.address, tracking_uri=args.tracking_uri,
                                resume=args.resume, name=args.name, smoke_test=args.smoke_test)
    except (SpecError, TrackingError, FileNotFoundError) as exc:
        if os.environ.get("HETERO_DEBUG"):
            raise
        print(f"hetero sweep: error: {exc}", file=sys.stderr)
        return 2
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


def main(argv: list[str] | None = None) -> int:
    """``python -m sweeps.cli SPEC ...`` (the same as ``hetero sweep SPEC ...``)."""
    parser = argparse.ArgumentParser(prog="hetero sweep")
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
