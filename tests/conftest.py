"""Shared test setup: one torch thread (tiny ops on a shared 2-core machine stall with more)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import torch  # noqa: E402

torch.set_num_threads(1)
