"""The markdown summary of a sweep report: counts, the verdict, the front and the comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from analysis.compare import (
    GAP,
    TRAIN_ACC,
    Comparison,
    arm_statistics,
    compare_to_uniform,
    controls_summary,
    model_label,
)
from analysis.load import Sweep
from analysis.pareto import Front
from analysis.stats import ci_half_width
from analysis.units import format_count, format_percent
from sweeps import keys

ACC, FLOPS = keys.METRIC_ACCURACY, keys.METRIC_FLOPS


PAIRED_NOTE = ("Difference: LW-DNA accuracy minus the accuracy of the uniform curve drawn from "
               "the baselines of the same seed and data fraction, at the LW-DNA's FLOPs "
               "(points; mean over seeds). CI: 95 % t-interval of that mean; only an interval "
               "that excludes 0 makes the LW-DNA better or worse, one that contains 0 is 'not "
               "distinguishable', and one seed cannot tell.")
PM = "± 95 % CI"   # the one meaning of ± in every table: half width of the t-interval over seeds
ARMS_NOTE = ("Train accuracy: the last epoch's running accuracy over its augmented training "
             "mini-batches. Gap: train minus test accuracy (points), computed per seed.")


def summary_markdown(sweep: Sweep, front: Front, comparison: Comparison, aggregated: bool, *,
                     volume: float, reference: Sequence[float],
                     arms: pd.DataFrame | None = None) -> str:
    arms = arm_statistics(sweep.trials) if arms is None else arms
    sections = [f"# Sweep report: {sweep.name}", _overview(sweep, front, aggregated),
                "## Verdict", comparison.paired_verdict, comparison.verdict,
                "## Paired comparison (each LW-DNA against the uniform curve of its own seed)",
                markdown_table(_paired_rows(comparison)), PAIRED_NOTE,
                *controls_section(sweep.trials),
                *_equal_time_section(sweep.trials),
                f"## Arms (mean {PM} over seeds)", markdown_table(arm_rows(arms)), ARMS_NOTE,
                "## Pareto front (accuracy up, FLOPs down)", markdown_table(_front_rows(front)),
                _front_note(front, volume, reference),
                "## LW-DNA vs the uniform-width curve", markdown_table(_compare_rows(comparison)),
                "Difference: LW-DNA accuracy minus the uniform curve's at the same FLOPs "
                "(seed means; linear interpolation, running-max curve, never extrapolated). "
                "FLOPs difference: the uniform curve's FLOPs at the same accuracy minus the "
                "LW-DNA's, in % of the former. Differences, not wins: the paired comparison "
                "above says which are more than seed-to-seed noise.",
                "## Uniform-width curve", markdown_table(_curve_rows(comparison.curve)),
                *_latency_section(sweep, front)]
    return "\n\n".join(sections) + "\n"


def _latency_section(sweep: Sweep, front: Front) -> list[str]:
    from analysis.latency import latency_table

    table = latency_table(sweep.trials, front)
    if table.empty:
        return []
    device = table["latency_device"].dropna().unique() if "latency_device" in table else []
    rows = pd.DataFrame({
        "kind": table["kind"], "run": table["run_name"], "FLOPs": table[FLOPS].map(format_count),
        "FLOPs ratio": table[keys.METRIC_FLOPS_RATIO].map(lambda v: _num(v, ".3f")),
        "latency b1 median [ms]": table[keys.METRIC_LATENCY_MS].map(lambda v: _num(v, ".3f")),
        "IQR [ms]": table[keys.METRIC_LATENCY_IQR_MS].map(lambda v: _num(v, ".3f")),
        "batch latency [ms]": table[keys.METRIC_BATCH_LATENCY_MS].map(lambda v: _num(v, ".2f")),
        "throughput [img/s]": table[keys.METRIC_THROUGHPUT].map(lambda v: _num(v, ".0f")),
        "uniform b1 same FLOPs [ms]": table["uniform_latency_ms"].map(lambda v: _num(v, ".3f")),
        "vs uniform": [_ratio(v, noise) for v, noise in
                       zip(table["latency_vs_uniform"], table["latency_noise"], strict=True)]})
    return [f"## Latency (measured on {', '.join(device) or 'the trial device'})",
            markdown_table(rows),
            "Timed after the sweep's trials, one network at a time on a trial's device "
            "(nothing else of the sweep running there). Median and interquartile range (IQR) "
            "per forward call after a warm-up (torch.utils.benchmark), batch 1; the batch "
            "column uses the throughput batch. Uniform same FLOPs: the baselines' batch-1 "
            "latency interpolated linearly in FLOPs (– outside their range). vs uniform above "
            "1×: this LW-DNA is slower than a uniform network of equal FLOPs; *noise*: the "
            "difference is inside the spread of the timings (the larger IQR of the two), so "
            "it says nothing either way.",
            *_noise_note(table)]


def _ratio(value: float, noise: bool) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.2f}×" + (" (noise)" if noise and abs(value - 1) > 0 else "")


def _noise_note(table: pd.DataFrame) -> list[str]:
    noisy = int((table[keys.METRIC_LATENCY_IQR_MS] > 0.5 * table[keys.METRIC_LATENCY_MS]).sum())
    if not noisy:
        return []
    return [f"**Noisy:** on {noisy} of {len(table)} rows the IQR exceeds half the median: the "
            "device was busy with other work while the networks were timed; time them again on "
            "an idle machine before trusting these ratios."]


def markdown_table(rows: pd.DataFrame) -> str:
    """A GitHub markdown table of the frame's values as text ("_none_" when empty)."""
    if rows.empty:
        return "_none_"
    lines = ["| " + " | ".join(map(str, rows.columns)) + " |",
             "|" + "---|" * len(rows.columns)]
    for values in rows.astype(str).itertuples(index=False):
        lines.append("| " + " | ".join(v.replace("|", "/") for v in values) + " |")
    return "\n".join(lines)


