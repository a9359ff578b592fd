"""Claims 2 and 3: which aggregators are biased, and which is least noisy, on trained policies.

Pure functions of probe records. Every aggregator was evaluated by the probe on the same
rollouts (`vlsim.probes.aggregator_stats`), so the comparisons are paired within a probe. Per
preset and aggregator, from each run's last probe (and its first, for the drift):

- spread: the batch-to-batch spread of the step size, M sd(sum x) / (M E[sum x]), over the
  probe's resampled batches: > 0 means the expected step depends on the lengths drawn (the
  paper's sense of "biased"); 0 exactly for Dr. GRPO and VL Norm;
- drift: step size at the last probe / at the first - 1 (how it moved as training changed
  the lengths);
- direction bias: the calibrated relative bias |E g_hat / E sum x - reference| / |reference|
  (noise expectation removed, about 0 without a tilt; the probe gives it an interval over
  prompts);
- variance ratio: variance per unit scale / Dr. GRPO's on the same rollouts.

Across seeds: Student-t intervals for spread, drift and bias (`mean_ci`), and the t interval
of log ratios for the variance ratio (`geometric_mean_ci`). Beside VL Norm's ratio, the closed
form (`vlsim.theory.grouped_variance_ratio`) predicts it from the observed lengths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vlsim.aggregators import AGGREGATORS
from vlsim.reproduce.claim_noise import Records, last_probe
from vlsim.reproduce.spec import PAPER_AGGREGATORS
from vlsim.reproduce.verdict import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    ci_text,
    combine,
    est_dict,
    num_text,
)
from vlsim.stats import geometric_mean_ci, mean_ci
from vlsim.theory import grouped_variance_ratio

EXACT_ZERO = 1e-9
"""A step-size spread below this is zero (floating-point sums of constant weights)."""

ROUNDING = 1e-12
"""Spreads and drifts smaller than this are rounding of a constant total: shown as 0."""


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) else math.nan


def _first_last(records) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    if not records:
        return None, None
    ordered = sorted(records, key=lambda r: r.get("step", -1))
    return (ordered[0] if len(ordered) > 1 else None), ordered[-1]


def per_seed(by_seed: Records, name: str) -> list[dict[str, Any]]:
    """One aggregator's figures per seed (last probe; drift against the first)."""
    rows = []
    for seed in sorted(by_seed):
        first, last = _first_last(by_seed[seed])
        if last is None or name not in last.get("aggregators", {}):
            continue
        fig = last["aggregators"][name]
        scale = _num(fig.get("scale"))
        base = last["aggregators"].get("dr_grpo", {})
        var, base_var = _num(fig.get("variance")), _num(base.get("variance"))
        drift = math.nan
        if first is not None and name in first.get("aggregators", {}):
            s0 = _num(first["aggregators"][name].get("scale"))
            drift = scale / s0 - 1 if s0 > 0 else math.nan
        spread = _num(fig.get("scale_drift")) / scale if scale > 0 else math.nan
        rows.append(
            {"seed": seed,
             "spread": 0.0 if abs(spread) < ROUNDING else spread,
             "drift": 0.0 if abs(drift) < ROUNDING else drift,
             "bias": _num(fig.get("relative_bias_calibrated")),
             "bias_low": _num(fig.get("relative_bias_ci_low")),
             "bias_high": _num(fig.get("relative_bias_ci_high")),
             "variance": var,
             "variance_ratio": var / base_var if base_var > 0 else math.nan}
        )  # fmt: skip
    return rows


