"""Figures of a sweep: accuracy vs cost with the Pareto front, per-layer width profiles (the
paper's Fig. 5) and training curves. Every function returns a matplotlib Figure on an Agg canvas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from analysis.compare import GAP, uniform_curve
from analysis.pareto import aggregate_seeds, pareto_front
from analysis.stats import ci_half_width
from analysis.units import count_scale
from sweeps import keys
from sweeps.width_plot import (  # noqa: F401 (plot_width_profiles re-exported: sweeps logs it)
    BASELINE_COLOR,
    MARKERS,
    new_figure,
    plot_width_profiles,
)

ACC = keys.METRIC_ACCURACY
FRONT_COLOR = "tab:red"
BASELINE_LABEL = "uniform width (baseline)"
FRONT_LABEL = "Pareto front"
STOPPED_LABEL = "stopped early (not on front)"
DODGE = 0.012   # x offset between the arms of the data-size plot (fractions of the data)
COST_NAMES = {keys.METRIC_FLOPS: "FLOPs (MACs)", keys.METRIC_PARAMS: "Parameters",
              keys.METRIC_FLOPS_PAPER: "FLOPs (paper)",
              keys.METRIC_PARAMS_PAPER: "Parameters (paper)"}


def plot_accuracy_vs_cost(trials: pd.DataFrame, *, cost: str = keys.METRIC_FLOPS,
                          aggregate: bool = False, log_x: bool = False,
                          title: str | None = None) -> Figure:
    """Uniform-width curve, LW-DNA points (colour = width multiplier, marker = criterion),
    the Pareto front as a step line, stopped-early trials greyed out; seed error bars if
    ``aggregate``."""
    fig = new_figure((9.5, 5.5))
    ax = fig.add_subplot()
    done = trials[~trials["stopped_early"].astype(bool)] if "stopped_early" in trials else trials
    divisor, prefix = count_scale(float(trials[cost].max()) if len(trials) else float("nan"))
    scale = _Scale(cost, divisor)
    points = aggregate_seeds(done) if aggregate and len(done) else done
    _draw_baselines(ax, uniform_curve(done, cost=cost), scale, aggregate)
    _draw_lwdna(ax, points[points["kind"] == keys.KIND_LWDNA], scale, aggregate)
    _draw_stopped(ax, trials, scale)
    if len(done):
        front = pareto_front(done, ((ACC, "max"), (cost, "min")), aggregate=aggregate).points
        _draw_front(ax, front, scale)
    _label_cost_axes(ax, cost, prefix, title, log_x)
    if aggregate:
        ax.text(0.99, 0.01, "mean over seeds; error bars: 95 % t-interval", ha="right",
                va="bottom", transform=ax.transAxes, fontsize="x-small", color="0.35")
    ax.legend(handles=_legend_handles(ax, points), loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0, fontsize="small")
    return fig


def plot_training_curves(histories: Mapping[str, pd.DataFrame], *,
                         title: str | None = None) -> Figure:
    """Accuracy and loss vs epoch per trial (colour); test solid, train dashed."""
    fig = new_figure((11, 4.5))
    acc_ax, loss_ax = fig.subplots(1, 2)
    for index, (label, history) in enumerate(histories.items()):
        color = f"C{index % 10}"
        _curve(acc_ax, history, ACC, 100, color, "-", label)
        _curve(acc_ax, history, keys.METRIC_TRAIN_ACCURACY, 100, color, "--", None)
        _curve(loss_ax, history, keys.METRIC_TEST_LOSS, 1, color, "-", None)
        _curve(loss_ax, history, keys.METRIC_TRAIN_LOSS, 1, color, "--", None)
    acc_ax.set(xlabel="epoch", ylabel="accuracy [%]", title="Accuracy")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    styles = [Line2D([], [], color="0.3", linestyle="-", label="test"),
              Line2D([], [], color="0.3", linestyle="--", label="train")]
    handles = acc_ax.get_legend_handles_labels()[0] + styles
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    fig.suptitle(title or "Training curves")
    return fig


def plot_data_size(paired_summary: pd.DataFrame, arms: pd.DataFrame, *,
                   title: str | None = None) -> Figure:
    """Left: paired LW-DNA gain (points, mean and 95 % CI over seeds) vs training-data fraction,
    one line per LW-DNA setting. Right: train minus test accuracy per arm vs fraction."""
    fig = new_figure((11, 4.5))
    gain_ax, gap_ax = fig.subplots(1, 2)
    fraction = keys.PARAM_DATA_FRACTION
    for index, (label, rows) in enumerate(_by_setting(paired_summary)):
        rows = rows.sort_values(fraction)
        mean = rows["gain_mean"].to_numpy(float)
        low, high = rows["gain_ci_low"].to_numpy(float), rows["gain_ci_high"].to_numpy(float)
        err = np.nan_to_num(np.vstack([mean - low, high - mean]))
        gain_ax.errorbar(rows[fraction], mean, yerr=err, marker="o", capsize=4,
                         color=f"C{index % 10}", label=label)
    gain_ax.axhline(0.0, color=BASELINE_COLOR, linestyle="--", linewidth=1.0)
    gain_ax.set(ylabel="LW-DNA − uniform [points]",
                title="Gain at equal FLOPs (paired by seed)")
    settings = _by_setting(arms)
    for index, (label, rows) in enumerate(settings):
        rows = rows.sort_values(fraction)
        dodge = DODGE * (index - (len(settings) - 1) / 2)   # overlapping bars stay visible
        gap_ax.errorbar(rows[fraction] + dodge, 100 * rows[GAP].to_numpy(float),
                        yerr=100 * np.nan_to_num(rows[f"{GAP}_ci"].to_numpy(float)), marker="s",
                        capsize=4, color=BASELINE_COLOR if label.startswith("uniform")
                        else f"C{index % 10}", label=label)
    gap_ax.set(ylabel="train − test accuracy [points]",
               title="Train-test gap per arm")
    fractions = sorted(set(paired_summary.get(fraction, [])) | set(arms.get(fraction, [])))
    for ax in (gain_ax, gap_ax):
        # a linear axis ticked at the fractions run (a log axis fails when nothing was compared)
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.set_xlabel("fraction of the training split")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(title or "LW-DNA vs uniform width by training-set size "
                 "(mean over seeds, error bars: 95 % t-interval)")
    return fig


def _by_setting(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per arm setting across data fractions."""
    if rows.empty or keys.PARAM_DATA_FRACTION not in rows:
        return []
    kinds = rows["kind"] if "kind" in rows else pd.Series(keys.KIND_LWDNA, index=rows.index)
    targets = rows[keys.PARAM_TARGET] if keys.PARAM_TARGET in rows else [np.nan] * len(rows)
    labels = [f"uniform ×{w:g}" if k == keys.KIND_BASELINE else f"LW-DNA ×{w:g} → {t:g}× FLOPs"
              for k, w, t in zip(kinds, rows[keys.PARAM_WIDTH_MULT], targets, strict=True)]
    return list(rows.groupby(pd.Series(labels, index=rows.index), sort=True))


