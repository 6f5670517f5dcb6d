"""A trained network as an MLflow model: build it back from a checkpoint, save, log, load.

The model folder is MLflow's PyTorch flavour (``MLmodel``, the pickled module, a signature and an
input example of real test images) with the LW-DNA's files alongside under ``extra_files/``: the
ChannelConfig JSON, the training protocol, the whole trial spec and the weights alone
(``weights.pt``, tensors only). ``hetero run --out`` writes the same folder as a sweep's child run
logs, so ``mlflow.pytorch.load_model`` reads either.

The logged module is self-contained: its first layer normalises images scaled to [0, 1] with the
dataset's mean and std (``hetero.preprocess``), which MLmodel's metadata also records (``input``).

hetero itself never unpickles a module from a folder or a tracking server (a planted pickle runs
code when loaded): :func:`load_network` rebuilds the network from ``lwdna.json`` and loads
``weights.pt`` with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from sweeps import keys
from sweeps.tracking import no_artifact_progress_bars, resolve_tracking_uri

__all__ = ["rebuild_network", "deployable", "input_metadata", "save_network", "log_network",
           "load_network", "rebuild_from_folder", "read_extra", "is_model_folder", "test_batch",
           "stored_example", "run_model_uri", "MODEL_NAME", "EXTRA_DIR", "WEIGHTS_FILE"]

MODEL_NAME = keys.MODEL_NAME  # runs:/<run_id>/model
EXTRA_DIR = "extra_files"     # where MLflow puts extra_files inside the model folder
TRIAL_FILE, PROTOCOL_FILE = "trial.json", "protocol.json"
WEIGHTS_FILE = "weights.pt"   # the state_dict alone: loaded with weights_only=True
EXAMPLE_IMAGES = 2            # real test images as the model's input example
# Pickle is chosen on purpose (see _flavor_args); MLflow warns about it on every save, which in a
# sweep is one identical warning per trial.
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)


def rebuild_network(config: dict[str, Any], trainer_state: dict[str, Any]):
    """The trained network from a checkpoint's config and trainer state (CPU, eval mode)."""
    from hetero.config import ChannelConfig
    from hetero.materialize import materialize

    model = materialize(ChannelConfig.from_dict(config))
    model.load_state_dict(trainer_state["model"])
    return model.to("cpu").eval()


def deployable(network, data):
    """``network`` behind the input normalisation of ``data`` (hetero.preprocess), eval mode."""
    from hetero.preprocess import with_normalization

    return with_normalization(network, data.mean, data.std).eval()


def input_metadata(data) -> dict[str, Any]:
    """What the deployed network expects, for MLmodel's metadata and the logged model's params."""
    return {"layout": "NCHW float32", "range": [0.0, 1.0],
            "shape": [data.in_channels, data.input_size, data.input_size],
            "mean": [round(float(m), 6) for m in data.mean],
            "std": [round(float(s), 6) for s in data.std],
            "normalization": "inside the model (its first layer, `normalize`): feed images "
                             "scaled to [0, 1]; `model.network` is the bare network, which "
                             "takes (x - mean) / std"}


def _signature(model, example):
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        logits = model(torch.from_numpy(example)).numpy()
    return infer_signature(example, logits)