def aggregator_table(by_seed: Records, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per aggregator of the paper: spread, drift, bias and variance ratio across seeds."""
    out = {}
    for name in PAPER_AGGREGATORS:
        rows = per_seed(by_seed, name)
        col = lambda key, rows=rows: [r[key] for r in rows]  # noqa: E731
        out[name] = {
            "display_name": AGGREGATORS[name].display_name,
            "length_free_step": AGGREGATORS[name].length_free_step,
            "seeds": rows,
            "spread": est_dict(mean_ci(col("spread"), level)),
            "drift": est_dict(mean_ci(col("drift"), level)),
            "bias": est_dict(mean_ci(col("bias"), level)),
            "variance_ratio": est_dict(geometric_mean_ci(col("variance_ratio"), level)),
        }
    return out


def _lengths_by_prompt(record: Mapping[str, Any]) -> list[list[int]]:
    """The observed answer lengths of a probe, per prompt (from its advantage-free scatter)."""
    pts = record["length_noise_free"]["points"]
    by: dict[int, list[int]] = {}
    for length, prompt in zip(pts.get("length", []), pts.get("prompt", []), strict=False):
        by.setdefault(int(prompt), []).append(int(length))
    return [by[p] for p in sorted(by)]


def predicted_ratio(by_seed: Records, draws: int = 2000) -> dict[str, Any]:
    """The closed form's VL Norm / Dr. GRPO variance ratio from each run's observed lengths.

    Per seed (last probe): at beta = 1 (the paper's model) and at the fitted paper's slope;
    the mean over seeds of each, and the mean fitted beta.
    """
    rows = []
    for seed in sorted(by_seed):
        rec = last_probe(by_seed[seed])
        if rec is None:
            continue
        meta = rec["meta"]
        lengths = _lengths_by_prompt(rec)
        beta = _num(rec["length_noise"].get("slope"))
        kw = {"group_size": meta["group_size"], "max_len": meta["max_len"],
              "alpha": meta["alpha"], "scope": meta["scope"], "draws": draws, "seed": seed}  # fmt: skip
        rows.append(
            {"seed": seed, "beta": beta,
             "beta1": grouped_variance_ratio(lengths, beta=1.0, **kw),
             "fitted": grouped_variance_ratio(lengths, beta=beta, **kw)
             if math.isfinite(beta) else math.nan}
        )  # fmt: skip
    mean = lambda key: _mean([r[key] for r in rows])  # noqa: E731
    return {"seeds": rows, "beta1": mean("beta1"), "fitted": mean("fitted"), "beta": mean("beta")}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _high_below(est: Mapping[str, Any], value: float) -> bool:
    return _num(est.get("high")) < value


def _low_above(est: Mapping[str, Any], value: float) -> bool:
    return _num(est.get("low")) > value


def _biased(est: Mapping[str, Any]) -> bool:
    return _low_above(est, 0.0)


def _zero(est: Mapping[str, Any]) -> bool:
    return abs(_num(est.get("value"))) < EXACT_ZERO and abs(_num(est.get("high"))) < EXACT_ZERO


def claim2_verdict(table: Mapping[str, Any]) -> tuple[str, str]:
    """(verdict, why) of 'GRPO and DAPO are biased, Dr. GRPO unbiased but noisy' on one preset."""
    ratio = table["vl_norm"]["variance_ratio"]
    grpo, dapo, dr = (table[n]["spread"] for n in ("grpo", "dapo", "dr_grpo"))
    if _low_above(ratio, 1.0):
        return NOT_REPRODUCED, "Dr. GRPO is less noisy than VL Norm here"
    if not _zero(dr):
        return NOT_REPRODUCED, "Dr. GRPO's step size moved with the lengths"
    if _biased(grpo) and _biased(dapo) and _high_below(ratio, 1.0):
        return REPRODUCED, (
            "GRPO's and DAPO's step sizes vary with the lengths drawn (spread above 0), Dr. "
            "GRPO's does not, and Dr. GRPO is noisier than VL Norm"
        )
    missing = [n for n, e in (("GRPO", grpo), ("DAPO", dapo)) if not _biased(e)]
    if missing:
        return INCONCLUSIVE, f"the step-size spread of {' and '.join(missing)} is not shown above 0"
    return INCONCLUSIVE, (
        "GRPO's and DAPO's step sizes vary with the lengths drawn and Dr. GRPO's does not, but "
        f"that Dr. GRPO is noisier than VL Norm is not shown: {_ratio_doubt(ratio)}"
    )


def _ratio_doubt(ratio: Mapping[str, Any]) -> str:
    """Why a variance ratio decides nothing: no interval, or one that includes 1."""
    if math.isnan(_num(ratio.get("low"))):
        return (
            f"the VL Norm / Dr. GRPO variance ratio has no interval ({ratio.get('n', 0)} seed(s) "
            "with a ratio; a probe whose answers all got the same reward has no policy gradient)"
        )
    return "the VL Norm / Dr. GRPO variance ratio's interval includes 1"


def claim3_verdict(table: Mapping[str, Any]) -> tuple[str, str]:
    """(verdict, why) of 'VL Norm is unbiased with the least variance' on one preset.

    'Least' is the paper's theorem: least among the weightings whose step size is free of the
    lengths, whose other member of the four is Dr. GRPO.
    """
    ratio = table["vl_norm"]["variance_ratio"]
    if not _zero(table["vl_norm"]["spread"]):
        return NOT_REPRODUCED, "VL Norm's step size moved with the lengths"
    if _high_below(ratio, 1.0):
        return REPRODUCED, "VL Norm's step size is length-free and its variance below Dr. GRPO's"
    if _low_above(ratio, 1.0):
        return NOT_REPRODUCED, "VL Norm is noisier than Dr. GRPO here"
    return INCONCLUSIVE, _ratio_doubt(ratio)


def claims23(
    probes: Mapping[str, Records], level: float = 0.95, draws: int = 2000
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Claims 2 and 3 on every preset: (the per-preset tables with the closed form's
    prediction, claim 2, claim 3), each claim with per-preset verdicts and a sentence."""
    tables, v2s, v3s, s2, s3 = [], [], [], [], []
    for preset, by_seed in probes.items():
        t = aggregator_table(by_seed, level)
        pred = predicted_ratio(by_seed, draws)
        tables.append({"preset": preset, "aggregators": t, "prediction": pred})
        v2, why2 = claim2_verdict(t)
        v3, why3 = claim3_verdict(t)
        v2s.append({"preset": preset, "verdict": v2, "why": why2})
        v3s.append({"preset": preset, "verdict": v3, "why": why3})
        s2.append(
            f"on {preset}: {why2} (step-size spread GRPO {ci_text(t['grpo']['spread'], '.2g')}, "
            f"DAPO {ci_text(t['dapo']['spread'], '.2g')}, Dr. GRPO "
            f"{ci_text(t['dr_grpo']['spread'], '.2g')}; Dr. GRPO / VL Norm variance "
            f"{_inverse_text(t['vl_norm']['variance_ratio'])}); direction bias (0 or below "
            "means no tilt beyond answer noise), which the paper's argument sets aside: GRPO "
            f"{ci_text(t['grpo']['bias'], '.2g')}, DAPO "
            f"{ci_text(t['dapo']['bias'], '.2g')}, Dr. GRPO {ci_text(t['dr_grpo']['bias'], '.2g')}"
        )
        s3.append(
            f"on {preset}: {why3}; VL Norm / Dr. GRPO variance "
            f"{ci_text(t['vl_norm']['variance_ratio'], '.3g')} measured, "
            f"{num_text(pred['beta1'])} predicted by the closed form at beta = 1 "
            f"({_agreement(t['vl_norm']['variance_ratio'], pred['beta1'])}) and "
            f"{num_text(pred['fitted'])} at the fitted beta = {num_text(pred['beta'], '.2f')}; "
            "VL Norm's "
            f"direction bias {ci_text(t['vl_norm']['bias'], '.2g')} (0 or below means no tilt "
            "beyond answer noise; Dr. GRPO "
            f"{ci_text(t['dr_grpo']['bias'], '.2g')})"
        )
    note = (
        " Intervals are over seeds (t; ratios on logarithms); 'biased' is the paper's sense, "
        "an expected step whose size depends on the lengths."
    )
    c2 = combine(v["verdict"] for v in v2s)
    c3 = combine(v["verdict"] for v in v3s)
    return (
        tables,
        {"id": 2, "verdict": c2, "sentence": f"{c2.capitalize()}: " + "; ".join(s2) + "." + note,
         "presets": v2s},
        {"id": 3, "verdict": c3, "sentence": f"{c3.capitalize()}: " + "; ".join(s3) + "." + note,
         "presets": v3s},
    )  # fmt: skip


def _agreement(est: Mapping[str, Any], predicted: float) -> str:
    """Whether a prediction lies inside a measured interval, in words."""
    low, high = _num(est.get("low")), _num(est.get("high"))
    if math.isnan(low) or math.isnan(high) or math.isnan(_num(predicted)):
        return "no comparison"
    inside = low <= predicted <= high
    return "inside the measured interval" if inside else "outside the measured interval"


def _inverse_text(est: Mapping[str, Any]) -> str:
    """A ratio's interval read the other way round (1 / ratio)."""
    value, low, high = (_num(est.get(k)) for k in ("value", "low", "high"))
    inv = {"value": 1 / value if value else math.nan, "low": 1 / high if high else math.nan,
           "high": 1 / low if low else math.nan}  # fmt: skip
    return ci_text(inv, ".3g")
