"""`hetero sweep --quiet` prints its summary only, `--verbose` Ray Tune's own output (the
default, one progress line per trial, is counted on the quickstart in tests/test_readme.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from _sweeps import TINY

PROGRESS = re.compile(r"^trials \d+/\d+ done, \d+ running, \d+ failed")
SPEC = {**TINY, "protocol": {"epochs": 1, "batch_size": 64}, "tracking": {"latency_batch": 0}}


def _sweep(tmp_path, *flags: str) -> tuple[int, str]:
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    out = subprocess.run([sys.executable, "-m", "hetero_cli", "sweep", "spec.yaml", *flags],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.slow
def test_quiet_prints_the_summary_only(tmp_path):
    code, printed = _sweep(tmp_path, "--quiet")
    assert code == 0, printed[-3000:]
    lines = printed.strip().splitlines()
    assert lines[0].startswith("Sweep tiny: 3 trials (3 finished"), printed
    assert not any(PROGRESS.match(line) for line in lines) and "╭" not in printed
    assert "INFO" not in printed and len(lines) < 15


@pytest.mark.slow
def test_verbose_shows_ray_tunes_own_output_instead_of_the_progress_line(tmp_path):
    code, printed = _sweep(tmp_path, "--verbose")
    assert code == 0, printed[-3000:]
    assert "Trial status" in printed and "╭" in printed   # Tune's tables
    assert not any(PROGRESS.match(line) for line in printed.splitlines())
    assert "Sweep tiny: 3 trials (3 finished" in printed


def test_verbose_and_quiet_exclude_each_other(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hetero_cli", "sweep", "spec.yaml", "--verbose",
                          "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "not allowed with argument" in out.stderr