def _overview(sweep: Sweep, front: Front, aggregated: bool) -> str:
    trials = sweep.trials
    counts = trials["kind"].value_counts()
    lines = [f"- experiment `{sweep.experiment_name}`, parent run `{sweep.parent_run_id}`, "
             f"tracking URI `{sweep.tracking_uri}`",
             f"- {len(trials)} finished trials ({counts.get(keys.KIND_LWDNA, 0)} LW-DNA, "
             f"{counts.get(keys.KIND_BASELINE, 0)} baseline); {int(trials['stopped_early'].sum())}"
             " stopped early (in trials.csv, not on the front); "
             f"{sweep.n_failed} failed and {sweep.n_unfinished - sweep.n_failed} interrupted "
             "or running runs left out of every front and comparison",
             f"- sweep status: {sweep.status}"
             + (" (interrupted: finish it with `hetero sweep SPEC --resume --name "
                f"{sweep.name}`)" if sweep.status == keys.STATUS_KILLED else ""),
             "- seeds: " + (f"averaged per setting (mean; {PM} half width)" if aggregated
                            else "one per setting (no averaging: cannot tell a difference from "
                                 "seed-to-seed noise)"),
             *_resolution(trials)]
    if sweep.other_parent_run_ids:
        lines.append(f"- older runs of this sweep (pick with --parent-run-id): "
                     f"{', '.join(sweep.other_parent_run_ids)}")
    return "\n".join(lines)


def _resolution(trials: pd.DataFrame) -> list[str]:
    """What one test image is worth in accuracy points (from the logged dataset profile)."""
    if "num_test" not in trials or trials["num_test"].isna().all():
        return []
    sizes = sorted({int(n) for n in trials["num_test"].dropna()})
    worth = ", ".join(f"{n:,} images: one image = {100 / n:.3g} points" for n in sizes)
    return [f"- test set: {worth} of accuracy; no difference is finer than that"]


def _front_note(front: Front, volume: float, reference: Sequence[float]) -> str:
    return (f"{len(front.points)} of {front.n_candidates} points are non-dominated "
            f"({front.n_dropped_nan} dropped for a missing value). Hypervolume "
            f"{volume:.4g} (accuracy fraction × FLOPs) against the reference "
            f"(accuracy {format_percent(reference[0])}, FLOPs {format_count(reference[1])}): the "
            "worst values among the finished trials.")


def _front_rows(front: Front) -> pd.DataFrame:
    p = front.points
    return pd.DataFrame({
        "kind": p["kind"], "criterion": p[keys.PARAM_CRITERION],
        "width ×": p[keys.PARAM_WIDTH_MULT].map(_num), "target": p[keys.PARAM_TARGET].map(_num),
        f"accuracy ({PM})": [_acc(a, p.get(f"{ACC}_std", pd.Series(index=p.index)).get(i),
                                  p["n_seeds"][i] if "n_seeds" in p else 1)
                             for i, a in p[ACC].items()],
        "FLOPs": p[FLOPS].map(format_count), "params": p[keys.METRIC_PARAMS].map(format_count),
        "FLOPs ratio": p[keys.METRIC_FLOPS_RATIO].map(lambda v: _num(v, ".3f")),
        "seeds": p["n_seeds"] if "n_seeds" in p else 1, "run": p["run_id"]})


