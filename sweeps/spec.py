"""The sweep spec: a YAML file validated into frozen dataclasses before anything starts.

This module holds the spec's dataclasses and loads them (:func:`load_spec`, :func:`spec_from_dict`);
the checks live beside it: ``sweeps.validate`` (the validator library and the schemas: structure
and values, no heavy imports), ``sweeps.feasibility`` (:func:`check_spec` asks hetero whether the
model, the criteria and the dataset exist and whether every (width, floors, target) combination
is reachable) and ``sweeps.smoke`` (:func:`smoke_test`). Their public names are importable from
here too. Errors name the key path and what is accepted.
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Any

from hetero.protocol import TrainProtocol
from hetero.trial import defaults as trial_defaults
from hetero.trial import settings as trial_settings
from sweeps import keys
from sweeps.feasibility import (
    base_config,
    check_combined,
    check_dataset,
    check_spec,
    matched_widths,
    relative_note,
)
from sweeps.smoke import smoke_test
from sweeps.validate import (
    ABLATION_SCHEMA,
    AXES,
    DATASET_SCHEMA,
    FIXED,
    MATCHED,
    MODEL_SCHEMA,
    MOVED,
    NAME_PATTERN,
    RANGE_DIMENSIONS,
    RESOURCE_SCHEMA,
    SCHEDULER_SCHEMA,
    SEARCH_SCHEMA,
    SPACE_SCHEMA,
    TOP_LEVEL_KEYS,
    TRACKING_SCHEMA,
    Range,
    SpecError,
    _baseline_width,
    _check_keys,
    _fail,
    _list,
    _mapping,
    _name,
    _named_section,
    _number,
    _protocol,
    _section,
    _text,
)

__all__ = ["SpecError", "SweepSpec", "matched_widths", "ModelSpec", "DatasetSpec", "SpaceSpec",
           "SearchSpec", "SchedulerSpec", "ResourceSpec", "TrackingSpec", "load_spec",
           "spec_from_dict", "check_spec", "check_dataset", "relative_note", "base_config",
           "smoke_test", "Range", "RANGE_DIMENSIONS", "AXES", "FIXED", "BASELINE_AXES", "MATCHED",
           "MOVED", "NAME_PATTERN", "SPACE_SCHEMA", "ABLATION_SCHEMA", "TOP_LEVEL_KEYS"]


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


# Axes the uniform baselines run over too (seeds, data fractions, KD): every axis that is not
# LW-DNA-only, but the one their curve runs along (the width), whose values they list themselves.
BASELINE_AXES = tuple(n for n in AXES
                      if not trial_settings()[n].lwdna_only and not trial_settings()[n].curve)


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


# ---------------------------------------------------------------------------------- loading
def spec_from_dict(data: Any, *, check: bool = True) -> SweepSpec:
    """Validate a parsed spec; ``check`` also asks hetero about models, data and reachability."""
    data = _mapping("the sweep spec", data)
    _check_keys("", data, TOP_LEVEL_KEYS)
    spec = _build(data)
    check_combined(spec)
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
                "resources": RESOURCE_SCHEMA, "tracking": TRACKING_SCHEMA}
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
