"""The README's code runs: every fenced block is executed here or skipped with a reason.

- Python blocks run in this process; a trailing comment that spells the value of an expression
  (``# Complexity(flops=..., params=...)``) is checked against it.
- The YAML block is the quickstart spec: it must load and equal the shipped one.
- Shell blocks that run in seconds run in a scratch folder (slow: each `hetero` command starts a
  Python that imports torch).
- The blocks that need a finished sweep run against the quickstart itself, run as the README's
  first block says (its install steps left out: this test runs in the installed project). The
  same run checks what the quickstart promises: under 60 printed lines, self-contained models
  (raw [0, 1] images, ONNX, a new process), links into MLflow's training view, the parent run's
  summary metrics.
- Output samples (fences without a language) are not code; the quickstart's must stay under 60
  lines like the real output.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from _models import score_in_new_process

from sweeps import keys

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_QUICKSTART_LINES = 60


@dataclass(frozen=True)
class Block:
    line: int          # where the fence opens
    lang: str
    code: str

    @property
    def first(self) -> str:
        return next(line.strip() for line in self.code.splitlines() if line.strip())

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang or 'text'}"


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.S | re.M):
        indent = len(match.group(1))
        code = "\n".join(line[indent:] for line in match.group(3).splitlines())
        blocks.append(Block(text[:match.start()].count("\n") + 1, match.group(2), code))
    return blocks


# Blocks not run, by their first line, and why.
SKIPPED = {
    ". .venv/bin/activate && python -m pytest -q":
        "runs the whole test suite, this test included",
    ". .venv/bin/activate && python -m pytest -q        # the default set (about 4 minutes on 2 "
    "idle cores)": "runs the whole test suite and ruff, this test included",
    "mlflow ui --backend-store-uri sqlite:///mlflow.db    # http://127.0.0.1:5000":
        "starts a server that runs until stopped (scripts/ui_screenshots.py serves the "
        "quickstart's store the same way)",
    "hetero shrink --model torchvision:regnet_x_400mf --dataset imagefolder --data-dir DIR "
    "--width-mult 2 --target 1.0":
        "a reference with placeholders (DIR, RUN_ID, [options]); the quickstart and 'Use a "
        "found network' blocks run sweep, pareto, register and export with real values",
    "pip install -e '.[dashboard]'":
        "installs an extra and starts optuna-dashboard, a server that runs until stopped",
    "hetero pareto --experiment quickstart --out report [--tracking-uri URI] [--log-x]":
        "options in brackets; the quickstart block runs the command",
    'mlflow models serve -m "models:/quickstart-lwdna@front-1" --env-manager local --port 5001':
        "starts a server that runs until stopped",
    "ray get-auth-token --generate && chmod 600 ~/.ray/auth_token   # once: Ray 2.60 uses tokens":
        "needs machines for a Ray cluster (tests/test_cluster_loopback.py runs "
                      "the recipe on loopback, opt-in)",
    "nice -n 5 hetero sweep sweeps/configs/cifar10_ablation.yaml":
        "the CPU ablation: an hour on 2 cores with the whole CIFAR-10 training split",
    "mkdir -p runs/cifar10-science   # the specs' SQLite store lives there":
        "the science sweep: hours on a GPU with the whole CIFAR-10",
}
# Blocks that need the quickstart's finished sweep, by their first line.
QUICKSTART = "python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt"
FOUND_NETWORK = "import mlflow, torch"
REGISTER_EXPORT = "# the front's LW-DNAs and the width-1.0 uniform baseline into the Model " \
                  "Registry (SQLite or a"
NEEDS_SWEEP = (QUICKSTART, FOUND_NETWORK, REGISTER_EXPORT)
INSTALL_STEP = re.compile(r"^(python3 -m venv |\. \.venv/bin/activate$|pip install )")


def _kind(block: Block) -> str:
    if block.lang == "":
        return "output"
    if block.first in SKIPPED:
        return "skipped"
    if any(block.first.startswith(first) for first in NEEDS_SWEEP):
        return "needs-sweep"
    return block.lang


BLOCKS = readme_blocks()


def _of_kind(kind: str) -> list:
    return [pytest.param(b, id=b.id) for b in BLOCKS if _kind(b) == kind]


def test_every_block_is_known_and_every_skip_names_a_block():
    kinds = {b.id: _kind(b) for b in BLOCKS}
    assert set(kinds.values()) <= {"python", "bash", "yaml", "output", "skipped", "needs-sweep"}, \
        kinds
    firsts = {b.first for b in BLOCKS}
    assert set(SKIPPED) <= firsts, f"skip list names blocks the README no longer has: " \
                                   f"{set(SKIPPED) - firsts}"
    for first in NEEDS_SWEEP:
        assert sum(b.first.startswith(first) for b in BLOCKS) == 1, first


# ---------------------------------------------------------------------------- here and now
@pytest.mark.parametrize("block", _of_kind("python"))
def test_python_block_runs_and_its_comments_tell_the_truth(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    source_lines = block.code.splitlines()
    for statement in ast.parse(block.code).body:
        code = ast.Module([statement], type_ignores=[])
        if isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), block.id, "eval"), namespace)
            claimed = _claimed_repr(source_lines[statement.end_lineno - 1])
            if claimed is not None and claimed.startswith(type(value).__name__ + "("):
                assert repr(value) == claimed, f"README line {block.line + statement.lineno}"
        else:
            exec(compile(code, block.id, "exec"), namespace)


def _claimed_repr(line: str) -> str | None:
    """The value a trailing comment spells out, e.g. ``Complexity(flops=1, params=2)``."""
    match = re.search(r"#\s*(\w+\(.*\))\s*$", line)
    return match.group(1) if match else None


def test_the_spec_block_is_the_shipped_quickstart_spec():
    from sweeps.spec import load_spec, spec_from_dict

    # the whole spec the quickstart shows (other yaml blocks are fragments of a spec)
    (block,) = [b for b in BLOCKS if _kind(b) == "yaml" and "name" in yaml.safe_load(b.code)]
    shown = spec_from_dict(yaml.safe_load(block.code))
    assert shown.to_dict() == load_spec(ROOT / "sweeps/configs/quickstart.yaml").to_dict()


def test_the_quickstart_output_sample_is_under_the_line_budget():
    samples = [b for b in BLOCKS if _kind(b) == "output" and "Sweep quickstart" in b.code]
    assert len(samples) == 1
    assert len(samples[0].code.splitlines()) < MAX_QUICKSTART_LINES


@pytest.mark.slow
@pytest.mark.parametrize("block", _of_kind("bash"))
def test_shell_block_runs(block, tmp_path):
    out = _bash(block.code, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]


def _bash(code: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a README shell block: this venv first on PATH, install steps left out."""
    kept = [" && ".join(part for part in line.split(" && ")
                        if not INSTALL_STEP.match(part.strip()))
            for line in code.splitlines()]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(["bash", "-e", "-c", "\n".join(kept)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------- the quickstart
@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The README's first block, run in a fresh folder: (folder, everything it printed)."""
    folder = tmp_path_factory.mktemp("quickstart")
    shutil.copytree(ROOT / "sweeps" / "configs", folder / "sweeps" / "configs")
    (block,) = [b for b in BLOCKS if b.first.startswith(QUICKSTART)]
    out = _bash(block.code, folder)
    printed = out.stdout + out.stderr
    assert out.returncode == 0, printed[-5000:]
    return folder, printed


def _store(folder: Path):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id])
    return client, experiment.experiment_id, runs


