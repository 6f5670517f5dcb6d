"""Every shipped spec's `--smoke-test` runs where a user clones the repository: through the
installed `hetero` command, from a scratch folder outside the repository (no `../shared`, no
`runs/`), touching none of the spec's data folders, stores or GPU settings.

Slow: one real smoke sweep per spec (Ray, an MLflow server, two one-epoch LW-DNA trials and a
baseline on digits, plus each ablation's grid once more).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "sweeps" / "configs").glob("*.yaml"))
HETERO = Path(sys.executable).parent / "hetero"   # the console script pip installed


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_the_smoke_test_of_a_shipped_spec_runs_from_a_scratch_folder(path, tmp_path):
    import yaml
    from mlflow import MlflowClient

    assert not tmp_path.is_relative_to(ROOT) and not (tmp_path.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    done = subprocess.run([str(HETERO), "sweep", str(path), "--smoke-test"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # every trial finished: two LW-DNAs and a baseline, and each ablation's grid once more
    ran = re.search(r": (\d+) trials \((\d+) finished, 0 stopped early, 0 failed\)", done.stdout)
    assert ran and ran[1] == ran[2] and int(ran[1]) >= 3, done.stdout[-3000:]
    # only the smoke test's own places: ./ray_results and ./mlflow.db (+ its artifacts, the log
    # of the server in front of it); none of the spec's (runs/..., its data folder)
    assert {p.name for p in tmp_path.iterdir()} <= {"ray_results", "mlflow.db", "mlartifacts",
                                                    "mlflow-server.log"}
    spec = yaml.safe_load(path.read_text())
    experiment = (spec.get("tracking") or {}).get("experiment") or spec["name"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # MLflow makes its own 'Default' experiment in every new store
    assert {e.name for e in client.search_experiments()} - {"Default"} == {f"{experiment}-smoke"}
