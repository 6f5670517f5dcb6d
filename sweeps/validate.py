"""The sweep spec's validator library and schemas: raw YAML data checked key by key.

A validator is ``check(path, value) -> value``: it returns the value as the spec holds it, or
raises :class:`SpecError` naming the key path and what is accepted. The ``space`` schema is
derived from hetero's TrialSpec declarations (each setting's range, choices and type), so nothing
here names a hyperparameter. Standard library and hetero's stdlib-only modules only.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, NamedTuple

from hetero.protocol import TrainProtocol
from hetero.settings import Setting, declared
from hetero.trial import axes as trial_axes
from hetero.trial import defaults as trial_defaults
from hetero.trial import settings as trial_settings
from sweeps import keys
from sweeps.samplers import SAMPLERS

__all__ = ["SpecError", "Range", "Validator", "NAME_PATTERN", "AXES", "FIXED", "RANGE_DIMENSIONS",
           "MATCHED", "MOVED", "SPACE_SCHEMA", "SEARCH_SCHEMA", "SCHEDULER_SCHEMA",
           "RESOURCE_SCHEMA", "TRACKING_SCHEMA", "MODEL_SCHEMA", "DATASET_SCHEMA",
           "ABLATION_SCHEMA", "TOP_LEVEL_KEYS"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SpecError(ValueError):
    """A sweep spec problem; the message names the key path and the fix."""


class Range(NamedTuple):
    """A continuous interval ``{low, high}`` that Optuna samples (uniformly for Tune's domain).

    A tuple of its two ends, so code that checks or enumerates a dimension's values (the
    reachability check, the smoke test) sees the interval's corners.
    """

    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


# The space section mirrors hetero's TrialSpec (its single owner): every "axis" setting is a
# searched list (or a {low, high} range for a real-valued one) under its plural name, every
# "fixed" setting one value for the whole sweep. Nothing here names a hyperparameter.
AXES = trial_axes()                                          # setting -> plural key
FIXED = tuple(n for n, s in trial_settings().items() if s.sweep == "fixed")
# Real-valued axes may be continuous ranges (Optuna samples them).
RANGE_DIMENSIONS = tuple(n for n in AXES if isinstance(trial_defaults()[n], float))
# `baselines: [..., matched]`: besides the listed widths, the uniform width whose cost matches
# each LW-DNA target (the uniform arm at the LW-DNA's exact FLOPs, not only a grid).
MATCHED = "matched"
# Keys that moved: an old spec gets the new place named instead of "unknown key".
MOVED = {"protocol.kd_weight": "space.kd_weights (a list: KD is a lever both arms run with)",
         "protocol.kd_temperature": "space.kd_temperature"}


# ---------------------------------------------------------------------------------- validators
Validator = Callable[[str, Any], Any]


def _fail(path: str, accepted: str, value: Any) -> SpecError:
    return SpecError(f"{path} must be {accepted}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """The value as the error shows it: cut short, so one error is one readable line."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring = 3, 8, 8, 60
    return short.repr(value)


def _number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            integer: bool = False) -> Validator:
    """A number in a range, checked as a declared setting with that range is."""
    return _declared_number(Setting("", lo=lo, hi=hi, lo_open=lo_open, integer=integer))


def _declared_number(declared: Setting) -> Validator:
    """A number as ``declared`` accepts it (its range: :meth:`Setting.check`), given with the
    YAML type it needs: an integer setting takes ``2``, never ``2.0`` or ``true``."""
    def check(path: str, value: Any) -> Any:
        ok_type = isinstance(value, int) if declared.integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            raise _fail(path, declared.accepted(), value)
        try:
            declared.check(path, value)
        except ValueError:
            raise _fail(path, declared.accepted(), value) from None
        return value if declared.integer else float(value)

    return check


def _one_of(*choices: str) -> Validator:
    def check(path: str, value: Any) -> Any:
        if value not in choices:
            raise _fail(path, "one of " + ", ".join(choices), value)
        return value

    return check


def _text(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, "a non-empty string", value)
    return value