def _trials(runs) -> list:
    return [r for r in runs if r.data.tags.get(keys.TAG_KIND) in (keys.KIND_LWDNA,
                                                                   keys.KIND_BASELINE)]


@pytest.mark.slow
def test_quickstart_prints_a_progress_line_per_trial_and_under_60_lines(quickstart):
    _, printed = quickstart
    lines = printed.rstrip("\n").splitlines()
    assert len(lines) < MAX_QUICKSTART_LINES, printed
    progress = [line for line in lines if re.match(r"trials \d+/6 done, \d+ running", line)]
    assert len(progress) == 6 and progress[-1].startswith("trials 6/6 done, 0 running, 0 failed")
    assert "Trial status" not in printed and "╭" not in printed   # none of Ray Tune's tables


@pytest.mark.slow
def test_quickstart_models_score_their_logged_accuracy_on_raw_images_and_onnx(quickstart):
    pytest.importorskip("onnxruntime")
    folder, _ = quickstart
    _, _, runs = _store(folder)
    trials = _trials(runs)
    assert len(trials) == 6
    scored = score_in_new_process(f"sqlite:///{folder / 'mlflow.db'}",
                                  [r.info.run_id for r in trials], folder)
    for run in trials:
        logged = run.data.metrics[keys.METRIC_ACCURACY]
        assert scored[run.info.run_id] == {"torch": logged, "onnx": logged}, run.info.run_name


