"""Speed-up of a sweep on two Ray nodes (127.0.0.2 + 127.0.0.3, `ray start`) against one node.

    python bench/two_node_speedup.py [--epochs 4]

Runs the quickstart's trials (fewer epochs) three times, each on a fresh `ray start` cluster:
1 node x 1 CPU, 2 nodes x 1 CPU (scale-out: the same node added twice), 1 node x 2 CPUs (the
same CPUs as two nodes, no network between them). All trials log to one local MLflow server.
This machine has 2 cores in total: two nodes here can at best use both of them, and they share
them with whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "sweeps" / "configs" / "quickstart.yaml"
STOP = ROOT / "scripts" / "ray_scoped_stop.py"
SETUPS = (("1 node x 1 CPU", (1,)), ("2 nodes x 1 CPU", (1, 1)), ("1 node x 2 CPUs", (2,)))
NODE_IPS = ("127.0.0.2", "127.0.0.3")


def ray_cli(*args: str) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # joining a Ray 2.60 cluster needs it
    subprocess.run([str(Path(sys.executable).parent / "ray"), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def start_nodes(cpus: tuple[int, ...], temp_dir: str) -> str:
    """`ray start` one node per entry of ``cpus`` on loopback addresses; returns the address."""
    from sweeps.server import free_port

    port = free_port(NODE_IPS[0])
    ray_cli("start", "--head", f"--node-ip-address={NODE_IPS[0]}", f"--port={port}",
            f"--num-cpus={cpus[0]}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
            "--disable-usage-stats")
    for ip, n in zip(NODE_IPS[1:], cpus[1:], strict=False):
        ray_cli("start", f"--address={NODE_IPS[0]}:{port}", f"--node-ip-address={ip}",
                f"--num-cpus={n}", f"--temp-dir={temp_dir}", "--disable-usage-stats")
    return f"{NODE_IPS[0]}:{port}"


def stop_nodes(temp_dir: str) -> None:
    # Never a bare `ray stop`: it would stop every Ray on this shared machine.
    subprocess.run([sys.executable, str(STOP), temp_dir], check=False)
    shutil.rmtree(temp_dir, ignore_errors=True)


def trial_nodes(results) -> list[str]:
    from mlflow import MlflowClient

    from sweeps import keys

    client = MlflowClient(results.tracking_uri)
    experiment = client.get_experiment_by_name(results.experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{keys.TAG_PARENT_RUN_ID}` = '{results.parent_run_id}'")
    return sorted(run.data.tags.get(keys.TAG_NODE_IP, "?") for run in runs)


def run_setup(label: str, cpus: tuple[int, ...], spec, tracking_uri: str, index: int) -> dict:
    from sweeps.runner import run_sweep

    temp_dir = f"/tmp/hb{os.getpid()}_{index}"  # short: Ray's socket paths must fit 107 bytes
    try:
        address = start_nodes(cpus, temp_dir)
        results = run_sweep(spec, address=address, tracking_uri=tracking_uri,
                            name=f"{spec.name}-{index}")
    finally:
        stop_nodes(temp_dir)
    nodes = trial_nodes(results)
    return {"label": label, "fit": results.tune_seconds, "wall": results.wall_seconds,
            "trials": len(results.trials), "nodes": {ip: nodes.count(ip) for ip in set(nodes)}}


def report(rows: list[dict]) -> list[str]:
    base = rows[0]["fit"]
    lines = [f"{'setup':<18}{'trials':>7}{'Tuner.fit s':>13}{'speed-up':>10}  trials per node"]
    for row in rows:
        lines.append(f"{row['label']:<18}{row['trials']:>7}{row['fit']:>13.1f}"
                     f"{base / row['fit']:>9.2f}x  {row['nodes']}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--spec", default=str(QUICKSTART))
    args = parser.parse_args()
    from sweeps.server import MlflowServer
    from sweeps.spec import load_spec

    workdir = Path(tempfile.mkdtemp(prefix="hetero-2node-"))
    os.chdir(workdir)
    spec = load_spec(args.spec)
    spec = replace(spec, name="two-node", storage=str(workdir / "ray_results"),
                   protocol=spec.protocol.replace(epochs=args.epochs),
                   resources=replace(spec.resources, max_concurrent=None))
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]), f"(in {workdir})")
    with MlflowServer(f"sqlite:///{workdir / 'mlflow.db'}") as server:
        rows = [run_setup(label, cpus, spec, server.url, i)
                for i, (label, cpus) in enumerate(SETUPS)]
    print("\n".join(["", "== two Ray nodes vs one ==", *report(rows)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
