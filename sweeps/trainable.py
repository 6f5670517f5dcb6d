"""The Ray Tune function trainable: unpack the trial's config, call hetero, report.

Everything the method does lives in :func:`hetero.method.run_trial`; this module only turns a
Tune config into a :class:`~hetero.method.TrialSpec`, restores the trial's checkpoint, and sends
each epoch to Tune (metrics + checkpoint) and to the trial's MLflow child run.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hetero.errors import TrainingDiverged
from hetero.trial import TrialSpec
from hetero.trial import defaults as trial_defaults
from hetero.trial import settings as trial_settings
from sweeps import keys
from sweeps.tracking import TrialRun, TrialTracking, source_tags

__all__ = ["TrialContext", "train_trial", "trial_spec", "run_name", "trial_name", "trial_dirname",
           "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "trial.pt"
PROGRESS_METRICS = (keys.METRIC_ACCURACY, keys.METRIC_FLOPS_RATIO, keys.METRIC_PARAMS_RATIO,
                    keys.METRIC_EPOCH)
# The network's cost, which hetero adds to every epoch's metrics (it never changes in a trial).
COST_METRICS = (keys.METRIC_FLOPS, keys.METRIC_PARAMS, keys.METRIC_FLOPS_RATIO,
                keys.METRIC_PARAMS_RATIO)


@dataclass(frozen=True)
class TrialContext:
    """Sweep-wide settings every trial shares (handed over with ``tune.with_parameters``).

    Kept out of the Tune config on purpose: a resumed sweep passes a fresh context (the local
    MLflow server of the new session listens on another port).
    """

    fixed: TrialSpec                 # what all trials share; each trial replaces its searched fields
    tracking: TrialTracking
    model_label: str                 # what the user wrote, e.g. resnet56 (for run names)
    family: str
    variant: str
    varying: tuple[str, ...] = ()    # searched dimensions with more than one value
    threads: int = 1
    log_models: bool = True          # spec tracking.models: all (True) | none


def trial_spec(context: TrialContext, hp: dict[str, Any]):

    searched = {k: v for k, v in hp.items() if k != "kind"}
    return replace(context.fixed, **searched, baseline=hp["kind"] == keys.KIND_BASELINE)


def run_name(model_label: str, varying: tuple[str, ...], hp: dict[str, Any]) -> str:
    """What differs between the sweep's trials first, then what they share.

    E.g. ``w2.0 t0.50 · resnet56 dhp s0`` when width and target vary, ``uniform w0.75 ·
    resnet56 s0`` for a baseline: the UI cuts long names, so the distinguishing part leads.
    Each searched setting's token, and when it is written though it does not vary, come from
    its declaration (hetero.trial: ``token``, ``token_shown``).
    """
    declared, defaults = trial_settings(), trial_defaults()
    tokens = _name_tokens(hp)

    def quiet(d: str) -> bool:  # a shared setting the name leaves out
        shown = declared[d].token_shown
        return shown == "varying" or (shown == "set" and hp[d] == defaults[d])

    first, rest = [], [model_label]
    if hp["kind"] == keys.KIND_BASELINE:  # the uniform arm's own lever (the width) leads
        curve = [d for d in tokens if declared[d].curve]
        first = ["uniform", *(tokens[d] for d in curve)]
        tokens = {d: t for d, t in tokens.items() if d not in curve}
    first += [t for d, t in tokens.items() if d in varying]
    rest += [t for d, t in tokens.items() if d not in varying and not quiet(d)]
    return " ".join([*first, "·", *rest]) if len(first) else " ".join(rest)


def _name_tokens(hp: dict[str, Any]) -> dict[str, str]:
    """One short token per searched setting the trial has, in declaration order but the
    replicate (the seed), which ends a name."""
    axes = [(n, s) for n, s in trial_settings().items() if s.sweep == "axis" and n in hp]
    ordered = sorted(axes, key=lambda item: item[1].replicate)   # stable: declaration order
    return {n: s.token_of(n, hp[n]) for n, s in ordered}


def trial_name(model_label: str, varying: tuple[str, ...], trial) -> str:
    """Tune's ``trial_name_creator``: the progress table shows the same names as MLflow."""
    return run_name(model_label, varying, trial.config["hp"])


def trial_dirname(model_label: str, varying: tuple[str, ...], trial) -> str:
    """Tune's ``trial_dirname_creator``: the trial id (unique) plus the run name, no spaces."""
    name = trial_name(model_label, varying, trial).replace(" · ", " ")  # ASCII folder names
    return f"{trial.trial_id}_{name.replace(' ', '_')}"


def _params(spec) -> dict[str, Any]:
    """Every hyperparameter of the trial, named as hetero.trial declares them."""
    from hetero.trial import params_of

    return params_of(spec)