def _name(path: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise _fail(path, "a name of letters, digits, '_', '.' or '-'", value)
    return value


def _flag(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def _optional(inner: Validator) -> Validator:
    return lambda path, value: None if value is None else inner(path, value)


def _mapping(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, "a mapping", value)
    return dict(value)


def _list(inner: Validator, *, allow_empty: bool = False) -> Validator:
    def check(path: str, value: Any) -> tuple[Any, ...]:
        items = value if isinstance(value, list | tuple) else [value]
        if not items and not allow_empty:
            raise _fail(path, "a non-empty list", value)
        checked = tuple(inner(f"{path}[{i}]", item) for i, item in enumerate(items))
        if len(set(checked)) != len(checked):
            raise _fail(path, "a list without repeated values", value)
        return checked

    return check


def _list_or_range(inner: Validator) -> Validator:
    """A list of values, or ``{low, high}``: a continuous range (Optuna search only)."""
    as_list = _list(inner)

    def check(path: str, value: Any) -> tuple[Any, ...] | Range:
        if not isinstance(value, Mapping):
            return as_list(path, value)
        _check_keys(path, value, ("low", "high"))
        if set(value) != {"low", "high"}:
            raise _fail(path, "a list or a range {low: L, high: H}", dict(value))
        low, high = inner(f"{path}.low", value["low"]), inner(f"{path}.high", value["high"])
        if not low < high:
            raise _fail(path, "a range with low < high", dict(value))
        return Range(low, high)

    return check


# ---------------------------------------------------------------------------------- schemas
def _setting(name: str) -> Validator:
    """A validator from the TrialSpec setting's own declaration (range, choices, type)."""
    declared = trial_settings()[name]
    default = trial_defaults()[name]
    ranged = declared.integer or declared.lo is not None or declared.hi is not None
    as_number = _declared_number(declared)

    def check(path: str, value: Any) -> Any:
        if ranged and (value is not None or default is not None):
            return as_number(path, value)
        numeric = isinstance(default, int | float) and not isinstance(default, bool)
        if isinstance(value, bool) and numeric or (numeric and not isinstance(value, int | float)):
            raise _fail(path, declared.accepted(), value)
        if isinstance(default, str) and not isinstance(value, str):
            raise _fail(path, "one of " + ", ".join(declared.choices) if declared.choices
                        else "a string", value)
        try:
            declared.check(name, value)
        except ValueError:
            accepted = ("one of " + ", ".join(map(str, declared.choices)) if declared.choices
                        else declared.accepted())
            raise _fail(path, accepted, value) from None
        return float(value) if isinstance(default, float) else value

    return check


SPACE_SCHEMA: dict[str, Validator] = {
    **{plural: (_list_or_range if name in RANGE_DIMENSIONS else _list)(_setting(name))
       for name, plural in AXES.items()},
    **{name: _setting(name) for name in FIXED},
}
SEARCH_SCHEMA: dict[str, Validator] = {
    "type": _one_of("grid", "random", "optuna"),
    "num_samples": _number(1, integer=True),
    "sampler": _one_of(*SAMPLERS),
    "seed": _number(0, integer=True),
}
SCHEDULER_SCHEMA: dict[str, Validator] = {
    "type": _one_of("fifo", "asha"),
    "grace_period": _number(1, integer=True),
    "reduction_factor": _number(1, lo_open=True),
}
RESOURCE_SCHEMA: dict[str, Validator] = {
    "cpus": _number(0, lo_open=True),
    "gpus": _number(0),
    "max_concurrent": _optional(_number(1, integer=True)),
}
# The experiment name also names the artifact folder of an SQLite store: a name, never a path.
TRACKING_SCHEMA: dict[str, Validator] = {
    "uri": _optional(_text), "experiment": _optional(_name),
    "models": _one_of(keys.MODELS_ALL, keys.MODELS_NONE),
    "latency_batch": _number(0, integer=True),
}


MODEL_SCHEMA: dict[str, Validator] = {
    "name": _text,
    "variant": _optional(lambda path, v: str(_number(1, integer=True)(path, v))
                         if not isinstance(v, str) else v),
    "options": _mapping,
}
DATASET_SCHEMA: dict[str, Validator] = {"name": _text, "data_dir": _optional(_text),
                                        "download": _flag}
TOP_LEVEL_KEYS = ("name", "model", "dataset", "protocol", "space", "ablations", "baselines",
                  "search", "scheduler", "resources", "tracking", "storage", "retries")
# What an ablation may change: space's searched lists (its fixed settings hold sweep-wide).
ABLATION_SCHEMA = {plural: SPACE_SCHEMA[plural] for plural in AXES.values()}


def _check_keys(path: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            if where in MOVED:
                raise SpecError(f"{where} has moved: give it as {MOVED[where]}")
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            scope = f"under {path!r}" if path else "at the top level"
            raise SpecError(f"unknown key {where!r}{maybe}; allowed keys {scope}: "
                            f"{', '.join(allowed)}")


def _section(path: str, data: Any, schema: dict[str, Validator], cls: type) -> Any:
    data = {} if data is None else _mapping(path, data)
    _check_keys(path, data, tuple(schema))
    return cls(**{key: schema[key](f"{path}.{key}", value) for key, value in data.items()})


def _named_section(path: str, data: Any, schema: dict[str, Validator], cls: type) -> Any:
    # `model: resnet56` is short for `model: {name: resnet56}`.
    if isinstance(data, str):
        data = {"name": data}
    if data is None or (isinstance(data, Mapping) and "name" not in data):
        raise SpecError(f"{path} is required: give a name, e.g. `{path}: "
                        f"{'resnet56' if path == 'model' else 'cifar10'}`")
    return _section(path, data, schema, cls)


def _protocol(data: Any) -> TrainProtocol:
    data = {} if data is None else _mapping("protocol", data)
    defaults = {f.name: f.default for f in fields(TrainProtocol)}
    _check_keys("protocol", data, tuple(defaults))
    settings = declared(TrainProtocol)
    for key, value in data.items():
        _check_type(f"protocol.{key}", value, defaults[key])
        try:  # each field's own declared range; its message starts with the field's name
            settings[key].check(key, value)
        except ValueError as exc:
            raise SpecError(f"protocol.{exc}") from None
    try:
        return TrainProtocol(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except ValueError as exc:  # the checks across fields (milestones, warm-up)
        raise SpecError(f"protocol: {str(exc).removeprefix('training protocol: ')}") from None


def _check_type(path: str, value: Any, default: Any) -> None:
    # The dataclass defaults say what each protocol field holds.
    if isinstance(default, bool):
        _flag(path, value)
    elif isinstance(default, int):
        _number(integer=True)(path, value)
    elif isinstance(default, float):
        _number()(path, value)
    elif isinstance(default, str):
        _text(path, value)
    elif isinstance(default, tuple):
        _list(_number(), allow_empty=True)(path, value)


def _baseline_width(path: str, value: Any) -> float | str:
    if value == MATCHED:
        return value
    return _number(0, 8, lo_open=True)(path, value)
