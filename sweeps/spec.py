"""The sweep spec: a YAML file validated into frozen dataclasses before anything starts.

Structure and values are checked here with no heavy imports; :func:`check_spec` then asks hetero
whether the model, the criteria and the dataset exist and whether every (width, floors, target)
combination is reachable. Errors name the key path and what is accepted.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Any, NamedTuple

from hetero.protocol import TrainProtocol
from hetero.settings import Setting, declared
from hetero.trial import axes as trial_axes
from hetero.trial import defaults as trial_defaults
from hetero.trial import settings as trial_settings
from sweeps import keys
from sweeps.samplers import SAMPLERS

__all__ = ["SpecError", "SweepSpec", "matched_widths", "ModelSpec", "DatasetSpec", "SpaceSpec", "SearchSpec",
           "SchedulerSpec", "ResourceSpec", "TrackingSpec", "load_spec",
           "spec_from_dict", "check_spec", "base_config", "smoke_test", "Range",
           "RANGE_DIMENSIONS"]

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


# ---------------------------------------------------------------------------------- dataclasses
@dataclass(frozen=True)
class ModelSpec:
    name: str
    variant: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    data_dir: str | None = None
    download: bool = False


# The space section mirrors hetero's TrialSpec (its single owner): every "axis" setting is a
# searched list (or a {low, high} range for a real-valued one) under its plural name, every
# "fixed" setting one value for the whole sweep. Nothing here names a hyperparameter.
AXES = trial_axes()                                          # setting -> plural key
FIXED = tuple(n for n, s in trial_settings().items() if s.sweep == "fixed")
# Real-valued axes may be continuous ranges (Optuna samples them).
RANGE_DIMENSIONS = tuple(n for n in AXES if isinstance(trial_defaults()[n], float))
# Axes the uniform baselines run over too (seeds, data fractions, KD): every axis that is not
# LW-DNA-only, but the one their curve runs along (the width), whose values they list themselves.
BASELINE_AXES = tuple(n for n in AXES
                      if not trial_settings()[n].lwdna_only and not trial_settings()[n].curve)
# `baselines: [..., matched]`: besides the listed widths, the uniform width whose cost matches
# each LW-DNA target (the uniform arm at the LW-DNA's exact FLOPs, not only a grid).
MATCHED = "matched"
# Keys that moved: an old spec gets the new place named instead of "unknown key".
MOVED = {"protocol.kd_weight": "space.kd_weights (a list: KD is a lever both arms run with)",
         "protocol.kd_temperature": "space.kd_temperature"}


def _values(self, dimension: str) -> tuple[Any, ...] | Range:
    return getattr(self, AXES[dimension])


def _combinations(self) -> list[dict[str, Any]]:
    lists = [self.values(d) for d in self.DIMENSIONS]
    return [dict(zip(self.DIMENSIONS, combo, strict=True)) for combo in itertools.product(*lists)]


def _varying(self) -> tuple[str, ...]:
    """The searched dimensions with more than one value (a {low, high} range included), in
    DIMENSIONS order: what tells the sweep's trials apart."""
    return tuple(d for d in self.DIMENSIONS if len(self.values(d)) > 1)


def _fixed_settings(self) -> dict[str, Any]:
    """The TrialSpec fields every trial of the sweep shares."""
    return {name: getattr(self, name) for name in FIXED}


SpaceSpec = make_dataclass(
    "SpaceSpec",
    [(plural, tuple, field(default=(trial_defaults()[name],))) for name, plural in AXES.items()]
    + [(name, type(trial_defaults()[name]), field(default=trial_defaults()[name]))
       for name in FIXED],
    frozen=True,
    namespace={"DIMENSIONS": tuple(AXES), "values": _values, "combinations": _combinations,
               "varying": _varying, "fixed_settings": _fixed_settings,
               "__doc__": "The sweep's search space: TrialSpec's axis and fixed settings."},
)


