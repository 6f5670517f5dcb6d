"""LW-DNA against the sweep's uniform-width arm (baselines at several width multipliers).

The uniform curve is accuracy vs cost of the baselines (averaged over seeds), made monotone by a
running maximum: "the best uniform network at this cost or less", which is what an LW-DNA has to
beat. Each LW-DNA point gets its accuracy gain at equal cost and the cost it saves at equal
accuracy, by linear interpolation on that curve, never extrapolated: outside the curve's range the
value is NaN with a reason. Trials are only compared within one context (model, dataset, data
fraction, epochs): a data-size sweep has one uniform curve per fraction.

The paired comparison is the one to trust with several seeds: each LW-DNA trial is set against the
uniform curve drawn from the baselines of the *same seed* (same initial draw, same data order), and
the per-seed gains of one setting give a mean with a t-distribution 95 % confidence interval. An
interval that contains 0 reads "not distinguishable"; a single seed cannot tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.pareto import HYPERPARAMETERS, aggregate_seeds
from analysis.stats import LEVEL, ci_half_width, estimate
from analysis.units import format_count, format_percent
from sweeps import keys

ACC = keys.METRIC_ACCURACY
# What must match for two trials to be compared at all (the seed is matched by the pairing).
CONTEXT = keys.CONTEXT_PARAMS
PAIRED_GAIN = "paired_gain_points"
# Outcomes of one setting's paired interval.
BETTER, WORSE, TIED = "LW-DNA better", "LW-DNA worse", "not distinguishable"
ONE_SEED, NO_PAIR = "cannot tell (one seed)", "not compared"


@dataclass(frozen=True)
class Comparison:
    curve: pd.DataFrame   # the uniform arm: width_mult, <cost>, accuracy, ..., envelope
    points: pd.DataFrame  # the LW-DNA points with gain / saving columns and their reasons
    cost: str
    verdict: str
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)   # one row per LW-DNA trial
    paired_summary: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per setting
    paired_verdict: str = ""


def uniform_curve(trials: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS) -> pd.DataFrame:
    """Baselines averaged over seeds, sorted by cost; ``envelope`` is the running max accuracy."""
    base = _usable(trials, keys.KIND_BASELINE, cost)
    if base.empty:
        return pd.DataFrame(columns=[keys.PARAM_WIDTH_MULT, cost, ACC, "envelope"])
    curve = aggregate_seeds(base).sort_values([cost, ACC], ignore_index=True)
    # equal cost twice (same width, other settings): keep the better one so costs increase
    curve = curve.drop_duplicates(cost, keep="last").reset_index(drop=True)
    curve["envelope"] = curve[ACC].cummax()
    return curve


# Relative slack at the ends of the uniform curve's cost range: the shrink tolerance (0.5 %) and
# a little for rounding, so that a target-1.0 LW-DNA 0.5 % below the baseline is still compared.
EDGE_TOLERANCE = 0.0051


def accuracy_at(curve: pd.DataFrame, value: float, *, cost: str = keys.METRIC_FLOPS
                ) -> tuple[float, str]:
    """(uniform-curve accuracy at this cost, "") or (NaN, why not)."""
    if len(curve):
        value = _snap_to_range(value, float(curve[cost].min()), float(curve[cost].max()))
    reason = _range_problem(curve, cost, value, f"baseline {_label(cost)} range", format_count)
    if reason:
        return float("nan"), reason
    return float(np.interp(value, curve[cost], curve["envelope"])), ""


def cost_at(curve: pd.DataFrame, accuracy: float, *, cost: str = keys.METRIC_FLOPS
            ) -> tuple[float, str]:
    """(least uniform cost that reaches this accuracy, "") or (NaN, why not)."""
    reason = _range_problem(curve.rename(columns={"envelope": "_acc"}), "_acc", accuracy,
                            "baseline accuracy range", format_percent)
    if reason:
        return float("nan"), reason
    xs, ys = curve[cost].to_numpy(float), curve["envelope"].to_numpy(float)
    i = int(np.argmax(ys >= accuracy))  # first point that reaches it (the envelope is sorted)
    if i == 0:
        return float(xs[0]), ""
    share = (accuracy - ys[i - 1]) / (ys[i] - ys[i - 1])  # ys[i-1] < accuracy <= ys[i]
    return float(xs[i - 1] + share * (xs[i] - xs[i - 1])), ""


def compare_to_uniform(trials: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS,
                       aggregate: bool = True) -> Comparison:
    """Every LW-DNA point (seed-averaged when ``aggregate``) against the uniform curve of its
    context, and the paired per-seed comparison."""
    curves, compared = [], []
    for group in _context_groups(trials):
        curve = uniform_curve(group, cost=cost)
        curves.append(curve)
        compared.append(_compare_points(group, curve, cost, aggregate))
    curve = pd.concat(curves, ignore_index=True) if len(curves) > 1 else curves[0]
    points = pd.concat(compared, ignore_index=True) if len(compared) > 1 else compared[0]
    points = points.sort_values(cost, ignore_index=True)
    paired = paired_gains(trials, cost=cost)
    summary = paired_summary(paired, cost=cost)
    return Comparison(curve, points, cost, verdict(curve, points, cost=cost, paired=summary),
                      paired, summary, paired_verdict(summary))


def _compare_points(trials: pd.DataFrame, curve: pd.DataFrame, cost: str,
                    aggregate: bool) -> pd.DataFrame:
    points = _usable(trials, keys.KIND_LWDNA, cost)
    if aggregate and not points.empty:
        points = aggregate_seeds(points)
    gains = [accuracy_at(curve, c, cost=cost) for c in points[cost]]
    needs = [cost_at(curve, a, cost=cost) for a in points[ACC]]
    base_acc = np.array([g for g, _ in gains], dtype=float)
    base_cost = np.array([n for n, _ in needs], dtype=float)
    points[f"baseline_{ACC}_at_{cost}"] = base_acc
    points["accuracy_gain_points"] = 100 * (points[ACC].to_numpy(float) - base_acc)
    points["gain_reason"] = [r for _, r in gains]
    points[f"baseline_{cost}_at_{ACC}"] = base_cost
    points[f"{cost}_saved"] = base_cost - points[cost].to_numpy(float)
    points[f"{cost}_saved_pct"] = 100 * points[f"{cost}_saved"] / base_cost
    points["saving_reason"] = [r for _, r in needs]
    return points


# ---- paired by seed -----------------------------------------------------------------------------

def paired_gains(trials: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS) -> pd.DataFrame:
    """One row per finished LW-DNA trial: the accuracy of the uniform curve of the same seed and
    context at its cost (``uniform_same_seed``) and the gain in points, or NaN and a reason."""
    lwdna = _usable(trials, keys.KIND_LWDNA, cost)
    base = _usable(trials, keys.KIND_BASELINE, cost)
    by = [c for c in (*CONTEXT, keys.PARAM_SEED) if c in trials.columns]
    curves = ({_key(k): uniform_curve(g, cost=cost) for k, g in base.groupby(by, dropna=False)}
              if by else {(): uniform_curve(base, cost=cost)})
    found = [_paired_point(curves.get(_key(row[by])), row, cost)
             for _, row in lwdna.iterrows()]
    lwdna["uniform_same_seed"] = [accuracy for accuracy, _ in found]
    lwdna[PAIRED_GAIN] = 100 * (lwdna[ACC].to_numpy(float) - lwdna["uniform_same_seed"])
    lwdna["paired_reason"] = [reason for _, reason in found]
    return lwdna.reset_index(drop=True)


def _paired_point(curve: pd.DataFrame | None, row: pd.Series, cost: str) -> tuple[float, str]:
    if curve is None:
        return float("nan"), f"no baseline with seed {row.get(keys.PARAM_SEED)} in this context"
    return accuracy_at(curve, float(row[cost]), cost=cost)


def paired_summary(paired: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS) -> pd.DataFrame:
    """One row per LW-DNA setting: mean paired gain over seeds, its std and 95 % interval,
    the number of paired seeds, and the outcome (better / worse / not distinguishable)."""
    columns = ["n_seeds", "gain_mean", "gain_std", "gain_ci_low", "gain_ci_high", "outcome",
               "seeds", cost, "note"]
    by = [c for c in HYPERPARAMETERS if c in paired.columns]
    if paired.empty:
        return pd.DataFrame(columns=[*by, *columns])
    rows = []
    for key, group in paired.groupby(by, dropna=False, sort=True):
        pairs = group.dropna(subset=[PAIRED_GAIN])
        est = estimate(pairs[PAIRED_GAIN])
        rows.append({**dict(zip(by, key, strict=True)), "n_seeds": est.n, "gain_mean": est.mean,
                     "gain_std": est.std, "gain_ci_low": est.low, "gain_ci_high": est.high,
                     "outcome": _outcome(est),
                     "seeds": ",".join(str(s) for s in pairs.get(keys.PARAM_SEED, [])),
                     cost: float(group[cost].mean()),
                     "note": "; ".join(sorted(set(group["paired_reason"]) - {""}))})
    return pd.DataFrame(rows, columns=[*by, *columns])


def _outcome(est) -> str:
    if est.n == 0:
        return NO_PAIR
    if est.n == 1:
        return ONE_SEED
    if est.low > 0:
        return BETTER
    return WORSE if est.high < 0 else TIED


def paired_verdict(summary: pd.DataFrame) -> str:
    """One paragraph: the outcome per setting, with mean gain, 95 % CI and the number of seeds."""
    compared = summary[summary["n_seeds"] > 0] if len(summary) else summary
    if compared.empty:
        return ("Paired by seed: no LW-DNA trial has a baseline curve of its own seed at its "
                "FLOPs, so nothing could be paired.")
    levers = varying_levers(compared)
    if int(compared["n_seeds"].max()) < 2:
        return ("Paired by seed: cannot tell. One seed per setting, so no difference below can "
                "be told from seed-to-seed noise; run 3 or more seeds (the same seeds for both "
                "arms). Differences, LW-DNA minus the uniform curve of its seed, one seed each: "
                + "; ".join(_setting_line(r, levers) for _, r in compared.iterrows()) + ".")
    counts = compared["outcome"].value_counts()
    head = (f"Paired by seed, at equal FLOPs ({LEVEL:.0%} t-interval of the mean gain): "
            f"{counts.get(BETTER, 0)} setting(s) {BETTER}, {counts.get(WORSE, 0)} "
            f"{WORSE}, {counts.get(TIED, 0)} {TIED} (interval contains 0)")
    if counts.get(ONE_SEED, 0):
        head += f", {counts[ONE_SEED]} {ONE_SEED}"
    return head + ". " + "; ".join(_setting_line(r, levers) for _, r in compared.iterrows()) + "."


# Named by the verdict's setting lines already (data, width, target) or by the model label.
_NAMED = (keys.PARAM_DATA_FRACTION, keys.PARAM_WIDTH_MULT, keys.PARAM_TARGET, keys.PARAM_MODEL,
          keys.PARAM_VARIANT)


def varying_levers(rows: pd.DataFrame) -> list[str]:
    """Settings besides those that differ between the rows (criterion, init, KD, ...)."""
    return [c for c in keys.SETTING_PARAMS if c in rows and c not in _NAMED
            and rows[c].astype(str).nunique() > 1]


def model_label(row: pd.Series) -> str:
    """"resnet_cifar 20", "resnet56" (no variant logged), or "" when the model is unknown."""
    model, variant = row.get(keys.PARAM_MODEL), row.get(keys.PARAM_VARIANT)
    if not isinstance(model, str):
        return ""
    if isinstance(variant, str) and variant not in ("", "None") and not model.endswith(variant):
        return f"{model} {variant}"
    return model


def _setting_line(row: pd.Series, levers: Sequence[str] = ()) -> str:
    parts = [f"{name} {row[col]:g}" for col, name in
             ((keys.PARAM_DATA_FRACTION, "data"), (keys.PARAM_WIDTH_MULT, "width"),
              (keys.PARAM_TARGET, "target")) if col in row and pd.notna(row[col])]
    parts += [f"{lever} {row[lever]:g}" if isinstance(row[lever], float) else f"{lever} {row[lever]}"
              for lever in levers if pd.notna(row[lever])]
    model = model_label(row)
    where = (f"{model}, " if model else "") + " ".join(parts)
    if row["n_seeds"] < 2:
        return f"{where}: {row['gain_mean']:+.2f} points (1 seed)"
    return (f"{where}: {row['gain_mean']:+.2f} points [{row['gain_ci_low']:+.2f}, "
            f"{row['gain_ci_high']:+.2f}], n = {row['n_seeds']} seeds, {row['outcome']}")


def verdict(curve: pd.DataFrame, points: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS,
            paired: pd.DataFrame | None = None) -> str:
    """One line: the LW-DNA points' differences from the uniform curve, said as differences.

    Whether a difference is a win is the paired comparison's to say (``paired``, the
    :func:`paired_summary`): only a setting whose 95 % interval excludes 0 is better or worse;
    with one seed per setting nothing is.
    """
    if points.empty:
        return "No finished LW-DNA trial in this sweep: nothing to compare with the uniform curve."
    if curve.empty:
        return ("No uniform-width baseline in this sweep: cannot compare; add a baseline arm "
                "with several width multipliers.")
    gains = points["accuracy_gain_points"].dropna()
    if gains.empty:
        return _no_comparison(curve, cost)
    line = (f"Against the uniform curve (interpolated, seed means), LW-DNA minus uniform at "
            f"{len(gains)} budgets inside its {_label(cost)} range: {gains.mean():+.2f} points on "
            f"average (from {gains.min():+.2f} to {gains.max():+.2f})")
    saved = points[f"{cost}_saved_pct"].dropna()
    if not saved.empty:
        line += (f"; {_label(cost)} difference at equal accuracy: {saved.mean():+.1f}% on "
                 "average (positive: the LW-DNA needs fewer)")
    outside = len(points) - len(gains)
    line += f" ({outside} outside the range not compared)." if outside else "."
    return f"{line} {_win_note(paired)}"


def _win_note(paired: pd.DataFrame | None) -> str:
    """What may be said of these differences: only the paired intervals decide."""
    if paired is None or paired.empty or int(paired["n_seeds"].max()) < 2:
        return ("These are differences, not wins: with one seed per setting this sweep cannot "
                "tell them from seed-to-seed noise.")
    counts = paired["outcome"].value_counts()
    return (f"These are differences, not wins: by the paired 95 % intervals, "
            f"{counts.get(BETTER, 0)} setting(s) are better and {counts.get(WORSE, 0)} worse "
            f"(the rest not distinguishable or not paired).")


# ---- per arm -------------------------------------------------------------------------------------

TRAIN_ACC, GAP = keys.METRIC_TRAIN_ACCURACY, "train_test_gap"


def arm_statistics(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (kind, width, target, data fraction, ...): over its seeds, the mean and
    95 % CI half width (``<col>_ci``) of test accuracy, train accuracy and their gap (train minus
    test, the overfitting the paper ties LW-DNA's gain to), mean FLOPs and params, ``n_seeds``."""
    rows = trials[~trials["stopped_early"].astype(bool)] if "stopped_early" in trials else trials
    rows = rows.dropna(subset=[ACC]).copy()
    if TRAIN_ACC not in rows:
        rows[TRAIN_ACC] = np.nan
    rows[GAP] = rows[TRAIN_ACC] - rows[ACC]
    if rows.empty:
        return rows
    measured = (ACC, TRAIN_ACC, GAP)
    for column in measured:  # its mean times n_seeds counts the seeds that have the value
        rows[f"_has_{column}"] = rows[column].notna().astype(float)
    arms = aggregate_seeds(rows)
    for column in measured:
        counts = (arms[f"_has_{column}"] * arms["n_seeds"]).round().astype(int)
        arms[f"{column}_ci"] = [ci_half_width(s, n) for s, n in
                                zip(arms[f"{column}_std"], counts, strict=True)]
    arms = arms.drop(columns=[c for c in arms if c.startswith("_has_")])
    return arms.sort_values(["kind", *[c for c in CONTEXT if c in arms], keys.METRIC_FLOPS],
                            ignore_index=True)


