"""The `hetero pareto` command: argparse wiring only; the work (and mlflow, pandas, matplotlib)
is imported when the command runs, so building the top-level parser stays light."""

from __future__ import annotations

import argparse
import os

from analysis.errors import AnalysisError
from sweeps import keys


def add_commands(sub) -> None:
    """The analysis subcommand of ``hetero``: ``pareto``."""
    p = sub.add_parser("pareto", help="Pareto fronts, LW-DNA vs uniform, plots and report")
    add_arguments(p)
    p.set_defaults(func=command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("which sweep")
    where.add_argument("--experiment", metavar="NAME",
                       help="MLflow experiment of the sweep (its most recent sweep is used)")
    where.add_argument("--parent-run-id", metavar="ID",
                       help="parent run of the sweep to report (picks one of several re-runs)")
    where.add_argument("--tracking-uri", metavar="URI", default=None,
                       help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                            "sqlite:///mlflow.db in the current folder)")
    parser.add_argument("--out", metavar="DIR", required=True,
                        help="folder for pareto.png/.svg, widths.png, curves.png, front.csv, "
                             "trials.csv, paired.csv, arms.csv, summary.md (and datasize.png "
                             "when the sweep has several data fractions)")
    parser.add_argument("--log-x", action="store_true", help="log-scale FLOPs axis")
    parser.add_argument("--register", metavar="NAME", default=None,
                        help="register the front's networks and the width-1.0 baseline as "
                             "versions of model NAME in the MLflow Model Registry")
    parser.add_argument("--no-log-to-mlflow", dest="log_to_mlflow", action="store_false",
                        help="do not copy the report onto the sweep's parent run")


def _check_out(out: str) -> None:
    # Before the store is read: a file in the way would fail only after all the work.
    if os.path.exists(out) and not os.path.isdir(out):
        raise AnalysisError(f"--out {out} is a file: pass a folder for the report (it is "
                            "created if missing)")


def command(args: argparse.Namespace) -> int:
    """``hetero pareto``; an AnalysisError raises (``hetero_cli`` prints one line)."""
    from analysis.report import create_report  # heavy imports only when the command runs

    _check_out(args.out)
    report = create_report(experiment=args.experiment, parent_run_id=args.parent_run_id,
                           tracking_uri=args.tracking_uri, out_dir=args.out,
                           log_x=args.log_x, log_to_mlflow=args.log_to_mlflow)
    sweep = report.sweep
    left_out = (f"; {sweep.n_failed} failed, {sweep.n_unfinished - sweep.n_failed} unfinished "
                "runs left out" if sweep.n_unfinished else "")
    print(f"report of sweep {sweep.name!r} ({len(sweep.trials)} finished trials{left_out}) "
          f"written to {args.out}: {', '.join(report.paths)}")
    if report.logged_to_run:
        print(f"logged on MLflow run {report.logged_to_run} under {keys.ARTIFACT_REPORT_DIR}/")
    _print_links(report)
    print(report.comparison.paired_verdict)
    print(report.comparison.verdict)
    if args.register:
        return _register(report, args.register)
    return 0


def _print_links(report) -> None:
    from sweeps.tracking import is_sqlite, ui_url

    sweep = report.sweep
    where = (f" (after `mlflow ui --backend-store-uri {sweep.tracking_uri}`)"
             if is_sqlite(sweep.tracking_uri) else "")
    print(f"MLflow UI{where}: runs {ui_url(sweep.tracking_uri, sweep.experiment_id)}")
    if report.logged_to_run:
        summary = ui_url(sweep.tracking_uri, sweep.experiment_id, report.logged_to_run,
                         f"{keys.ARTIFACT_REPORT_DIR}/summary.md")
        print(f"  report {summary}")


def _register(report, name: str) -> int:
    from analysis.register import register_winners

    versions = register_winners(report.sweep, report.front, name)
    print(f"registered {len(versions)} versions of model {name!r}:")
    for v in versions:
        print(f"  version {v.version:>3}  @{v.alias:<9} accuracy {v.accuracy:.4f}  "
              f"FLOPs {v.flops:,.0f} ({v.flops_ratio:.3f} of baseline)  run {v.run_id}")
    print(f"  load one: mlflow.pytorch.load_model('models:/{name}@{versions[0].alias}')")
    return 0

