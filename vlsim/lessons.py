"""The mathematics the three lessons show: an example group, stretched lengths and their step
sizes, the Lagrange derivation of VL Norm checked by a numeric minimiser, the Length Lab
configs of the bias-variance lesson, and measured length-noise slopes from probe records.

Pages call these functions and draw what they return; nothing here draws or imports Streamlit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from vlsim.advantages import group_advantages
from vlsim.aggregators import AGGREGATORS, weights
from vlsim.config import LabConfig
from vlsim.lengths import LogNormalLengths

REFERENCE_RUNS = Path(__file__).resolve().parents[1] / "docs" / "reference_runs" / "runs.json"
"""Probe records of a few short training runs that ship with the repository (lesson 3)."""

# ----------------------------------------------------------------------------- lesson 1


@dataclass(frozen=True)
class ExampleGroup:
    """One prompt answered G times: lengths L_i (tokens), rewards r_i and advantages A_i."""

    lengths: np.ndarray  # (G,) int
    rewards: np.ndarray  # (G,) float, 0 or 1
    advantages: np.ndarray  # (G,) float


def example_group(
    lengths: Sequence[int] = (8, 16, 24, 48), rewards: Sequence[float] = (1, 1, 0, 0)
) -> ExampleGroup:
    """A group of answers with their GRPO advantages (std-normalised, as GRPO trainers do)."""
    L = np.asarray(lengths, dtype=np.int64)
    r = np.asarray(rewards, dtype=np.float64)
    if L.shape != r.shape or L.ndim != 1 or L.size < 2:
        raise ValueError(
            f"a group needs at least 2 answers with one reward each; got {L.size} lengths and "
            f"{r.size} rewards"
        )
    if L.min() < 1:
        raise ValueError("every answer has at least 1 token")
    return ExampleGroup(lengths=L, rewards=r, advantages=group_advantages(r[None, :], True)[0])


def stretch_lengths(lengths: Iterable[int], factor: float, max_len: int) -> np.ndarray:
    """Every length multiplied by factor, rounded, kept in [1, max_len] (answers that grow)."""
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"the stretch factor must be positive, got {factor}")
    L = np.asarray(list(lengths), dtype=np.float64)
    return np.clip(np.rint(L * factor), 1, max_len).astype(np.int64)


def group_weights(
    lengths: Iterable[int],
    max_len: int,
    names: Sequence[str],
    alpha: float = 1.0,
    scope: str = "group",
) -> dict[str, np.ndarray]:
    """Each aggregator's weight x_i for the answers of one group (B = 1), shape (G,)."""
    L = np.asarray(list(lengths), dtype=np.int64)[None, :]  # (1, G)
    return {name: weights(name, L, max_len, alpha, scope)[0] for name in names}


def step_size(
    lengths: Iterable[int], max_len: int, name: str, alpha: float = 1.0, scope: str = "group"
) -> float:
    """The scale M * sum_i x_i of one group: the size of the step relative to Dr. GRPO's."""
    x = group_weights(lengths, max_len, [name], alpha, scope)[name]
    return float(max_len * x.sum())


def step_size_closed_form(lengths: Iterable[int], max_len: int, name: str) -> float:
    """M * sum x by the closed forms: GRPO M mean(1/L), DAPO M / mean(L), Dr. GRPO and VL Norm 1,
    sequence sum M."""
    L = np.asarray(list(lengths), dtype=np.float64)
    if name == "grpo":
        return float(max_len * np.mean(1.0 / L))
    if name == "dapo":
        return float(max_len / L.mean())
    if name == "seq_sum":
        return float(max_len)
    if name in ("dr_grpo", "vl_norm"):
        return 1.0
    raise ValueError(f"unknown aggregator {name!r}; choose one of: {', '.join(AGGREGATORS)}")


def stretch_curve(
    lengths: Iterable[int],
    factors: Sequence[float],
    max_len: int,
    names: Sequence[str],
    alpha: float = 1.0,
) -> dict[str, np.ndarray]:
    """Step size of each aggregator at each stretch factor, relative to its own step at factor 1.

    1 everywhere means the step does not move when answers grow; GRPO's and DAPO's fall as 1/s.
    """
    base = list(lengths)
    out = {}
    for name in names:
        start = step_size(stretch_lengths(base, 1.0, max_len), max_len, name, alpha)
        out[name] = np.array(
            [
                step_size(stretch_lengths(base, f, max_len), max_len, name, alpha) / start
                for f in factors
            ]
        )
    return out