@dataclass(frozen=True)
class SearchSpec:
    type: str = "grid"          # grid | random | optuna
    num_samples: int = 1        # random/optuna: number of lwdna trials
    sampler: str = "tpe"        # optuna: a name of sweeps.samplers.SAMPLERS
    seed: int = 0


@dataclass(frozen=True)
class SchedulerSpec:
    type: str = "fifo"          # fifo | asha (on accuracy)
    grace_period: int = 1
    reduction_factor: float = 3.0


@dataclass(frozen=True)
class ResourceSpec:
    cpus: float = 1.0
    gpus: float = 0.0
    max_concurrent: int | None = None


@dataclass(frozen=True)
class TrackingSpec:
    uri: str | None = None          # None: sqlite:///mlflow.db in the current folder
    experiment: str | None = None   # None: the spec's name
    models: str = keys.MODELS_ALL   # all: every trained network as an MLflow model; none
    latency_batch: int = 64         # throughput batch of the latency metrics; 0: not measured


@dataclass(frozen=True)
class SweepSpec:
    name: str
    model: ModelSpec
    dataset: DatasetSpec
    protocol: TrainProtocol = field(default_factory=TrainProtocol)
    space: SpaceSpec = field(default_factory=SpaceSpec)
    # One change at a time: each ablation is `space` with some of its lists replaced; the sweep
    # runs the union of space's grid and every ablation's grid.
    ablations: tuple[SpaceSpec, ...] = ()
    baselines: tuple[float | str, ...] = (0.5, 0.75, 1.0)
    search: SearchSpec = field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    storage: str = "ray_results"
    retries: int = 1

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def spaces(self) -> tuple[Any, ...]:
        """``space`` and every ablation: the grids whose union the sweep runs."""
        return (self.space, *self.ablations)

    def values(self, dimension: str) -> tuple[Any, ...] | Range:
        """A searched dimension's values over every grid (space's own range, if it has one)."""
        if isinstance(self.space.values(dimension), Range):
            return self.space.values(dimension)
        values = [v for sp in self.spaces for v in sp.values(dimension)]
        return tuple(dict.fromkeys(values))

    def varying(self) -> tuple[str, ...]:
        """The searched dimensions that tell the sweep's trials apart (in any of its grids)."""
        return tuple(d for d in self.space.DIMENSIONS if len(self.values(d)) > 1)

    def lwdna_points(self) -> list[dict[str, Any]]:
        """Every lwdna hyperparameter combination (what grid runs; what random samples from)."""
        combos = [c for sp in self.spaces for c in sp.combinations()]
        return [{"kind": keys.KIND_LWDNA, **c} for c in _unique(combos)]

    def baseline_points(self) -> list[dict[str, Any]]:
        """Uniform baselines at every width x every combination of the axes baselines share
        with the LW-DNAs (seeds, data fractions, KD): the sweep's own reference curve."""
        combos = _unique([{d: c[d] for d in BASELINE_AXES} for sp in self.spaces
                          for c in sp.combinations()])
        return [{"kind": keys.KIND_BASELINE, "width_mult": w, **c}
                for w in self.baseline_widths() for c in combos]

    def baseline_widths(self) -> tuple[float, ...]:
        """The listed widths, with ``matched`` replaced by the uniform width whose cost matches
        each LW-DNA target (sorted, no repeats)."""
        widths = {w for w in self.baselines if w != MATCHED}
        if MATCHED in self.baselines:
            widths |= set(matched_widths(self))
        return tuple(sorted(widths))

    def sampled_lwdna_points(self) -> list[dict[str, Any]]:
        """The lwdna trials known up front: grid all, random a seeded sample, optuna none."""
        if self.search.type == "optuna":
            return []
        lwdna = self.lwdna_points()
        if self.search.type == "random":
            lwdna = random.Random(self.search.seed).sample(lwdna, self.search.num_samples)
        return lwdna

    def fixed_points(self) -> list[dict[str, Any]]:
        """Every trial known up front: the sampled lwdna points and the baselines, seed by seed
        (then data fraction by fraction), so that a sweep cut short holds both arms of the
        seeds it finished: what a paired comparison needs."""
        points = self.sampled_lwdna_points() + self.baseline_points()
        return sorted(points, key=lambda p: (p["seed"], p["data_fraction"]))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        out["model"] = {"name": self.model.name, "variant": self.model.variant,
                        "options": dict(self.model.options)}
        out["dataset"] = _plain(self.dataset)
        out["protocol"] = self.protocol.to_dict()
        for section in ("space", "search", "scheduler", "resources", "tracking"):
            out[section] = _plain(getattr(self, section))
        if self.ablations:
            out["ablations"] = [_changed(self.space, ablation) for ablation in self.ablations]
        out.update(baselines=list(self.baselines), storage=self.storage, retries=self.retries)
        return out


