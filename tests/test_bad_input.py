"""Every bad input is one line on stderr, exit 2, a fix named, and nothing recorded changes.

All cases run through ``hetero_cli.main`` in this process (fast: no interpreter start-up) inside a
folder that holds a finished sweep's MLflow store; the folder's files are hashed before and after.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from hetero_cli import main
from sweeps import keys

SPEC = {"name": "quickstart", "model": "resnet20", "dataset": "digits",
        "space": {"remain_ratios": [0.25]}, "storage": "ray_results"}


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory) -> Path:
    """A folder with a FINISHED `quickstart` sweep in mlflow.db and no Tune folder."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment("quickstart")
    parent = client.create_run(experiment, run_name="quickstart",
                               tags={keys.TAG_KIND: keys.KIND_SWEEP, keys.TAG_SWEEP: "quickstart"})
    client.set_terminated(parent.info.run_id, "FINISHED")
    return folder


@pytest.fixture
def workdir(finished_store, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "work"
    shutil.copytree(finished_store, folder)
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    write_inputs(folder)
    monkeypatch.chdir(folder)
    monkeypatch.delenv("HETERO_DEBUG", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


def write_inputs(folder: Path) -> None:
    from hetero.models import uniform

    (folder / "a_folder").mkdir()
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (folder / "report.txt").write_text("not a folder\n")
    config = uniform("resnet_cifar", "20")
    config.save(folder / "resnet.json")
    text = (folder / "resnet.json").read_text()
    (folder / "truncated.json").write_text(text[: len(text) // 2])
    for name, changes in {"no_data.yaml": {"dataset": {"name": "cifar10",
                                                      "data_dir": "missing_folder"}},
                          "abs_experiment.yaml": {"tracking": {"experiment": "/tmp/elsewhere"}},
                          }.items():
        (folder / name).write_text(yaml.safe_dump({**SPEC, **changes}))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (the store included) and its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cuda_missing() -> bool:
    import torch

    return not torch.cuda.is_available()


SWEEP_URI = ("--tracking-uri", "sqlite:///mlflow.db")
CASES = [
    # hetero run / shrink / complexity: numbers, devices, files
    (["run", "--width-mult", "1e6", "--out", "out"], "width_mult must be a number in (0, 16]"),
    (["run", "--width-mult", "inf", "--out", "out"], "got inf"),
    (["complexity", "resnet20", "--width-mult", "inf"], "width_mult must be a number in (0, 16]"),
    (["shrink", "--divisor", "0"], "divisor must be an integer >= 1, got 0"),
    (["shrink", "--remain-ratio", "0"], "remain_ratio must be a number in (0, 1], got 0"),
    (["run", "--device", "tpu", "--out", "out"], "pass auto, cpu, cuda or cuda:N"),
    pytest.param(["run", "--device", "cuda", "--out", "out"], "use device 'auto' or 'cpu'",
                 marks=pytest.mark.skipif("not _cuda_missing()", reason="a GPU is present")),
    (["run", "--model", "foonet", "--out", "out"], "unknown model 'foonet'"),
    (["complexity", "resnet20", "--config", "a_folder"], "is a folder: pass the path of an LW-DNA JSON"),
    (["complexity", "resnet20", "--config", "truncated.json"], "truncated.json is not a valid"),
    (["complexity", "resnet20", "--config", "report.txt/x"],
     "cannot be read (Not a directory): pass the path of an LW-DNA JSON"),
    (["complexity", "vgg16", "--config", "resnet.json"], "pass the model the configuration"),
    # hetero sweep: spec files, names, stores, data, resume
    (["sweep", "a_folder"], "is a folder: pass the path of a YAML file"),
    (["sweep", "binary.yaml"], "binary.yaml"),
    (["sweep", "report.txt/spec.yaml"], "cannot be read (Not a directory): pass the path of a YAML"),
    (["sweep", "spec.yaml", "--tracking-uri", "foo://bar"], "pass sqlite:///PATH.db"),
    (["sweep", "spec.yaml", "--tracking-uri", "sqlite://mlflow.db"], "three slashes"),
    (["sweep", "spec.yaml", "--name", "../../X", *SWEEP_URI], "pass another --name"),
    (["sweep", "abs_experiment.yaml", *SWEEP_URI], "tracking.experiment"),
    (["sweep", "no_data.yaml", *SWEEP_URI], "data_dir missing_folder does not exist"),
    (["sweep", "spec.yaml", "--resume", *SWEEP_URI], "nothing to resume"),
    # hetero pareto
    (["pareto", "--experiment", "quickstart", "--out", "report.txt", *SWEEP_URI],
     "--out report.txt is a file"),
    (["pareto", "--experiment", "quickstart", "--out", "r", "--tracking-uri", "foo://bar"],
     "pass sqlite:///PATH.db"),
]


@pytest.mark.parametrize("argv, fix", CASES, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(workdir, capsys, argv, fix):
    before = snapshot(workdir)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert fix in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert snapshot(workdir) == before   # no store touched, no folder or file left behind


def test_resume_with_nothing_to_resume_starts_nothing(workdir, capsys):
    """No Ray, no MLflow server, no store in an empty folder."""
    import ray

    empty = workdir / "empty"
    empty.mkdir()
    (empty / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    code = main(["sweep", str(empty / "spec.yaml"), "--resume", "--tracking-uri",
                 f"sqlite:///{empty / 'mlflow.db'}"])
    assert code == 2 and "nothing to resume" in capsys.readouterr().err
    assert sorted(p.name for p in empty.iterdir()) == ["spec.yaml"]
    assert not ray.is_initialized()
