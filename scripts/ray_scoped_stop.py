#!/usr/bin/env python3
"""Stop only the Ray processes started with one ``--temp-dir`` (and everything below them).

``ray stop`` stops every Ray process of the user on the machine: on a machine shared with other
people's Ray instances that is not acceptable. Ray's own processes carry the temp dir in their
command line; workers and agents rename themselves (``ray::...``) but are children of a raylet.

    python scripts/ray_scoped_stop.py /tmp/hr_1234 [--grace 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for every live process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), command)
    return table


def scoped_pids(temp_dir: str) -> list[int]:
    table = process_table()
    roots = {pid for pid, (_, command) in table.items()
             if temp_dir in command and pid != os.getpid()}
    found, todo = set(roots), list(roots)
    while todo:
        parent = todo.pop()
        children = [pid for pid, (ppid, _) in table.items() if ppid == parent]
        todo += [c for c in children if c not in found]
        found.update(children)
    return sorted(found)


def stop(temp_dir: str, grace: float) -> int:
    pids = scoped_pids(temp_dir)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (pids := [p for p in pids if _alive(p)]):
            time.sleep(0.2)
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("temp_dir", help="the --temp-dir the Ray nodes were started with")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds between TERM and KILL")
    args = parser.parse_args()
    if len(os.path.abspath(args.temp_dir)) < 6:
        parser.error("refusing a temp dir this short: it would match unrelated processes")
    left = stop(os.path.abspath(args.temp_dir), args.grace)
    print(f"ray_scoped_stop: {'all stopped' if not left else f'{left} still alive'}")
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
