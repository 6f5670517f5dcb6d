"""Read sweep results from MLflow: Pareto fronts, LW-DNA vs uniform width, plots and reports.

Names are imported on first use (PEP 562) so that `import analysis.cli` stays light for the
`hetero` console command; pandas, matplotlib and mlflow load only when the work starts.
"""

from __future__ import annotations

import importlib

from analysis.errors import AnalysisError

_HOMES = {
    "load": ("Sweep", "load_sweep", "load_trials", "load_history", "list_sweeps"),
    "pareto": ("Front", "pareto_front", "aggregate_seeds", "hypervolume", "non_dominated_mask",
               "default_reference", "ACC_FLOPS", "ACC_PARAMS", "ACC_FLOPS_PARAMS"),
    "compare": ("Comparison", "compare_to_uniform", "uniform_curve", "accuracy_at", "cost_at",
                "paired_gains", "paired_summary", "arm_statistics", "paired_vs_random",
                "controls_summary"),
    "stats": ("Estimate", "estimate", "t_quantile", "ci_half_width"),
    "plots": ("plot_accuracy_vs_cost", "plot_width_profiles", "plot_training_curves",
              "plot_data_size", "save_figure"),
    "report": ("Report", "create_report"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = ["AnalysisError", *_MODULE_OF]


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"analysis.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
