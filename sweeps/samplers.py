"""Optuna samplers that survive Ray Tune's pickling of the searcher.

Tune pickles ``OptunaSearch`` (and the sampler inside it) to checkpoint the searcher and to
restore it on ``--resume``. Optuna 5.1's genetic samplers (NSGA-II, NSGA-III) hold a
``threading.Lock`` for their generation cache, which cannot be pickled, so a sweep with
``sampler: nsga2`` failed before its first trial. The samplers here pickle everything but the
lock and make a new lock when unpickled: the population cache and the random state carry over.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

__all__ = ["SAMPLERS", "build_sampler"]

_LOCK_TYPE = type(threading.Lock())


class _LockFreePickle:
    """Pickle a sampler's state with every lock left out; unpickling makes fresh locks."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_hetero_locks"] = [k for k, v in state.items() if isinstance(v, _LOCK_TYPE)]
        for name in state["_hetero_locks"]:
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        locks = state.pop("_hetero_locks", [])
        self.__dict__.update(state)
        for name in locks:
            setattr(self, name, threading.Lock())


class NSGAIISampler(_LockFreePickle, optuna.samplers.NSGAIISampler):
    """optuna's NSGA-II, picklable."""


# The sweep spec's `search.sampler` names (sweeps.spec reads the keys).
SAMPLERS = {"tpe": optuna.samplers.TPESampler, "nsga2": NSGAIISampler,
            "random": optuna.samplers.RandomSampler}


def build_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed=seed)
