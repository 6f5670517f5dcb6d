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
from _data_cases import BAD_FOLDERS, bad_folder

from hetero_cli import main
from sweeps import keys

DATA_CASES = [case for case, _ in BAD_FOLDERS]

SPEC = {"name": "quickstart", "model": "resnet20", "dataset": "digits",
        "space": {"remain_ratios": [0.25]}, "storage": "ray_results"}


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder with a FINISHED `quickstart` sweep in mlflow.db (its parent, a FAILED trial run)
    and no Tune folder, and a FINISHED sweep `early` whose one trial a scheduler stopped; the
    run ids by name."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    ids = {}
    for sweep in ("quickstart", "early"):
        experiment = client.create_experiment(sweep)
        parent = client.create_run(experiment, run_name=sweep,
                                   tags={keys.TAG_KIND: keys.KIND_SWEEP, keys.TAG_SWEEP: sweep})
        status, tags = (("FAILED", {}) if sweep == "quickstart"
                        else ("FINISHED", {keys.TAG_STOPPED_EARLY: "true"}))
        child = client.create_run(experiment, run_name="t", tags={
            keys.TAG_KIND: keys.KIND_LWDNA, keys.TAG_SWEEP: sweep, keys.TAG_TRIAL_ID: "t0",
            keys.TAG_PARENT_RUN_ID: parent.info.run_id, **tags})
        if sweep == "early":
            for key, value in {"accuracy": 0.5, "flops": 1e6, "flops_ratio": 0.5, "params": 1e4,
                               "params_ratio": 0.5, "epoch": 1}.items():
                client.log_metric(child.info.run_id, key, value, step=1)
            for key, value in {"width_mult": 2.0, "target": 0.5, "seed": 0, "epochs": 3,
                               "data_fraction": 1.0, "model": "resnet20", "dataset": "digits",
                               "criterion": "dhp"}.items():
                client.log_param(child.info.run_id, key, value)
        client.set_terminated(child.info.run_id, status)
        client.set_terminated(parent.info.run_id, "FINISHED")
        ids[f"{sweep}_parent"], ids[f"{sweep}_trial"] = parent.info.run_id, child.info.run_id
    return folder, ids


@pytest.fixture
def workdir(finished_store, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "work"
    shutil.copytree(finished_store[0], folder)
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    write_inputs(folder)
    write_record(folder)
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))   # usernets.py, as --model usernets:NAME
    monkeypatch.delenv("HETERO_DEBUG", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


def write_record(folder: Path) -> None:
    """What `hetero sweep spec.yaml --tracking-uri sqlite:///mlflow.db` left for the finished
    quickstart sweep: its arguments and spec beside its (here empty) Tune folder."""
    from sweeps.arguments import SweepArguments
    from sweeps.spec import spec_from_dict

    spec = spec_from_dict(SPEC, check=False)
    SweepArguments("quickstart", f"sqlite:///{folder / 'mlflow.db'}", "quickstart",
                   str(folder / "ray_results"), spec=spec.to_dict()).save()


# A 9-level "billion laughs": about 340 bytes that expand to 9**9 strings.
ALIAS_BOMB = "name: bomb\nmodel: resnet20\ndataset: digits\na: &a [" + ",".join(["lol"] * 9) + "]\n" + \
    "".join(f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]\n"
            for a, b in zip("abcdefgh", "bcdefghi", strict=True))
USERNETS = """import sys
def raises(num_classes):
    raise RuntimeError("no such weights")
def exits(num_classes):
    sys.exit(0)
"""


