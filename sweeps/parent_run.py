"""The end of a sweep's MLflow parent run when things go wrong: closing it (and its trials'
runs) after an error, telling a failed store or full disk from other errors, disk headroom for
those last writes, and refusing to resume a sweep that finished."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

from sweeps import keys
from sweeps.arguments import SweepArguments
from sweeps.results import SweepFinished, TrialOutcome, reconcile
from sweeps.tracking import TrialTracking, finish_parent_run, is_sqlite, sqlite_path

__all__ = ["StoreFailed", "store_failure", "raise_store_failure", "close_after_error", "Headroom",
           "refuse_finished"]


def refuse_finished(args: SweepArguments) -> None:
    """``--resume`` of a sweep that finished changes nothing (its parent run keeps its end)."""
    from sweeps.tracking import parent_run

    run = parent_run(args.tracking_uri, args.experiment, args.name)
    if run is not None and run.info.status == keys.STATUS_FINISHED:
        raise SweepFinished(args.name, run.info.run_id)


def raise_store_failure(exc: BaseException, uri: str, sweep: str, storage: str) -> None:
    failure = store_failure(exc, uri, sweep, storage)
    if failure is not None:
        raise failure from exc


def close_after_error(client, tracking: TrialTracking, status: str,
                       outcomes: list[TrialOutcome] = ()) -> None:
    # Best effort: the store itself may be what failed, and the original error must surface.
    # A parent left RUNNING here is no driver's: the next sweep of the name, or --resume,
    # finds it so (its lease is free).
    try:
        reconcile(client, tracking, list(outcomes))
        finish_parent_run(client, tracking.parent_run_id, status)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        print(f"warning: could not mark sweep {tracking.sweep!r} {status} in MLflow ({first}); "
              f"`--resume --name {tracking.sweep}` will", file=sys.stderr, flush=True)


class StoreFailed(RuntimeError):
    """The tracking store (or the disk under it) failed while the sweep ran: the sweep ended
    FAILED; the message names the store and how to go on."""


# How the stores word it when the disk under them is full or gone read-only.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


# A disk with less free space than this (the headroom given back included) counts as full: what
# fails on a full disk is often a file read back half-written, not the write itself.
FULL_BELOW = 16 * 2**20


def store_failure(exc: BaseException, uri: str, sweep: str,
                  storage: str = "") -> StoreFailed | None:
    """``exc`` as one line naming the store or the full disk, when that is what failed."""
    import sqlite3

    from mlflow.exceptions import MlflowException

    if isinstance(exc, KeyboardInterrupt):
        return None
    full = _full_disk([sqlite_path(uri) if is_sqlite(uri) else None,
                       None if "://" in storage else storage])
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if full:
        what = f"the disk under {full} is full ({type(exc).__name__}: {first})"
    elif ((isinstance(exc, OSError) and exc.errno in DISK_ERRORS)
          or isinstance(exc, MlflowException | sqlite3.Error)):
        what = f"the tracking store {uri} failed ({first})"
    else:
        return None
    return StoreFailed(f"sweep {sweep!r}: {what}; free disk space or fix the store, then "
                       f"continue with --resume --name {sweep}")


def _full_disk(paths: list) -> str | None:
    import shutil

    for path in filter(None, paths):
        existing = next((p for p in (Path(path), *Path(path).parents) if p.exists()), None)
        if existing is not None and shutil.disk_usage(existing).free < FULL_BELOW:
            return str(existing)
    return None


class Headroom:
    """A little disk space held beside an SQLite store while the sweep runs, and given back for
    its last writes: on a disk that filled up meanwhile, the sweep can still mark its parent
    and trial runs KILLED or FAILED instead of leaving them RUNNING."""

    SIZE = 4 * 2**20

    def __init__(self, uri: str, sweep: str) -> None:
        self.path = sqlite_path(uri).parent / f".{sweep}.headroom" if is_sqlite(uri) else None
        if self.path is None:
            return
        try:
            with open(self.path, "wb") as out:
                out.write(bytes(self.SIZE))
        except OSError:   # no space to hold: nothing to give back either
            self.release()

    def release(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
