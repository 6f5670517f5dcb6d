"""Faults the sweep tests inject from the outside: wrappers of the sweep's trainable, passed as
``run_sweep(..., trainable=...)``. Production code carries no test hooks.

Ray ships a trainable to its workers by pickling it; this module is not importable there, so it
is pickled by value (:func:`by_value`).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

from sweeps import keys
from sweeps.trainable import train_trial


def by_value() -> None:
    """Let Ray pickle the functions of this module by value (its workers cannot import it)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _train_reporting_through(wrap, config, context) -> None:
    """Train one trial with ``tune.report`` replaced by ``wrap(tune.report)``, restored after."""
    from ray import tune

    real_report = tune.report
    tune.report = wrap(real_report)
    try:
        return train_trial(config, context)
    finally:
        tune.report = real_report


def _fail_after_first_checkpoint(config, context, *, kind: str, marker_dir: str) -> None:
    """The first attempt of ``kind`` trials dies right after its first checkpoint (a marker
    file per trial says it did); the retry must resume from that checkpoint."""
    from ray import tune

    marker = Path(marker_dir) / tune.get_context().get_trial_id()
    if config["hp"]["kind"] != kind or marker.exists():
        return train_trial(config, context)

    def report_then_fail(real_report):
        def report(*args, **kwargs):
            real_report(*args, **kwargs)
            if kwargs.get("checkpoint") is not None:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                raise RuntimeError("injected failure after the first checkpoint")
        return report

    return _train_reporting_through(report_then_fail, config, context)


def fail_after_first_checkpoint(kind: str, marker_dir: Path):
    by_value()
    return partial(_fail_after_first_checkpoint, kind=kind, marker_dir=str(marker_dir))


def _diverging(config, context, *, kind: str) -> None:
    """``kind`` trials train at a learning rate of 1e6: a real NaN loss in the first epoch."""
    if config["hp"]["kind"] == kind:
        protocol = context.fixed.protocol.replace(lr=1e6)
        context = replace(context, fixed=replace(context.fixed, protocol=protocol))
    return train_trial(config, context)


def diverging(kind: str = keys.KIND_BASELINE):
    by_value()
    return partial(_diverging, kind=kind)


def _worse_after_the_first(config, context, *, kind: str, marker_dir: str) -> None:
    """The first ``kind`` trial to start (its id in a marker file) reports its real accuracy to
    Tune; every later one reports an accuracy of -1, below any real one: with trials run one at
    a time, ASHA stops each later trial at its first rung. MLflow still gets the real metrics."""
    from ray import tune

    if config["hp"]["kind"] != kind:
        return train_trial(config, context)
    trial_id = tune.get_context().get_trial_id()
    marker = Path(marker_dir) / "first"
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(marker, "x") as out:
            out.write(trial_id)
    except FileExistsError:
        pass
    if marker.read_text() == trial_id:   # the first one (or its retry)
        return train_trial(config, context)

    def report_worse(real_report):
        def report(metrics, *args, **kwargs):
            return real_report({**metrics, keys.METRIC_ACCURACY: -1.0}, *args, **kwargs)
        return report

    return _train_reporting_through(report_worse, config, context)


def worse_after_the_first(kind: str, marker_dir: Path):
    by_value()
    return partial(_worse_after_the_first, kind=kind, marker_dir=str(marker_dir))


def _lose_the_last_report(config, context, *, kind: str, marker_dir: str) -> None:
    """The first attempt of ``kind`` trials dies at its last report, after its MLflow run is
    complete (metrics, model, FINISHED) and before Tune takes the report: what a Ctrl-C or a
    lost worker at that moment leaves. The retry must log nothing twice."""
    from ray import tune

    marker = Path(marker_dir) / tune.get_context().get_trial_id()
    if config["hp"]["kind"] != kind or marker.exists():
        return train_trial(config, context)

    def die_at_the_last(real_report):
        def report(metrics, *args, **kwargs):
            if keys.METRIC_TRIAL_SECONDS in metrics:   # only the last report carries it
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                raise RuntimeError("injected failure before Tune took the last report")
            return real_report(metrics, *args, **kwargs)
        return report

    return _train_reporting_through(die_at_the_last, config, context)


def lose_the_last_report(kind: str, marker_dir: Path):
    by_value()
    return partial(_lose_the_last_report, kind=kind, marker_dir=str(marker_dir))
