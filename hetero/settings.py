"""Declared settings: a dataclass field that carries its help text, its range and its use.

:class:`~hetero.trial.TrialSpec` and :class:`~hetero.protocol.TrainProtocol` declare every field
with :func:`setting`; the CLI flags, the sweep schema and the MLflow params are derived from these
declarations, so each fact about a setting is written once. Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Setting", "setting", "declared", "check_declared", "TOKEN_SHOWN", "SMOKE_RULES"]

# When a run name writes a searched setting's token that does not vary in the sweep: always, only
# when it varies, or also when it is set away from its default (so that the usual value is quiet).
TOKEN_SHOWN = ("always", "varying", "set")
# How the smoke test trims a searched list (a tuple of values instead replaces it): its first
# value; its two largest; its first, plus the next integer when the other lists leave one trial.
SMOKE_RULES = ("first", "two_largest", "pair")


@dataclass(frozen=True)
class Setting:
    """How one field is described, checked and used outside hetero."""

    help: str
    choices: tuple[Any, ...] | None = None
    lo: float | None = None             # inclusive unless lo_open
    hi: float | None = None
    lo_open: bool = False
    integer: bool = False
    sweep: str | None = None            # "axis": searched list | "fixed": one value | None
    plural: str | None = None           # an axis's key in a sweep spec
    pattern: str | None = None          # a text setting's accepted form (a regular expression)
    pattern_help: str = ""              # ... in words, for the error message
    cli: bool = True                    # a flag of `hetero run` / `hetero shrink`
    lwdna_only: bool = False            # meaningless for a uniform baseline (not logged there)
    # How sweeps and analysis treat the setting besides its value (each derived use reads these,
    # so a new setting needs no hand list elsewhere):
    param: bool = True                  # an MLflow param of each trial and an analysis column
    replicate: bool = False             # trials differing only in it are repeats (averaged)
    curve: bool = False                 # the uniform arm runs along it (`baselines:` lists its
    #                                     values): no shared baseline axis, no comparison context
    token: str | Callable[[Any], str] | None = None  # an axis's run-name token: a str.format
    #                                     template ("t{:.2f}") or a function; default NAME=VALUE
    token_shown: str = "varying"        # one of TOKEN_SHOWN
    smoke: str | tuple[Any, ...] = "first"  # one of SMOKE_RULES, or the smoke test's own values

    def __post_init__(self) -> None:
        if self.token_shown not in TOKEN_SHOWN:
            raise ValueError(f"token_shown must be one of {', '.join(TOKEN_SHOWN)}")
        if not isinstance(self.smoke, tuple) and self.smoke not in SMOKE_RULES:
            raise ValueError(f"smoke must be a tuple of values or one of {', '.join(SMOKE_RULES)}")

    def token_of(self, name: str, value: Any) -> str:
        """The run-name token of ``value`` (``w2.0``, ``t0.50``, ``dhp``)."""
        if self.token is None:
            return f"{name}={value}"
        return self.token(value) if callable(self.token) else self.token.format(value)

    def check(self, name: str, value: Any) -> None:
        """Raise ``ValueError`` naming the setting and what it accepts."""
        if value is None:
            return
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            raise ValueError(f"{name} {value!r} is not supported: pass {self.pattern_help}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, self.choices))}, "
                             f"got {value!r}")
        if self.lo is None and self.hi is None and not self.integer:
            return
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or (self.integer and float(value) != int(value)):
            raise ValueError(f"{name} must be {self.accepted()}, got {value!r}")
        low_bad = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        if low_bad or (self.hi is not None and value > self.hi):
            raise ValueError(f"{name} must be {self.accepted()}, got {value!r}")

    def accepted(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.lo is not None and self.hi is not None:
            return f"{kind} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {self.lo:g}"
        return kind


def setting(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field carrying its :class:`Setting`."""
    return field(default=default, metadata={"setting": Setting(help, **kw)})


def declared(cls: type) -> dict[str, Setting]:
    """Every field of dataclass ``cls`` declared with :func:`setting`, in field order."""
    return {f.name: f.metadata["setting"] for f in fields(cls) if "setting" in f.metadata}


def check_declared(obj: Any, *, skip: tuple[str, ...] = ()) -> None:
    """Check every declared field of ``obj`` against its range (``ValueError`` names it)."""
    for name, s in declared(type(obj)).items():
        if name not in skip:
            s.check(name, getattr(obj, name))
