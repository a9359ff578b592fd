"""Curves across seeds: one column per seed, the mean curve with a t band, final values."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats as sps

from vlsim.analysis import smooth
from vlsim.stats.intervals import LEVEL, MIN_N


def seed_matrix(
    frames: Mapping[int, pd.DataFrame], metric: str, smoothing: float = 0.0
) -> pd.DataFrame:
    """One column per seed, one row per step: the metric's logged values (smoothed per run).

    Only rows that log the metric count; steps a run did not log are NaN.
    """
    columns = {}
    for seed, df in frames.items():
        if df is None or metric not in df or "step" not in df:
            continue
        rows = df[["step", metric]].copy()
        rows[metric] = pd.to_numeric(rows[metric], errors="coerce")
        rows = rows[np.isfinite(rows[metric].astype(float))].sort_values("step")
        if not len(rows):
            continue
        values = smooth(rows[metric], smoothing) if smoothing else rows[metric]
        columns[seed] = pd.Series(values.to_numpy(dtype=float), index=rows["step"].to_numpy())
    if not columns:
        return pd.DataFrame(index=pd.Index([], name="step", dtype="int64"))
    out = pd.DataFrame(columns).sort_index()
    out.index.name = "step"
    return out


def curve_bands(
    frames: Mapping[int, pd.DataFrame],
    metric: str,
    smoothing: float = 0.0,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Mean curve across seeds with a pointwise Student-t band: columns step, mean, low, high, n.

    At each step, mean +- t_{n-1} * sd / sqrt(n) over the seeds that logged it (the same interval
    as `mean_ci`); low/high are NaN where fewer than 2 seeds logged the step.
    """
    mat = seed_matrix(frames, metric, smoothing)
    columns = ["step", "mean", "low", "high", "n"]
    if mat.shape[1] == 0:
        return pd.DataFrame(columns=columns)
    y = mat.to_numpy(dtype=float)  # (steps, seeds)
    count = np.isfinite(y).sum(axis=1)  # (steps,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps with 0 or 1 seeds: NaN
        mean = np.nanmean(y, axis=1)
        sd = np.nanstd(y, axis=1, ddof=1)
    ok = count >= MIN_N
    half = np.full(len(mat), np.nan)
    t = sps.t.ppf(0.5 + level / 2, np.maximum(count[ok] - 1, 1))
    half[ok] = t * sd[ok] / np.sqrt(count[ok])
    return pd.DataFrame(
        {"step": mat.index.to_numpy(), "mean": mean, "low": mean - half, "high": mean + half,
         "n": count},
        columns=columns,
    )  # fmt: skip


def final_values(
    frames: Mapping[int, pd.DataFrame], metric: str, last: int = 1
) -> dict[int, float]:
    """seed -> mean of the metric's last `last` logged values (NaN when never logged)."""
    mat = seed_matrix(frames, metric)
    out = {}
    for seed in frames:
        if seed not in mat:
            out[seed] = math.nan
            continue
        values = mat[seed].dropna()
        out[seed] = float(values.iloc[-max(1, int(last)) :].mean()) if len(values) else math.nan
    return out
