"""`hetero run --out DIR` writes DIR/model, the same MLflow model folder a sweep's child logs;
it loads back to the trained network and exports from there."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def hetero(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "hetero_cli", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    hetero("run", "--width-mult", "1.5", "--target", "0.8", "--epochs", "1", "--data-fraction",
           "0.3", "--device", "cpu", "--out", str(folder), "--quiet", cwd=folder)
    return folder


def test_model_folder_reproduces_the_run_accuracy_exactly(run_dir):
    import mlflow.pytorch
    import torch

    from hetero.data import load_dataset
    from hetero.protocol import TrainProtocol
    from hetero.train import Trainer

    result = json.loads((run_dir / "result.json").read_text())
    model = mlflow.pytorch.load_model(str(run_dir / "model"))
    trial = json.loads((run_dir / "model" / "extra_files" / "trial.json").read_text())
    data = load_dataset("digits", fraction=0.3, seed=0)
    # the model takes images scaled to [0, 1]: its normalisation is its first layer
    with torch.no_grad():
        predicted = model(data.test_images(data.num_test)).argmax(1)
    assert (predicted == data.test_y).sum().item() / data.num_test == result["accuracy"]
    # its bare network takes hetero's normalised batches, as in training
    protocol = TrainProtocol.from_dict(trial["protocol"])
    assert Trainer(model.network, data, protocol).evaluate()["accuracy"] == result["accuracy"]
    lwdna = json.loads((run_dir / "model" / "extra_files" / "lwdna.json").read_text())
    assert lwdna == json.loads((run_dir / "lwdna.json").read_text())


def test_model_folder_records_its_input_and_requirements(run_dir):
    import yaml

    import hetero
    from hetero.data import load_dataset

    folder = run_dir / "model"
    meta = yaml.safe_load((folder / "MLmodel").read_text())["metadata"]["input"]
    data = load_dataset("digits")
    assert meta["range"] == [0.0, 1.0] and meta["shape"] == [1, 8, 8]
    assert meta["mean"] == [round(m, 6) for m in data.mean]
    assert meta["std"] == [round(s, 6) for s in data.std]
    # the input example is real test images, scaled to [0, 1]
    example = json.loads((folder / "input_example.json").read_text())
    expected = data.test_images(len(example)).tolist()
    assert example == expected and 0 < len(example) <= 4
    requirements = (folder / "requirements.txt").read_text().split()
    assert f"hetero=={hetero.__version__}" in requirements


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_export_from_the_model_folder(run_dir, fmt, tmp_path):
    out = hetero("export", str(run_dir / "model"), "--format", fmt, "--out", f"net.{fmt}",
                 cwd=tmp_path)
    assert "over 64 test images" in out.stdout and "ok" in out.stdout
    assert (tmp_path / f"net.{fmt}").stat().st_size > 0


def test_export_of_a_missing_run_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "hetero_cli", "export", str(tmp_path),
                          "--out", "x.onnx"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "not an MLflow model folder" in out.stderr