def planted_model_folder(folder: Path, with_weights: bool) -> Path:
    """An MLflow model folder whose pickles would touch `pwned` when unpickled."""
    import pickle

    from hetero.models import uniform

    class Planted:
        def __reduce__(self):
            return Path.touch, (folder.parent / "pwned",)

    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {pytorch: {model_data: data}}\n")
    (folder / "data" / "model.pth").write_bytes(pickle.dumps(Planted()))
    (folder / "extra_files").mkdir()
    uniform("resnet_cifar", "20").save(folder / "extra_files" / "lwdna.json")
    if with_weights:
        (folder / "extra_files" / "weights.pt").write_bytes(pickle.dumps({"w": Planted()}))
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
                          "gpus.yaml": {"resources": {"gpus": 1}},
                          "cuda.yaml": {"protocol": {"device": "cuda"}},
                          "cpus.yaml": {"resources": {"cpus": 4096}},
                          "storage_file.yaml": {"storage": "report.txt/ray_results"},
                          "changed.yaml": {"protocol": {"epochs": 3}},
                          **{f"{case.replace(' ', '_')}.yaml": {"dataset": {
                              "name": "imagefolder", "data_dir": case.replace(" ", "_")}}
                             for case in DATA_CASES},
                          }.items():
        (folder / name).write_text(yaml.safe_dump({**SPEC, **changes}))
    for case in DATA_CASES:
        bad_folder(folder / case.replace(" ", "_"), case)
    (folder / "bomb.yaml").write_text(ALIAS_BOMB)
    (folder / "twice.yaml").write_text(yaml.safe_dump(SPEC) + "model: resnet56\n")
    (folder / "usernets.py").write_text(USERNETS)
    planted_model_folder(folder / "planted", with_weights=True)
    planted_model_folder(folder / "pickled_only", with_weights=False)


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
    (["sweep", "spec.yaml", "--resume", "--name", "other", *SWEEP_URI], "nothing to resume"),
    (["sweep", "spec.yaml", "--resume", "--tracking-uri", "sqlite:///other.db"],
     "was started with --tracking-uri sqlite:///"),
    (["sweep", "spec.yaml", "--resume", "--name", "quickstart", "--smoke-test"],
     "was started with no --smoke-test, not --smoke-test"),
    (["sweep", "spec.yaml", "--resume", "--experiment", "other"],
     "was started with --experiment quickstart"),
    (["sweep", "changed.yaml", "--resume", "--name", "quickstart"],
     "(protocol.epochs: 10 then, 3 now): resume with that spec, kept as"),
    (["sweep", "spec.yaml", "--experiment", "../x", *SWEEP_URI], "--experiment '../x' must be"),
    # the sweep spec as YAML: an alias bomb fails fast, a repeated key is not taken silently
    (["sweep", "bomb.yaml"], "expand to more than 10,000 values"),
    (["sweep", "twice.yaml"], "key 'model' appears twice"),
    # resources and storage a trial would wait for forever, or fail on: before Ray starts
    pytest.param(["sweep", "gpus.yaml", *SWEEP_URI], "resources.gpus 1: this machine has no GPU",
                 marks=pytest.mark.skipif("not _cuda_missing()", reason="a GPU is present")),
    (["sweep", "cuda.yaml", *SWEEP_URI], "protocol.device cuda needs resources.gpus > 0"),
    (["sweep", "cpus.yaml", *SWEEP_URI], "resources.cpus 4096: this machine has at most"),
    (["sweep", "storage_file.yaml", *SWEEP_URI], "report.txt is a file, not a folder"),
    # data a trial would fail on, or learn wrong: the whole folder, before anything starts
    *[(["sweep", f"{case.replace(' ', '_')}.yaml", *SWEEP_URI], needle)
      for case, needle in BAD_FOLDERS],
    # hetero export: runs that hold no network, files that are not one, stores not there
    (["export", "deadbeef", "--out", "x.onnx", *SWEEP_URI], "no run 'deadbeef' in sqlite:///"),
    (["export", "{quickstart_parent}", "--out", "x.onnx", *SWEEP_URI],
     "is the parent run of sweep 'quickstart', not a trial"),
    (["export", "{quickstart_trial}", "--out", "x.onnx", *SWEEP_URI],
     "(FAILED) logged no network"),
    (["export", "deadbeef", "--out", "a_folder", *SWEEP_URI], "--out a_folder is a folder"),
    (["export", "deadbeef", "--out", "x.onnx", "--tracking-uri", "http://127.0.0.1:9"],
     "is not reachable"),
    (["export", "deadbeef", "--out", "x.onnx", "--tracking-uri", "sqlite:///nowhere.db"],
     "no MLflow store at sqlite:///"),
    (["export", "a_folder", "--out", "x.onnx"], "not an MLflow model folder"),
    (["export", "planted", "--out", "x.onnx"], "do not make a network"),
    (["export", "pickled_only", "--out", "x.onnx"], "hetero loads no pickled module"),
    (["shrink", "--out", "a_folder"], "--out a_folder is a folder"),
    # models: a builder that is not one, raises or exits; a network that cannot take the input
    (["run", "--model", "os:getcwd", "--out", "out"], "the model builder getcwd"),
    (["run", "--model", "usernets:raises", "--out", "out"],
     "failed (RuntimeError: no such weights)"),
    (["run", "--model", "usernets:exits", "--out", "out"], "called sys.exit(0) instead of"),
    (["run", "--model", "torchvision:vit_b_16", "--out", "out"],
     "VisionTransformer does not run on input 1x8x8: AssertionError"),
    # hetero pareto
    (["pareto", "--experiment", "quickstart", "--out", "report.txt", *SWEEP_URI],
     "--out report.txt is a file"),
    (["pareto", "--experiment", "quickstart", "--out", "r", "--tracking-uri", "foo://bar"],
     "pass sqlite:///PATH.db"),
    (["pareto", "--experiment", "early", "--out", "r", *SWEEP_URI], "ran every epoch"),
]


@pytest.mark.parametrize("argv, fix", CASES, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(workdir, finished_store, capsys,
                                                          argv, fix):
    before = snapshot(workdir)
    code = main([arg.format(**finished_store[1]) for arg in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert fix in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and len(err) < 1000, err
    assert snapshot(workdir) == before   # no store touched, no folder or file left behind
    assert not (workdir.parent / "pwned").exists()   # no planted pickle ran


def test_resume_of_a_finished_sweep_changes_nothing(workdir, capsys):
    before = snapshot(workdir)
    assert main(["sweep", "spec.yaml", "--resume"]) == 0
    err = capsys.readouterr().err.strip()
    assert "finished already" in err and len(err.splitlines()) == 1, err
    assert snapshot(workdir) == before


def test_resume_with_nothing_to_resume_starts_nothing(workdir, capsys):
    """No Ray, no MLflow server, no store in an empty folder."""
    import ray

    empty = workdir / "empty"
    empty.mkdir()
    (empty / "spec.yaml").write_text(yaml.safe_dump({**SPEC,
                                                     "storage": str(empty / "ray_results")}))
    code = main(["sweep", str(empty / "spec.yaml"), "--resume", "--tracking-uri",
                 f"sqlite:///{empty / 'mlflow.db'}"])
    assert code == 2 and "nothing to resume" in capsys.readouterr().err
    assert sorted(p.name for p in empty.iterdir()) == ["spec.yaml"]
    assert not ray.is_initialized()
