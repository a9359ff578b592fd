"""vlsim.analysis on hand-made metric tables: smoothing, one run's crossing, lengths, probes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vlsim.analysis import (
    Crossing,
    first_crossing,
    format_seconds,
    metric_range,
    observed_lengths,
    probe_series,
    probe_table,
    progress,
    reachable_threshold,
    smooth,
    steps_done,
)


def eval_run(accs: list[float], every: int = 10, sec_per_step: float = 1.0) -> pd.DataFrame:
    """Metrics with an evaluation before RL (step -1) and every `every` steps after it."""
    rows = [{"step": -1, "time/elapsed": 0.0, "eval/mean_at_k": accs[0]}]
    for k, acc in enumerate(accs[1:], start=1):
        step = k * every - 1
        rows.append(
            {"step": step, "time/elapsed": (step + 1) * sec_per_step, "eval/mean_at_k": acc}
        )
    # training rows without the eval metric in between
    for s in range(0, len(accs) * every):
        if s % every != every - 1:
            rows.append(
                {"step": s, "time/elapsed": (s + 1) * sec_per_step, "charts/reward_mean": 0.1}
            )
    return pd.DataFrame(rows)


def test_smooth_weight_zero_is_identity_and_first_point_is_unbiased() -> None:
    data = [1.0, 2.0, 3.0]
    assert smooth(data, 0.0).tolist() == data
    out = smooth([5.0, 5.0, 5.0], 0.9)
    assert out.tolist() == pytest.approx([5.0, 5.0, 5.0])  # debiased: no pull toward 0


def test_smooth_matches_tensorboard_formula_and_skips_nan() -> None:
    w = 0.6
    out = smooth(pd.Series([1.0, math.nan, 3.0], index=[10, 11, 12]), w)
    assert list(out.index) == [10, 11, 12]
    assert out.iloc[0] == pytest.approx(1.0)
    assert math.isnan(out.iloc[1])
    ema = w * (1 - w) * 1.0 + (1 - w) * 3.0
    assert out.iloc[2] == pytest.approx(ema / (1 - w**2))
    with pytest.raises(ValueError, match="smoothing weight"):
        smooth([1.0], 1.0)


def test_first_crossing_first_eval_reaching_it() -> None:
    df = eval_run([0.1, 0.2, 0.35, 0.5, 0.3], every=10, sec_per_step=2.0)
    # eval at step 19 (after 20 updates) is the first >= 0.3
    assert first_crossing(df, "eval/mean_at_k", 0.3) == Crossing(20, 40.0, True)
    assert first_crossing(df, "eval/mean_at_k", 0.05) == Crossing(0, 0.0, True)  # before RL
    # never reached: censored at the updates behind its last evaluation
    assert first_crossing(df, "eval/mean_at_k", 0.9) == Crossing(40, 80.0, False)
    assert first_crossing(df, "missing/metric", 0.1) is None
    # lower is better: first point at or below
    assert first_crossing(df, "eval/mean_at_k", 0.15, higher_is_better=False) == Crossing(
        0, 0.0, True
    )


def test_first_crossing_with_smoothing_is_later() -> None:
    df = eval_run([0.0, 0.0, 1.0, 1.0, 1.0])
    raw = first_crossing(df, "eval/mean_at_k", 0.8)
    smoothed = first_crossing(df, "eval/mean_at_k", 0.8, smoothing=0.5)
    assert raw == Crossing(20, 20.0, True)
    assert smoothed is not None and smoothed.reached and smoothed.steps > raw.steps


def test_reachable_threshold_is_above_every_start_and_reached_by_all() -> None:
    runs = [eval_run([0.1, 0.2, 0.3, 0.4]), eval_run([0.12, 0.4, 0.5, 0.6])]
    ranges = [metric_range(df, "eval/mean_at_k") for df in runs]
    assert ranges == [(0.1, 0.4), (0.12, 0.6)]
    value, note = reachable_threshold(ranges)
    assert value == 0.3  # halfway between 0.12 and 0.4, rounded to 1 digit inside the gap
    assert all(first_crossing(df, "eval/mean_at_k", value).reached for df in runs)
    assert "every run reaches it" in note
    # one run never improves past the other's start: say so
    value, note = reachable_threshold([(0.1, 0.15), (0.2, 0.5)])
    assert value == 0.3 and "some runs never reach it" in note
    assert reachable_threshold([(0.3, 0.3)])[0] is None
    assert reachable_threshold([]) == (None, "")


def test_steps_done_counts_updates() -> None:
    assert steps_done(-1, "eval/mean_at_k") == 0
    assert steps_done(9, "eval/accuracy_greedy") == 10
    assert steps_done(9, "charts/reward_mean") == 9


def test_observed_lengths_all_and_last_steps() -> None:
    df = pd.DataFrame(
        [
            {"step": 1, "dist/response_lengths": [4, 5]},
            {"step": 0, "dist/response_lengths": [1, 2, 3]},
            {"step": -1, "eval/mean_at_k": 0.1},  # eval row: no lengths (NaN)
            {"step": 2, "dist/response_lengths": [6, 0, "x"]},  # junk skipped
        ]
    )
    assert observed_lengths(df) == [1, 2, 3, 4, 5, 6]
    assert observed_lengths(df, last_steps=1) == [6]
    assert observed_lengths(df, last_steps=2) == [4, 5, 6]
    assert observed_lengths(pd.DataFrame({"step": []})) == []


def test_progress_and_eta() -> None:
    assert progress(0, 100, None) == (0.0, None)
    frac, eta = progress(25, 100, 50.0)
    assert frac == 0.25 and eta == pytest.approx(150.0)
    assert progress(100, 100, 80.0) == (1.0, 0.0)
    assert format_seconds(42) == "42 s"
    assert format_seconds(185) == "3 min 5 s"
    assert format_seconds(None) == "?"


def test_probe_table_is_robust_to_missing_keys() -> None:
    probes = [
        {
            "step": 0,
            "aggregators": {"grpo": {"variance": 2.0, "cv": 0.5}, "dr_grpo": {"variance": 4.0}},
        },
        {"step": 5},  # no aggregators: skipped
        {"step": 10, "aggregators": {"grpo": {"variance": None, "cosine": 0.9}}},
        {"step": 20, "length_noise": {"slope": 1.1}},
    ]
    table = probe_table(probes)
    assert len(table) == 3
    assert set(table.columns) >= {"step", "aggregator", "variance", "cv", "cosine", "scale"}
    row = table[(table.step == 0) & (table.aggregator == "dr_grpo")].iloc[0]
    assert row.variance == 4.0 and np.isnan(row.cv)
    assert np.isnan(table[table.step == 10].iloc[0].variance)
    slope = probe_series(probes, "length_noise", "slope")
    assert slope.to_dict("records") == [{"step": 20, "value": 1.1}]
    assert probe_table([]).empty
