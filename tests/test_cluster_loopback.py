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


def test_ray_up_runs_a_sweep_on_both_loopback_nodes():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "trials ran on both nodes" in output
    assert "node 127.0.0.2" in output and "node 127.0.0.3" in output
    # The script leaves nothing of its cluster behind.
    assert "ray_scoped_stop: all stopped" in output