def _compare_rows(comparison: Comparison) -> pd.DataFrame:
    p, cost = comparison.points, comparison.cost
    return pd.DataFrame({
        "criterion": p.get(keys.PARAM_CRITERION), "width ×": p[keys.PARAM_WIDTH_MULT].map(_num),
        "target": p[keys.PARAM_TARGET].map(_num), "accuracy": p[ACC].map(format_percent),
        "FLOPs": p[cost].map(format_count),
        "uniform acc. same FLOPs": p[f"baseline_{ACC}_at_{cost}"].map(format_percent),
        "difference [points]": p["accuracy_gain_points"].map(lambda v: _num(v, "+.2f")),
        "uniform FLOPs same acc.": p[f"baseline_{cost}_at_{ACC}"].map(format_count),
        "FLOPs difference": p[f"{cost}_saved_pct"].map(lambda v: _num(v, "+.1f") + "%"),
        "note": [" ; ".join(r for r in pair if r)
                 for pair in zip(p["gain_reason"], p["saving_reason"], strict=True)]})


def _paired_rows(comparison: Comparison) -> pd.DataFrame:
    p = comparison.paired_summary
    if p.empty:
        return p
    return pd.DataFrame({
        **_setting_columns(p),
        "FLOPs": p[comparison.cost].map(format_count),
        "difference [points]": p["gain_mean"].map(lambda v: _num(v, "+.2f")),
        "std": p["gain_std"].map(lambda v: _num(v, ".2f")),
        "95 % CI": [_interval(lo, hi) for lo, hi in zip(p["gain_ci_low"], p["gain_ci_high"],
                                                       strict=True)],
        "seeds": p["n_seeds"], "outcome": p["outcome"], "note": p["note"]})


def arm_rows(arms: pd.DataFrame) -> pd.DataFrame:
    """Per arm and setting: test and train accuracy, their gap, cost, seeds (markdown text)."""
    if arms.empty:
        return arms
    return pd.DataFrame({
        "arm": arms["kind"], **_setting_columns(arms),
        f"test acc. [%] ({PM})": [_ci(m, c) for m, c in zip(arms[ACC], arms[f"{ACC}_ci"],
                                                            strict=True)],
        f"train acc. [%] ({PM})": [_ci(m, c) for m, c in
                                   zip(arms[TRAIN_ACC], arms[f"{TRAIN_ACC}_ci"], strict=True)],
        f"gap [points] ({PM})": [_ci(m, c) for m, c in zip(arms[GAP], arms[f"{GAP}_ci"],
                                                           strict=True)],
        "FLOPs": arms[FLOPS].map(format_count),
        "params": arms[keys.METRIC_PARAMS].map(format_count), "seeds": arms["n_seeds"]})


# Short column titles for settings a table shows; any other varying setting keeps its name.
SETTING_TITLES = {keys.PARAM_DATA_FRACTION: "data", keys.PARAM_WIDTH_MULT: "width ×",
                  keys.PARAM_TARGET: "target", keys.PARAM_KD_WEIGHT: "KD"}
ALWAYS_SHOWN = (keys.PARAM_WIDTH_MULT, keys.PARAM_TARGET)


def _setting_columns(p: pd.DataFrame) -> dict[str, pd.Series]:
    """Model, width and target, and every other setting that differs between the rows."""
    columns = {}
    if keys.PARAM_MODEL in p:
        columns["model"] = [model_label(row) for _, row in p.iterrows()]
    for name in keys.SETTING_PARAMS:
        if name not in p or name in (keys.PARAM_MODEL, keys.PARAM_VARIANT):
            continue
        if name in ALWAYS_SHOWN or p[name].astype(str).nunique() > 1:
            values = p[name]
            shown = values.map(_num) if pd.api.types.is_numeric_dtype(values) else (
                values.map(lambda v: "–" if pd.isna(v) else str(v)))
            columns[SETTING_TITLES.get(name, name)] = shown
    return columns


