"""Claim 1: an answer's gradient variance grows with its length, about linearly (Figure 4).

Pure functions of probe records (`vlsim.probes.ProbeRecord` as JSON, each with its 'step').
Each probed run contributes its last probe; its slopes were fitted by the probe (gamma
quasi-likelihood, one intercept per prompt) with a cluster-bootstrap interval over prompts.
Across seeds, the per-run slopes get a Student-t interval (`vlsim.stats.mean_ci`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vlsim.reproduce.verdict import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    ci_text,
    combine,
    est_dict,
)
from vlsim.stats import Estimate, mean_ci

Records = Mapping[int, Sequence[Mapping[str, Any]]]
"""seed -> one run's probe records."""

SLOPES = {"paper": "length_noise", "free": "length_noise_free"}
"""The two slopes: the paper's (g_i = A_i s_i) and the advantage-free one (s_i)."""


def last_probe(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The record of the latest probe step (None without records)."""
    return max(records, key=lambda r: r.get("step", -1)) if records else None


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) else math.nan


def slope_summary(by_seed: Records, key: str, level: float = 0.95) -> dict[str, Any]:
    """Per seed the last probe's slope with its interval over prompts; a t interval over seeds.

    key is 'length_noise' (the paper's) or 'length_noise_free'. 'mean' is the mean over seeds
    with its Student-t interval; with one seed it is that probe's own interval over prompts.
    """
    seeds = []
    for seed in sorted(by_seed):
        rec = last_probe(by_seed[seed])
        if rec is None or key not in rec:
            continue
        fit = rec[key]
        seeds.append(
            {"seed": seed, "step": rec.get("step"), "slope": _num(fit.get("slope")),
             "ci_low": _num(fit.get("ci_low")), "ci_high": _num(fit.get("ci_high")),
             "prompts": int(fit.get("prompts", 0)), "answers": int(fit.get("n", 0))}
        )  # fmt: skip
    slopes = [s["slope"] for s in seeds if math.isfinite(s["slope"])]
    est = mean_ci(slopes, level)
    if len(slopes) == 1:
        one = next(s for s in seeds if math.isfinite(s["slope"]))
        est = Estimate(one["slope"], one["ci_low"], one["ci_high"], 1, level,
                       "one seed: cluster bootstrap over its prompts")  # fmt: skip
    return {"seeds": seeds, "mean": est_dict(est)}


def slope_verdict(est: Mapping[str, Any], band: float) -> tuple[str, str]:
    """(verdict, why) for 'grows with length, about linearly' from a slope's interval.

    Reproduced when the interval lies above 0 and inside [1 - band, 1 + band]; not reproduced
    when it lies wholly below 1 - band (flat or clearly slower than linear) or wholly above
    1 + band (clearly faster); otherwise inconclusive.
    """
    low, high = _num(est.get("low")), _num(est.get("high"))
    lo_band, hi_band = 1.0 - band, 1.0 + band
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE, "no interval"
    if high <= 0:
        return NOT_REPRODUCED, "the noise does not grow with length (interval at or below 0)"
    if high < lo_band:
        return NOT_REPRODUCED, f"it grows clearly slower than linearly (interval below {lo_band:g})"
    if low > hi_band:
        return NOT_REPRODUCED, f"it grows clearly faster than linearly (interval above {hi_band:g})"
    if low > max(0.0, lo_band) and high <= hi_band:
        return REPRODUCED, f"the interval lies inside [{lo_band:g}, {hi_band:g}]"
    return INCONCLUSIVE, f"the interval reaches beyond [{lo_band:g}, {hi_band:g}]"


def claim1(probes: Mapping[str, Records], band: float = 0.5, level: float = 0.95) -> dict[str, Any]:
    """Claim 1 on every preset: both slopes, the verdict and a sentence.

    The paper's slope (g_i = A_i s_i, its Figure 4) decides; the advantage-free slope's own
    reading is reported beside it (the advantage mixes how correctness varies with length into
    the paper's version).
    """
    presets = []
    for preset, by_seed in probes.items():
        paper = slope_summary(by_seed, SLOPES["paper"], level)
        free = slope_summary(by_seed, SLOPES["free"], level)
        verdict, why = slope_verdict(paper["mean"], band)
        free_verdict, _ = slope_verdict(free["mean"], band)
        presets.append({"preset": preset, "paper": paper, "free": free, "verdict": verdict,
                        "why": why, "free_verdict": free_verdict,
                        "n_seeds": len(paper["seeds"])})  # fmt: skip
    verdict = combine(p["verdict"] for p in presets)
    parts = []
    for p in presets:
        parts.append(
            f"on {p['preset']} the paper's slope (deviation of g_i = A_i s_i against L_i) is "
            f"{ci_text(p['paper']['mean'], '.2f')} over {p['n_seeds']} seed(s): {p['why']}; the "
            f"advantage-free slope (s_i), the token accumulation alone, is "
            f"{ci_text(p['free']['mean'], '.2f')} (read alone: {p['free_verdict']})"
        )
    sentence = (
        f"{verdict.capitalize()}: " + "; ".join(parts) + f". 1 means the variance grows "
        f"linearly with length; 'about linearly' is read as an interval inside "
        f"[{1 - band:g}, {1 + band:g}] that excludes 0."
    )
    return {"id": 1, "verdict": verdict, "sentence": sentence, "presets": presets, "band": band}


def figure4(by_seed: Records, preset: str) -> dict[str, Any] | None:
    """The Figure-4 scatter of one prompt: length against deviation, with the fitted curve.

    From the last probe of the lowest seed whose paper's slope could be fitted (else the
    lowest seed), the probe prompt with the most points in the paper's scatter (ties: the
    lowest index). Each series holds that prompt's (length, deviation) points and c, beta of
    deviation = c L^beta: beta is the run's fitted slope, c the prompt's intercept at that
    slope (mean of deviation / L^beta).
    """
    finals = {s: last_probe(by_seed[s]) for s in sorted(by_seed)}
    finals = {s: r for s, r in finals.items() if r is not None}
    if not finals:
        return None
    fitted = [s for s, r in finals.items() if math.isfinite(_num(r[SLOPES["paper"]].get("slope")))]
    seed = fitted[0] if fitted else next(iter(finals))
    rec = finals[seed]
    prompts = rec[SLOPES["paper"]]["points"].get("prompt", [])
    if not prompts:
        return None
    counts = np.bincount(np.asarray(prompts, dtype=int))
    prompt = int(counts.argmax())
    out: dict[str, Any] = {"preset": preset, "seed": seed, "step": rec.get("step"),
                           "prompt": prompt, "rollouts": rec["meta"]["rollouts"]}  # fmt: skip
    for name, key in SLOPES.items():
        fit = rec[key]
        pts = fit["points"]
        keep = [i for i, p in enumerate(pts.get("prompt", [])) if p == prompt]
        L = np.asarray([pts["length"][i] for i in keep], dtype=float)
        d = np.asarray([pts["deviation"][i] for i in keep], dtype=float)
        beta = _num(fit.get("slope"))
        c = float(np.mean(d / L**beta)) if L.size and math.isfinite(beta) else math.nan
        out[name] = {"length": L.astype(int).tolist(), "deviation": d.tolist(), "slope": beta,
                     "ci_low": _num(fit.get("ci_low")), "ci_high": _num(fit.get("ci_high")),
                     "c": c, "quantity": fit.get("quantity", "")}  # fmt: skip
    return out
