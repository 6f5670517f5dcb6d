"""One table over one or more sweeps of the same protocol and seeds (issue 16's CPU ablation).

    python bench/ablation_table.py --tracking-uri sqlite:///runs/cifar10-ablation/mlflow.db \
        --experiments cifar10-ablation

``cifar10_ablation.yaml`` runs dhp, random, l1 and dhp with init hyper against uniform 1.0 on
the same seeds; a second sweep of the same protocol (say, KD for both arms) pools with it, since
the same seed draws the same data subset and the same initial weights. The analysis is
``hetero pareto``'s own (``analysis.compare``), on the union of the sweeps' finished trials;
this script only pools them and prints three markdown tables:

1. every arm: test and train accuracy and their gap, mean ± 95 % CI half width over seeds;
2. every LW-DNA setting against the uniform curve of its seed (same KD, data, protocol) and
   against the random LW-DNA of its seed;
3. each lever against the same LW-DNA without it, paired by seed.
"""

from __future__ import annotations

import argparse

import pandas as pd

from analysis.compare import ACC, arm_statistics
from analysis.load import load_trials
from analysis.stats import estimate
from analysis.summary import arm_rows, controls_section, markdown_table
from sweeps import keys

# The LW-DNA every lever changes one thing of (the space of cifar10_ablation.yaml).
REFERENCE = {keys.PARAM_CRITERION: "dhp", keys.PARAM_INIT: "fresh", keys.PARAM_KD_WEIGHT: 0.0}


def pooled_trials(tracking_uri: str, experiments: list[str]) -> pd.DataFrame:
    frames = [load_trials(name, tracking_uri=tracking_uri) for name in experiments]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiments", nargs="+", required=True)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
