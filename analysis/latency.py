"""LW-DNA latency against the uniform-width baselines at equal FLOPs.

FLOPs are a proxy: an LW-DNA with odd per-layer widths can run slower than a uniform network of
the same FLOPs (GPU kernels prefer multiples of 8 or 32). This table makes that visible: each
front LW-DNA's measured latency next to the uniform arm's, interpolated linearly in FLOPs between
the baselines (never extrapolated), both measured on the trials' own device.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.pareto import Front
from sweeps import keys

__all__ = ["latency_table", "uniform_latency_at", "within_spread"]

LAT, FLOPS, IQR = keys.METRIC_LATENCY_MS, keys.METRIC_FLOPS, keys.METRIC_LATENCY_IQR_MS


def within_spread(rows: pd.DataFrame) -> pd.Series:
    """True where a network's latency differs from the uniform one at its FLOPs by no more than
    the spread of the timings (the larger of the two IQRs): that difference is noise."""
    spread = np.fmax(rows[IQR].to_numpy(float), rows["uniform_latency_iqr_ms"].to_numpy(float))
    gap = np.abs(rows[LAT].to_numpy(float) - rows["uniform_latency_ms"].to_numpy(float))
    return pd.Series(gap <= spread, index=rows.index)


def uniform_latency_at(trials: pd.DataFrame, flops, metric: str = LAT):
    """The baselines' ``metric`` at ``flops`` (seed mean, linear in FLOPs); NaN outside them.

    ``flops`` one value (a float back) or many (an array back, the curve built once)."""
    base = trials[(trials["kind"] == keys.KIND_BASELINE) & ~trials["stopped_early"]]
    curve = base.dropna(subset=[metric]).groupby(FLOPS)[metric].mean().sort_index()
    at = np.asarray(flops, dtype=float)
    if curve.empty:
        values = np.full(at.shape, np.nan)
    else:
        x, y = curve.index.to_numpy(float), curve.to_numpy(float)
        values = np.where((at >= x[0]) & (at <= x[-1]), np.interp(at, x, y), np.nan)
    return float(values) if values.ndim == 0 else values


def latency_table(trials: pd.DataFrame, front: Front) -> pd.DataFrame:
    """One row per front LW-DNA and per baseline: latency, spread, throughput, uniform at equal
    FLOPs and the ratio (> 1: the LW-DNA is slower than FLOPs promise). Empty without latency."""
    if LAT not in trials or trials[LAT].isna().all():
        return pd.DataFrame()
    on_front = set(front.points["run_id"])
    rows = trials[((trials["kind"] == keys.KIND_LWDNA) & trials["run_id"].isin(on_front))
                  | (trials["kind"] == keys.KIND_BASELINE)].dropna(subset=[LAT])
    rows = rows.sort_values(["kind", FLOPS], ascending=[False, True]).copy()
    flops = rows[FLOPS].to_numpy(float)
    rows["uniform_latency_ms"] = uniform_latency_at(trials, flops)
    rows["uniform_latency_iqr_ms"] = uniform_latency_at(trials, flops, IQR)
    rows["latency_vs_uniform"] = rows[LAT] / rows["uniform_latency_ms"]
    rows["latency_noise"] = within_spread(rows)
    columns = ["kind", "run_name", FLOPS, keys.METRIC_FLOPS_RATIO, LAT, IQR,
               keys.METRIC_BATCH_LATENCY_MS, keys.METRIC_THROUGHPUT, "uniform_latency_ms",
               "uniform_latency_iqr_ms", "latency_vs_uniform", "latency_noise", "latency_device"]
    return rows[[c for c in columns if c in rows]].reset_index(drop=True)
