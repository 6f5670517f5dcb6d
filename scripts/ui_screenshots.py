"""Screenshots of the MLflow UI for the README, as a user first sees it: a fresh headless Chromium
per page, no clicks, no stored UI state.

    python scripts/ui_screenshots.py --tracking-uri sqlite:///mlflow.db --experiment quickstart \
        --out docs/

It serves the store with ``mlflow server`` (sweeps.server) and opens the pages hetero's links
point at: the experiment's training-runs view (what `hetero sweep` and `hetero pareto` print),
the sweep's parent run (its description, summary metrics and params), its report (the link in
its description) and its best LW-DNA trial (description, metrics and logged model). MLflow's UI
is a single-page app that loads its data after the page itself: Chromium's virtual time budget
lets it finish before the capture.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from sweeps import keys
from sweeps.tracking import resolve_tracking_uri, ui_route

WINDOW = "1920,1200"
VIRTUAL_TIME_MS = 20_000     # MLflow's UI needs 15 s or more of (virtual) time to settle


def screenshot(url: str, path: Path, *, window: str = WINDOW) -> None:
    """``url`` captured to ``path`` by a fresh headless Chromium (its own empty profile)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="hetero-chromium-") as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={window}",
                        f"--virtual-time-budget={VIRTUAL_TIME_MS}", f"--user-data-dir={profile}",
                        f"--screenshot={path}", url],
                       check=True, capture_output=True, timeout=180)
    print(f"wrote {path} ({url})")


def _pages(client, experiment: str) -> dict[str, str]:
    """File name -> UI route: the runs table, the newest sweep's parent, its best LW-DNA."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"no experiment {experiment!r} in this store")
    exp = found.experiment_id
    parent = client.search_runs([exp], f"tags.{keys.TAG_KIND} = '{keys.KIND_SWEEP}'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    trial = client.search_runs(
        [exp], f"tags.{keys.TAG_KIND} = '{keys.KIND_LWDNA}' and "
               f"tags.`{keys.TAG_PARENT_RUN_ID}` = '{parent.info.run_id}'",
        order_by=[f"metrics.{keys.METRIC_ACCURACY} DESC"], max_results=1)[0]
    return {"mlflow_experiment.png": ui_route(exp),
            "mlflow_parent_run.png": ui_route(exp, parent.info.run_id),
            "mlflow_report.png": ui_route(exp, parent.info.run_id,
                                          f"{keys.ARTIFACT_REPORT_DIR}/summary.md"),
            "mlflow_child_run.png": ui_route(exp, trial.info.run_id)}


def main() -> None:
    from mlflow import MlflowClient

    from sweeps.server import MlflowServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None, help="SQLite store (default ./mlflow.db)")
    parser.add_argument("--experiment", default="quickstart")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    uri = resolve_tracking_uri(args.tracking_uri)
    pages = _pages(MlflowClient(uri), args.experiment)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with MlflowServer(uri) as server:
        for name, route in pages.items():
            screenshot(f"{server.url}/{route}", out / name)


if __name__ == "__main__":
    main()
