"""Pareto fronts, seed aggregation and hypervolume on small frames with known answers."""

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import (
    ACC_FLOPS,
    ACC_FLOPS_PARAMS,
    aggregate_seeds,
    default_reference,
    hypervolume,
    non_dominated_mask,
    pareto_front,
)


def frame(points, **extra):
    """Rows of (accuracy, flops[, params]) with a run_id per row."""
    columns = ["accuracy", "flops", "params"][: len(points[0])]
    df = pd.DataFrame(points, columns=columns)
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    for name, values in extra.items():
        df[name] = values
    return df


def test_front_of_a_known_set_is_sorted_by_flops():
    df = frame([(0.90, 40), (0.80, 10), (0.85, 30), (0.84, 35), (0.70, 20), (0.95, 80)])
    front = pareto_front(df)
    assert list(front.points["run_id"]) == ["r1", "r2", "r0", "r5"]
    assert front.n_candidates == 6 and front.n_dropped_nan == 0


def test_exact_ties_are_both_kept():
    df = frame([(0.9, 40), (0.9, 40), (0.8, 50)])
    assert sorted(pareto_front(df).points["run_id"]) == ["r0", "r1"]


def test_equal_accuracy_but_cheaper_dominates():
    df = frame([(0.9, 40), (0.9, 30)])
    assert list(pareto_front(df).points["run_id"]) == ["r1"]


def test_nan_rows_are_dropped_and_counted():
    df = frame([(0.9, 40), (np.nan, 10), (0.99, np.nan), (0.8, 20)])
    front = pareto_front(df)
    assert list(front.points["run_id"]) == ["r3", "r0"]
    assert front.n_dropped_nan == 2 and front.n_candidates == 2


def test_single_point_is_its_own_front_with_zero_default_volume():
    df = frame([(0.9, 40)])
    assert len(pareto_front(df).points) == 1
    assert hypervolume(df) == 0.0  # the default reference is the point itself
    assert hypervolume(df, reference=(0.5, 100)) == pytest.approx(0.4 * 60)


def test_one_point_dominating_all_others():
    df = frame([(0.7, 50), (0.95, 10), (0.8, 30), (0.6, 60)])
    assert list(pareto_front(df).points["run_id"]) == ["r1"]


def test_empty_after_dropping_nan():
    front = pareto_front(frame([(np.nan, 1.0)]))
    assert front.points.empty and front.n_dropped_nan == 1
    assert hypervolume(front.points) == 0.0


def test_stopped_trials_are_left_out_unless_asked():
    df = frame([(0.99, 5), (0.9, 40)], stopped_early=[True, False])
    front = pareto_front(df)
    assert list(front.points["run_id"]) == ["r1"] and front.n_stopped_excluded == 1
    assert list(pareto_front(df, include_stopped=True).points["run_id"]) == ["r0"]


def test_three_objectives_keep_a_point_best_only_in_params():
    df = frame([(0.9, 40, 5.0), (0.8, 50, 1.0), (0.7, 60, 9.0)])
    assert list(pareto_front(df).points["run_id"]) == ["r0"]
    assert list(pareto_front(df, ACC_FLOPS_PARAMS).points["run_id"]) == ["r0", "r1"]


def test_general_objectives_and_their_validation():
    df = frame([(0.9, 40), (0.8, 10)])
    both_max = pareto_front(df, [("accuracy", "max"), ("flops", "max")])
    assert list(both_max.points["run_id"]) == ["r0"]
    with pytest.raises(ValueError, match="use 'max' or 'min'"):
        pareto_front(df, [("accuracy", "up")])
    with pytest.raises(ValueError, match="no column 'latency'"):
        pareto_front(df, [("latency", "min")])


def test_mask_on_raw_arrays():
    values = np.array([[1.0, 1.0], [2.0, 0.5], [0.5, 0.2], [0.5, 0.5]])
    assert non_dominated_mask(values, ["max", "min"]).tolist() == [False, True, True, False]