def _tags(context: TrialContext, spec) -> dict[str, str]:
    import ray

    return {keys.TAG_KIND: spec.kind, keys.TAG_MODEL: context.family,
            keys.TAG_VARIANT: context.variant, keys.TAG_DATASET: spec.dataset,
            keys.TAG_CRITERION: keys.BASELINE_CRITERION if spec.baseline else spec.criterion,
            keys.TAG_NODE_IP: ray.util.get_node_ip_address(), **source_tags(context.tracking.sweep)}


def _restored_checkpoint() -> dict[str, Any] | None:
    import torch
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu")


class EpochReporter:
    """The ``on_epoch`` callback: MLflow gets every epoch; Tune gets every epoch but the last.

    The last epoch is reported to Tune after the trial's MLflow run is complete: a scheduler
    that stops the trial at that report (ASHA at max_t) cannot cut its final logging short.
    """

    def __init__(self, run: TrialRun, context: TrialContext, spec) -> None:
        self.run, self.context, self.spec = run, context, spec
        self.last_metrics: dict[str, Any] = {}
        self.last_checkpoint: dict[str, Any] | None = None
        self.seconds = 0.0                      # in tune.report and checkpoint writes

    def __call__(self, metrics: dict[str, Any], checkpoint: dict[str, Any]) -> None:
        first_call = not self.last_metrics
        self.last_metrics, self.last_checkpoint = metrics, checkpoint
        # hetero puts the (fixed) cost in every epoch's metrics: Tune gets it at each report
        # (Optuna's second objective, the progress table); MLflow once per attempt, so that a
        # trial stopped early has it too.
        logged = metrics if first_call else {k: v for k, v in metrics.items()
                                             if k not in COST_METRICS}
        # An epoch whose test split was not scored (protocol.eval_every) has no test metrics.
        logged = {k: v for k, v in logged.items() if not _not_measured(v)}
        self.run.log_metrics(logged, step=metrics[keys.METRIC_EPOCH])
        if metrics[keys.METRIC_EPOCH] < self.spec.protocol.epochs:
            self.report(self.last_metrics, checkpoint)

    def report(self, metrics: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        import torch
        from ray import tune

        # Tune's progress table shows the first four metrics of a report: put these first.
        ordered = {**{k: metrics[k] for k in PROGRESS_METRICS if k in metrics}, **metrics,
                   keys.RESULT_RUN_ID: self.run.run_id}
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            if checkpoint is not None:
                torch.save(checkpoint, Path(folder) / CHECKPOINT_FILE)
            saved = tune.Checkpoint.from_directory(folder) if checkpoint is not None else None
            tune.report(ordered, checkpoint=saved)
        self.seconds += time.perf_counter() - start



def train_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Tune function trainable. ``config["hp"]`` holds the trial's searched hyperparameters."""
    from hetero.method import run_trial

    start = time.perf_counter()
    _prepare_worker(context)
    spec = trial_spec(context, config["hp"])
    run = _open_run(context, config["hp"], spec)
    reporter = EpochReporter(run, context, spec)
    if run.finished_before:
        # An earlier attempt logged everything and died before Tune took its last report (a
        # resume, a retry): report what the run holds, train and log nothing again.
        reporter.report({**run.previous_metrics, keys.METRIC_EPOCH: spec.protocol.epochs}, None)
        return
    _fail_again_if_diverged(run)
    restored = _restored_checkpoint()
    try:
        data = _load_data(spec)
        _log_dataset(run, spec, data)
        result = run_trial(spec, on_epoch=reporter, checkpoint=restored, data=data)
        _log_trained_model(context, run, spec, result, reporter.last_checkpoint or restored,
                           data)
    except SystemExit:
        # Tune stops a trial (e.g. ASHA) by raising SystemExit inside tune.report.
        run.end(keys.STATUS_FINISHED, stopped_early=True)
        raise
    except TrainingDiverged as exc:
        run.fail(str(exc))
        raise
    except BaseException:
        run.end(keys.STATUS_FAILED)
        raise
    final = {**result.metrics(),
             keys.METRIC_TRIAL_SECONDS: time.perf_counter() - start,
             keys.METRIC_REPORT_SECONDS: reporter.seconds}
    # Values already logged at the last epoch are not logged twice at the same step.
    run.finish(result, step=result.epochs,
               metrics={k: v for k, v in final.items() if reporter.last_metrics.get(k) != v})
    # A scheduler may stop the trial at this report (ASHA at max_t): the SystemExit Tune raises
    # for that must propagate (swallowed, the trial's thread would never end).
    reporter.report({**reporter.last_metrics, **final, keys.METRIC_EPOCH: result.epochs},
                    reporter.last_checkpoint or restored)


def _fail_again_if_diverged(run: TrialRun) -> None:
    # Training is deterministic: a retry (or --resume) of a diverged trial would spend its epochs
    # diverging again. Tune retries every error, so the retry ends at once with the same reason.
    reason = run.previous_tags.get(keys.TAG_FAILURE)
    if reason:
        run.end(keys.STATUS_FAILED)
        raise TrainingDiverged(reason)


def _load_data(spec):
    """The trial's data, loaded here (not inside run_trial) so its digest can be logged."""
    from hetero.data import load_dataset
    from hetero.train import resolve_device

    return load_dataset(spec.dataset, spec.data_dir, download=spec.download,
                        fraction=spec.data_fraction, seed=spec.seed,
                        device=resolve_device(spec.protocol.device), input_size=spec.input_size)


def _log_dataset(run: TrialRun, spec, data) -> None:
    from sweeps.inputs import log_dataset

    start = time.perf_counter()
    digest = log_dataset(run.client, run.run_id, data, name=spec.dataset, data_dir=spec.data_dir,
                         fraction=spec.data_fraction)
    run.client.set_tag(run.run_id, keys.TAG_DATASET_DIGEST, digest)
    run.seconds += time.perf_counter() - start


def _log_trained_model(context: TrialContext, run: TrialRun, spec, result,
                       checkpoint: dict[str, Any] | None, data) -> None:
    """The trained network as the run's MLflow model (tracking.models: all). Its latency is
    timed after the sweep's trials, alone on the device (sweeps.latency_pass)."""
    if checkpoint is None or not context.log_models:   # nothing trained, or not wanted
        return
    from sweeps.mlmodel import rebuild_network

    model = rebuild_network(checkpoint["config"], checkpoint["trainer"])
    if keys.TAG_MODEL_URI in run.previous_tags:   # an earlier attempt logged it: once
        return
    start = time.perf_counter()
    _log_model(context, run, spec, result, model, data)
    run.seconds += time.perf_counter() - start


def _log_model(context: TrialContext, run: TrialRun, spec, result, model, data) -> None:
    from sweeps.mlmodel import log_network

    tracking = context.tracking
    info = {keys.METRIC_ACCURACY: result.accuracy, keys.METRIC_FLOPS: result.flops,
            keys.METRIC_FLOPS_RATIO: result.flops_ratio, "run_id": run.run_id}
    uri = log_network(tracking.uri, tracking.experiment_id, run.run_id, model,
                      config=result.config, trial={"kind": spec.kind, **spec.to_dict()},
                      data=data, step=result.epochs, metadata=info,
                      tags=source_tags(tracking.sweep))
    run.client.set_tag(run.run_id, keys.TAG_MODEL_URI, uri)
    run.client.set_tag(run.run_id, keys.TAG_NOTE, _description(spec, result, run.run_id))


def _description(spec, result, run_id: str) -> str:
    """The child run's description in the UI: what the network is and how to use it."""
    from sweeps.mlmodel import run_model_uri

    what = (f"Uniform {spec.model} at width {spec.width_mult:g}" if spec.baseline else
            f"LW-DNA of {spec.model}: widened {spec.width_mult:g}x, scored with "
            f"{spec.criterion}, shrunk to {spec.target:g} of the width-1.0 baseline's "
            f"{spec.target_metric}")
    return (f"{what}; test accuracy {result.accuracy:.4f}, {result.flops:,} FLOPs "
            f"({result.flops_ratio:.3f} of the baseline), trained {result.epochs} epochs on "
            f"{spec.dataset}.\n\n`mlflow.pytorch.load_model(\"{run_model_uri(run_id)}\")` "
            f"takes images scaled to [0, 1] (N x C x H x W; the normalisation is its first "
            f"layer) · `hetero export {run_id} --format onnx --out net.onnx`")


def _open_run(context: TrialContext, hp: dict[str, Any], spec) -> TrialRun:
    from ray import tune

    return TrialRun.open(context.tracking, tune.get_context().get_trial_id(),
                         run_name=run_name(context.model_label, context.varying, hp),
                         tags=_tags(context, spec), params=_params(spec))


def _prepare_worker(context: TrialContext) -> None:
    import logging

    import torch

    torch.set_num_threads(context.threads)
    # One line per checkpoint and per MLflow run would drown Tune's progress table.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow retries a failing request 7 times over about 4 minutes, and a trial makes dozens:
    # a store that fails for good (a full disk) would look like a hang for hours. A few seconds
    # of retries still ride out a busy server; the trial then fails and Tune retries it.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def thread_count(cpus: float) -> int:
    """Torch threads for a trial holding ``cpus`` Ray CPUs (at least one)."""
    return max(1, int(cpus))


def _not_measured(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