def token_push(
    group: ExampleGroup, max_len: int, names: Sequence[str], alpha: float = 1.0
) -> dict[str, np.ndarray]:
    """How hard each token is pushed, M x_i A_i, as a (G, max L) array per aggregator.

    The token loss is -A_i log pi(token) (ratio 1), so its gradient is -A_i times the score;
    the aggregator multiplies it by x_i. Positions past an answer's end are NaN.
    """
    L = group.lengths
    width = int(L.max())
    present = np.arange(width)[None, :] < L[:, None]  # (G, width)
    x = group_weights(L, max_len, names, alpha)
    out = {}
    for name in names:
        per_answer = max_len * x[name] * group.advantages  # (G,)
        out[name] = np.where(present, per_answer[:, None], np.nan)
    return out


def token_loss_table(group: ExampleGroup) -> list[dict[str, Any]]:
    """One row per answer: its length, reward, advantage and per-token loss -A_i (ratio 1)."""
    return [
        {
            "answer": i + 1,
            "length": int(L),
            "reward": float(r),
            "advantage": float(a),
            "token loss": float(-a),
            "answer loss (sum over tokens)": float(-a * L),
        }
        for i, (L, r, a) in enumerate(
            zip(group.lengths, group.rewards, group.advantages, strict=True)
        )
    ]


# ----------------------------------------------------------------------------- lesson 2

LESSON2_NAMES = ("grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm")


def lesson2_config(
    kappa: float = 0.0,
    alpha: float = 1.0,
    stretch: float = 1.0,
    n_batches: int = 1000,
    seed: int = 0,
) -> LabConfig:
    """A small, fast Length Lab: B = 4 prompts of G = 8 log-normal answers (median 100 tokens
    times stretch), correctness linked to log-length by kappa."""
    return LabConfig(
        lengths=LogNormalLengths(median=100.0 * stretch, sigma=0.8),
        max_len=4096,
        group_size=8,
        n_groups=4,
        n_batches=n_batches,
        length_slope=kappa,
        alpha=alpha,
        aggregators=list(LESSON2_NAMES),
        seed=seed,
    )


def drift_rows(start, grown) -> list[dict[str, Any]]:
    """Per aggregator: scale at the start and after the answers grew, and their ratio.

    start and grown are LabResults of the same config with shorter and longer answers.
    """
    before, after = start.by_name(), grown.by_name()
    return [
        {
            "name": name,
            "scale_start": before[name].scale,
            "scale_grown": after[name].scale,
            "ratio": after[name].scale / before[name].scale,
        }
        for name in start.config.aggregators
    ]


# ----------------------------------------------------------------------------- lesson 3


MAX_LESSON_ANSWERS = 32
MAX_LESSON_LENGTH = 100_000


def parse_group_lengths(text: str) -> list[int]:
    """Typed lengths of one group ('10 30 60'): 2 to 32 whole numbers in [1, 100000]."""
    from vlsim.length_text import parse_lengths_text

    values = [v for group in parse_lengths_text(text) for v in group]
    if not 2 <= len(values) <= MAX_LESSON_ANSWERS:
        raise ValueError(f"type between 2 and {MAX_LESSON_ANSWERS} lengths, got {len(values)}")
    for v in values:
        if v != round(v) or not 1 <= v <= MAX_LESSON_LENGTH:
            raise ValueError(
                f"{v:g} is not a length: lengths are whole numbers from 1 to {MAX_LESSON_LENGTH:,}"
            )
    return [int(v) for v in values]


def weighted_variance(x: np.ndarray, lengths: np.ndarray, beta: float) -> float:
    """sum_i x_i^2 L_i^beta: the update's variance (in units of one token's) for weights x."""
    L = np.asarray(lengths, dtype=np.float64)
    return float((np.asarray(x, dtype=np.float64) ** 2 * L**beta).sum())


def closed_form_weights(lengths: Iterable[int], beta: float, total: float = 1.0) -> np.ndarray:
    """The minimiser of sum x_i^2 L_i^beta with sum x_i = total: x_i = total L_i^-beta / sum_j L_j^-beta."""
    L = np.asarray(list(lengths), dtype=np.float64)
    p = L ** (-beta)
    return total * p / p.sum()


def lagrange_multiplier(lengths: Iterable[int], beta: float, total: float = 1.0) -> float:
    """lambda of the stationarity condition 2 x_i L_i^beta = lambda: 2 total / sum_j L_j^-beta."""
    L = np.asarray(list(lengths), dtype=np.float64)
    return float(2.0 * total / (L ** (-beta)).sum())


