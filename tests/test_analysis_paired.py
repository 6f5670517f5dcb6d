"""Seed statistics and the paired LW-DNA vs uniform comparison, on frames whose answer is known."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from analysis.compare import (
    BETTER,
    ONE_SEED,
    TIED,
    WORSE,
    compare_to_uniform,
    paired_gains,
    paired_summary,
)
from analysis.stats import ci_half_width, estimate, t_quantile

M = 1e6
# uniform accuracy = offset + flops / 100M on [10M, 40M]; each seed shifts the whole curve
WIDTHS = ((0.5, 10 * M), (0.75, 20 * M), (1.0, 40 * M))
SEED_OFFSET = {0: 0.50, 1: 0.55, 2: 0.45}


def uniform(seed, flops):
    return SEED_OFFSET[seed] + flops / (100 * M)


def sweep(gains_by_seed, *, flops=30 * M, fraction=1.0, target=0.75):
    """Baselines of every seed, and one LW-DNA per seed whose accuracy is the same seed's uniform
    accuracy at its FLOPs plus the given gain (in points)."""
    rows = []
    for seed, gain in gains_by_seed.items():
        for width, cost in WIDTHS:
            rows.append({"kind": "baseline", "width_mult": width, "target": np.nan,
                         "criterion": "uniform", "flops": cost, "params": cost / 100,
                         "accuracy": uniform(seed, cost), "seed": seed,
                         "data_fraction": fraction, "model": "resnet_cifar"})
        rows.append({"kind": "lwdna", "width_mult": 2.0, "target": target, "criterion": "dhp",
                     "flops": flops, "params": flops / 120,
                     "accuracy": uniform(seed, flops) + gain / 100, "seed": seed,
                     "data_fraction": fraction, "model": "resnet_cifar"})
    df = pd.DataFrame(rows)
    df["run_id"] = [f"r{fraction}-{i}" for i in range(len(df))]
    df["stopped_early"] = False
    return df


def test_t_quantiles_match_the_tables():
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(10) == pytest.approx(2.228, abs=1e-3)
    assert t_quantile(10_000) == pytest.approx(1.960, abs=1e-3)
    assert math.isnan(t_quantile(0))


def test_estimate_of_three_values_by_hand():
    est = estimate([1.0, 2.0, 3.0])
    assert (est.mean, est.std, est.n) == (2.0, 1.0, 3)
    assert est.half_width == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert est.contains(0.0) and est.decided
    assert ci_half_width(1.0, 3) == pytest.approx(est.half_width)


def test_a_single_value_has_no_interval():
    est = estimate([0.7, float("nan")])
    assert est.n == 1 and est.mean == 0.7
    assert math.isnan(est.std) and not est.decided


def test_each_trial_is_paired_with_its_own_seeds_curve():
    paired = paired_gains(sweep({0: 1.0, 1: 1.2, 2: 1.4}))
    by_seed = paired.set_index("seed")
    for seed, gain in {0: 1.0, 1: 1.2, 2: 1.4}.items():
        assert by_seed.loc[seed, "uniform_same_seed"] == pytest.approx(uniform(seed, 30 * M))
        assert by_seed.loc[seed, "paired_gain_points"] == pytest.approx(gain)


def test_consistent_gains_are_significant_despite_large_seed_offsets():
    # the seeds move both arms by 5 points; pairing removes that, leaving gains 1.0/1.2/1.4
    summary = paired_summary(paired_gains(sweep({0: 1.0, 1: 1.2, 2: 1.4})))
    row = summary.iloc[0]
    assert row["n_seeds"] == 3 and row["gain_mean"] == pytest.approx(1.2)
    half = 4.3027 * 0.2 / math.sqrt(3)
    assert row["gain_ci_low"] == pytest.approx(1.2 - half, abs=1e-3)
    assert row["gain_ci_high"] == pytest.approx(1.2 + half, abs=1e-3)
    assert row["outcome"] == BETTER


def test_an_interval_containing_zero_reads_not_distinguishable():
    result = compare_to_uniform(sweep({0: 1.0, 1: 2.0, 2: 3.0}))   # 2 +/- 2.48
    assert result.paired_summary["outcome"].tolist() == [TIED]
    assert "0 setting(s) LW-DNA better, 0 LW-DNA worse, 1 not distinguishable" in \
        result.paired_verdict
    assert "+2.00 points [-0.48, +4.48], n = 3 seeds" in result.paired_verdict


def test_consistent_losses_read_worse():
    summary = paired_summary(paired_gains(sweep({0: -1.0, 1: -1.1, 2: -0.9})))
    assert summary["outcome"].tolist() == [WORSE]


def test_a_single_seed_sweep_says_it_cannot_tell():
    result = compare_to_uniform(sweep({0: 3.0}))
    assert result.paired_summary["outcome"].tolist() == [ONE_SEED]
    assert "cannot tell" in result.paired_verdict
    assert "+3.00 points (1 seed)" in result.paired_verdict


# Per seed, the LW-DNA's difference from its own seed's uniform curve [points]: a large one-seed
# difference, intervals above 0, around 0 and below 0.
GAIN_PATTERNS = {"one seed": {0: 3.0}, "one seed, tiny": {0: 0.01},
                 "better": {0: 1.0, 1: 1.2, 2: 1.4}, "tied": {0: 1.0, 1: 2.0, 2: 3.0},
                 "worse": {0: -1.0, 1: -1.1, 2: -0.9}}


@pytest.mark.parametrize("pattern", sorted(GAIN_PATTERNS))
def test_no_verdict_claims_a_win_the_paired_interval_does_not_show(pattern):
    result = compare_to_uniform(sweep(GAIN_PATTERNS[pattern]))
    text = f"{result.verdict} {result.paired_verdict}"
    better = (result.paired_summary["outcome"] == BETTER).any()
    assert "beats" not in text and "saved" not in text
    assert ("1 setting(s) LW-DNA better" in text) == better
    if len(GAIN_PATTERNS[pattern]) == 1:   # one seed says only that it cannot tell
        assert result.paired_verdict.startswith("Paired by seed: cannot tell.")
        assert not re.search(r"\bgains?\b", text)
        assert "These are differences, not wins" in result.verdict
    else:
        assert f"{int(better)} setting(s) are better" in result.verdict


def test_a_trial_without_a_baseline_of_its_seed_is_not_paired():
    trials = sweep({0: 1.0, 1: 1.0})
    trials = trials[~((trials["kind"] == "baseline") & (trials["seed"] == 1))]
    paired = paired_gains(trials).set_index("seed")
    assert math.isnan(paired.loc[1, "paired_gain_points"])
    assert "no baseline with seed 1" in paired.loc[1, "paired_reason"]
    assert paired_summary(paired.reset_index())["n_seeds"].tolist() == [1]


def test_each_data_fraction_has_its_own_uniform_curve():
    # fraction 0.1's baselines are 20 points worse: comparing across fractions would be wrong
    small = sweep({0: 1.0, 1: 1.0}, fraction=0.1)
    small.loc[small["kind"] == "baseline", "accuracy"] -= 0.2
    small.loc[small["kind"] == "lwdna", "accuracy"] -= 0.2
    trials = pd.concat([small, sweep({0: 3.0, 1: 3.0}, fraction=1.0)], ignore_index=True)
    result = compare_to_uniform(trials)
    gains = result.points.set_index("data_fraction")["accuracy_gain_points"]
    assert gains.loc[0.1] == pytest.approx(1.0) and gains.loc[1.0] == pytest.approx(3.0)
    paired = result.paired_summary.set_index("data_fraction")["gain_mean"]
    assert paired.loc[0.1] == pytest.approx(1.0) and paired.loc[1.0] == pytest.approx(3.0)


def test_a_single_baseline_compares_a_point_within_the_shrink_tolerance():
    # datasize sweeps: only the width-1.0 baseline; LW-DNA target 1.0 lands within 0.5 %
    trials = sweep({0: 1.0, 1: 2.0})
    trials = trials[trials["width_mult"] != 0.5]
    trials = trials[(trials["kind"] == "lwdna") | (trials["width_mult"] == 1.0)].copy()
    trials.loc[trials["kind"] == "lwdna", "flops"] = 40 * M * 1.003
    lwdna = trials["kind"] == "lwdna"
    trials.loc[lwdna, "accuracy"] = [uniform(s, 40 * M) + g / 100
                                     for s, g in zip(trials.loc[lwdna, "seed"], (1.0, 2.0),
                                                     strict=True)]
    gains = paired_gains(trials)["paired_gain_points"]
    assert gains.tolist() == pytest.approx([1.0, 2.0])


def test_arm_statistics_give_train_test_gap_with_intervals():
    trials = sweep({0: 1.0, 1: 1.2, 2: 1.4})
    gap = {0.5: 0.05, 0.75: 0.06, 1.0: 0.07, 2.0: 0.02}   # by width; 2.0 is the LW-DNA
    trials["train_accuracy"] = trials["accuracy"] + trials["width_mult"].map(gap)
    from analysis.compare import arm_statistics

    arms = arm_statistics(trials).set_index(["kind", "width_mult"])
    lwdna = arms.loc[("lwdna", 2.0)]
    assert lwdna["n_seeds"] == 3
    assert lwdna["train_test_gap"] == pytest.approx(0.02) and lwdna["train_test_gap_ci"] == \
        pytest.approx(0.0, abs=1e-12)
    wide = arms.loc[("baseline", 1.0)]
    assert wide["train_test_gap"] == pytest.approx(0.07)
    seeds = [uniform(s, 40 * M) for s in (0, 1, 2)]
    assert wide["accuracy_ci"] == pytest.approx(ci_half_width(np.std(seeds, ddof=1), 3))


def test_data_size_figure_draws_gain_and_gap_with_their_intervals():
    from analysis.compare import arm_statistics
    from analysis.plots import plot_data_size

    trials = pd.concat([sweep({0: g, 1: g + 0.4, 2: g + 0.8}, fraction=f)
                        for f, g in ((0.1, 2.0), (0.3, 1.0), (1.0, 0.0))], ignore_index=True)
    trials["train_accuracy"] = trials["accuracy"] + 0.1
    result = compare_to_uniform(trials)
    fig = plot_data_size(result.paired_summary, arm_statistics(trials))
    gain_ax, gap_ax = fig.axes
    (gain,) = gain_ax.containers
    line, _caps, (bars,) = gain
    assert list(line.get_xdata()) == [0.1, 0.3, 1.0]
    assert list(line.get_ydata()) == pytest.approx([2.4, 1.4, 0.4])
    half = 4.3027 * 0.4 / math.sqrt(3)
    spans = [seg[1, 1] - seg[0, 1] for seg in bars.get_segments()]
    assert spans == pytest.approx([2 * half] * 3, abs=1e-3)
    assert len(gap_ax.containers) == 4   # three uniform widths and the LW-DNA


def test_pareto_error_bars_are_95_percent_intervals_over_seeds():
    from analysis.plots import plot_accuracy_vs_cost

    fig = plot_accuracy_vs_cost(sweep({0: 1.0, 1: 1.2, 2: 1.4}), aggregate=True)
    baseline = next(c for c in fig.axes[0].containers if c.has_yerr and c.lines[0] is not None)
    _line, _caps, (bars,) = baseline
    spans = [seg[1, 1] - seg[0, 1] for seg in bars.get_segments()]
    seeds_std = np.std(list(SEED_OFFSET.values()), ddof=1)   # the seeds shift every width alike
    assert spans == pytest.approx([2 * 100 * ci_half_width(seeds_std, 3)] * 3)


# ---- the random control and the levers --------------------------------------------------------
def _with_control(gains, random_gains, *, init="fresh"):
    """sweep() plus, per seed, a random LW-DNA at the same FLOPs scoring ``random_gains`` over
    the uniform curve of its seed."""
    df = sweep(gains)
    df["init"], df["kd_weight"] = init, 0.0
    df.loc[df["kind"] == "baseline", "init"] = np.nan
    controls = df[df["kind"] == "lwdna"].copy()
    controls["criterion"], controls["init"] = "random", "fresh"
    controls["accuracy"] = [uniform(s, f) + random_gains[s] / 100
                            for s, f in zip(controls["seed"], controls["flops"], strict=True)]
    controls["run_id"] = [f"rand-{s}" for s in controls["seed"]]
    return pd.concat([df, controls], ignore_index=True)


def test_each_criterion_is_set_against_uniform_and_against_random_of_its_seed():
    from analysis.compare import controls_summary, paired_vs_random

    trials = _with_control({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.0, 2: 6.0})
    versus = paired_vs_random(trials)
    assert set(versus["criterion"]) == {"dhp"}
    assert sorted(versus["gain_vs_random_points"].round(6)) == [-3.0, -1.0, -1.0]
    table = controls_summary(trials).set_index("criterion")
    assert table.loc["dhp", "vs_uniform_mean"] == pytest.approx(2.0)
    assert table.loc["dhp", "vs_random_mean"] == pytest.approx(-5 / 3)
    assert table.loc["dhp", "vs_random_n"] == 3
    assert table.loc["random", "vs_uniform_mean"] == pytest.approx(11 / 3)
    assert table.loc["random", "vs_random_n"] == 0  # no control of the control


def test_trials_that_differ_only_in_a_lever_are_never_averaged_as_seeds():
    # init and kd_weight are declared settings: analysis groups by every declared setting.
    from analysis.pareto import HYPERPARAMETERS, aggregate_seeds

    assert {"init", "kd_weight", "dhp_group_latent", "criterion"} <= set(HYPERPARAMETERS)
    fresh = _with_control({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    hyper = fresh[(fresh["kind"] == "lwdna") & (fresh["criterion"] == "dhp")].copy()
    hyper["init"], hyper["accuracy"] = "hyper", hyper["accuracy"] + 0.1
    trials = pd.concat([fresh, hyper], ignore_index=True)
    groups = aggregate_seeds(trials[trials["kind"] == "lwdna"])
    assert len(groups) == 3 and set(groups["n_seeds"]) == {3}


def test_kd_lwdnas_are_compared_with_kd_baselines_only():
    off = sweep({0: 1.0, 1: 1.0, 2: 1.0})
    on = sweep({0: 1.0, 1: 1.0, 2: 1.0})
    off["kd_weight"], on["kd_weight"] = 0.0, 0.4
    on.loc[on["kind"] == "baseline", "accuracy"] += 0.05  # KD lifts the uniform arm 5 points
    on["run_id"] = on["run_id"] + "-kd"
    summary = paired_summary(paired_gains(pd.concat([off, on], ignore_index=True)))
    assert len(summary) == 2
    assert summary["gain_mean"].tolist() == pytest.approx([1.0, -4.0])


def test_the_comparison_at_equal_training_time_uses_seconds_per_image():
    trials = sweep({0: 1.0, 1: 1.0, 2: 1.0})
    # uniform: time proportional to FLOPs; the LW-DNA as slow per image as the 40M baseline
    trials["seconds_per_image"] = trials["flops"] / (1e3 * M)
    trials.loc[trials["kind"] == "lwdna", "seconds_per_image"] = 40 * M / (1e3 * M)
    timed = compare_to_uniform(trials, cost="seconds_per_image").paired_summary
    # at 40M-worth of time the uniform curve is at its 40M point: gain = 1 - 10 points
    assert timed["gain_mean"].iloc[0] == pytest.approx(1.0 - 10.0)


def test_the_summary_has_a_controls_table_and_an_equal_time_table():
    from analysis.load import Sweep
    from analysis.pareto import ACC_FLOPS, pareto_front
    from analysis.summary import summary_markdown

    trials = _with_control({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.0, 2: 6.0})
    trials["seconds_per_image"] = trials["flops"] / (1e3 * M)
    trials["train_accuracy"] = trials["accuracy"] + 0.05
    trials["flops_ratio"] = trials["flops"] / (40 * M)
    trials["latency_ms"] = np.nan
    sweep_ = Sweep("sqlite:///x.db", "e", "0", "p", "demo", trials, n_unfinished=0)
    text = summary_markdown(sweep_, pareto_front(trials, ACC_FLOPS, aggregate=True),
                            compare_to_uniform(trials), True, volume=0.0, reference=(0.0, 1.0))
    controls = text.split("## Controls")[1].split("##")[0]
    assert "vs random [points]" in controls and "-1.67 [" in controls and "n = 3" in controls
    assert "| random |" in controls.replace("|random|", "| random |")
    assert "## At equal training time" in text
