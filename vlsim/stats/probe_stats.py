"""Gradient-probe statistics of one condition across seeds: each run averaged, then a t interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from vlsim.analysis import probe_series, probe_table
from vlsim.stats.intervals import LEVEL, mean_ci

PROBE_SUMMARY_STATS = ("variance", "cv", "relative_variance", "scale", "efficiency")
"""Per-aggregator probe statistics that `probe_summary` collects when present."""

SLOPE = ("length_noise", "slope")
"""Key path of the length-variance slope (Figure 4) in a probe record."""


def _run_probe_means(probes: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """Average over one run's probe records: {(aggregator or '', stat): mean}."""
    out: dict[tuple[str, str], float] = {}
    table = probe_table(probes, PROBE_SUMMARY_STATS)
    if len(table):
        means = table.groupby("aggregator")[list(PROBE_SUMMARY_STATS)].mean()  # NaN skipped
        for agg, row in means.iterrows():
            for stat, value in row.items():
                if pd.notna(value):
                    out[(str(agg), str(stat))] = float(value)
    slopes = probe_series(probes, *SLOPE)
    if len(slopes):
        out[("", "length_variance_slope")] = float(slopes["value"].mean())
    return out


def probe_summary(
    probes: Mapping[int, Sequence[Mapping[str, Any]]],
    level: float = LEVEL,
) -> pd.DataFrame:
    """Probe statistics of one condition across seeds (seed -> that run's probe records).

    Each run's records are averaged over its probe steps first (one number per run and
    statistic), then the seeds give a mean with a Student-t interval (`mean_ci`). Rows:
    aggregator ('' for the length-variance slope), stat, mean, low, high, n, method.
    """
    per_run = {s: _run_probe_means(records) for s, records in probes.items()}
    keys = sorted({k for m in per_run.values() for k in m})
    rows = []
    for agg, stat in keys:
        values = [m[(agg, stat)] for m in per_run.values() if (agg, stat) in m]
        est = mean_ci(values, level)
        rows.append(
            {"aggregator": agg, "stat": stat, "mean": est.value, "low": est.low,
             "high": est.high, "n": est.n, "method": est.method}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["aggregator", "stat", "mean", "low", "high", "n", "method"])
