"""The report's latency table: LW-DNA latency against the uniform curve at equal FLOPs, and
differences inside the timings' spread marked as noise."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.latency import latency_table
from analysis.pareto import pareto_front
from analysis.summary import _latency_section
from sweeps import keys

M = 1e6


def trials(lwdna_latency: float, lwdna_iqr: float, baseline_iqr: float = 0.1) -> pd.DataFrame:
    """Baselines at 10M (1.0 ms) and 30M (3.0 ms); one LW-DNA at 20M (uniform there: 2.0 ms)."""
    rows = [("baseline", 10 * M, 0.80, 1.0, baseline_iqr), ("baseline", 30 * M, 0.90, 3.0,
                                                              baseline_iqr),
            ("lwdna", 20 * M, 0.88, lwdna_latency, lwdna_iqr)]
    frame = pd.DataFrame(rows, columns=["kind", keys.METRIC_FLOPS, keys.METRIC_ACCURACY,
                                        keys.METRIC_LATENCY_MS, keys.METRIC_LATENCY_IQR_MS])
    frame[keys.METRIC_FLOPS_RATIO] = frame[keys.METRIC_FLOPS] / (30 * M)
    frame[keys.METRIC_BATCH_LATENCY_MS] = 10 * frame[keys.METRIC_LATENCY_MS]
    frame[keys.METRIC_THROUGHPUT] = 640 / frame[keys.METRIC_BATCH_LATENCY_MS]
    frame["run_id"] = ["b1", "b2", "l1"]
    frame["run_name"] = frame["run_id"]
    frame["stopped_early"] = False
    frame["latency_device"] = "cpu"
    return frame


# (LW-DNA latency, its IQR, baselines' IQR) -> inside the spread? The uniform curve is 2.0 ms.
CASES = {"far slower": (3.0, 0.1, 0.1, False), "far faster": (1.2, 0.2, 0.1, False),
         "inside its own IQR": (2.3, 0.4, 0.1, True), "inside the uniform IQR": (1.8, 0.05, 0.3,
                                                                                 True),
         "just outside": (2.31, 0.3, 0.3, False), "identical": (2.0, 0.0, 0.0, True)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_difference_inside_the_spread_is_noise(case):
    latency, iqr, base_iqr, noise = CASES[case]
    frame = trials(latency, iqr, base_iqr)
    table = latency_table(frame, pareto_front(frame)).set_index("run_name")
    row = table.loc["l1"]
    assert row["uniform_latency_ms"] == pytest.approx(2.0)
    assert row["uniform_latency_iqr_ms"] == pytest.approx(base_iqr)
    assert row["latency_vs_uniform"] == pytest.approx(latency / 2.0)
    assert bool(row["latency_noise"]) is noise
    section = "\n".join(_latency_section(SimpleSweep(frame), pareto_front(frame)))
    line = next(line for line in section.splitlines() if "| l1 |" in line)
    assert ("(noise)" in line) is (noise and latency != 2.0)


def test_outside_the_baselines_range_there_is_no_ratio_and_no_noise_mark():
    frame = trials(2.0, 0.1)
    frame.loc[frame["run_id"] == "l1", [keys.METRIC_FLOPS, keys.METRIC_ACCURACY]] = [40 * M, 0.95]
    table = latency_table(frame, pareto_front(frame)).set_index("run_name")
    assert math.isnan(table.loc["l1", "latency_vs_uniform"])
    assert not table.loc["l1", "latency_noise"]


def test_the_table_has_median_and_iqr_columns_not_plus_minus():
    frame = trials(2.5, 0.1)
    section = "\n".join(_latency_section(SimpleSweep(frame), pareto_front(frame)))
    assert "| latency b1 median [ms] | IQR [ms] |" in section and "±" not in section


class SimpleSweep:
    """What the latency section reads of a sweep: its trials."""

    def __init__(self, trials: pd.DataFrame) -> None:
        self.trials = trials
