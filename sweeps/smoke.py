"""The smoke test: a sweep spec shrunk to a few one-epoch trials on digits, on this machine."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hetero.trial import settings as trial_settings
from sweeps.validate import AXES

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

__all__ = ["smoke_test", "SMOKE_SUFFIX"]

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
    # sweeps.spec re-exports this function, so its dataclasses are imported here, not above
    from sweeps.spec import DatasetSpec, ResourceSpec, SchedulerSpec, SweepSpec, _changed

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
        tracking=tracking, storage=SweepSpec.storage)  # the default: ./ray_results


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