@dataclass(frozen=True)
class NumericCheck:
    """The numeric minimiser's answer beside the closed form's."""

    numeric: np.ndarray  # (G,) weights found by SLSQP
    closed: np.ndarray  # (G,) weights of the closed form
    numeric_variance: float
    closed_variance: float
    max_abs_diff: float  # largest |numeric - closed| relative to the total
    success: bool
    message: str


def numeric_minimiser(lengths: Iterable[int], beta: float, total: float = 1.0) -> NumericCheck:
    """Minimise sum x_i^2 L_i^beta subject to sum x_i = total with scipy's SLSQP, from equal
    weights, and compare with the closed form."""
    L = np.asarray(list(lengths), dtype=np.float64)
    if L.size < 2 or L.min() < 1:
        raise ValueError("give at least 2 lengths, each at least 1 token")
    c = L**beta / (L**beta).mean()  # rescaled so the objective is of order one (same minimiser)
    x0 = np.full(L.size, total / L.size)

    def objective(x: np.ndarray) -> float:
        return float((x**2 * c).sum()) / total**2

    def gradient(x: np.ndarray) -> np.ndarray:
        return 2 * x * c / total**2

    res = minimize(
        objective,
        x0,
        jac=gradient,
        method="SLSQP",
        constraints=[
            {
                "type": "eq",
                "fun": lambda x: x.sum() / total - 1.0,
                "jac": lambda x: np.ones_like(x) / total,
            }
        ],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    closed = closed_form_weights(L, beta, total)
    return NumericCheck(
        numeric=res.x,
        closed=closed,
        numeric_variance=weighted_variance(res.x, L, beta),
        closed_variance=weighted_variance(closed, L, beta),
        max_abs_diff=float(np.abs(res.x - closed).max() / abs(total)),
        success=bool(res.success),
        message=str(res.message),
    )


def variance_by_alpha(
    lengths: Iterable[int], beta: float, alphas: Sequence[float], total: float = 1.0
) -> np.ndarray:
    """Variance of VL Norm's weights (x ~ L^-alpha, sum x = total) relative to the least possible,
    for each alpha: 1 at alpha = beta, above 1 elsewhere."""
    L = np.asarray(list(lengths), dtype=np.float64)
    best = weighted_variance(closed_form_weights(L, beta, total), L, beta)
    return np.array(
        [weighted_variance(closed_form_weights(L, a, total), L, beta) / best for a in alphas]
    )


@dataclass(frozen=True)
class MeasuredSlope:
    """One probe's fitted length-noise slope (log deviation on log length) and its interval."""

    source: str  # the run's name
    step: int
    slope: float
    ci_low: float | None
    ci_high: float | None
    key: str  # 'length_noise_free' (advantage-free fit) or 'length_noise'


def probe_slopes(probes: Iterable[Mapping[str, Any]], source: str) -> list[MeasuredSlope]:
    """The length-noise slopes of a run's probe records, preferring the advantage-free fit."""
    out = []
    for record in probes:
        for key in ("length_noise_free", "length_noise"):
            fit = record.get(key)
            if isinstance(fit, Mapping) and _finite(fit.get("slope")):
                out.append(
                    MeasuredSlope(
                        source=source,
                        step=int(record.get("step", -1)),
                        slope=float(fit["slope"]),
                        ci_low=_number(fit.get("ci_low")),
                        ci_high=_number(fit.get("ci_high")),
                        key=key,
                    )
                )
                break
    return out


def stored_slopes(store) -> list[MeasuredSlope]:
    """Slopes of every run in a vlsim.store.Store that has probe records, newest run first."""
    counts = store.probe_counts()
    out = []
    for run in store.list_runs():
        if counts.get(run.id):
            out += probe_slopes(store.probes(run.id), f"run {run.id}: {run.name}")
    return out


def reference_slopes(path: Path = REFERENCE_RUNS) -> list[MeasuredSlope]:
    """Slopes of the reference runs shipped in docs/reference_runs ([] if the file is missing).

    The file is a JSON list of `vlsim runs export` documents ({run, metrics, probes}).
    """
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    runs = data if isinstance(data, list) else [data]
    out = []
    for doc in runs:
        name = doc.get("run", {}).get("name", "reference run")
        out += probe_slopes(doc.get("probes", []), f"reference: {name}")
    return out


def alpha_from_slope(slope: float, lo: float = 0.0, hi: float = 2.0) -> float:
    """A measured slope as VL Norm's alpha, kept in the allowed range and rounded to 0.05."""
    return float(np.clip(round(slope * 20) / 20, lo, hi))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _number(value: Any) -> float | None:
    return float(value) if _finite(value) else None