# ---- helpers ------------------------------------------------------------------------------------

def _usable(trials: pd.DataFrame, kind: str, cost: str) -> pd.DataFrame:
    """Finished, fully trained trials of one kind with both numbers present."""
    rows = trials[trials["kind"] == kind]
    if "stopped_early" in rows.columns:
        rows = rows[~rows["stopped_early"].astype(bool)]
    return rows.dropna(subset=[ACC, cost]).copy()


def _context_groups(trials: pd.DataFrame) -> list[pd.DataFrame]:
    by = [c for c in CONTEXT if c in trials.columns]
    groups = [g for _, g in trials.groupby(by, dropna=False, sort=True)] if by else []
    return groups or [trials]


def _key(values) -> tuple:
    """A hashable group key that matches across NaN (groupby keys vs row values)."""
    values = values.tolist() if hasattr(values, "tolist") else values
    values = values if isinstance(values, list | tuple) else [values]
    return tuple(None if pd.isna(v) else v for v in values)


def _snap_to_range(value: float, lo: float, hi: float) -> float:
    """Shrinking hits a target to +/-0.5 %: a point that close to an end of the curve is
    compared at that end instead of being refused as an extrapolation."""
    if lo * (1 - EDGE_TOLERANCE) <= value < lo:
        return lo
    if hi < value <= hi * (1 + EDGE_TOLERANCE):
        return hi
    return value


