"""Sweep orchestration: Ray Tune + Optuna schedule widen-shrink trials, MLflow records them.

Importing this package is cheap (no ray/optuna/mlflow); ``sweeps.keys`` is stdlib-only so that
``analysis`` can share the MLflow names without pulling in anything heavy.
"""