def _ci(mean: float, half: float) -> str:
    """Mean ± CI half width, both as percentages of a fraction."""
    if not math.isfinite(mean):
        return "–"
    return f"{100 * mean:.2f}" + (f" ± {100 * half:.2f}" if math.isfinite(half) else "")


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"[{low:+.2f}, {high:+.2f}]"


def _curve_rows(curve: pd.DataFrame) -> pd.DataFrame:
    if curve.empty:
        return curve
    return pd.DataFrame({
        "width ×": curve[keys.PARAM_WIDTH_MULT].map(_num), "FLOPs": curve[FLOPS].map(format_count),
        f"accuracy ({PM})": [_acc(a, s, n) for a, s, n in
                             zip(curve[ACC], curve[f"{ACC}_std"], curve["n_seeds"], strict=True)],
        "running max": curve["envelope"].map(format_percent), "seeds": curve["n_seeds"]})


def _acc(mean: float, std: float | None, n_seeds) -> str:
    """Mean accuracy [%], ± the 95 % CI half width over its seeds when there are two or more."""
    half = ci_half_width(std, int(n_seeds)) if std is not None else float("nan")
    if not math.isfinite(half):
        return format_percent(mean)
    return f"{format_percent(mean)} ± {100 * half:.2f}"


def _num(value, fmt: str = "g") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, fmt)


CONTROLS_NOTE = ("Each LW-DNA against two controls of the same seed: the uniform-width curve at its "
                 "FLOPs (as above) and the random LW-DNA (criterion random: random channel scores, "
                 "the same widening, target and floors). Mean gain in points [95 % t-interval], "
                 "n seeds. Above random: the criterion's ranking beats chance; above uniform: "
                 "widen-shrink beats regular widths.")


def controls_section(trials: pd.DataFrame) -> list[str]:
    table = controls_summary(trials)
    if table.empty or not (table["vs_random_n"] > 0).any():
        return []
    rows = pd.DataFrame({
        **_setting_columns(table), "FLOPs": table[FLOPS].map(format_count),
        "vs uniform [points]": [_gain(r, "uniform") for _, r in table.iterrows()],
        "vs random [points]": [_gain(r, "random") for _, r in table.iterrows()]})
    return ["## Controls: against uniform width and against a random LW-DNA",
            markdown_table(rows), CONTROLS_NOTE]


def _gain(row: pd.Series, against: str) -> str:
    n = int(row[f"vs_{against}_n"])
    if n == 0:
        return "–"
    mean = f"{row[f'vs_{against}_mean']:+.2f}"
    if n == 1:
        return f"{mean} (1 seed: cannot tell)"
    low, high = row[f"vs_{against}_ci_low"], row[f"vs_{against}_ci_high"]
    verdict = "better" if low > 0 else "worse" if high < 0 else "not distinguishable"
    return f"{mean} [{low:+.2f}, {high:+.2f}], n = {n}, {verdict}"


EQUAL_TIME_NOTE = ("The same pairing at equal training cost per image instead of equal FLOPs: "
                   "each LW-DNA against the uniform curve of its seed at its measured seconds per "
                   "training image (1 / images_per_second over all its epochs, as the "
                   "trial measured it; trials that shared a device measured each other's load "
                   "too). An LW-DNA of equal FLOPs can take longer per step (odd widths).")


def _equal_time_section(trials: pd.DataFrame) -> list[str]:
    cost = keys.METRIC_SECONDS_PER_IMAGE
    if cost not in trials or trials[cost].isna().all():
        return []
    timed = compare_to_uniform(trials, cost=cost)
    p = timed.paired_summary
    if p.empty:
        return []
    if not (p["n_seeds"] > 0).any():
        why = next((n for n in p["note"] if n), "no pair")
        return ["## At equal training time (paired by seed)",
                f"Not compared: {why} (in seconds per training image). Baselines at widths "
                "whose time per image brackets the LW-DNAs' make this comparison."]
    rows = pd.DataFrame({
        **_setting_columns(p), "ms per image": p[cost].map(lambda v: _num(1000 * v, ".2f")),
        "gain [points]": p["gain_mean"].map(lambda v: _num(v, "+.2f")),
        "95 % CI": [_interval(lo, hi) for lo, hi in zip(p["gain_ci_low"], p["gain_ci_high"],
                                                       strict=True)],
        "seeds": p["n_seeds"], "outcome": p["outcome"], "note": p["note"]})
    return ["## At equal training time (paired by seed)", markdown_table(rows), EQUAL_TIME_NOTE]
