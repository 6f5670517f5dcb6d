"""Feasibility of a sweep spec: checks across its fields, and what only hetero can answer.

:func:`check_combined` refuses settings that contradict each other (a scheduler without per-epoch
accuracy, a CUDA device without GPUs, a grid point that is no valid trial); :func:`check_spec`
asks hetero whether the model, the criteria and the dataset exist and whether every (width,
floors, target) combination is reachable. hetero's heavy modules are imported only when asked.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

from sweeps.validate import MATCHED, Range, SpecError, _fail

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

__all__ = ["check_combined", "check_spec", "check_dataset", "relative_note", "base_config",
           "matched_widths"]


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


def check_combined(spec: SweepSpec) -> None:
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
