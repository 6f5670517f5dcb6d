"""The `hetero pareto` command: argparse wiring only; the work (and mlflow, pandas, matplotlib)
is imported when the command runs, so building the top-level parser stays light."""

from __future__ import annotations

import argparse
import sys

from analysis.errors import AnalysisError
from sweeps import keys


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
    parser.add_argument("--no-log-to-mlflow", dest="log_to_mlflow", action="store_false",
                        help="do not copy the report onto the sweep's parent run")


def command(args: argparse.Namespace) -> int:
    from analysis.report import create_report  # heavy imports only when the command runs

    try:
        report = create_report(experiment=args.experiment, parent_run_id=args.parent_run_id,
                               tracking_uri=args.tracking_uri, out_dir=args.out,
                               log_x=args.log_x, log_to_mlflow=args.log_to_mlflow)
    except AnalysisError as exc:
        print(f"hetero pareto: error: {exc}", file=sys.stderr)
        return 2
    print(f"report of sweep {report.sweep.name!r} ({len(report.sweep.trials)} trials) "
          f"written to {args.out}: {', '.join(report.paths)}")
    if report.logged_to_run:
        print(f"logged on MLflow run {report.logged_to_run} under {keys.ARTIFACT_REPORT_DIR}/")
    print(report.comparison.paired_verdict)
    print(report.comparison.verdict)
    return 0

