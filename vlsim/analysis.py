"""Pure functions on stored metrics: smoothing, steps to a threshold, speed-ups, lengths, probes.

Inputs are the DataFrames of `Store.metrics(run_id)` (one row per step; step -1 is the
evaluation before RL) and the probe records of `Store.probes(run_id)`. Nothing here draws or
touches the store, so the pages, the CLI and notebooks report the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

NOT_REACHED = "not reached"

PROBE_STATS = ("scale", "variance", "cv", "cosine", "relative_variance", "direction_bias")
"""Per-aggregator probe statistics that `probe_table` collects (missing ones become NaN)."""


# ---------------------------------------------------------------- smoothing


def smooth(series: Sequence[float] | pd.Series | np.ndarray, weight: float) -> pd.Series:
    """Exponential moving average with TensorBoard's debiasing.

    s_t = weight * s_{t-1} + (1 - weight) * x_t from s_0 = 0, divided by 1 - weight^n (n values
    so far), so the first point is not pulled toward zero. weight 0 returns the data; NaN and
    infinite values are passed through and do not enter the average.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    s = series if isinstance(series, pd.Series) else pd.Series(series, dtype=float)
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    out = np.empty_like(values)
    last, n = 0.0, 0
    for i, x in enumerate(values):
        if not math.isfinite(x):
            out[i] = x
            continue
        last = weight * last + (1.0 - weight) * x
        n += 1
        out[i] = last / (1.0 - weight**n) if weight > 0 else x
    return pd.Series(out, index=s.index, name=s.name)


# ---------------------------------------------------------------- thresholds and speed-ups


def steps_done(step: int, metric: str) -> int:
    """RL updates behind a metric logged at `step`.

    Evaluations (`eval/...`) run after the step's update (step -1 is before RL: 0 updates);
    training metrics (`charts/...`) describe the rollouts sampled before it.
    """
    return int(step) + 1 if metric.startswith("eval/") else max(int(step), 0)


def steps_to_threshold(
    metrics_df: pd.DataFrame,
    metric: str,
    threshold: float,
    smoothing: float = 0.0,
    higher_is_better: bool = True,
) -> tuple[int, float] | None:
    """(RL steps, seconds) at the first logged point where `metric` reaches `threshold`.

    Only rows that have the metric count (evaluation metrics exist every eval_every steps).
    Steps are counted as in `steps_done`; seconds are the run's `time/elapsed` there (NaN if the
    run has no such column). With higher_is_better=False the metric must fall to the
    threshold. smoothing applies `smooth` first. None if the run never gets there.
    """
    rows = _metric_rows(metrics_df, metric)
    if rows is None:
        return None
    values = smooth(rows[metric], smoothing) if smoothing else rows[metric]
    hit = values >= threshold if higher_is_better else values <= threshold
    if not hit.any():
        return None
    first = rows.loc[hit[hit].index[0]]
    seconds = float(first["time/elapsed"]) if "time/elapsed" in rows else math.nan
    if not math.isfinite(seconds) and int(first["step"]) < 0:
        seconds = 0.0
    return steps_done(int(first["step"]), metric), seconds