@pytest.mark.slow
def test_quickstart_links_open_the_training_runs_view_and_the_report(quickstart):
    folder, printed = quickstart
    _, experiment_id, runs = _store(folder)
    parent = next(r for r in runs if r.data.tags.get(keys.TAG_KIND) == keys.KIND_SWEEP)
    runs_view = f"http://127.0.0.1:5000/#/experiments/{experiment_id}?workflowType=machine_learning"
    report = (f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{parent.info.run_id}"
              f"/artifacts/report/summary.md?workflowType=machine_learning")
    assert printed.count(runs_view) == 2 and report in printed   # sweep's and pareto's
    assert "report/summary.md" in parent.data.tags[keys.TAG_NOTE]


@pytest.mark.slow
def test_quickstart_parent_run_carries_the_sweeps_summary_and_spec(quickstart):
    folder, _ = quickstart
    _, _, runs = _store(folder)
    parent = next(r for r in runs if r.data.tags.get(keys.TAG_KIND) == keys.KIND_SWEEP)
    metrics, params = parent.data.metrics, parent.data.params
    trials = _trials(runs)
    accuracies = [r.data.metrics[keys.METRIC_ACCURACY] for r in trials]
    assert metrics[keys.METRIC_SWEEP_TRIALS] == metrics[keys.METRIC_SWEEP_FINISHED] == 6
    assert metrics[keys.METRIC_SWEEP_FAILED] == metrics[keys.METRIC_SWEEP_STOPPED] == 0
    assert metrics[keys.METRIC_BEST_ACCURACY] == max(accuracies)
    summary = (folder / "report" / "summary.md").read_text()
    hypervolume = float(re.search(r"Hypervolume (\S+) ", summary).group(1))
    assert metrics[keys.METRIC_HYPERVOLUME] == pytest.approx(hypervolume, rel=1e-3)
    assert params["protocol.epochs"] == "10" and params["space.width_mults"] == "[1.5, 2.0]"
    assert params["search.type"] == "grid" and params["model.name"] == "resnet20"
    assert "360 images: one image = 0.278 points" in summary


@pytest.mark.slow
def test_found_network_block_classifies_raw_digits_in_a_new_process(quickstart):
    folder, _ = quickstart
    _, _, runs = _store(folder)
    best = max((r for r in _trials(runs) if r.data.tags[keys.TAG_KIND] == keys.KIND_LWDNA),
               key=lambda r: r.data.metrics[keys.METRIC_ACCURACY])
    (block,) = [b for b in BLOCKS if b.first.startswith(FOUND_NETWORK)]
    out = subprocess.run([sys.executable, "-c", block.code.replace("<run_id>", best.info.run_id)],
                         cwd=folder, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    metadata, predictions = out.stdout.strip().splitlines()[-2:]
    assert "'mean'" in metadata and "'range': [0.0, 1.0]" in metadata
    # the first eight digits of scikit-learn's set are 0..7; the network scores about 98 %
    predicted = [int(d) for d in re.findall(r"\d+", predictions)]
    assert len(predicted) == 8 and sum(p == i for i, p in enumerate(predicted)) >= 7


@pytest.mark.slow
def test_register_and_export_block_runs_on_the_quickstart(quickstart):
    pytest.importorskip("onnxruntime")
    folder, _ = quickstart
    _, _, runs = _store(folder)
    lwdna = next(r for r in _trials(runs) if r.data.tags[keys.TAG_KIND] == keys.KIND_LWDNA)
    (block,) = [b for b in BLOCKS if b.first.startswith(REGISTER_EXPORT)]
    out = _bash(block.code.replace("<run_id>", lwdna.info.run_id), folder)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "registered" in out.stdout and "over 64 test images" in out.stdout
    assert "(<= 0.0001: ok)" in out.stdout and (folder / "lwdna.onnx").stat().st_size > 0
