"""A local ``mlflow server`` in front of an SQLite file, for the duration of one sweep.

Several trial processes writing into one SQLite file hit "database is locked"; a single server
process serialises the writes. The server gets its own process group (stopped as a group) and,
on Linux, dies with the process that started it, even when that one is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sweeps.tracking import TrackingError, sqlite_path

__all__ = ["MlflowServer", "free_port"]

# Runs before mlflow in the child: ask the kernel to SIGTERM it when its parent dies, then exec.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('parent already gone')\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MlflowServer:
    """``with MlflowServer("sqlite:////abs/mlflow.db") as server: ... server.url ...``"""

    def __init__(self, backend_uri: str, *, host: str = "127.0.0.1", port: int | None = None,
                 artifacts_dir: str | os.PathLike | None = None,
                 log_path: str | os.PathLike | None = None) -> None:
        db_folder = sqlite_path(backend_uri).parent
        self.backend_uri, self.host = backend_uri, host
        self.port = port or free_port(host)
        self.artifacts_dir = Path(artifacts_dir or db_folder / "mlartifacts")
        self.log_path = Path(log_path or db_folder / "mlflow-server.log")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        mlflow = ["-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
                  "--artifacts-destination", str(self.artifacts_dir), "--host", self.host,
                  "--port", str(self.port), "--workers", "1"]
        if sys.platform.startswith("linux"):
            return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *mlflow]
        return [sys.executable, *mlflow]

    def start(self, timeout: float = 90.0) -> MlflowServer:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TrackingError(f"mlflow server for {self.backend_uri} exited with code "
                                    f"{self.process.returncode}; see {self.log_path}")
            if self._healthy():
                return
            time.sleep(0.2)
        self.stop()
        raise TrackingError(f"mlflow server for {self.backend_uri} was not ready after "
                            f"{timeout:.0f} s; see {self.log_path}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL if it has not gone after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                _wait_group_gone(self.process.pid, wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _wait_group_gone(pgid: int, timeout: float) -> None:
    # uvicorn (a child of the CLI) may outlive it by a moment; a stopped server frees its port.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise subprocess.TimeoutExpired(f"process group {pgid}", timeout)
