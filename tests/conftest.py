"""Shared test setup: a quiet, single-threaded torch so parallel test processes stay fast."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