def _range_problem(curve, column, value, what, fmt) -> str:
    if curve.empty:
        return "no uniform-width baseline to compare with"
    lo, hi = float(curve[column].min()), float(curve[column].max())
    if lo <= value <= hi:
        return ""
    if len(curve) == 1:
        # no value in the reason: one per seed would differ (measured times), and the notes of a
        # setting's seeds are joined as a set
        return ("only one uniform width to compare with: add width multipliers to the baseline "
                "arm to interpolate")
    return f"outside the {what} [{fmt(lo)}, {fmt(hi)}]"


def _no_comparison(curve: pd.DataFrame, cost: str) -> str:
    if len(curve) == 1:
        width = curve[keys.PARAM_WIDTH_MULT].iloc[0]
        return (f"Only one uniform-width baseline (width {width:g}): need two or more widths to "
                "draw the curve; add width multipliers to the baseline arm.")
    lo, hi = format_count(curve[cost].min()), format_count(curve[cost].max())
    return (f"No LW-DNA point lies inside the baseline {_label(cost)} range [{lo}, {hi}]: widen "
            "the baseline arm's width multipliers to cover the LW-DNA budgets.")


def _label(cost: str) -> str:
    return {keys.METRIC_FLOPS: "FLOPs", keys.METRIC_PARAMS: "params"}.get(cost, cost)