def _pip_requirements() -> list[str]:
    # Explicit: MLflow's inference loads the model in a subprocess (seconds per trial). hetero
    # itself too: the pickled module is hetero's classes.
    import numpy
    import torch
    import torchvision

    import hetero

    return [f"hetero=={hetero.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"torchvision=={torchvision.__version__.split('+')[0]}", f"numpy=={numpy.__version__}"]


def _write_extras(folder: Path, model, config, trial: dict[str, Any]) -> list[str]:
    import torch

    files = {keys.ARTIFACT_CONFIG: config.to_json(),
             PROTOCOL_FILE: json.dumps(trial.get("protocol", {}), indent=2),
             TRIAL_FILE: json.dumps(trial, indent=2, default=str)}
    for name, text in files.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    return [str(folder / name) for name in (*files, WEIGHTS_FILE)]


def _flavor_args(model, data, config, trial: dict[str, Any], metadata: dict[str, Any],
                 tmp: Path) -> dict[str, Any]:
    example = data.test_images(EXAMPLE_IMAGES).numpy()
    # pickle, not MLflow 3's default pt2: the loaded network is the hetero module itself (train
    # and eval modes, fine-tuning, any batch size); it needs hetero importable to load.
    return {"signature": _signature(model, example), "input_example": example,
            "serialization_format": "pickle",
            "extra_files": _write_extras(tmp, model, config, trial),
            "pip_requirements": _pip_requirements(),
            "metadata": {"family": config.family, "variant": config.variant,
                         "kind": trial.get("kind", "lwdna"), "input": input_metadata(data),
                         **metadata}}


def _trial_data(trial: dict[str, Any]):
    """The trial's dataset on the CPU (its test split and statistics: the fraction of the
    training split a trial used changes neither)."""
    from hetero.data import load_dataset

    return load_dataset(trial["dataset"], trial.get("data_dir"), device="cpu",
                        input_size=trial.get("input_size"))


def save_network(network, path, *, config, trial: dict[str, Any], data=None,
                 metadata: dict[str, Any] | None = None) -> Path:
    """Write the MLflow model folder at ``path`` (replaced if it exists): ``network`` behind
    the input normalisation of ``data`` (default: the trial's dataset)."""
    import shutil

    import mlflow.pytorch

    data = data if data is not None else _trial_data(trial)
    model = deployable(network, data)
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    with tempfile.TemporaryDirectory() as tmp, no_artifact_progress_bars():
        mlflow.pytorch.save_model(model, str(path), **_flavor_args(
            model, data, config, trial, metadata or {}, Path(tmp)))
    return path


def log_network(tracking_uri: str, experiment_id: str, run_id: str, network, *, config,
                trial: dict[str, Any], data=None, step: int = 0,
                metadata: dict[str, Any] | None = None,
                tags: dict[str, str] | None = None) -> str:
    """Log ``network`` behind the input normalisation of ``data`` (default: the trial's
    dataset) on ``run_id`` as MLflow model ``model``; returns its model URI.

    ``step``: the run's metrics at this step are linked to the model (the UI shows them).
    ``tags``: on the logged model (e.g. what logged it, instead of the Ray worker's script).
    """
    import mlflow
    import mlflow.pytorch

    data = data if data is not None else _trial_data(trial)
    model = deployable(network, data)
    # The fluent log_model reads the global URI, and creates the logged model in the *active*
    # experiment: elsewhere, runs:/<run_id>/model would not find it.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    with tempfile.TemporaryDirectory() as tmp, no_artifact_progress_bars():
        info = mlflow.pytorch.log_model(model, name=MODEL_NAME, run_id=run_id, step=step,
                                        params=_model_params(data), tags=tags,
                                        **_flavor_args(model, data, config, trial,
                                                       metadata or {}, Path(tmp)))
    return info.model_uri


def _model_params(data) -> dict[str, str]:
    # Shown on the logged model's page in the UI, next to its metrics.
    meta = input_metadata(data)
    return {"input_range": "[0, 1]", "input_mean": json.dumps(meta["mean"]),
            "input_std": json.dumps(meta["std"])}


def is_model_folder(ref: str) -> bool:
    return (Path(ref) / "MLmodel").is_file()


def run_model_uri(run_id: str) -> str:
    """The MLflow model URI of the network a run logged (``runs:/<run_id>/model``)."""
    return f"runs:/{run_id}/{MODEL_NAME}"


def _model_uri(ref: str) -> str:
    """A model folder, an MLflow model URI, or a run id (its ``model``)."""
    if is_model_folder(ref) or "://" in ref or ref.startswith(("models:/", "runs:/")):
        return ref
    if Path(ref).exists():
        raise FileNotFoundError(f"{ref} is not an MLflow model folder (no MLmodel file): pass "
                                "the folder `hetero run --out` wrote (its model/ subfolder) or "
                                "a run id")
    return run_model_uri(ref)


def load_network(ref: str, tracking_uri: str | None = None):
    """The network (CPU, eval mode) and its folder on disk for a folder, URI or run id.

    Rebuilt from the folder's ``lwdna.json`` with ``weights.pt`` loaded as tensors only: no
    module is unpickled, whoever wrote the folder or the tracking store it came from.
    """
    folder = Path(ref) if is_model_folder(ref) else _download(ref, tracking_uri)
    return rebuild_from_folder(folder), folder


def rebuild_from_folder(folder: Path):
    """The network of an MLflow model folder hetero wrote, from its config and weights alone."""
    import pickle

    import torch

    from hetero.config import ChannelConfig
    from hetero.materialize import materialize
    from hetero.preprocess import PREPROCESS, with_normalization

    config, weights = read_extra(folder, keys.ARTIFACT_CONFIG), folder / EXTRA_DIR / WEIGHTS_FILE
    if config is None or not weights.is_file():
        raise FileNotFoundError(
            f"model folder {folder} has no {EXTRA_DIR}/{keys.ARTIFACT_CONFIG} and "
            f"{EXTRA_DIR}/{WEIGHTS_FILE} (not a hetero network, or one saved by an older "
            "hetero): hetero loads no pickled module; if you trust where it came from, load it "
            "with mlflow.pytorch.load_model")
    try:
        model = materialize(ChannelConfig.from_json(config))
        state = torch.load(weights, map_location="cpu", weights_only=True)
        mean, std = state.get(f"{PREPROCESS}.mean"), state.get(f"{PREPROCESS}.std")
        if mean is not None and std is not None:   # the deployable network: normalisation first
            model = with_normalization(model, mean.flatten().tolist(), std.flatten().tolist())
        model.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, ValueError, KeyError, EOFError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ValueError(f"model folder {folder}: its {WEIGHTS_FILE} and "
                         f"{keys.ARTIFACT_CONFIG} do not make a network ({first}): pass the "
                         "folder hetero wrote, unchanged") from None
    return model.to("cpu").eval()


def _download(ref: str, tracking_uri: str | None) -> Path:
    """The model folder of a run id or a runs:/ or models:/ URI, downloaded to a new folder."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from sweeps.tracking import check_tracking

    model_uri = _model_uri(ref)
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking(uri, existing=True)   # a dead server is one line, not minutes of retries
    if model_uri.startswith("runs:/"):
        _check_run_has_model(uri, model_uri.split("/")[1])
    folder = Path(tempfile.mkdtemp(prefix="hetero-model-"))
    try:
        with no_artifact_progress_bars():
            mlflow.artifacts.download_artifacts(artifact_uri=_artifact_uri(model_uri, uri),
                                                dst_path=str(folder), tracking_uri=uri)
    except (MlflowException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise FileNotFoundError(f"cannot fetch model {model_uri} from {uri} ({first}): pass a "
                                "trial's run id, a models:/ URI or a model folder") from None
    return _mlmodel_root(folder)


def _artifact_uri(model_uri: str, uri: str) -> str:
    """Where the files of ``model_uri`` are, resolved against the store ``uri``.

    MLflow 3 resolves a ``models:/`` URI (a run's logged model, or a registered version) against
    the process's own stores, whatever ``tracking_uri`` a download is given: left to it, a run
    id looks in ``./mlflow.db`` and finds nothing. Setting the process's stores would leak into
    every later call and subprocess (MLflow exports them as environment variables), so the
    chain run -> logged model -> its artifact location is followed here instead.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri, registry_uri=uri)
    try:
        for _ in range(3):   # a registered version names a logged model or a run's model
            if model_uri.startswith("runs:/"):
                run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
                logged = client.get_run(run_id).data.tags.get(keys.TAG_MODEL_URI)
                if not logged or path.strip("/") != MODEL_NAME:
                    return model_uri
                model_uri = logged
            if not model_uri.startswith("models:/"):
                return model_uri
            ref = model_uri.removeprefix("models:/")
            if ref.startswith("m-"):
                return client.get_logged_model(ref).artifact_location
            name, at, alias = ref.partition("@")
            version = (client.get_model_version_by_alias(name, alias) if at
                       else client.get_model_version(*ref.split("/", 1)))
            model_uri = version.source
    except (MlflowException, TypeError):
        pass   # the download names what is missing
    return model_uri


def _check_run_has_model(uri: str, run_id: str) -> None:
    """A run id names a trial run that logged its network; say what it is otherwise."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient(uri).get_run(run_id)
    except MlflowException:
        raise FileNotFoundError(f"no run {run_id!r} in {uri}: pass a trial's run id (hetero "
                                "pareto lists them in trials.csv) or --tracking-uri of its "
                                "store") from None
    tags = run.data.tags
    if tags.get(keys.TAG_KIND) == keys.KIND_SWEEP:
        raise ValueError(f"run {run_id} is the parent run of sweep {tags.get(keys.TAG_SWEEP)!r}"
                         ", not a trial: pass one of its trial runs")
    if keys.TAG_MODEL_URI not in tags:
        raise ValueError(f"run {run_id} ({run.info.status}) logged no network (failed, stopped "
                         "or `tracking: {models: none}`): pass a finished trial's run id")


def _mlmodel_root(folder: Path) -> Path:
    """The folder holding MLmodel (a download may nest it one level down)."""
    if (folder / "MLmodel").is_file():
        return folder
    return next((p.parent for p in folder.rglob("MLmodel")), folder)


def read_extra(folder, name: str) -> str | None:
    path = Path(folder) / EXTRA_DIR / name
    return path.read_text(encoding="utf-8") if path.is_file() else None



def test_batch(folder, size: int, *, raw: bool = True):
    """The first ``size`` test images of the model's dataset (CPU), or None when unavailable:
    scaled to [0, 1] (``raw``, what a network with its normalisation inside takes) or
    normalised (an older model folder's bare network).

    Read from the trial spec stored with the model; a dataset that cannot be loaded here (a
    folder on another machine) gives None and the caller falls back to the stored example.
    """
    text = read_extra(folder, TRIAL_FILE)
    if text is None:
        return None
    try:
        data = _trial_data(json.loads(text))
    except (OSError, ValueError, RuntimeError):
        return None
    if raw:
        return data.test_images(size)
    return next(iter(data.test_batches(size, device="cpu")))[0]


def stored_example(folder):
    """The model's logged input example as a float32 tensor, or None when it has none."""
    import torch
    from mlflow.models import Model

    example = Model.load(str(folder)).load_input_example(str(folder))
    return None if example is None else torch.as_tensor(example, dtype=torch.float32)
