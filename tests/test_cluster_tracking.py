"""A cluster's trials must reach the tracking store: a store local to this machine is refused when
nodes run elsewhere, accepted when every node is on this machine (a loopback test cluster).

Two real Ray nodes (`ray start` on 127.0.0.2 and 127.0.0.3, a private temp dir) are joined the way
`hetero sweep --address` joins them; the kernel decides which addresses are this machine's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.runner import cluster_tracking_problem

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform != "linux", reason="all of 127/8 is loopback")]

STOP = Path(__file__).resolve().parent.parent / "scripts" / "ray_scoped_stop.py"
ELSEWHERE = "192.0.2.7"   # TEST-NET-1: never an address of this machine


def ray_cli(*args: str) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # joining a Ray 2.60 cluster needs it
    subprocess.run([str(Path(sys.executable).parent / "ray"), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)


@pytest.fixture(scope="module")
def two_node_ips():
    """The node addresses Ray reports for a head and a worker started on loopback addresses."""
    import ray

    from sweeps.runner import ray_session
    from sweeps.server import free_port

    temp_dir = f"/tmp/hrel{os.getpid()}"   # short: Ray's socket paths must fit 107 bytes
    port = free_port("127.0.0.2")
    try:
        ray_cli("start", "--head", "--node-ip-address=127.0.0.2", f"--port={port}",
                "--num-cpus=1", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                "--disable-usage-stats")
        ray_cli("start", f"--address=127.0.0.2:{port}", "--node-ip-address=127.0.0.3",
                "--num-cpus=1", f"--temp-dir={temp_dir}", "--disable-usage-stats")
        with ray_session(f"127.0.0.2:{port}"):
            yield sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
    finally:
        # Never a bare `ray stop`: it would stop every Ray on this shared machine.
        subprocess.run([sys.executable, str(STOP), temp_dir], check=False, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.parametrize("uri", ["sqlite:////tmp/mlflow.db", "http://127.0.0.1:5000",
                                 "http://localhost:5000"])
def test_a_store_on_this_machine_is_refused_when_nodes_run_elsewhere(two_node_ips, uri):
    assert two_node_ips == ["127.0.0.2", "127.0.0.3"]
    assert cluster_tracking_problem(uri, two_node_ips) is None   # every node is here
    problem = cluster_tracking_problem(uri, [*two_node_ips, ELSEWHERE])
    assert f"nodes on other machines ({ELSEWHERE})" in problem
    assert "--tracking-uri http://<head's private IP>:5000" in problem


def test_a_server_every_node_reaches_is_accepted(two_node_ips):
    assert cluster_tracking_problem("http://10.0.0.5:5000", [*two_node_ips, ELSEWHERE]) is None
