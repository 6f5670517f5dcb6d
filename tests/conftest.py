"""Shared test setup: one torch thread (tiny ops on a shared 2-core machine stall with more), and
no process-wide state leaking from one test into the next."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_process_state(monkeypatch):
    # mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; every later sweep, and every
    # subprocess a later test starts, would honour it instead of its own store.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    assert torch.is_grad_enabled(), "this test left autograd switched off for the whole process"