def test_hypervolume_2d_by_hand():
    df = frame([(0.9, 40), (0.8, 10)])
    # boxes to (0.7, 50): 10 x 0.2 and 40 x 0.1, overlapping in 10 x 0.1
    assert hypervolume(df, reference=(0.7, 50)) == pytest.approx(2 + 4 - 1)
    assert default_reference(df) == (0.8, 40)
    assert hypervolume(df) == pytest.approx(0.0)  # each point is worst in one objective


def test_hypervolume_ignores_dominated_and_out_of_reference_points():
    df = frame([(0.9, 40), (0.8, 10), (0.75, 45), (0.95, 60)])
    assert hypervolume(df, reference=(0.7, 50)) == pytest.approx(5.0)


def test_hypervolume_3d_by_hand():
    # in "min" space: boxes [1,4]x[2,4]x[3,4] (6) and [2,4]x[1,4]x[2,4] (12) share 4
    points = np.array([[1, 2, 3], [2, 1, 2]], dtype=float)
    objectives = [("a", "min"), ("b", "min"), ("c", "min")]
    assert hypervolume(points, objectives, reference=(4, 4, 4)) == pytest.approx(14.0)


@pytest.mark.parametrize("dims", [3, 4])
def test_hypervolume_matches_unit_cube_counting(dims):
    rng = np.random.default_rng(dims)
    points = rng.integers(0, 5, size=(7, dims)).astype(float)
    ref = np.full(dims, 5.0)
    cells = itertools.product(range(5), repeat=dims)  # a unit cell is covered if some point <= it
    expected = sum(bool(np.any(np.all(points <= np.array(c), axis=1))) for c in cells)
    objectives = [(f"x{i}", "min") for i in range(dims)]
    assert hypervolume(points, objectives, reference=ref) == pytest.approx(expected)


def seeded_trials():
    rows = []
    for kind, width, target, flops, accs in [("baseline", 1.0, np.nan, 40, (0.90, 0.92)),
                                             ("lwdna", 2.0, 0.5, 20, (0.86, 0.90)),
                                             ("lwdna", 2.0, 0.25, 10, (0.70, 0.60))]:
        for seed, acc in enumerate(accs):
            rows.append({"kind": kind, "width_mult": width, "target": target, "seed": seed,
                         "accuracy": acc, "flops": flops, "run_id": f"{kind}{target}-{seed}",
                         "stopped_early": False})
    df = pd.DataFrame(rows)
    df["seed"] = df["seed"].astype("Int64")
    return df


def test_aggregate_seeds_means_stds_and_counts():
    agg = aggregate_seeds(seeded_trials()).set_index("kind", append=True)
    assert len(agg) == 3  # the baseline group has a NaN target and must survive
    base = agg.xs("baseline", level="kind").iloc[0]
    assert base["accuracy"] == pytest.approx(0.91)
    assert base["accuracy_std"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    assert base["n_seeds"] == 2 and base["seeds"] == "0,1"
    assert base["run_ids"] == "baselinenan-0,baselinenan-1" and base["run_id"] == "baselinenan-0"


def test_single_seed_has_nan_std():
    agg = aggregate_seeds(seeded_trials().iloc[[0]])
    assert agg["n_seeds"].tolist() == [1] and np.isnan(agg["accuracy_std"].iloc[0])


def test_front_after_seed_aggregation_differs_from_per_trial_front():
    df = seeded_trials()
    per_trial = pareto_front(df).points
    averaged = pareto_front(df, ACC_FLOPS, aggregate=True).points
    assert "lwdna0.25-0" in set(per_trial["run_id"])  # 0.70 at 10 is on the per-trial front
    assert list(averaged["flops"]) == [10, 20, 40]
    assert averaged["accuracy"].tolist() == pytest.approx([0.65, 0.88, 0.91])
