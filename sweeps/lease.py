"""A sweep's lease on its name: a lock file beside its Tune folder, held by the driver.

The kernel drops the lock when the driver's process ends, however it ends (SIGKILL, a lost
machine's NFS client aside), so a lock that can be taken means no driver runs that sweep: only
then may its leftover RUNNING runs be marked KILLED, and only then may ``--resume`` continue it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SweepRunning", "lease", "held_by", "lease_folder"]

LOCK_SUFFIX = ".lock"


class SweepRunning(ValueError):
    """Another driver holds the sweep's lease; the message says which."""


def lease_folder(storage: str, tracking_uri: str) -> str | None:
    """Where a sweep's lease lives: its (local or shared) storage folder; for a remote storage,
    beside an SQLite tracking store; else nowhere (no lease)."""
    if "://" not in storage:
        return storage
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri.removeprefix("sqlite:///")).parent)
    return None


def _path(folder: str | os.PathLike, sweep: str) -> Path:
    return Path(folder, f"{sweep}{LOCK_SUFFIX}")


def held_by(folder: str | os.PathLike | None, sweep: str) -> str | None:
    """Who holds the lease on ``sweep`` ("pid P on HOST since TIME"), or None when it is free."""
    if folder is None or not _path(folder, sweep).is_file():
        return None
    with open(_path(folder, sweep), "a+") as handle:
        if _try_lock(handle):
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
        handle.seek(0)
        return handle.read().strip() or "another process"


@contextmanager
def lease(folder: str | os.PathLike | None, sweep: str) -> Iterator[None]:
    """Hold the lease on ``sweep`` for the block; :class:`SweepRunning` when a live driver does.
    ``folder`` None (a remote storage): no lease."""
    if folder is None:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    handle = open(_path(folder, sweep), "a+")   # not inherited by Ray's or MLflow's processes
    try:
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SweepRunning(f"sweep {sweep!r} is running ({holder}): wait for it to end or "
                               "stop it, or pass another --name")
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        handle.close()   # closing the file drops the lock


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
