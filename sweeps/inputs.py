"""The trial's dataset as an MLflow dataset input: name, split sizes, content digest, source.

Logged on every child run (``log_inputs``), so the UI's Dataset column says what a network was
trained on, and two runs on different data (another fraction, another folder) differ visibly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["dataset_profile", "dataset_source", "log_dataset",
           "CONTEXT_TRAINING"]

CONTEXT_TRAINING = "training"
# Where each built-in dataset comes from when no folder is given.
LOADERS = {"digits": "sklearn.datasets.load_digits", "cifar10": "torchvision.datasets.CIFAR10",
           "cifar100": "torchvision.datasets.CIFAR100"}


def dataset_profile(data, fraction: float) -> dict[str, Any]:
    return {"num_train": data.num_train, "num_test": data.num_test,
            "num_classes": data.num_classes,
            "shape": [data.in_channels, data.input_size, data.input_size],
            "train_fraction": fraction}


def dataset_source(name: str, data_dir: str | None):
    """The folder the data was read from, else the loader that provides it."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    if data_dir:
        return CodeDatasetSource({"folder": str(Path(data_dir).resolve())})
    return CodeDatasetSource({"loader": LOADERS.get(name, name)})


def _dataset(name: str, digest: str, source, profile: dict[str, Any]):
    from mlflow.data.meta_dataset import MetaDataset

    class ProfiledDataset(MetaDataset):
        """A MetaDataset that also carries a profile (split sizes, shape)."""

        @property
        def profile(self):
            return profile

        def to_dict(self):
            return {**super().to_dict(), "profile": json.dumps(profile)}

    return ProfiledDataset(source=source, name=name, digest=digest)


def log_dataset(client, run_id: str, data, *, name: str, data_dir: str | None,
                fraction: float) -> str:
    """Log the dataset on ``run_id`` (context training); returns its digest.

    One input: MLflow keeps a dataset once per run, and the profile holds both split sizes.
    """
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from hetero.data import data_digest

    digest = data_digest(data)
    entity = _dataset(name, digest, dataset_source(name, data_dir),
                      dataset_profile(data, fraction))._to_mlflow_entity()
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, CONTEXT_TRAINING)]
    _log_inputs_once(client, run_id, [DatasetInput(entity, tags=tags)])
    return digest


# How a store words the insert of a row another writer inserted first (SQLite, PostgreSQL,
# MySQL), as MLflow passes it on, directly or through a server.
DUPLICATE_ROW = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry",
                 "IntegrityError")


def _log_inputs_once(client, run_id: str, datasets: list, attempts: int = 4) -> None:
    """``log_inputs``, which tolerates a concurrent insert of the same dataset.

    MLflow looks the dataset up, then inserts it: two trials logging one dataset at the same
    moment both insert, and the second fails on the unique key. Tried again, the lookup finds
    the row the other trial wrote, and the run gets its input exactly once.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.log_inputs(run_id, datasets=datasets)
            return
        except MlflowException as exc:
            if attempt == attempts - 1 or not any(s in str(exc) for s in DUPLICATE_ROW):
                raise
