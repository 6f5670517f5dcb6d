"""Ray for a sweep: a private local Ray (loopback only) or a joined cluster (token auth, the
token file private), SIGTERM as an interrupt, and what Ray's nodes must offer: the resources one
trial asks for, and a tracking store every node can reach."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweeps.spec import SpecError, SweepSpec
from sweeps.tracking import TrackingError, is_loopback_uri, is_sqlite

__all__ = ["ray_session", "sigterm_as_interrupt", "private_token_file", "cluster_tracking_problem",
           "check_cluster_tracking", "resource_problem", "check_local_resources",
           "check_cluster_resources"]

# Keeps a local Ray from reserving 30 % of the machine's memory for objects we never store.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


LOCAL_NODE_IP_ENV = "HETERO_RAY_NODE_IP"


CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # read by Ray: False keeps 127.0.0.1 as is


def check_local_resources(spec: SweepSpec) -> None:
    """A private Ray gets this machine's CPUs and GPUs: a trial asking for more would wait for
    them forever. (A Ray already up, or a cluster, is checked once joined.)"""
    import ray
    import torch

    if ray.is_initialized():
        return
    node = {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
    problem = resource_problem(spec, [node], "this machine")
    if problem:
        raise SpecError(problem)


def check_cluster_resources(spec: SweepSpec, address: str | None) -> None:
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    problem = resource_problem(spec, nodes, "the Ray cluster" if address else "this Ray")
    if problem:
        raise SpecError(problem)


def resource_problem(spec: SweepSpec, nodes: list[dict[str, float]], where: str) -> str | None:
    """Why no node of ``nodes`` (Ray resource dicts) can run one trial of ``spec`` (None if one
    can): Ray would keep such a trial pending forever."""
    want = spec.resources
    if any(n.get("CPU", 0) >= want.cpus and n.get("GPU", 0) >= want.gpus for n in nodes):
        return None
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if want.gpus > gpus:
        has = f"at most {gpus:g} GPU(s) on a node" if gpus else "no GPU"
        return (f"resources.gpus {want.gpus:g}: {where} has {has}, so a trial would wait for "
                "one forever; set resources.gpus: 0 and protocol.device: auto (or run "
                "--smoke-test, which runs on the CPU)")
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    return (f"resources.cpus {want.cpus:g}: {where} has at most {cpus:g} CPUs on a node (with "
            f"{want.gpus:g} GPUs), so a trial would wait forever; lower resources.cpus")


def check_cluster_tracking(uri: str, address: str | None) -> None:
    """Refuse a store that trials on other machines cannot reach (they would fail or log apart)."""
    if address is None:
        return
    import ray

    ips = sorted({node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")})
    problem = cluster_tracking_problem(uri, ips)
    if problem:
        raise TrackingError(problem)


def cluster_tracking_problem(uri: str, node_ips: list[str]) -> str | None:
    """Why trials on the nodes ``node_ips`` cannot log to ``uri`` (None when they can).

    Loopback URIs and SQLite files (and the local server a sweep puts in front of one) exist on
    this machine only: fine for nodes on this machine (a loopback test cluster), not for others.
    """
    elsewhere = [ip for ip in node_ips if not _on_this_machine(ip)]
    if not elsewhere or not (is_loopback_uri(uri) or is_sqlite(uri)):
        return None
    return (f"the Ray cluster has nodes on other machines ({', '.join(elsewhere)}), and trials "
            f"there cannot reach the tracking store {uri} (it is local to this machine): start "
            "`mlflow server --host <head's private IP>` on the head and pass --tracking-uri "
            "http://<head's private IP>:5000")


def _on_this_machine(ip: str) -> bool:
    # Only addresses of this machine's own interfaces can be bound here.
    import socket

    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((ip, 0))
        return True
    except OSError:
        return False


@contextmanager
def ray_session(address: str | None = None, **init_kwargs: Any) -> Iterator[float]:
    """Ray for the sweep's duration: yields the seconds ``ray.init`` took (0 if already up).

    Whatever way the block is left (an error, Ctrl-C, SIGTERM turned into KeyboardInterrupt by
    the CLI), a Ray this started is shut down, its GCS, raylet, agents and workers with it.
    """
    import ray

    if ray.is_initialized():
        yield 0.0
        return
    with _loopback_only(address is None and LOCAL_NODE_IP_ENV not in os.environ):
        if address is None:
            # "local": never attach to some other `ray start` cluster on this machine by accident.
            init_kwargs = {"address": "local", "include_dashboard": False,
                           "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
                           **_local_node_ip(), **init_kwargs}
        else:
            _token_auth_for_clusters()
            init_kwargs = {"address": address, **init_kwargs}
        start = time.perf_counter()
        ray.init(**init_kwargs)
        private_token_file()   # a local Ray may just have generated it
        try:
            # ray.init installs a handler that aborts the driver on SIGTERM: take it back, so
            # that SIGTERM unwinds like Ctrl-C (runs KILLED, Ray and the server stopped).
            with sigterm_as_interrupt():
                yield time.perf_counter() - start
        finally:
            ray.shutdown()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a batch system's stop) raises KeyboardInterrupt while in the block."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        # A handler installed outside Python (Ray's) reads back as None: default it.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def _loopback_only(enabled: bool) -> Iterator[None]:
    """A private Ray that listens on 127.0.0.1 only.

    Ray's gRPC servers (GCS, raylet, workers) bind every interface unless the node address is
    exactly 127.0.0.1, and on Linux Ray swaps 127.0.0.1 for the machine's external address
    unless it believes multi-node clusters are off (its Windows/macOS default). A private Ray
    needs no cluster: turn that off while it starts, for this process and the ones it spawns.
    """
    if not enabled:
        yield
        return
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(CLUSTER_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[CLUSTER_ENV] = "0"
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[0]
        if saved[1] is None:
            os.environ.pop(CLUSTER_ENV, None)
        else:
            os.environ[CLUSTER_ENV] = saved[1]


def _token_auth_for_clusters() -> None:
    # Ray 2.60 clusters use token authentication by default, but ray.init with an explicit
    # address only sends the token (~/.ray/auth_token, RAY_AUTH_TOKEN[_PATH]) in token mode.
    # This is what Ray itself does for address="auto"; RAY_AUTH_MODE set by the user wins.
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    private_token_file()
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def private_token_file() -> Path | None:
    """Make the Ray token file readable by its owner only (0600); returns it if it exists.

    ``ray get-auth-token --generate`` writes it with the umask's mode (0644: any user of the
    machine could read the token, and join or run code on the cluster), and ``ray up`` copies it
    to every node as it is.
    """
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None
    if mode & 0o077:
        path.chmod(0o600)
        print(f"note: {path} was readable by other users (mode {mode:o}); made it 0600",
              file=sys.stderr, flush=True)
    return path


def _local_node_ip() -> dict[str, str]:
    # 127.0.0.1 (loopback only, see _loopback_only) unless HETERO_RAY_NODE_IP names another
    # address (empty: Ray's own choice, the machine's external address).
    ip = os.environ.get(LOCAL_NODE_IP_ENV, "127.0.0.1")
    return {"_node_ip_address": ip} if ip else {}
