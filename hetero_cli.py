"""The ``hetero`` command: one parser over the method (``hetero``), the sweeps (``sweeps``) and
the analysis (``analysis``), and one error handler for all of them.

It sits above the three packages so that none of them imports another's command line. Each
package only adds its subcommands (``add_commands``); their heavy imports (torch, Ray, MLflow,
pandas) happen when a command runs, so ``hetero --help`` answers at once.
"""

from __future__ import annotations

import os
import sys

import analysis.cli
import hetero.cli
import sweeps.cli
from analysis.errors import AnalysisError
from hetero.errors import TrainingDiverged

__all__ = ["build_parser", "main"]

# What a user can fix: printed as one line naming the fix, exit code 2 (HETERO_DEBUG=1: the
# traceback instead). SpecError and UnsupportedModel are ValueErrors; the tracking store's
# errors are TrackingError.
USER_ERRORS = (hetero.cli.CliError, ValueError, FileNotFoundError, AnalysisError,
               sweeps.cli.TrackingError)


def build_parser() -> hetero.cli.OneLineParser:
    parser = hetero.cli.OneLineParser(
        prog="hetero", description="Widen-shrink search for layer-wise differentiated channel "
                                   "configurations (LW-DNA), run as distributed sweeps.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    hetero.cli.add_commands(sub)
    sweeps.cli.add_commands(sub)
    analysis.cli.add_commands(sub)
    # `hetero run` also leaves its network as an MLflow model folder, as a sweep's trial does.
    sub.choices["run"].set_defaults(save_model=sweeps.cli.save_model_folder)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad flag (one line, exit 2) or --help (exit 0)
        return int(exc.code or 0)
    debug = bool(os.environ.get("HETERO_DEBUG"))
    try:
        return int(args.func(args) or 0)
    except TrainingDiverged as exc:  # the run failed (exit 1), not the command line
        if debug:
            raise
        print(f"hetero {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"hetero {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hetero {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
