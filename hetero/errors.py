"""Errors the ``hetero`` command reports as one line (stdlib only: the CLI imports it cheaply)."""

from __future__ import annotations

__all__ = ["TrainingDiverged"]


class TrainingDiverged(ArithmeticError):
    """The training loss became NaN or infinite: the run's result would be meaningless.

    The message names the epoch, the learning rate and the fix. A rerun diverges the same way
    (training is deterministic), so sweeps record the trial as failed and do not retry it.
    """
