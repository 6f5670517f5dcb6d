"""A network hetero logged loads where only hetero's wheel is installed, not this checkout.

A wheel is built from the checkout and installed into a fresh virtual environment; everything
then runs from a folder outside the checkout, so ``import hetero`` can only find the wheel.
The third-party dependencies (torch, mlflow, ...: gigabytes) are not downloaded again: the fresh
environment reads them from this one's site-packages through a ``.pth`` file, which does not
bring this checkout's editable hetero along (a ``.pth`` file's own folder entries are not
scanned for ``.pth`` files). ``HETERO_TEST_WHEEL_DEPS=install`` installs them into the fresh
environment instead (``pip install WHEEL -c constraints.txt``: minutes, several GB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ("pyproject.toml", "README.md", "hetero_cli.py", "hetero", "sweeps", "analysis")


def _run(command: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI",
                                                            "VIRTUAL_ENV")}
    out = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(python of a fresh venv holding only hetero's wheel, a folder outside the checkout)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"   # a copy: building in place would leave build/ in the checkout
    source.mkdir()
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(folder / "dist"), str(source)], cwd=folder)
    (wheel,) = (folder / "dist").glob("hetero-*.whl")
    _run([sys.executable, "-m", "venv", str(folder / "venv")], cwd=folder)
    python = folder / "venv" / "bin" / "python"
    if os.environ.get("HETERO_TEST_WHEEL_DEPS") == "install":
        _run([str(python), "-m", "pip", "install", "-q", str(wheel), "-c",
              str(ROOT / "constraints.txt")], cwd=folder, timeout=3600)
    else:
        site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                     "['purelib'])"], cwd=folder).stdout.strip()
        Path(site, "dependencies-of-the-test.pth").write_text(
            sysconfig.get_paths()["purelib"] + "\n")
        _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
             cwd=folder)
    work = folder / "work"
    work.mkdir()
    return python, work


def test_hetero_comes_from_the_wheel(fresh):
    python, work = fresh
    where = _run([str(python), "-c", "import hetero, hetero_cli; print(hetero.__file__); "
                  "print(hetero_cli.__file__)"], cwd=work).stdout.split()
    venv = python.parent.parent
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert not any(Path(p).is_relative_to(ROOT) for p in where), where


LOAD = """
import json, sys
import mlflow.pytorch, numpy as np, torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from hetero.data import DIGITS_SPLIT_SEED

net = mlflow.pytorch.load_model(sys.argv[1]).eval()
digits = load_digits()
_, test = train_test_split(np.arange(len(digits.target)), test_size=0.2,
                           stratify=digits.target, random_state=DIGITS_SPLIT_SEED)
x = torch.from_numpy((digits.images[test] / 16).astype(np.float32)[:, None])
with torch.no_grad():
    predicted = net(x).argmax(1).numpy()
print(json.dumps({"accuracy": int((predicted == digits.target[test]).sum()) / len(test)}))
"""


@pytest.fixture(scope="module")
def model_dir(fresh):
    """`hetero run --out` of the wheel: a one-epoch LW-DNA's MLflow model folder."""
    python, work = fresh
    hetero = str(python.parent / "hetero")
    _run([hetero, "run", "--width-mult", "1.5", "--target", "0.8", "--epochs", "2",
          "--device", "cpu", "--out", "run", "--quiet"], cwd=work)
    return work / "run"


def test_mlflow_loads_the_model_and_it_scores_its_accuracy_on_raw_images(fresh, model_dir):
    python, work = fresh
    out = _run([str(python), "-c", LOAD, str(model_dir / "model")], cwd=work)
    scored = json.loads(out.stdout.strip().splitlines()[-1])["accuracy"]
    assert scored == json.loads((model_dir / "result.json").read_text())["accuracy"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_hetero_export_of_the_wheel_writes_a_checked_file(fresh, model_dir, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    python, work = fresh
    out = _run([str(python.parent / "hetero"), "export", str(model_dir / "model"), "--format",
                fmt, "--out", f"net.{fmt}"], cwd=work)
    assert "over 64 test images" in out.stdout and "(<= 0.0001: ok)" in out.stdout
    assert (work / f"net.{fmt}").stat().st_size > 0
