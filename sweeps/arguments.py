"""What a sweep was started with, kept beside its Tune state, so that ``--resume --name NAME``
continues the very sweep that was started: the same tracking store, experiment and storage, the
same ``--smoke-test``, and the same spec.

A resume that repeats none of the flags finds the record in the storage folder (the spec's, or
the smoke test's); a flag given again must agree with it. The parent run carries the same record
as its ``sweep_args`` tag, so the UI shows how the sweep was started.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SweepArguments", "RECORD_FILE", "SPEC_FILE", "find_record", "ResumeConflict"]

RECORD_FILE = "hetero-sweep.json"
SPEC_FILE = "spec.yaml"   # the spec as given (before --smoke-test shrank it)


class ResumeConflict(ValueError):
    """``--resume`` asked for something other than what the sweep was started with."""


@dataclass(frozen=True)
class SweepArguments:
    name: str                        # the sweep: Tune experiment folder, MLflow sweep tag
    tracking_uri: str                # resolved (absolute SQLite path)
    experiment: str
    storage: str                     # resolved
    smoke_test: bool = False
    address: str | None = None
    spec: dict[str, Any] = field(default_factory=dict, compare=False)  # as given, not shrunk

    @property
    def folder(self) -> Path:
        return Path(self.storage, self.name)

    def tag(self) -> str:
        """The parent run's ``sweep_args`` tag: the record less the spec (an artifact already)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "spec"}, sort_keys=True)

    def save(self) -> None:
        """Write the record and the spec into the sweep's folder (local storage only: a remote
        storage has no folder here, and its resume repeats the flags)."""
        import yaml

        if "://" in self.storage:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        _write(self.folder / SPEC_FILE, yaml.safe_dump(self.spec, sort_keys=False))
        _write(self.folder / RECORD_FILE, json.dumps(asdict(self), indent=2) + "\n")

    def conflicts(self, given: dict[str, Any]) -> None:
        """Refuse a flag given again with another value than the sweep was started with."""
        for flag, value in given.items():
            started = getattr(self, flag.lstrip("-").replace("-", "_"))
            if value is not None and value is not False and value != started:
                shown = "" if isinstance(value, bool) else f" {value}"
                raise ResumeConflict(
                    f"sweep {self.name!r} was started with {_as_flag(flag, started)}, not "
                    f"{flag}{shown}: resume it with `--resume --name {self.name}` alone (its "
                    f"arguments are kept in {self.folder / RECORD_FILE})")

    def check_spec(self, spec: dict[str, Any], path: str) -> None:
        """The spec given on resume must be the one the sweep started with (its trials' params
        say what they ran)."""
        difference = _first_difference(self.spec, spec)
        if difference:
            raise ResumeConflict(
                f"{path} differs from the spec sweep {self.name!r} was started with "
                f"({difference}): resume with that spec, kept as {self.folder / SPEC_FILE}, or "
                "start a new sweep without --resume")


def _as_flag(flag: str, value: Any) -> str:
    if isinstance(value, bool):
        return flag if value else f"no {flag}"
    return f"{flag} {value}"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)   # atomic: a record is whole or absent


def _first_difference(old: Any, new: Any, path: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if old == new else f"{path}: {old!r} then, {new!r} now"


def find_record(storages: list[str], name: str) -> SweepArguments | None:
    """The record of sweep ``name`` in the first of ``storages`` that holds one."""
    for storage in storages:
        path = Path(storage, name, RECORD_FILE)
        if "://" in storage or not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return SweepArguments(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ResumeConflict(f"the record of sweep {name!r} ({path}) cannot be read ({exc}); "
                                 "restore it, or start a new sweep without --resume") from None
    return None
