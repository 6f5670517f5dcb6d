"""Sweep orchestration: Ray Tune + Optuna schedule widen-shrink trials, MLflow records them.

Importing this package is cheap (no ray/optuna/mlflow); ``sweeps.keys`` is stdlib-only so that
``analysis`` can share the MLflow names without pulling in anything heavy.
"""

import os as _os

# MLflow's usage telemetry is off: it phones home (no network here) and, with several trials
# logging at once, its session bookkeeping raced and failed a trial's first MLflow call.
# Set before mlflow is imported; Ray workers inherit it from the driver's environment.
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

