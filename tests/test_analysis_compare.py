"""LW-DNA against the uniform-width curve: interpolation by hand, no extrapolation, verdicts."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.compare import accuracy_at, compare_to_uniform, cost_at, uniform_curve, verdict

M = 1e6


def trials(baselines, lwdnas=(), seeds=(0,)):
    """baselines: (width, flops, accuracy); lwdnas: (target, flops, accuracy)."""
    rows = []
    for seed in seeds:
        for width, flops, acc in baselines:
            rows.append({"kind": "baseline", "width_mult": width, "target": np.nan,
                         "criterion": "uniform", "flops": flops, "params": flops / 100,
                         "accuracy": acc, "seed": seed})
        for target, flops, acc in lwdnas:
            rows.append({"kind": "lwdna", "width_mult": 2.0, "target": target,
                         "criterion": "dhp", "flops": flops, "params": flops / 120,
                         "accuracy": acc, "seed": seed})
    df = pd.DataFrame(rows, columns=["kind", "width_mult", "target", "criterion", "flops",
                                     "params", "accuracy", "seed"])
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    df["stopped_early"] = False
    return df


# accuracy = 0.5 + flops / 100M on [10M, 40M]
LINEAR = [(0.5, 10 * M, 0.6), (0.75, 20 * M, 0.7), (1.0, 40 * M, 0.9)]


def test_gain_and_saving_inside_the_range_by_hand():
    result = compare_to_uniform(trials(LINEAR, [(0.6, 25 * M, 0.80)]))
    point = result.points.iloc[0]
    assert point["baseline_accuracy_at_flops"] == pytest.approx(0.75)
    assert point["accuracy_gain_points"] == pytest.approx(5.0)
    assert point["baseline_flops_at_accuracy"] == pytest.approx(30 * M)
    assert point["flops_saved"] == pytest.approx(5 * M)
    assert point["flops_saved_pct"] == pytest.approx(100 * 5 / 30)
    assert point["gain_reason"] == "" and point["saving_reason"] == ""


def test_points_outside_the_range_get_nan_and_a_reason():
    result = compare_to_uniform(trials(LINEAR, [(1.2, 50 * M, 0.95), (0.2, 5 * M, 0.65)]))
    cheap, costly = result.points.iloc[0], result.points.iloc[1]
    assert math.isnan(costly["accuracy_gain_points"])
    assert costly["gain_reason"] == "outside the baseline FLOPs range [10M, 40M]"
    assert math.isnan(costly["flops_saved"])
    assert costly["saving_reason"] == "outside the baseline accuracy range [60.00%, 90.00%]"
    # below the FLOPs range, but its accuracy lies on the curve: savings are interpolated
    assert math.isnan(cheap["accuracy_gain_points"])
    assert cheap["baseline_flops_at_accuracy"] == pytest.approx(15 * M)
    assert cheap["flops_saved_pct"] == pytest.approx(100 * 10 / 15)


def test_curve_is_seed_averaged_and_monotone():
    base = trials([(0.5, 10 * M, 0.70), (1.0, 20 * M, 0.65), (2.0, 40 * M, 0.90)], seeds=(0, 1))
    base.loc[base["seed"] == 1, "accuracy"] += 0.02
    curve = uniform_curve(base)
    assert curve["n_seeds"].tolist() == [2, 2, 2]
    assert curve["accuracy"].tolist() == pytest.approx([0.71, 0.66, 0.91])
    assert curve["envelope"].tolist() == pytest.approx([0.71, 0.71, 0.91])
    assert curve["envelope"].is_monotonic_increasing


def test_cost_at_accuracy_on_a_plateau_takes_the_cheapest():
    curve = uniform_curve(trials([(0.5, 10 * M, 0.70), (1.0, 20 * M, 0.65), (2.0, 40 * M, 0.90)]))
    assert cost_at(curve, 0.70) == (10 * M, "")
    assert cost_at(curve, 0.80)[0] == pytest.approx(30 * M)  # between (20M, .70) and (40M, .90)
    assert accuracy_at(curve, 15 * M)[0] == pytest.approx(0.70)  # the dip is ironed out


def test_stopped_baselines_do_not_shape_the_curve():
    df = trials(LINEAR + [(1.5, 30 * M, 0.99)])
    df.loc[df["width_mult"] == 1.5, "stopped_early"] = True
    assert uniform_curve(df)["width_mult"].tolist() == [0.5, 0.75, 1.0]


def test_params_as_the_cost():
    result = compare_to_uniform(trials(LINEAR, [(0.6, 30 * M, 0.85)]), cost="params")
    point = result.points.iloc[0]  # 0.25M params on a curve 0.1M .. 0.4M params
    assert point["baseline_accuracy_at_params"] == pytest.approx(0.5 + 25 * M / (100 * M) * 1.0)
    assert "params" in result.verdict


def test_verdict_states_differences_and_averages_all_compared():
    result = compare_to_uniform(trials(LINEAR, [(0.6, 25 * M, 0.80), (0.9, 30 * M, 0.78),
                                                (1.2, 50 * M, 0.95)]))
    # differences: +5.0 at 25M, -2.0 at 30M; the 50M point is outside
    assert "LW-DNA minus uniform at 2 budgets" in result.verdict
    assert "+1.50 points on average (from -2.00 to +5.00)" in result.verdict
    assert "(1 outside the range not compared)" in result.verdict
    # one seed: differences, never a win
    assert "beats" not in result.verdict and "cannot tell" in result.verdict


def test_verdict_without_baselines():
    result = compare_to_uniform(trials([], [(0.5, 20 * M, 0.8)]))
    assert result.verdict.startswith("No uniform-width baseline")
    assert result.points["gain_reason"].iloc[0] == "no uniform-width baseline to compare with"


def test_verdict_with_a_single_baseline():
    result = compare_to_uniform(trials([(1.0, 40 * M, 0.9)], [(0.5, 20 * M, 0.8)]))
    assert result.verdict.startswith("Only one uniform-width baseline (width 1)")
    assert "only one uniform width" in result.points["gain_reason"].iloc[0]


def test_verdict_with_no_point_inside_the_range():
    result = compare_to_uniform(trials(LINEAR, [(0.1, 2 * M, 0.3)]))
    assert result.verdict.startswith("No LW-DNA point lies inside the baseline FLOPs range "
                                     "[10M, 40M]")


def test_verdict_without_lwdna():
    curve = uniform_curve(trials(LINEAR))
    assert verdict(curve, pd.DataFrame()).startswith("No finished LW-DNA trial")


def test_a_point_within_the_shrink_tolerance_of_the_range_end_is_compared_at_the_end():
    import pandas as pd

    from analysis.compare import accuracy_at, uniform_curve

    trials = pd.DataFrame({"kind": ["baseline", "baseline"], "width_mult": [0.5, 1.0],
                           "seed": [0, 0], "accuracy": [0.9, 0.95], "flops": [100.0, 400.0],
                           "params": [1.0, 4.0]})
    curve = uniform_curve(trials)
    assert accuracy_at(curve, 400.0 * 1.004)[0] == 0.95          # within 0.5 %: the end
    assert accuracy_at(curve, 400.0 * 1.01)[1].startswith("outside")  # beyond: refused
