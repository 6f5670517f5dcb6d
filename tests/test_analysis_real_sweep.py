"""The report's statistics on a store written by a real sweep: the datasize spec's smoke test
(digits, two seeds, one epoch), run by Ray Tune into a real MLflow store."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from analysis.stats import ci_half_width
from sweeps import keys
from sweeps.spec import load_spec

pytestmark = pytest.mark.slow

SPEC = "sweeps/configs/cifar10_datasize.yaml"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from analysis.report import create_report
    from sweeps.runner import run_sweep

    folder = tmp_path_factory.mktemp("datasize-smoke")
    spec = replace(load_spec(SPEC), storage=str(folder / "ray_results"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    results = run_sweep(spec, tracking_uri=uri, smoke_test=True)
    assert all(t.finished for t in results.trials), results.summary()
    return create_report(experiment=results.experiment, tracking_uri=uri,
                         out_dir=folder / "report", log_to_mlflow=False)


def test_smoke_sweep_pairs_two_seeds_of_one_setting(report):
    trials = report.sweep.trials
    assert sorted(trials["kind"].value_counts().items()) == [("baseline", 2), ("lwdna", 2)]
    paired = report.comparison.paired
    # each LW-DNA is compared with the baseline of its own seed, at equal FLOPs within 0.5 %
    base = trials[trials["kind"] == "baseline"].set_index(keys.PARAM_SEED)[keys.METRIC_ACCURACY]
    for _, row in paired.iterrows():
        assert row["uniform_same_seed"] == pytest.approx(base.loc[row[keys.PARAM_SEED]])
        expected = 100 * (row[keys.METRIC_ACCURACY] - base.loc[row[keys.PARAM_SEED]])
        assert row["paired_gain_points"] == pytest.approx(expected)
    (summary,) = [r for _, r in report.comparison.paired_summary.iterrows()]
    gains = paired["paired_gain_points"]
    assert summary["n_seeds"] == 2 == gains.notna().sum()
    # the setting's mean gain, its sample std, and the t interval (t(0.975, 1) = 12.7062)
    assert summary["gain_mean"] == pytest.approx(gains.mean())
    assert summary["gain_std"] == pytest.approx(gains.std(ddof=1))
    half = ci_half_width(gains.std(ddof=1), 2)
    assert half == pytest.approx(12.7062047 * gains.std(ddof=1) / math.sqrt(2), rel=1e-6)
    assert summary["gain_ci_low"] == pytest.approx(gains.mean() - half)
    assert summary["gain_ci_high"] == pytest.approx(gains.mean() + half)
    # the outcome follows the interval's sign, and the verdict counts the one setting under it
    outcome = ("LW-DNA better" if summary["gain_ci_low"] > 0 else
               "LW-DNA worse" if summary["gain_ci_high"] < 0 else "not distinguishable")
    assert summary["outcome"] == outcome
    counts = {name: int(name == outcome)
              for name in ("LW-DNA better", "LW-DNA worse", "not distinguishable")}
    verdict = report.comparison.paired_verdict
    assert (f"{counts['LW-DNA better']} setting(s) LW-DNA better, {counts['LW-DNA worse']} "
            f"LW-DNA worse, {counts['not distinguishable']} not distinguishable") in verdict
    assert f"{summary['gain_mean']:+.2f} points" in verdict and f"n = 2 seeds, {outcome}." in verdict


def test_arms_carry_train_accuracy_and_the_gap(report):
    text = report.paths["summary.md"].read_text()
    assert "## Paired comparison" in text and "## Arms (mean ± 95 % CI over seeds)" in text
    trials = report.sweep.trials
    assert trials[keys.METRIC_TRAIN_ACCURACY].between(0, 1).all()
    arms = report.paths["arms.csv"].read_text().splitlines()
    assert len(arms) == 3 and "train_test_gap_ci" in arms[0]   # header + one row per arm
    assert not math.isnan(report.comparison.paired_summary["gain_mean"].iloc[0])
