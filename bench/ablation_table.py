"""One table over one or more sweeps of the same protocol and seeds (issue 16's CPU ablation).

    python bench/ablation_table.py --tracking-uri sqlite:///runs/cifar10-ablation/mlflow.db \
        --experiments cifar10-ablation [--plot docs/ablation_cpu.png]

``cifar10_ablation.yaml`` runs dhp, random, l1 and dhp with init hyper against uniform 1.0 on
the same seeds; a second sweep of the same protocol (say, KD for both arms) pools with it, since
the same seed draws the same data subset and the same initial weights. Every sweep in the
listed experiments is pooled (each sweep name's latest parent run). The analysis is ``hetero pareto``'s own
(``analysis.compare``), on the union of the sweeps' finished trials;
this script only pools them and prints three markdown tables:

1. every arm: test and train accuracy and their gap, mean ± 95 % CI half width over seeds;
2. every LW-DNA setting against the uniform curve of its seed (same KD, data, protocol) and
   against the random LW-DNA of its seed;
3. each lever against the same LW-DNA without it, paired by seed.

``--plot FILE`` draws the arms' test accuracy, one row each: every seed a dot, the mean and its
95 % interval a bar (the README's docs/ablation_cpu.png).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from analysis.compare import ACC, arm_statistics, varying_levers
from analysis.errors import AnalysisError
from analysis.load import list_sweeps, load_trials
from analysis.stats import estimate
from analysis.summary import arm_rows, controls_section, markdown_table
from sweeps import keys

# The LW-DNA every lever changes one thing of (the space of cifar10_ablation.yaml).
REFERENCE = {keys.PARAM_CRITERION: "dhp", keys.PARAM_INIT: "fresh", keys.PARAM_KD_WEIGHT: 0.0}


def pooled_trials(tracking_uri: str, experiments: list[str]) -> pd.DataFrame:
    """The finished trials of every sweep in the experiments, each sweep name's latest parent run
    (a superseded re-run would count its seeds twice): the KD-off sweep and a later KD sweep into
    the same experiment pool, as do sweeps kept in experiments apart."""
    frames = []
    for name in experiments:
        sweeps = list_sweeps(name, tracking_uri=tracking_uri)
        for parent in sweeps.loc[sweeps["latest"], "parent_run_id"]:
            try:
                frames.append(load_trials(parent_run_id=parent, tracking_uri=tracking_uri))
            except AnalysisError as exc:   # a sweep still running, or one that finished nothing
                print(f"left out: {exc}", file=sys.stderr)
    return pd.concat(frames, ignore_index=True)


def lever_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Each LW-DNA setting that differs from REFERENCE in one lever, minus REFERENCE of the same
    seed, in points of test accuracy (mean [95 % CI], n seeds)."""
    lwdna = trials[trials["kind"] == keys.KIND_LWDNA]
    reference = lwdna
    for column, value in REFERENCE.items():
        reference = reference[reference[column] == value]
    by_seed = reference.set_index(keys.PARAM_SEED)[ACC]
    rows = []
    for column, value in REFERENCE.items():
        others = lwdna[lwdna[column] != value]
        for other in [c for c in REFERENCE if c != column]:
            others = others[others[other] == REFERENCE[other]]
        for changed, group in others.groupby(column):
            gains = [100 * (acc - by_seed[seed]) for seed, acc in
                     zip(group[keys.PARAM_SEED], group[ACC], strict=True) if seed in by_seed]
            est = estimate(gains)
            rows.append({"lever": f"{column} {changed}", "vs": f"{column} {value}",
                         "gain [points]": f"{est.mean:+.2f}",
                         "95 % CI": f"[{est.low:+.2f}, {est.high:+.2f}]" if est.n > 1 else "–",
                         "seeds": est.n})
    return pd.DataFrame(rows)


def arm_label(arm: pd.Series, levers: list[str]) -> str:
    """``uniform, width W`` or ``<criterion> LW-DNA``, then each lever that varies between the
    arms (analysis.compare's rule) where this arm departs from REFERENCE: ``init hyper``, ``KD 0.4``."""
    if arm["kind"] == keys.KIND_BASELINE:
        parts = [f"uniform, width {arm[keys.PARAM_WIDTH_MULT]:g}"]
    else:
        parts = [f"{arm[keys.PARAM_CRITERION]} LW-DNA"]
    for lever in levers:
        value = arm[lever]
        if lever == keys.PARAM_CRITERION or pd.isna(value) or value == REFERENCE.get(lever):
            continue
        name = "KD" if lever == keys.PARAM_KD_WEIGHT else lever
        parts.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    return ", ".join(parts)


def arm_points(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per arm, lowest mean first: its label, mean and 95 % CI half width of test
    accuracy, and ``seeds``, the accuracies of the very trials that mean averaged."""
    arms = arm_statistics(trials).sort_values(ACC, ignore_index=True)
    levers = varying_levers(arms)
    accuracy = trials.set_index("run_id")[ACC]
    return pd.DataFrame({
        "label": [arm_label(arm, levers) for _, arm in arms.iterrows()],
        "baseline": arms["kind"] == keys.KIND_BASELINE,
        "mean": arms[ACC], "ci": arms[f"{ACC}_ci"],
        "seeds": [accuracy[ids.split(",")].tolist() for ids in arms["run_ids"]]})


def plot_arms(trials: pd.DataFrame, path: str) -> None:
    """Test accuracy per arm: its seeds as dots, mean ± 95 % CI as a bar, uniform arms black."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = arm_points(trials)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(points) + 1.4))
    for y, arm in points.iterrows():
        color = "black" if arm["baseline"] else "tab:blue"
        seeds = [100 * a for a in arm["seeds"]]
        ax.scatter(seeds, [y] * len(seeds), s=14, color=color, alpha=0.45, zorder=2)
        ax.errorbar(100 * arm["mean"], y, xerr=100 * arm["ci"], fmt="o", color=color,
                    capsize=4, zorder=3)
    ax.set_yticks(range(len(points)), points["label"])
    tested = trials["num_test"].dropna() if "num_test" in trials else pd.Series(dtype=float)
    ax.set_xlabel("test accuracy [%]" + (f" ({int(tested.max()):,} test images)"
                                         if not tested.empty else ""))
    ax.set_title("Every arm at the uniform network's FLOPs: mean and 95 % interval over seeds\n"
                 "(dots: the seeds)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiments", nargs="+", required=True)
    parser.add_argument("--plot", help="also draw the arms' test accuracy to this image file")
    args = parser.parse_args(argv)
    trials = pooled_trials(args.tracking_uri, args.experiments)
    print(f"{len(trials)} finished trials from {', '.join(args.experiments)}\n")
    print("## Arms (mean ± 95 % CI over seeds)\n")
    print(markdown_table(arm_rows(arm_statistics(trials))))
    print()
    print("\n\n".join(controls_section(trials)) or "(no random control)")
    levers = lever_rows(trials)
    if not levers.empty:
        print("\n## Levers: the same LW-DNA without the lever, same seed\n")
        print(markdown_table(levers))
    if args.plot:
        plot_arms(trials, args.plot)
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
