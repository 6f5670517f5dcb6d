"""Inference latency of a sweep's trained networks, measured once every trial has ended.

Timed inside the trials, a network shared its device with the trials running next to it: the
same uniform network logged 1.22, 1.31 and 1.79 ms in three seeds of one sweep. So the sweep
measures latency in a last step of its own: one Ray task per finished trial, one at a time,
each holding a trial's resources (its CPUs and GPUs), so nothing else of the sweep runs on that
device meanwhile. Each task rebuilds the trained network from the trial's last checkpoint,
times it (``hetero.latency.measure_latency``: median and IQR, batch 1 and the throughput batch)
and logs the figures on the trial's MLflow run. A trial whose run already has them (a resumed
sweep) is not timed again.
"""

from __future__ import annotations

import time

import ray

from sweeps import keys
from sweeps.tracking import TrialTracking, find_child_run, metric_value

__all__ = ["measure_latencies", "time_trial"]


def measure_latencies(outcomes, *, tracking: TrialTracking, device: str, batch: int,
                      threads: int, cpus: float, gpus: float) -> str | None:
    """Time every finished trial of ``outcomes`` in turn (their metrics get the figures);
    returns a line saying what was timed where (None when nothing was)."""
    start, devices = time.perf_counter(), []
    task = time_trial.options(num_cpus=cpus, num_gpus=gpus)
    for outcome in outcomes:
        if not outcome.finished or outcome.checkpoint is None:
            continue
        # one at a time: the next task starts only when this one has ended
        figures, where = ray.get(task.remote(outcome.checkpoint, outcome.trial_id, tracking,
                                             device=device, batch=batch, threads=threads))
        outcome.metrics.update(figures)
        devices.append(where)
    if not devices:
        return None
    return (f"latency: {len(devices)} trained networks timed one at a time on "
            f"{', '.join(sorted(set(devices)))} after the trials "
            f"({time.perf_counter() - start:.0f} s)")


@ray.remote(max_retries=1)
def time_trial(checkpoint, trial_id: str, tracking: TrialTracking, *, device: str, batch: int,
               threads: int) -> tuple[dict[str, float], str]:
    """Ray task: the trial's latency figures and device, logged on its run unless already
    there."""
    import torch
    from mlflow import MlflowClient

    client = MlflowClient(tracking.uri)
    run = find_child_run(client, tracking, trial_id)
    if run is not None and keys.METRIC_LATENCY_MS in run.data.metrics:
        return ({k: run.data.metrics[k] for k in keys.LATENCY_METRICS if k in run.data.metrics},
                run.data.tags.get(keys.TAG_LATENCY_DEVICE, "?"))
    torch.set_num_threads(threads)
    figures, where = _measure(checkpoint, device, batch)
    if run is not None:
        _log(client, run, figures, where, batch)
    return figures, where


def _measure(checkpoint, device: str, batch: int) -> tuple[dict[str, float], str]:
    import torch

    from hetero.config import ChannelConfig
    from hetero.latency import measure_latency
    from hetero.train import resolve_device
    from sweeps.mlmodel import rebuild_network
    from sweeps.trainable import CHECKPOINT_FILE

    with checkpoint.as_directory() as folder:
        state = torch.load(f"{folder}/{CHECKPOINT_FILE}", map_location="cpu", weights_only=True)
    model = rebuild_network(state["config"], state["trainer"])
    config = ChannelConfig.from_dict(state["config"])
    shape = (config.in_channels, config.input_size, config.input_size)
    measured = measure_latency(model, shape, device=resolve_device(device),
                               batch_sizes=(1, batch))
    one, many = measured[1], measured[batch]
    return {keys.METRIC_LATENCY_MS: one.median_ms, keys.METRIC_LATENCY_IQR_MS: one.iqr_ms,
            keys.METRIC_BATCH_LATENCY_MS: many.median_ms,
            keys.METRIC_BATCH_LATENCY_IQR_MS: many.iqr_ms,
            keys.METRIC_THROUGHPUT: many.images_per_second}, one.device


def _log(client, run, figures: dict[str, float], device: str, batch: int) -> None:
    from mlflow.entities import Metric, Param, RunTag

    step = int(run.data.metrics.get(keys.METRIC_EPOCH, 0))
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id,
                     metrics=[Metric(k, metric_value(v), now, step) for k, v in figures.items()],
                     params=[Param(keys.PARAM_LATENCY_BATCH, str(batch))],
                     tags=[RunTag(keys.TAG_LATENCY_DEVICE, device),
                           RunTag(keys.TAG_LATENCY_TIMING, keys.LATENCY_TIMING_EXCLUSIVE)])

