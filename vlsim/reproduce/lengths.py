"""How wide and how long the reproduction's answers were: each condition's length spread and growth.

The claims need lengths that differ within a batch (else every aggregator weighs answers
alike). This summary reads every finished run's step records (`charts/response_length_p10`,
`_p90`, `_mean`: the step's B x G sampled answers) and, per condition over its seeds, reports
the spread p90/p10 (median, smallest, and the share of steps at or above `SPREAD_TARGET`) and
the mean length over the first and the last `window` steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SPREAD_TARGET = 3.0
"""The wide preset's target for the step's p90/p10."""

P10, P90, MEAN = (
    "charts/response_length_p10",
    "charts/response_length_p90",
    "charts/response_length_mean",
)


def length_rows(
    frames: dict[str, dict[int, pd.DataFrame]], window: int = 10
) -> list[dict[str, Any]]:
    """One row per condition with RL steps: spread of the step's lengths and mean length start/end.

    frames: condition -> seed -> the run's metrics (as `collect.metric_frames` gives them).
    growth is (mean of the seeds' last-window means) / (mean of their first-window means).
    """
    rows = []
    for condition, by_seed in frames.items():
        ratios: list[float] = []
        starts, ends = [], []
        for frame in by_seed.values():
            if not {P10, P90, MEAN} <= set(frame.columns):
                continue
            steps = frame[frame["step"] >= 0].dropna(subset=[P10, P90, MEAN]).sort_values("step")
            steps = steps[steps[P10] > 0]
            if steps.empty:
                continue
            ratios += (steps[P90] / steps[P10]).tolist()
            starts.append(float(steps[MEAN].head(window).mean()))
            ends.append(float(steps[MEAN].tail(window).mean()))
        if not ratios:
            continue
        spread = np.asarray(ratios)
        start, end = float(np.mean(starts)), float(np.mean(ends))
        rows.append(
            {
                "condition": condition,
                "seeds": len(starts),
                "steps": len(spread),
                "spread_median": float(np.median(spread)),
                "spread_min": float(spread.min()),
                "share_at_target": float((spread >= SPREAD_TARGET).mean()),
                "mean_start": start,
                "mean_end": end,
                "growth": end / start if start > 0 else float("nan"),
                "window": window,
            }
        )
    return rows


LENGTHS_INTRO = (
    "Aggregators differ only where a batch's lengths differ. Per condition, over its seeds and "
    "RL steps: the spread p90/p10 of the step's sampled answer lengths (median, and the "
    "smallest in brackets), the share of steps whose spread is at least 3 (the wide preset's "
    "target), and the mean answer length (tokens) over the first and the last {window} steps. "
    "The presets' own targets are measured over longer runs by `benchmarks/bench_presets.py` "
    "(see the README's preset table)."
)
"""What the length table shows (format with window=)."""


def window_of(lengths: dict[str, list[dict[str, Any]]]) -> int:
    """The steps averaged for a row's start and end lengths."""
    return next((r["window"] for part in lengths.values() for r in part), 10)


def display_rows(lengths: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    """The report's length rows as text, claims 1-3's runs first, then claim 4's."""
    out = []
    for part, label in (("probes", "claims 1-3"), ("speed", "claim 4")):
        for r in lengths.get(part, []):
            out.append({
                "condition": f"{r['condition']} ({label})",
                "seeds x steps": f"{r['seeds']} x {r['steps'] // r['seeds']}",
                "p90/p10 median [min]": f"{r['spread_median']:.2f} [{r['spread_min']:.2f}]",
                "steps with p90/p10 >= 3": f"{100 * r['share_at_target']:.0f}%",
                "mean length, first -> last steps":
                    f"{r['mean_start']:.1f} -> {r['mean_end']:.1f} (x{r['growth']:.2f})",
            })  # fmt: skip
    return out


def narrow_note(lengths: dict[str, list[dict[str, Any]]], config: dict[str, Any]) -> str:
    """A sentence when every claim-4 condition's median spread is under 3 (else ''); config is
    the report's reproduction config (it names claim 4's preset)."""
    speed = lengths.get("speed", [])
    speed_preset = config.get("speed_preset", "its preset")
    if not speed or max(r["spread_median"] for r in speed) >= SPREAD_TARGET:
        return ""
    spreads = [r["spread_median"] for r in speed]
    ends = [r["mean_end"] for r in speed]
    return (
        f"Claim 4's runs ({speed_preset}) had narrow lengths: median p90/p10 "
        f"{min(spreads):.2f}-{max(spreads):.2f}, mean {min(ends):.1f}-{max(ends):.1f} tokens "
        f"over the last {window_of(lengths)} steps. Where a batch's lengths are this alike, VL "
        "Norm weighs answers almost as the token mean does, so only a small speed-up can be "
        "expected there."
    )