def save_figure(fig: Figure, path: str | Path, formats: Sequence[str] = ("png", "svg")
                ) -> list[Path]:
    """Write ``path`` with each suffix in ``formats`` (PNG at 150 dpi); returns the paths."""
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=150)  # constrained layout already keeps the legend inside
        written.append(target)
    return written


# ---- accuracy vs cost pieces ------------------------------------------------------------------

class _Scale:
    """Data -> plotted units: cost / divisor, accuracy in %."""

    def __init__(self, cost: str, divisor: float):
        self.cost, self.divisor = cost, divisor

    def xy(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return (rows[self.cost].to_numpy(float) / self.divisor,
                100 * rows[ACC].to_numpy(float))

    def yerr(self, rows: pd.DataFrame) -> np.ndarray | None:
        """95 % t-interval half widths over seeds (0 where one seed gives no interval)."""
        std = f"{ACC}_std"
        if std not in rows or "n_seeds" not in rows:
            return None
        half = [ci_half_width(s, int(n)) for s, n in zip(rows[std], rows["n_seeds"], strict=True)]
        return 100 * np.nan_to_num(np.asarray(half, dtype=float))


def _label_cost_axes(ax, cost: str, prefix: str, title: str | None, log_x: bool) -> None:
    name = COST_NAMES.get(cost, cost)
    ax.set_xlabel(f"{name} [{prefix or 'count'}]")
    ax.set_ylabel("Top-1 accuracy [%]")
    ax.set_title(title or f"Accuracy vs {name}")
    ax.grid(alpha=0.3)
    if log_x:
        ax.set_xscale("log")
        # 10, 20, 50, 100 read better than 10^1, 10^2 on a span of one or two decades
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _draw_baselines(ax, curve: pd.DataFrame, scale: _Scale, aggregate: bool) -> None:
    if curve.empty:
        return
    x, y = scale.xy(curve)
    ax.errorbar(x, y, yerr=scale.yerr(curve) if aggregate else None, color=BASELINE_COLOR,
                marker="s", markersize=5, linewidth=1.5, capsize=3, zorder=3,
                label=BASELINE_LABEL)
    for xi, yi, width in zip(x, y, curve[keys.PARAM_WIDTH_MULT], strict=True):
        # below-right of the point: clear of the line, the marker and its error bar
        ax.annotate(f"×{width:g}", (xi, yi), textcoords="offset points", xytext=(5, -12),
                    ha="left", fontsize="x-small", color=BASELINE_COLOR)


def _draw_lwdna(ax, rows: pd.DataFrame, scale: _Scale, aggregate: bool) -> None:
    colors, markers = _width_colors(rows), _criterion_markers(rows)
    for (width, criterion), group in rows.groupby([keys.PARAM_WIDTH_MULT, keys.PARAM_CRITERION],
                                                  dropna=False):
        x, y = scale.xy(group)
        color = colors.get(width, "0.5")
        if aggregate:
            ax.errorbar(x, y, yerr=scale.yerr(group), fmt="none", ecolor=color, capsize=2,
                        alpha=0.8)
        ax.scatter(x, y, s=36, color=color, marker=markers.get(criterion, "o"),
                   edgecolors="white", linewidths=0.5, zorder=4)


def _draw_stopped(ax, trials: pd.DataFrame, scale: _Scale) -> None:
    if "stopped_early" not in trials:
        return
    stopped = trials[trials["stopped_early"].astype(bool)]
    if len(stopped):
        x, y = scale.xy(stopped)
        ax.scatter(x, y, marker="x", s=24, color="0.6", zorder=2,
                   label=STOPPED_LABEL)


def _draw_front(ax, front: pd.DataFrame, scale: _Scale) -> None:
    if front.empty:
        return
    x, y = scale.xy(front.sort_values(scale.cost))
    # attainment: with cost <= x the best reachable accuracy is that of the last front point
    ax.step(x, y, where="post", color=FRONT_COLOR, linewidth=1.2, alpha=0.8, zorder=2,
            label=FRONT_LABEL)
    ax.scatter(x, y, s=110, facecolors="none", edgecolors=FRONT_COLOR, linewidths=1.3, zorder=5)


def _width_colors(rows: pd.DataFrame) -> dict[float, str]:
    widths = sorted(rows[keys.PARAM_WIDTH_MULT].dropna().unique()) if len(rows) else []
    return {float(w): f"C{i % 10}" for i, w in enumerate(widths)}


def _criterion_markers(rows: pd.DataFrame) -> dict[str, str]:
    names = sorted(rows[keys.PARAM_CRITERION].dropna().unique()) if len(rows) else []
    return {str(c): MARKERS[i % len(MARKERS)] for i, c in enumerate(names)}


def _legend_handles(ax, points: pd.DataFrame) -> list:
    drawn = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))  # label -> handle
    handles = [drawn.pop(BASELINE_LABEL)] if BASELINE_LABEL in drawn else []
    lwdna = points[points["kind"] == keys.KIND_LWDNA] if len(points) else points
    if len(lwdna):
        for width, color in _width_colors(lwdna).items():
            handles.append(Line2D([], [], color=color, marker="o", linestyle="none",
                                  label=f"LW-DNA, widened ×{width:g}"))
        for criterion, marker in _criterion_markers(lwdna).items():
            handles.append(Line2D([], [], color="0.4", marker=marker, linestyle="none",
                                  label=f"criterion: {criterion}"))
    tail = [drawn.pop(label) for label in (FRONT_LABEL, STOPPED_LABEL) if label in drawn]
    return handles + tail + list(drawn.values())


# ---- curve pieces -------------------------------------------------------------------------------

def _curve(ax, history: pd.DataFrame, metric: str, factor: float, color, style, label) -> None:
    if metric in history:
        series = history[metric].dropna()
        ax.plot(series.index, factor * series.to_numpy(float), color=color, linestyle=style,
                label=label)