def _unique(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points without repeats, in first-seen order."""
    seen, out = set(), []
    for point in points:
        key = tuple(sorted(point.items()))
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out


def _plain(obj: Any) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        return v.to_dict() if isinstance(v, Range) else list(v) if isinstance(v, tuple) else v

    return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}


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


# ---------------------------------------------------------------------------------- loading
def spec_from_dict(data: Any, *, check: bool = True) -> SweepSpec:
    """Validate a parsed spec; ``check`` also asks hetero about models, data and reachability."""
    data = _mapping("the sweep spec", data)
    _check_keys("", data, TOP_LEVEL_KEYS)
    spec = _build(data)
    _check_combined(spec)
    if check:
        check_spec(spec)
    return spec


def _build(data: dict[str, Any]) -> SweepSpec:
    if "name" not in data:
        raise SpecError("name is required: a short name for the sweep, e.g. `name: cifar10-r56`")
    optional: dict[str, Any] = {}
    if "baselines" in data:
        optional["baselines"] = _list(_baseline_width, allow_empty=True)(
            "baselines", data["baselines"] if data["baselines"] is not None else [])
    if "storage" in data:
        optional["storage"] = _text("storage", data["storage"])
    if "retries" in data:
        optional["retries"] = _number(0, integer=True)("retries", data["retries"])
    sections = {"space": SPACE_SCHEMA, "search": SEARCH_SCHEMA, "scheduler": SCHEDULER_SCHEMA,
                "resources": RESOURCE_SCHEMA, "tracking": TRACKING_SCHEMA,
}
    classes = {"space": SpaceSpec, "search": SearchSpec, "scheduler": SchedulerSpec,
               "resources": ResourceSpec, "tracking": TrackingSpec}
    for key, schema in sections.items():
        if key in data:
            optional[key] = _section(key, data[key], schema, classes[key])
    if "ablations" in data:
        space = optional.get("space", SpaceSpec())
        optional["ablations"] = _ablations(data["ablations"], space)
    return SweepSpec(
        name=_name("name", data["name"]),
        model=_named_section("model", data.get("model"), MODEL_SCHEMA, ModelSpec),
        dataset=_named_section("dataset", data.get("dataset"), DATASET_SCHEMA, DatasetSpec),
        protocol=_protocol(data.get("protocol")), **optional)


def _baseline_width(path: str, value: Any) -> float | str:
    if value == MATCHED:
        return value
    return _number(0, 8, lo_open=True)(path, value)


def _ablations(data: Any, space) -> tuple[Any, ...]:
    items = data if isinstance(data, list | tuple) else [data]
    out = []
    for i, item in enumerate(items):
        path = f"ablations[{i}]"
        changes = _mapping(path, item)
        if not changes:
            raise _fail(path, "a mapping of the space lists it changes, e.g. {criteria: [random]}",
                        item)
        _check_keys(path, changes, tuple(ABLATION_SCHEMA))
        out.append(replace(space, **{k: ABLATION_SCHEMA[k](f"{path}.{k}", v)
                                     for k, v in changes.items()}))
    return tuple(out)


def _changed(space, ablation) -> dict[str, Any]:
    """An ablation as the lists it changes (what the spec file says)."""
    plain, base = _plain(ablation), _plain(space)
    return {k: v for k, v in plain.items() if v != base[k]}


def matched_widths(spec: SweepSpec) -> list[float]:
    """The uniform width whose cost (the space's target metric) matches each LW-DNA target."""
    from hetero.shrink import uniform_width_at

    _check_matchable(spec)
    metric, targets = spec.space.target_metric, spec.values("target")
    base = base_config(spec)
    return [uniform_width_at(base, t, target_metric=metric, divisor=spec.space.divisor)
            for t in sorted(targets)]


def _check_matchable(spec: SweepSpec) -> None:
    if MATCHED in spec.baselines and (spec.space.target_metric == "latency"
                                      or isinstance(spec.values("target"), Range)):
        raise SpecError("baselines: matched needs listed FLOPs or params targets (not latency "
                        "targets or a {low, high} range): list the baseline widths instead")


def _check_trials(spec: SweepSpec) -> None:
    """Every grid point is a valid trial (e.g. init hyper only with criterion dhp)."""
    from hetero.trial import TrialSpec

    for point in spec.lwdna_points():
        settings = {k: v for k, v in point.items() if k != "kind" and not isinstance(v, Range)}
        try:
            TrialSpec(**settings, **spec.space.fixed_settings())
        except ValueError as exc:
            shown = ", ".join(f"{k} {v}" for k, v in settings.items() if k in spec.varying())
            raise SpecError(f"the combination {shown or 'of space'} is not a valid trial: {exc}; "
                            "put such levers in an ablation of their own (ablations: "
                            "[{criteria: [dhp], inits: [hyper]}])") from None


def _check_combined(spec: SweepSpec) -> None:
    epochs = spec.protocol.epochs
    if spec.scheduler.type == "asha" and spec.protocol.eval_every > 1:
        raise SpecError("scheduler.type asha stops trials by each epoch's test accuracy: use "
                        "protocol.eval_every 1 with it, or scheduler.type fifo")
    if spec.scheduler.type == "asha" and spec.scheduler.grace_period > epochs:
        raise _fail("scheduler.grace_period", f"an integer in [1, {epochs}] (protocol.epochs)",
                    spec.scheduler.grace_period)
    if spec.protocol.device.startswith("cuda") and spec.resources.gpus == 0:
        raise SpecError(f"protocol.device {spec.protocol.device} needs resources.gpus > 0: Ray "
                        "shows a trial only the GPUs it asks for; set resources.gpus, or "
                        "protocol.device: auto")
    search = spec.search
    if search.type == "grid" and search.num_samples != 1:
        raise SpecError("search.num_samples applies to random and optuna only; grid runs every "
                        "combination once (list more seeds to repeat trials)")
    if search.type == "optuna" and not spec.varying():
        raise SpecError("search.type optuna needs a space with at least one list of two or "
                        "more values; with a single combination use type: grid")
    ranged = [d for d in spec.space.DIMENSIONS if isinstance(spec.space.values(d), Range)]
    if ranged and search.type != "optuna":
        raise SpecError(f"space: {', '.join(ranged)} given as a {{low, high}} range, which only "
                        "search.type optuna samples; list the values instead for "
                        f"{search.type} search")
    if spec.ablations and search.type == "optuna":
        raise SpecError("ablations list extra grids, which search.type grid or random runs; "
                        "optuna samples `space` alone: drop ablations or use type: grid")
    _check_trials(spec)
    _check_matchable(spec)
    available = len(spec.lwdna_points())
    if search.type == "random" and search.num_samples > available:
        raise _fail("search.num_samples", f"an integer in [1, {available}] (the number of "
                    "distinct lwdna combinations; use type: grid to run them all)",
                    search.num_samples)


def load_spec(path: str | os.PathLike, *, check: bool = True) -> SweepSpec:
    """Read and validate a sweep YAML file."""
    from hetero.files import UserFileError, read_user_text

    try:
        data = read_user_text(path, "sweep spec",
                              "a YAML file, e.g. sweeps/configs/quickstart.yaml", parse="yaml")
    except UserFileError as exc:
        raise SpecError(str(exc)) from None
    try:
        return spec_from_dict(data, check=check)
    except SpecError as exc:
        raise SpecError(f"{os.fspath(path)}: {exc}") from None


# ---------------------------------------------------------------------------------- hetero checks
def check_spec(spec: SweepSpec, *, read_data: bool = True) -> None:
    """Ask hetero: do the dataset, model and criteria exist, and is every target reachable?

    ``read_data=False`` (a smoke test, which must not touch the spec's data folders) takes the
    dataset's nominal shape instead of its folder's, and leaves out the reachability check of a
    dataset that has none (``imagefolder``).
    """
    from hetero.dataset_info import DATASET_SHAPES
    from hetero.importance import list_criteria

    if read_data:
        base = base_config(spec)
    else:
        nominal = DATASET_SHAPES.get(spec.dataset.name)
        base = base_config(spec, shape=nominal) if nominal else None
    known = list_criteria()
    paths = ["space", *(f"ablations[{i}]" for i in range(len(spec.ablations)))]
    for path, space in zip(paths, spec.spaces, strict=True):
        for i, criterion in enumerate(space.criteria):
            if criterion not in known:
                raise _fail(f"{path}.criteria[{i}]", "one of " + ", ".join(known), criterion)
    unreachable = [problem for space in spec.spaces for problem in _unreachable(space, base)
                   if problem] if base is not None else []
    unreachable = list(dict.fromkeys(unreachable))
    if unreachable:
        raise SpecError("unreachable combinations (the per-layer floors keep the network "
                        "above or the widened network stays below the target): "
                        + "; ".join(unreachable[:6])
                        + ". Lower remain_ratios/linear_ratios, raise the target, or widen more.")


def check_dataset(spec: SweepSpec) -> None:
    """The data folder exists and has the expected layout (checked when a sweep starts, after
    --smoke-test swapped in digits: the shipped specs name data folders a clone lacks)."""
    from hetero.data import check_data

    try:
        check_data(spec.dataset.name, spec.dataset.data_dir, download=spec.dataset.download)
    except (ValueError, FileNotFoundError) as exc:
        raise SpecError(f"dataset: {exc}{relative_note(spec.dataset.data_dir)}") from None


def relative_note(path: str | None) -> str:
    """What an error about a path from a spec adds when the path was relative: the base it was
    resolved against. The one rule for every path in a spec (``data_dir``, ``storage``, an
    SQLite ``tracking.uri``): relative to the current folder, as a path given as a flag."""
    if not path or ("://" in path and not path.startswith("sqlite:///")):
        return ""
    if os.path.isabs(os.path.expanduser(path.removeprefix("sqlite:///"))):
        return ""
    return f" (relative paths in a spec are resolved against the current folder, {os.getcwd()})"


def base_config(spec: SweepSpec, shape: tuple[int, int, int] | None = None):
    """The width-1.0 uniform ChannelConfig of the spec's model for its dataset (for ``shape``,
    (channels, size, classes), instead of the dataset's own when given)."""
    from hetero.data import dataset_shape
    from hetero.method import TrialSpec, base_config_for

    try:
        shape = shape or dataset_shape(spec.dataset.name, spec.dataset.data_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise SpecError(f"dataset: {exc}") from None
    trial = TrialSpec(model=spec.model.name, variant=spec.model.variant,
                      options=dict(spec.model.options), **spec.space.fixed_settings(),
                      protocol=spec.protocol)
    try:
        return base_config_for(trial, shape)
    except ValueError as exc:
        raise SpecError(f"model: {exc}") from None


def _unreachable(space, base) -> list[str]:
    from hetero.models.factory import widen
    from hetero.shrink import reachable_range

    problems = []
    if space.target_metric == "latency":
        # Only the trial's own device can time what the floors allow; a trial whose latency
        # target is out of reach fails with the timed range (hetero.latency_model).
        return problems
    for width, rho, tau in itertools.product(space.width_mults, space.remain_ratios,
                                             space.linear_ratios):
        wide = widen(base, width, divisor=space.divisor)
        lo, hi = reachable_range(wide, base_config=base, target_metric=space.target_metric,
                                 remain_ratio=rho, linear_ratio=tau, divisor=space.divisor)
        for target in space.targets:
            if not lo - 1e-9 <= target <= hi + 1e-9:
                problems.append(f"width_mult {width:g}, remain_ratio {rho:g}, linear_ratio "
                                f"{tau:g}, target {target:g} ({space.target_metric}; reachable "
                                f"{lo:.3f}-{hi:.3f} of the baseline)")
    return problems


# ---------------------------------------------------------------------------------- smoke test
SMOKE_STORAGE = SweepSpec.storage   # the default: ./ray_results
SMOKE_SUFFIX = "-smoke"


def smoke_test(spec: SweepSpec) -> SweepSpec:
    """The same sweep shrunk to two one-epoch lwdna trials and one baseline on digits.

    Each searched list is trimmed as its setting declares (``smoke`` in hetero.trial: the first
    value, the two largest targets, the smoke test's own data fraction, one seed or two when the
    rest leave one trial). It touches none of the spec's data folders, stores or GPU settings,
    so that it checks a spec for a cluster on a laptop: digits, the CPU, Tune state in
    ./ray_results, and MLflow experiment ``<experiment>-smoke`` in the default store
    (``--tracking-uri`` may name another), so that the smoke sweep never mixes with the real one.
    """
    space = spec.space
    small_space = _smoke_space(space)
    protocol = spec.protocol.replace(epochs=1, warmup_epochs=0, device="cpu",
                                     batch_size=min(spec.protocol.batch_size, 64))
    search = replace(spec.search, num_samples=1 if spec.search.type == "grid" else 2)
    # each ablation once more on the small space: its changed lists cut to their first value
    # (but those the smoke test sets itself: the data fraction and the seeds)
    own = {AXES[n] for n in AXES if _smoke_sets_itself(trial_settings()[n].smoke)}
    ablations = tuple(replace(small_space, **{k: tuple(v[:1]) for k, v in
                                              _changed(space, ablation).items() if k not in own})
                      for ablation in spec.ablations)
    tracking = replace(spec.tracking, uri=None, experiment=f"{spec.experiment}{SMOKE_SUFFIX}")
    return replace(
        spec, name=f"{spec.name}{SMOKE_SUFFIX}", dataset=DatasetSpec("digits"),
        protocol=protocol, space=small_space, ablations=ablations, baselines=(1.0,),
        search=search, scheduler=SchedulerSpec(),
        resources=ResourceSpec(cpus=1.0, gpus=0.0, max_concurrent=2),
        tracking=tracking, storage=SMOKE_STORAGE)


def _smoke_sets_itself(rule: Any) -> bool:
    return isinstance(rule, tuple) or rule == "pair"


def _smoke_space(space):
    """Every searched list trimmed by its declared ``smoke`` rule."""
    small: dict[str, tuple[Any, ...]] = {}
    pairs = []
    for name, plural in AXES.items():
        rule, values = trial_settings()[name].smoke, getattr(space, plural)
        if isinstance(rule, tuple):
            small[plural] = rule
        elif rule == "two_largest":
            small[plural] = tuple(sorted(values)[-2:])
        elif rule == "pair":
            pairs.append(plural)
        else:  # "first"
            small[plural] = tuple(values[:1])
    # two lwdna trials: a pair of replicates when the other lists leave one trial
    trials = math.prod(len(v) for v in small.values())
    for plural in pairs:
        values = getattr(space, plural)
        small[plural] = tuple(values[:1]) if trials >= 2 else (values[0], values[0] + 1)
    return replace(space, **small)