def _metric_rows(metrics_df: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Rows with a numeric value of metric, sorted by step (None if there are none)."""
    if metrics_df is None or metric not in metrics_df or "step" not in metrics_df:
        return None
    df = metrics_df.copy()
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    df = df[np.isfinite(df[metric].astype(float))].sort_values("step")
    return df if len(df) else None


def last_step(metrics_df: pd.DataFrame, metric: str | None = None) -> int | None:
    """Highest logged step (of `metric`'s rows if given), or None."""
    if metrics_df is None or "step" not in metrics_df or not len(metrics_df):
        return None
    if metric is not None:
        rows = _metric_rows(metrics_df, metric)
        return None if rows is None else int(rows["step"].max())
    return int(metrics_df["step"].max())


def speedup_table(
    runs: Mapping[str, pd.DataFrame],
    metric: str,
    threshold: float,
    baseline: str | None = None,
    smoothing: float = 0.0,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """How fast each run reaches a threshold, and how many times faster than a baseline.

    Columns: run, reached ('yes' or 'not reached'), steps, seconds, last_step (the run's last
    logged step of the metric), speedup_steps and speedup_seconds (baseline's steps or seconds
    divided by the run's: 2 means twice as fast, the paper's "x times faster convergence";
    NaN when either run never reaches the threshold or the ratio is undefined), note.
    """
    results = {
        name: steps_to_threshold(df, metric, threshold, smoothing, higher_is_better)
        for name, df in runs.items()
    }
    base = results.get(baseline) if baseline is not None else None
    rows = []
    for name, df in runs.items():
        hit = results[name]
        last = last_step(df, metric)
        row: dict[str, Any] = {
            "run": name,
            "reached": "yes" if hit else NOT_REACHED,
            "steps": float(hit[0]) if hit else math.nan,
            "seconds": float(hit[1]) if hit else math.nan,
            "last_step": last,
            "speedup_steps": math.nan,
            "speedup_seconds": math.nan,
            "note": "",
        }
        if hit is None:
            row["note"] = (
                f"{NOT_REACHED} by step {last}" if last is not None else "no data for this metric"
            )
        if baseline is not None and name == baseline:
            row["note"] = (row["note"] + "; " if row["note"] else "") + "baseline"
        if hit and base:
            row["speedup_steps"] = _ratio(base[0], hit[0])
            row["speedup_seconds"] = _ratio(base[1], hit[1])
        elif hit and baseline is not None and baseline in runs and base is None:
            row["note"] = "baseline never reaches the threshold"
        rows.append(row)
    columns = [
        "run", "reached", "steps", "seconds", "last_step", "speedup_steps", "speedup_seconds",
        "note",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _ratio(base: float, value: float) -> float:
    if not (math.isfinite(base) and math.isfinite(value)):
        return math.nan
    if value == 0:
        return 1.0 if base == 0 else math.inf
    return base / value


# ---------------------------------------------------------------- lengths, progress


def observed_lengths(metrics_df: pd.DataFrame, last_steps: int | None = None) -> list[int]:
    """Every answer length a run recorded (`dist/response_lengths`), oldest step first.

    last_steps: only the latest this many steps that recorded lengths (None: all).
    Non-numeric or non-positive entries are skipped.
    """
    col = "dist/response_lengths"
    if metrics_df is None or col not in metrics_df or not len(metrics_df):
        return []
    df = metrics_df.sort_values("step") if "step" in metrics_df else metrics_df
    lists = [v for v in df[col] if isinstance(v, (list, tuple, np.ndarray)) and len(v)]
    if last_steps is not None:
        lists = lists[-int(last_steps) :] if last_steps > 0 else []
    out = []
    for values in lists:
        for v in values:
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(x) and x >= 1:
                out.append(int(round(x)))
    return out


def progress(
    done: int, total_steps: int | None, elapsed: float | None
) -> tuple[float, float | None]:
    """(fraction done in [0, 1], ETA in seconds or None) from steps done and RL seconds so far."""
    if not total_steps or total_steps <= 0:
        return (1.0 if done > 0 else 0.0), None
    frac = min(max(done / total_steps, 0.0), 1.0)
    if done <= 0 or elapsed is None or not math.isfinite(elapsed) or elapsed <= 0:
        return frac, None
    remaining = max(total_steps - done, 0)
    return frac, elapsed / done * remaining


def format_seconds(seconds: float | None) -> str:
    """'42 s', '3 min 5 s', '1 h 02 min'; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


# ---------------------------------------------------------------- probes


def probe_table(probes: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Probe records -> one row per (step, aggregator) with the PROBE_STATS columns.

    Records without an `aggregators` dict are skipped; missing statistics are NaN.
    """
    rows = []
    for record in probes:
        aggs = record.get("aggregators") if isinstance(record, Mapping) else None
        if not isinstance(aggs, Mapping):
            continue
        for name, stats in aggs.items():
            if not isinstance(stats, Mapping):
                continue
            row = {"step": record.get("step"), "aggregator": str(name)}
            for key in PROBE_STATS:
                row[key] = _number(stats.get(key))
            rows.append(row)
    return pd.DataFrame(rows, columns=["step", "aggregator", *PROBE_STATS])


def probe_series(probes: Iterable[Mapping[str, Any]], *path: str) -> pd.DataFrame:
    """A scalar at a key path of every probe record, e.g. ('length_noise', 'slope').

    Returns columns step and value (records without a number there are skipped).
    """
    rows = []
    for record in probes:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        x = _number(value)
        if math.isfinite(x):
            rows.append({"step": record.get("step"), "value": x})
    return pd.DataFrame(rows, columns=["step", "value"])


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


__all__ = [
    "NOT_REACHED",
    "PROBE_STATS",
    "format_seconds",
    "last_step",
    "observed_lengths",
    "probe_series",
    "probe_table",
    "progress",
    "smooth",
    "speedup_table",
    "steps_done",
    "steps_to_threshold",
]
