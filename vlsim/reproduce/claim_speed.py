"""Claim 4: with VL Norm, DAPO (and GRPO) converge faster on CountDown (paper: up to 2.67x).

Pure functions of metric frames (condition -> seed -> a run's metrics). "Converged" is the
first held-out accuracy (eval/mean_at_k) at or above a threshold; runs that never get there
count with the whole horizon (`vlsim.stats.censored`). Every number comes from `vlsim.stats`:
per condition the steps to the threshold (restricted mean, t interval) and the final accuracy
(t interval); per pair the paired speed-up with Fieller's interval and the paired difference of
final accuracies (`vlsim.stats.compare`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from vlsim import stats
from vlsim.reproduce.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, est_dict

METRIC = "eval/mean_at_k"
PAPER_SPEEDUP = 2.67
"""The paper's headline: DAPO + VL Norm reaches DAPO's step-1000 accuracy at step 375."""

Frames = Mapping[str, Mapping[int, pd.DataFrame]]


def condition_rows(
    frames: Frames, threshold: float, smoothing: float = 0.0, level: float = 0.95
) -> list[dict[str, Any]]:
    """Per condition: runs, reached, steps to the threshold, final accuracy, mean curve."""
    rows = []
    for cond, by_seed in frames.items():
        times = stats.threshold_times(by_seed, METRIC, threshold, smoothing)
        summ = stats.threshold_summary(times, None, level)
        final = stats.mean_ci(list(stats.final_values(by_seed, METRIC).values()), level)
        bands = stats.curve_bands(by_seed, METRIC, smoothing, level)
        rows.append(
            {"condition": cond, "runs": len(by_seed), "reached": summ.reached,
             "horizon": summ.horizon, "steps": est_dict(summ.restricted_mean),
             "median_steps": est_dict(summ.median), "final": est_dict(final),
             "curve": {k: bands[k].tolist() for k in ("step", "mean", "low", "high")}}
        )  # fmt: skip
    return rows


def pair_verdict(verdict: stats.Verdict) -> tuple[str, str]:
    """(verdict, why) from one comparison: a speed-up interval above 1 reproduces the claim."""
    sp = verdict.speedup
    if sp is None or math.isnan(sp.value):
        return INCONCLUSIVE, verdict.speed_text() or "no speed-up could be formed"
    ruling = verdict.speed_ruling
    if ruling is not None and ruling.outcome == "other":
        return REPRODUCED, verdict.speed_text()
    if ruling is not None and ruling.outcome == "base":
        return NOT_REPRODUCED, verdict.speed_text()
    return INCONCLUSIVE, verdict.speed_text()


def claim4(
    frames: Frames,
    pairs: Sequence[tuple[str, str]],
    threshold: float,
    smoothing: float = 0.0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Claim 4: per pair (baseline, with VL Norm) the speed-up and final accuracy, a verdict.

    The claim's verdict is the first pair's (DAPO vs DAPO + VL Norm, the paper's headline);
    the others are reported beside it.
    """
    out_pairs = []
    for base, other in pairs:
        if base not in frames or other not in frames:
            continue
        v = stats.compare(
            base, other, frames[base], frames[other], METRIC, threshold, True, smoothing,
            True, 1, level, metric_label="held-out accuracy",
        )  # fmt: skip
        verdict, why = pair_verdict(v)
        sp = v.speedup if v.speedup is not None else stats.no_interval(level=level)
        paper_inside = sp.has_interval and sp.low <= PAPER_SPEEDUP <= sp.high
        out_pairs.append(
            {"base": base, "other": other, "speedup": est_dict(sp),
             "final_difference": est_dict(v.final), "reached": list(v.reached or ()),
             "paired": v.paired, "n": v.n_pairs, "verdict": verdict, "why": why,
             "final_text": v.final_text(), "paper_inside": paper_inside}
        )  # fmt: skip
    verdict = out_pairs[0]["verdict"] if out_pairs else INCONCLUSIVE
    parts = []
    for p in out_pairs:
        paper = ""
        if p is out_pairs[0] and p["speedup"]["low"] == p["speedup"]["low"]:  # has an interval
            paper = (
                f" (the paper's {PAPER_SPEEDUP:g}x lies "
                f"{'inside' if p['paper_inside'] else 'outside'} the interval)"
            )
        parts.append(f"{p['other']} vs {p['base']}: {p['why']}{paper}; {p['final_text']}")
    sentence = (
        f"{verdict.capitalize()}: " + "; ".join(parts) + f". Held-out accuracy threshold "
        f"{threshold:g}; the verdict is the first comparison's."
        if out_pairs
        else f"{INCONCLUSIVE.capitalize()}: no pair of conditions has finished runs."
    )
    return {"id": 4, "verdict": verdict, "sentence": sentence, "threshold": threshold,
            "pairs": out_pairs, "conditions": condition_rows(frames, threshold, smoothing, level)}  # fmt: skip
