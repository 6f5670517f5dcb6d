"""Figures show what they claim: the right artists, labels and units; they save as PNG and SVG."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis.plots import (
    plot_accuracy_vs_cost,
    plot_training_curves,
    plot_width_profiles,
    save_figure,
)

BASE = {"stem": 16, "layer1.0.conv1": 16, "layer2.0.conv1": 32, "layer3.0.conv1": 64}


def trials(seeds=(0,)):
    rows = []
    specs = [("baseline", 0.5, np.nan, "uniform", 10e6, 0.80),
             ("baseline", 1.0, np.nan, "uniform", 40e6, 0.90),
             ("baseline", 2.0, np.nan, "uniform", 160e6, 0.94),
             ("lwdna", 2.0, 0.5, "dhp", 20e6, 0.88),
             ("lwdna", 1.5, 0.5, "l1", 20e6, 0.86),
             ("lwdna", 2.0, 1.0, "l1", 40e6, 0.92)]
    for seed in seeds:
        for kind, width, target, criterion, flops, acc in specs:
            widths = ({k: int(v * (1.5 - i * 0.3)) for i, (k, v) in enumerate(BASE.items())}
                      if kind == "lwdna" else None)
            rows.append({"kind": kind, "width_mult": width, "target": target,
                         "criterion": criterion, "seed": seed, "flops": flops,
                         "params": flops / 150, "accuracy": acc + 0.01 * seed,
                         "stopped_early": False, "widths": widths, "base_widths": dict(BASE)})
    rows.append({**rows[3], "accuracy": 0.99, "flops": 5e6, "stopped_early": True})
    df = pd.DataFrame(rows)
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    return df


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_accuracy_vs_flops_shows_every_part():
    fig = plot_accuracy_vs_cost(trials(), title="demo")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert legend_texts(ax) == ["uniform width (baseline)", "LW-DNA, widened ×1.5",
                                "LW-DNA, widened ×2", "criterion: dhp", "criterion: l1",
                                "Pareto front", "stopped early (not on front)"]
    assert sorted(t.get_text() for t in ax.texts) == ["×0.5", "×1", "×2"]
    assert ax.get_xlabel() == "FLOPs (MACs) [M]" and "%" in ax.get_ylabel()
    assert ax.get_title() == "demo" and ax.get_xscale() == "linear"
    front = next(line for line in ax.lines if line.get_label() == "Pareto front")
    assert front.get_drawstyle() == "steps-post"
    # front: 0.80@10M, 0.88@20M, 0.92@40M, 0.94@160M (the stopped 0.99@5M is left out)
    assert list(front.get_xdata()) == pytest.approx([10, 20, 40, 160])
    assert list(front.get_ydata()) == pytest.approx([80, 88, 92, 94])


def test_legend_sits_outside_the_axes():
    fig = plot_accuracy_vs_cost(trials())
    fig.canvas.draw()
    ax = fig.axes[0]
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1  # never covers a point
    assert legend_box.x1 <= fig.bbox.x1 + 1  # and still inside the figure


def test_error_bars_only_when_aggregated():
    def with_bars(fig):
        return sum(c.has_yerr for c in fig.axes[0].containers)

    assert with_bars(plot_accuracy_vs_cost(trials(seeds=(0, 1)))) == 0
    # one baseline curve + one per (width, criterion) LW-DNA group
    assert with_bars(plot_accuracy_vs_cost(trials(seeds=(0, 1)), aggregate=True)) == 1 + 3


def test_params_axis_log_scale_and_unit_choice():
    df = trials()
    df["flops"] *= 1000  # 10G .. 160G
    fig = plot_accuracy_vs_cost(df, log_x=True)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "FLOPs (MACs) [G]"
    shown = {t.get_text() for t in ax.get_xticklabels() if t.get_text()}
    assert {"20", "50", "100"} <= shown  # plain numbers, not 10^1 / 10^2
    ax = plot_accuracy_vs_cost(trials(), cost="params").axes[0]
    assert ax.get_xlabel() == "Parameters [M]"


def test_width_profile_ratios_and_reference_line():
    df = trials()
    lwdna = df[(df["kind"] == "lwdna") & ~df["stopped_early"]]
    ax = plot_width_profiles(lwdna).axes[0]
    profiles = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert len(profiles) == 3
    expected = [int(v * (1.5 - i * 0.3)) / v for i, v in enumerate(BASE.values())]
    assert list(profiles[0].get_ydata()) == pytest.approx(expected)
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [1.0, 1.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(BASE)
    assert legend_texts(ax)[0] == "dhp, target 0.5, ×2, seed 0, acc 88.0%"


def test_width_profile_caps_the_number_of_lines_and_handles_none():
    df = trials(seeds=(0, 1, 2))
    lwdna = df[df["kind"] == "lwdna"]
    ax = plot_width_profiles(lwdna, max_profiles=2).axes[0]
    assert len([line for line in ax.lines if line.get_linestyle() == "-"]) == 2
    empty = plot_width_profiles(df[df["kind"] == "baseline"]).axes[0]
    assert any("no LW-DNA" in t.get_text() for t in empty.texts)


def test_training_curves_two_panels_four_lines_per_trial():
    history = pd.DataFrame({"accuracy": [0.5, 0.7, 0.8], "train_accuracy": [0.6, 0.8, 0.9],
                            "train_loss": [1.5, 0.9, 0.5], "test_loss": [1.6, 1.0, 0.7]},
                           index=pd.Index([1, 2, 3], name="epoch"))
    fig = plot_training_curves({"a": history, "b": history.iloc[:2]})
    acc_ax, loss_ax = fig.axes
    assert len(acc_ax.lines) == 4 and len(loss_ax.lines) == 4
    assert list(acc_ax.lines[0].get_ydata()) == pytest.approx([50, 70, 80])
    assert acc_ax.get_xlabel() == "epoch" and "%" in acc_ax.get_ylabel()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b", "test", "train"]


def test_save_figure_writes_png_and_svg(tmp_path):
    paths = save_figure(plot_accuracy_vs_cost(trials()), tmp_path / "pareto")
    assert [p.name for p in paths] == ["pareto.png", "pareto.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:2000]
