"""Optuna samplers that survive Ray Tune's pickling of the searcher.

Tune pickles ``OptunaSearch`` (and the sampler inside it) to checkpoint the searcher and to
restore it on ``--resume``. Optuna 5.1's genetic samplers (NSGA-II, NSGA-III) hold a
``threading.Lock`` for their generation cache, which cannot be pickled, so a sweep with
``sampler: nsga2`` failed before its first trial. The NSGA-II here pickles everything but the
lock and makes a new lock when unpickled: the population cache and the random state carry over.

Importing this module does not import optuna (sweep specs read ``SAMPLERS`` to validate).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

__all__ = ["SAMPLERS", "build_sampler"]

SAMPLERS = ("tpe", "nsga2", "random")   # the sweep spec's `search.sampler` names

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


@functools.cache
def _nsga2() -> type:
    import optuna

    class NSGAIISampler(_LockFreePickle, optuna.samplers.NSGAIISampler):
        """optuna's NSGA-II, picklable."""

    # pickle finds the class by this module's name (module __getattr__ below builds it there)
    NSGAIISampler.__module__, NSGAIISampler.__qualname__ = __name__, "NSGAIISampler"
    return NSGAIISampler


def __getattr__(name: str) -> Any:
    if name == "NSGAIISampler":
        return _nsga2()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_sampler(name: str, seed: int):
    import optuna

    classes = {"tpe": optuna.samplers.TPESampler, "nsga2": _nsga2(),
               "random": optuna.samplers.RandomSampler}
    if name not in classes:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return classes[name](seed=seed)
