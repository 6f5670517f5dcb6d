"""Opt-in: `ray up` of cluster.yaml's loopback variant over a private sshd, a smoke sweep through
it, `ray down` (scripts/ray_up_loopback.sh). Needs root or openssh-server + rsync, ~3 minutes.

    HETERO_TEST_CLUSTER=1 python -m pytest tests/test_cluster_loopback.py
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ray_up_loopback.sh"

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("HETERO_TEST_CLUSTER") != "1",
                       reason="opt-in: set HETERO_TEST_CLUSTER=1 (starts sshd, ray up on loopback)"),
]


def test_ray_up_runs_a_sweep_on_both_loopback_nodes(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "WORK": str(work), "KEEP_WORK": "1"}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900,
                          env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # Where each trial ran, read from the store the head's MLflow server wrote (not from what
    # the script printed): the node_ip tag each trial sets from inside its Ray worker.
    assert _trial_nodes(work / "home" / "mlflow" / "mlflow.db") == {"127.0.0.2", "127.0.0.3"}
    # The script leaves nothing of its cluster behind.
    assert "ray_scoped_stop: all stopped" in output


def _trial_nodes(db: Path) -> set[str]:
    from mlflow import MlflowClient

    from sweeps import keys

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.{keys.TAG_KIND} != '{keys.KIND_SWEEP}'")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert finished, "no finished trial in the cluster's store"
    return {r.data.tags.get(keys.TAG_NODE_IP) for r in finished}