# ---- against the random control ------------------------------------------------------------------

# What a random LW-DNA must share with an LW-DNA to be its control: the context, the seed and the
# shrink problem (widening, target, floors). Criterion options and init are the criterion's own.
RANDOM_MATCH = (*CONTEXT, keys.PARAM_SEED, keys.PARAM_WIDTH_MULT, keys.PARAM_TARGET,
                keys.PARAM_TARGET_METRIC, keys.PARAM_REMAIN_RATIO, keys.PARAM_LINEAR_RATIO)
GAIN_VS_RANDOM = "gain_vs_random_points"


def paired_vs_random(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per finished LW-DNA trial of a criterion other than ``random``: the accuracy of
    the random LW-DNA(s) of the same seed and shrink problem (``random_same_seed``, the mean
    when several match) and the gain over it in points, or NaN and a reason."""
    lwdna = _usable(trials, keys.KIND_LWDNA, ACC)
    is_random = lwdna[keys.PARAM_CRITERION] == keys.CRITERION_RANDOM
    controls, scored = lwdna[is_random], lwdna[~is_random].copy()
    by = [c for c in RANDOM_MATCH if c in trials.columns]
    means = ({_key(k): float(g[ACC].mean()) for k, g in controls.groupby(by, dropna=False)}
             if by and not controls.empty else {})
    found = [means.get(_key(row[by])) for _, row in scored.iterrows()]
    scored["random_same_seed"] = [np.nan if f is None else f for f in found]
    scored[GAIN_VS_RANDOM] = 100 * (scored[ACC].to_numpy(float)
                                    - scored["random_same_seed"].to_numpy(float))
    scored["random_reason"] = ["" if f is not None else
                               "no random LW-DNA of this seed, width, target and floors"
                               for f in found]
    return scored.reset_index(drop=True)


def controls_summary(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per LW-DNA setting: the paired gain over the uniform curve and over the random
    LW-DNA of the same seed (mean, 95 % interval, seeds, outcome). What a criterion is worth:
    above random, the criterion's ranking beats chance; above uniform, widen-shrink beats
    regular widths."""
    uniform = paired_gains(trials)
    against_random = paired_vs_random(trials)
    by = [c for c in HYPERPARAMETERS if c in uniform.columns and c != keys.PARAM_SEED]
    if uniform.empty:
        return pd.DataFrame()
    rows = []
    for key, group in uniform.groupby(by, dropna=False, sort=True):
        setting = dict(zip(by, key, strict=True))
        vs_random = against_random
        for column, value in setting.items():
            vs_random = vs_random[_matches(vs_random[column], value)]
        row = {**setting, keys.METRIC_FLOPS: float(group[keys.METRIC_FLOPS].mean())}
        row.update(_gain_columns("uniform", group[PAIRED_GAIN]))
        row.update(_gain_columns("random", vs_random[GAIN_VS_RANDOM]))
        rows.append(row)
    return pd.DataFrame(rows)


def _gain_columns(against: str, gains: pd.Series) -> dict[str, object]:
    est = estimate(gains.dropna())
    return {f"vs_{against}_n": est.n, f"vs_{against}_mean": est.mean,
            f"vs_{against}_ci_low": est.low, f"vs_{against}_ci_high": est.high,
            f"vs_{against}_outcome": _outcome(est)}


def _matches(column: pd.Series, value) -> pd.Series:
    return column.isna() if pd.isna(value) else column == value
