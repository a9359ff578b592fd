"""Per-run metric shaping: smoothing, one run's threshold crossing, lengths, probe tables.

Inputs are the DataFrames of `Store.metrics(run_id)` (one row per step; step -1 is the
evaluation before RL) and the probe records of `Store.probes(run_id)`. Everything here looks at
one run; statistics across runs and seeds (intervals, speed-ups, verdicts) are in `vlsim.stats`.
Nothing here draws or touches the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PROBE_STATS = ("scale", "variance", "cv", "cosine", "relative_variance", "direction_bias")
"""Per-aggregator probe statistics that `probe_table` collects (missing ones become NaN)."""


# ---------------------------------------------------------------- smoothing

METRIC_LABELS = {
    "eval/mean_at_k": "held-out accuracy (sampled mean@k)",
    "eval/accuracy_greedy": "held-out accuracy (greedy)",
    "charts/reward_mean": "training reward",
    "charts/accuracy": "training accuracy",
    "charts/response_length_mean": "mean answer length (tokens)",
    "charts/truncation_rate": "share of answers cut at M",
    "charts/entropy": "token entropy",
    "grad/norm": "gradient norm (before clipping)",
    "losses/policy": "policy loss",
    "charts/aggregate_scale": "aggregate scale M·Σx",
}
"""How the UI and verdicts name the metrics a run records."""


def metric_label(key: str) -> str:
    """A metric's readable name (the key itself when it has none)."""
    return METRIC_LABELS.get(key, key)


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


# ---------------------------------------------------------------- one run's threshold crossing


def steps_done(step: int, metric: str) -> int:
    """RL updates behind a metric logged at `step`.

    Evaluations (`eval/...`) run after the step's update (step -1 is before RL: 0 updates);
    training metrics (`charts/...`) describe the rollouts sampled before it.
    """
    return int(step) + 1 if metric.startswith("eval/") else max(int(step), 0)


@dataclass(frozen=True)
class Crossing:
    """When one run first reached a threshold, or how far it got without reaching it."""

    steps: float
    """RL updates until the first logged value at the threshold; if not reached, the updates
    behind the last logged value (the run got that far without reaching it)."""
    seconds: float
    """The run's `time/elapsed` at that row (NaN if not logged; 0 before RL)."""
    reached: bool
    """False: the run never reached the threshold (censored at `steps`)."""


def first_crossing(
    metrics_df: pd.DataFrame,
    metric: str,
    threshold: float,
    smoothing: float = 0.0,
    higher_is_better: bool = True,
) -> Crossing | None:
    """The first logged point where one run's `metric` reaches `threshold` (None: no data).

    Only rows that have the metric count (evaluation metrics exist every eval_every steps).
    Steps are counted as in `steps_done`. With higher_is_better=False the metric must fall to
    the threshold. smoothing applies `smooth` first.
    """
    rows = _metric_rows(metrics_df, metric)
    if rows is None:
        return None
    values = smooth(rows[metric], smoothing) if smoothing else rows[metric]
    hit = (values >= threshold if higher_is_better else values <= threshold).to_numpy()
    reached = bool(hit.any())
    row = rows.iloc[int(np.argmax(hit))] if reached else rows.iloc[-1]
    seconds = float(row["time/elapsed"]) if "time/elapsed" in rows else math.nan
    if not math.isfinite(seconds) and int(row["step"]) < 0:
        seconds = 0.0
    return Crossing(float(steps_done(int(row["step"]), metric)), seconds, reached)


def _metric_rows(metrics_df: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Rows with a numeric value of metric, sorted by step (None if there are none)."""
    if metrics_df is None or metric not in metrics_df or "step" not in metrics_df:
        return None
    df = metrics_df.copy()
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    df = df[np.isfinite(df[metric].astype(float))].sort_values("step")
    return df if len(df) else None


def metric_range(
    metrics_df: pd.DataFrame, metric: str, smoothing: float = 0.0
) -> tuple[float, float] | None:
    """(first logged value, best value) of one run's metric after smoothing (None: no data)."""
    rows = _metric_rows(metrics_df, metric)
    if rows is None:
        return None
    values = smooth(rows[metric], smoothing) if smoothing else rows[metric]
    return float(values.iloc[0]), float(values.max())


def reachable_threshold(ranges: Sequence[tuple[float, float]]) -> tuple[float | None, str]:
    """A threshold the runs reach, from each run's (first value, best value), and why.

    Halfway between the highest first value and the lowest best value, rounded to as few
    digits as keep it inside that gap: above every run's start (so no run is at it before RL)
    and reached by every run. When no such value exists, halfway to the best run's best, with
    a sentence saying that not every run reaches it; (None, sentence) when no run improves.
    """
    if not ranges:
        return None, ""
    start = max(first for first, _ in ranges)
    lowest = min(best for _, best in ranges)
    highest = max(best for _, best in ranges)
    if lowest > start:
        top, note = (
            lowest,
            (
                "Threshold chosen from the selected runs: halfway between the highest starting "
                "value and the lowest best value, so every run reaches it."
            ),
        )
    elif highest > start:
        top, note = (
            highest,
            (
                "No value above every run's starting value is reached by all selected runs; the "
                "threshold is halfway to the best run's best value, and some runs never reach it."
            ),
        )
    else:
        return None, "No selected run improves on the highest starting value."
    mid = start + 0.5 * (top - start)
    for digits in range(1, 8):
        value = round(mid, digits)
        if start < value <= top:
            return value, note
    return mid, note


def last_step(metrics_df: pd.DataFrame, metric: str | None = None) -> int | None:
    """Highest logged step (of `metric`'s rows if given), or None."""
    if metrics_df is None or "step" not in metrics_df or not len(metrics_df):
        return None
    if metric is not None:
        rows = _metric_rows(metrics_df, metric)
        return None if rows is None else int(rows["step"].max())
    return int(metrics_df["step"].max())


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


def probe_table(
    probes: Iterable[Mapping[str, Any]], stats: Sequence[str] = PROBE_STATS
) -> pd.DataFrame:
    """Probe records -> one row per (step, aggregator) with a column per statistic in `stats`.

    Records without an `aggregators` dict are skipped; missing statistics are NaN.
    """
    rows = []
    for record in probes:
        aggs = record.get("aggregators") if isinstance(record, Mapping) else None
        if not isinstance(aggs, Mapping):
            continue
        for name, values in aggs.items():
            if not isinstance(values, Mapping):
                continue
            row = {"step": record.get("step"), "aggregator": str(name)}
            for key in stats:
                row[key] = _number(values.get(key))
            rows.append(row)
    return pd.DataFrame(rows, columns=["step", "aggregator", *stats])


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
    "PROBE_STATS",
    "Crossing",
    "first_crossing",
    "format_seconds",
    "last_step",
    "metric_range",
    "observed_lengths",
    "probe_series",
    "probe_table",
    "progress",
    "reachable_threshold",
    "smooth",
    "steps_done",
]
