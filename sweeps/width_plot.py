"""The per-layer width profile plot (the paper's Fig. 5): the one implementation.

It lives in sweeps because every finished trial logs it to MLflow and sweeps never imports
analysis; analysis.plots re-exports it and shares its figure and style pieces.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sweeps import keys

BASELINE_COLOR = "0.15"
MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*", "<", ">")


def plot_width_profiles(trials: pd.DataFrame, *, max_profiles: int = 6,
                        title: str | None = None) -> Figure:
    """LW-DNA width ÷ baseline width per layer (forward order), one line per trial row that has
    both ``widths`` and ``base_widths``; a dashed line marks the baseline (1.0)."""
    fig = new_figure((10, 5))
    ax = fig.add_subplot()
    rows = [r for _, r in trials.iterrows()
            if isinstance(r.get("widths"), dict) and isinstance(r.get("base_widths"), dict)]
    layers: list[str] = []
    for index, row in enumerate(rows[:max_profiles]):
        layers = list(row["base_widths"])
        ratios = [row["widths"].get(name, np.nan) / row["base_widths"][name] for name in layers]
        ax.plot(range(len(layers)), ratios, marker=MARKERS[index % len(MARKERS)], markersize=4,
                linewidth=1.3, label=_trial_label(row))
    ax.axhline(1.0, color=BASELINE_COLOR, linestyle="--", linewidth=1.0,
               label="baseline (width 1.0)")
    _layer_ticks(ax, layers)
    if not rows:
        ax.set_ylim(0, 2)
        ax.text(0.5, 0.5, "no LW-DNA with both config artifacts", ha="center",
                transform=ax.transAxes, color="0.4")
    ax.set_xlabel("layer (forward order)")
    ax.set_ylabel("LW-DNA channels ÷ baseline channels")
    ax.set_title(title or "Per-layer width profile (LW-DNA ÷ width-1.0 baseline)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    return fig


def new_figure(size: tuple[float, float]) -> Figure:
    """A bare Figure on an Agg canvas: no pyplot state, no display, nothing left open to close."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _trial_label(row: pd.Series) -> str:
    parts = [str(row.get(keys.PARAM_CRITERION) or "")]
    for column, fmt in ((keys.PARAM_TARGET, "target {:g}"), (keys.PARAM_WIDTH_MULT, "×{:g}"),
                        (keys.PARAM_SEED, "seed {}"), (keys.METRIC_ACCURACY, "acc {:.1%}")):
        value = row.get(column)
        if value is not None and not pd.isna(value):
            parts.append(fmt.format(value))
    return ", ".join(p for p in parts if p)


def _layer_ticks(ax, layers: list[str]) -> None:
    if 0 < len(layers) <= 40:  # names stay readable up to about ResNet-56's stage count
        ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize="x-small")
