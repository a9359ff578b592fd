"""The Length Lab: Monte Carlo of every aggregator on synthetic per-answer gradients.

Generative model (docs/design.md), per answer i of a group:
  * length L_i from the chosen distribution, z_i its standardised log-length;
  * correct (r_i = 1) with probability sigmoid(logit p + kappa z_i);
  * A_i the group advantage of the rewards (mean-centred, optionally std-normalised);
  * g_i = A_i (phi_i + e_i1 + ... + e_iL): a per-answer signal phi_i = (r_i - p_bar) u + eta z_i v
    ("be right" and "be longer" directions) plus one noise term per token, AR(1) along the
    answer with correlation rho, each of norm token_noise.
The signal is per answer (the whole-sequence policy gradient has the same mean whatever its length,
as DESIGN section 1 assumes); only the noise accumulates per token, so Var(g_i) ~ L_i (rho = 0).

'exact' mode never simulates tokens: the token sum of one answer, weighted and summed over the
batch, is Gaussian with variance sum_i x_i^2 A_i^2 sigma^2 v(L_i), so one normal draw per batch
and aggregator gives the exact noise (cost independent of length). 'tokens' mode draws every
token; tests check the two agree. The noise has mean zero exactly, so expected updates use the
signal part alone (a control variate: same expectation, less Monte Carlo error).
"""

from __future__ import annotations

import functools
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from vlsim.advantages import expected_squared_advantage, group_advantages
from vlsim.aggregators import AGGREGATORS, _weights_unchecked
from vlsim.config import LabConfig, format_errors
from vlsim.lengths import _LengthBase, parse_length_spec, scale_spec
from vlsim.numfmt import format_number
from vlsim.theory import answer_variance, optimal_weights

OPTIMAL = "optimal"
"""Name of the oracle in the results: x ~ 1/v(L) with a length-free total at the chosen scope,
the least token-noise variance of any weighting whose step size does not depend on lengths."""

_N_CHUNKS = 20  # batch means: standard errors from 20 independent chunks of the batches
_REF_DRAWS = 200_000  # draws used to standardise log-lengths and find the mean correctness


class AggregatorResult(BaseModel):
    """Every figure of one aggregator in one Length Lab evaluation (se = standard error).

    Definitions: docs/definitions.md. Efficiency is None for aggregators whose step size moves
    with the lengths (GRPO, DAPO): the oracle's class holds only length-free steps, so a ratio
    to it would compare unlike things.
    """

    name: str = Field(description="Aggregator key, or 'optimal' for the oracle weighting.")
    display_name: str = Field(description="Name for charts.")
    length_free_step: bool = Field(description="Step size independent of lengths (registry).")
    length_free_direction: bool = Field(
        description="Direction unaffected by a length-correctness link (registry)."
    )
    scale: float = Field(
        description="M E[sum x] on the current lengths: a learning-rate factor, 1 for Dr. GRPO "
        "and VL Norm."
    )
    scale_se: float
    scale_theory: float = Field(
        description="Closed form of the scale from the length distribution."
    )
    reference_scale: float = Field(description="M E[sum x] on the reference lengths.")
    reference_scale_theory: float = Field(description="Closed form of the reference scale.")
    relative_scale: float = Field(
        description="scale / reference_scale: the learning-rate multiplier the length shift "
        "applied (1 = the step size did not move)."
    )
    relative_scale_se: float
    relative_scale_theory: float
    drift: float = Field(
        description="relative_scale - 1: how much the step size changed from the reference "
        "lengths to the current ones (-0.75 = steps 75% smaller)."
    )
    scale_drift: float = Field(
        description="Std of M sum x across batches of the current lengths (0 = constant step)."
    )
    batch_drift: float = Field(
        description="scale_drift / scale: relative batch-to-batch change of the step size."
    )
    variance: float = Field(description="Total E||g - E g||^2 per unit scale (noise + rewards).")
    variance_se: float
    noise_variance: float = Field(description="Token-noise part of the variance per unit scale.")
    noise_variance_se: float
    noise_variance_theory: float = Field(description="Closed form of the token-noise part.")
    signal_variance: float = Field(
        description="Reward-sampling part (variance - noise_variance): per-answer signal noise."
    )
    cv: float = Field(description="sqrt(variance) / |grad J|: relative noise of the update.")
    cv_se: float
    efficiency: float | None = Field(
        description="Oracle token-noise variance / this one, in (0, 1] for length-free steps; "
        "None for GRPO and DAPO (outside the oracle's class)."
    )
    efficiency_se: float | None
    efficiency_theory: float | None = Field(
        description="Closed form of the efficiency (None where efficiency is None)."
    )
    cosine: float = Field(description="cos(E g_hat, grad J): 1 = right direction.")
    cosine_se: float
    direction_bias: float = Field(description="1 - cosine.")
    angle_deg: float = Field(description="Angle between E g_hat and grad J, in degrees.")
    length_tilt_deg: float = Field(
        description="Angle toward 'be longer' of E g_hat minus that of grad J (> 0: grows answers)."
    )
    length_tilt_se: float
    ess: float = Field(description="Kish effective number of answers (sum x)^2 / sum x^2.")
    update_right: float = Field(description="E g_hat along 'be right', per unit scale.")
    update_longer: float = Field(description="E g_hat along 'be longer', per unit scale.")


class LabResult(BaseModel):
    """One Length Lab evaluation: its config, the true gradient, and a result per aggregator."""

    config: LabConfig
    true_right: float = Field(description="grad J along 'be right'.")
    true_longer: float = Field(description="grad J along 'be longer'.")
    grad_norm: float = Field(description="|grad J|.")
    mean_length: float
    std_length: float
    reference_mean_length: float = Field(description="Mean of the reference lengths.")
    oracle_class: str = Field(description="The weightings the oracle is the best of, in words.")
    mean_accuracy: float = Field(description="Mean correctness p_bar of the answers.")
    mean_sq_advantage: float = Field(
        description="E[A^2] observed (its closed form is exact for kappa = 0)."
    )
    theory_exact: bool = Field(
        description="True when the closed forms' assumptions hold (kappa = 0)."
    )
    results: list[AggregatorResult]

    def by_name(self) -> dict[str, AggregatorResult]:
        """Results keyed by aggregator name."""
        return {r.name: r for r in self.results}

    def table(self) -> list[dict]:
        """Rows for a table or DataFrame."""
        return [r.model_dump() for r in self.results]


@dataclass
class _Draws:
    """One chunk of sampled batches: lengths, advantages and signal coefficients, (S, B, G)."""

    lengths: np.ndarray  # float64 copy of the integer lengths
    ref_lengths: np.ndarray  # lengths drawn from the reference distribution, (S, B, G)
    answer_var: np.ndarray  # v(L): variance of one answer's token sum, in token units
    adv: np.ndarray
    sig_right: np.ndarray  # A (r - p_bar)
    sig_longer: np.ndarray  # A eta z
    noise_var: np.ndarray  # A^2 sigma^2 v(L): trace variance of each answer's token noise


@dataclass
class _Reference:
    """Population constants of a config: log-length standardisation and mean correctness."""

    log_mean: float
    log_std: float
    p_bar: float
    mean_length: float  # E[L]
    var_length: float  # Var(L)
    mean_inverse_length: float  # E[1/L]


def _reference(cfg: LabConfig, spec: _LengthBase | None = None) -> _Reference:
    """Population constants of the config's lengths, or of another spec (cached for sweeps)."""
    spec = cfg.lengths if spec is None else spec
    return _reference_cached(spec.model_dump_json(), cfg.max_len, cfg.p_correct, cfg.length_slope)


def reference_lengths(cfg: LabConfig) -> _LengthBase:
    """The reference length distribution: the current one with every length / length_growth."""
    if cfg.length_growth == 1.0:
        return cfg.lengths
    return scale_spec(cfg.lengths, 1.0 / cfg.length_growth)


ORACLE_CLASS = {
    "group": "weighting by length alone with a constant total in every group",
    "batch": "weighting by length alone with a constant total over the batch",
}
"""The class the oracle is the least-variance member of, at each scope."""


@functools.lru_cache(maxsize=256)
def _reference_cached(spec_json: str, max_len: int, p_correct: float, slope: float) -> _Reference:
    """Standardise log-length and find the mean correctness from a fixed large sample."""
    spec = parse_length_spec(json.loads(spec_json))
    L = spec.sample(np.random.default_rng(12345), _REF_DRAWS, max_len).astype(np.float64)
    logs = np.log(L)
    log_std = float(logs.std())
    z = (logs - logs.mean()) / log_std if log_std > 0 else np.zeros_like(logs)
    p = _sigmoid(_logit(p_correct) + slope * z)
    return _Reference(
        log_mean=float(logs.mean()),
        log_std=log_std,
        p_bar=float(p.mean()),
        mean_length=float(L.mean()),
        var_length=float(L.var()),
        mean_inverse_length=float((1.0 / L).mean()),
    )


def scale_closed_form(name: str, cfg: LabConfig, ref: _Reference) -> float:
    """M E[sum x] from the length distribution alone (docs/definitions.md, 'scale').

    grpo: M E[1/L] exactly. dapo: M E[1/mean L] to second order, (M/mu)(1 + Var L/(N mu^2))
    with N = B G answers per batch. Constant-total weightings: 1 (seq_sum: M).
    """
    M = cfg.max_len
    if name == "grpo":
        return M * ref.mean_inverse_length
    if name == "dapo":
        n = cfg.n_groups * cfg.group_size
        mu = ref.mean_length
        return M / mu * (1 + ref.var_length / (n * mu**2))
    if name == "seq_sum":
        return float(M)
    return 1.0


def _threads() -> int:
    """Worker threads for the lab: the cores available to this process, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw(
    cfg: LabConfig, ref: _Reference, ref_spec: _LengthBase, rng: np.random.Generator, n: int
) -> _Draws:
    """Sample n batches of lengths, rewards and advantages, and n batches of reference lengths."""
    shape = (n, cfg.n_groups, cfg.group_size)
    L = cfg.lengths.sample(rng, shape, cfg.max_len).astype(np.float64)  # (S, B, G)
    L_ref = ref_spec.sample(rng, shape, cfg.max_len).astype(np.float64)  # (S, B, G)
    z = (np.log(L) - ref.log_mean) / ref.log_std if ref.log_std > 0 else np.zeros(shape)
    p = _sigmoid(_logit(cfg.p_correct) + cfg.length_slope * z)
    r = (rng.random(shape) < p).astype(np.float64)
    A = group_advantages(r, cfg.std_normalize)
    v = answer_variance(L, cfg.rho)
    return _Draws(
        lengths=L,
        ref_lengths=L_ref,
        answer_var=v,
        adv=A,
        sig_right=A * (r - ref.p_bar),
        sig_longer=A * cfg.length_drive * z,
        noise_var=A**2 * cfg.token_noise**2 * v,
    )


def _estimator_weights(
    name: str, cfg: LabConfig, lengths: np.ndarray, answer_var: np.ndarray
) -> np.ndarray:
    """Weights of an aggregator (or the oracle) for lengths of shape (S, B, G)."""
    if name == OPTIMAL:
        return optimal_weights(answer_var, cfg.max_len, cfg.scope)
    return _weights_unchecked(name, lengths, cfg.max_len, cfg.alpha, cfg.scope)


def _token_noise(cfg: LabConfig, d: _Draws, rng: np.random.Generator) -> np.ndarray:
    """Explicit per-answer token sums of AR(1) noise, shape (S, B, G, dim) (tokens mode)."""
    S, B, G = d.lengths.shape
    Lmax = int(d.lengths.max())
    per_coord = cfg.token_noise / math.sqrt(cfg.dim)
    innov = math.sqrt(1 - cfg.rho**2)
    e = rng.standard_normal((S, B, G, cfg.dim))  # stationary start: unit variance
    total = e.copy()
    for t in range(1, Lmax):
        e = cfg.rho * e + innov * rng.standard_normal((S, B, G, cfg.dim))
        total += e * (t < d.lengths)[..., None]
    return d.adv[..., None] * per_coord * total  # (S, B, G, dim)


def _per_batch(cfg: LabConfig, names: list[str], d: _Draws, rng: np.random.Generator) -> dict:
    """Per-batch quantities of every estimator for one chunk: totals, signal, noise."""
    S = d.lengths.shape[0]
    tokens = _token_noise(cfg, d, rng) if cfg.mode == "tokens" else None
    # Per-answer quantities stacked as (S, k, N) so one batched matmul gives all the weighted
    # sums of an estimator (several times faster than separate multiply-and-reduce passes).
    ones = np.ones_like(d.lengths)
    linear = np.stack([ones, d.sig_right, d.sig_longer], axis=-3).reshape(S, 3, -1)
    quadratic = np.stack([ones, d.noise_var, d.answer_var], axis=-3).reshape(S, 3, -1)
    ref_var = answer_variance(d.ref_lengths, cfg.rho)  # (S, B, G)
    out = {}
    for name in names:
        x_ref = _estimator_weights(name, cfg, d.ref_lengths, ref_var)  # (S, B, G)
        x = _estimator_weights(name, cfg, d.lengths, d.answer_var).reshape(S, -1, 1)  # (S, N, 1)
        lin = np.matmul(linear, x)[..., 0]  # (S, 3): sum x, sum x A(r-p), sum x A eta z
        quad = np.matmul(quadratic, x * x)[..., 0]  # (S, 3): sum x^2, ... x^2 noise, ... x^2 v
        if tokens is None:
            sd = np.sqrt(quad[:, 1] / cfg.dim)  # (S,)
            noise = sd[:, None] * rng.standard_normal((S, cfg.dim))  # (S, dim)
        else:
            noise = np.einsum("sn,snd->sd", x[..., 0], tokens.reshape(S, -1, cfg.dim))
        out[name] = {
            "total": lin[:, 0],
            "ref_total": x_ref.sum(axis=(-2, -1)),  # (S,)
            "right": lin[:, 1],
            "longer": lin[:, 2],
            "noise": noise,
            "sumsq": quad[:, 0],
            "x2v": quad[:, 2],  # closed form's sum x^2 v(L)
        }
    return out


def _stats(pb: dict, true_r: float, true_l: float, max_len: int) -> dict:
    """Figures of one estimator from its per-batch arrays (any number of batches)."""
    tot, right, longer, noise = pb["total"], pb["right"], pb["longer"], pb["noise"]
    mt = tot.mean()
    mr, ml = right.mean(), longer.mean()
    noise_dev = ((noise - noise.mean(axis=0)) ** 2).sum(axis=1)  # (S,)
    signal_dev = (right - mr) ** 2 + (longer - ml) ** 2  # (S,)
    noise_var = noise_dev.mean() / mt**2
    variance = (noise_dev.mean() + signal_dev.mean()) / mt**2
    norm_e = math.hypot(mr, ml)
    norm_t = math.hypot(true_r, true_l)
    cos = (mr * true_r + ml * true_l) / (norm_e * norm_t) if norm_e > 0 and norm_t > 0 else 0.0
    tilt = math.degrees(math.atan2(ml, mr) - math.atan2(true_l, true_r))
    ref_mt = pb["ref_total"].mean()
    return {
        "scale": max_len * mt,
        "reference_scale": max_len * ref_mt,
        "relative_scale": mt / ref_mt,
        "scale_drift": max_len * tot.std(),
        "variance": variance,
        "noise_variance": noise_var,
        "cv": math.sqrt(variance) / norm_t if norm_t > 0 else float("nan"),
        "cosine": cos,
        "angle": math.degrees(math.acos(min(1.0, max(-1.0, cos)))),
        "tilt": tilt,
        "ess": float((tot**2 / pb["sumsq"]).mean()),
        "update_right": mr / mt,
        "update_longer": ml / mt,
    }


def _concat(chunks: list[dict]) -> dict:
    """Join the per-batch arrays of several chunks."""
    return {
        name: {k: np.concatenate([c[name][k] for c in chunks]) for k in chunks[0][name]}
        for name in chunks[0]
    }


def run_lab(cfg: LabConfig) -> LabResult:
    """Evaluate every aggregator of the config on the same sampled batches."""
    ref = _reference(cfg)
    ref_spec = reference_lengths(cfg)
    ref_ref = _reference(cfg, ref_spec)
    names = [*cfg.aggregators, OPTIMAL]
    n_chunks = min(_N_CHUNKS, cfg.n_batches)
    sizes = np.full(n_chunks, cfg.n_batches // n_chunks)
    sizes[: cfg.n_batches % n_chunks] += 1

    # Chunks are independent (each has its own seeded generator), so two threads share the
    # work: numpy releases the GIL inside its array loops. Results do not depend on threads.
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(sizes))

    def work(i: int) -> tuple[dict, _Draws]:
        chunk_rng = np.random.default_rng(seeds[i])
        d = _draw(cfg, ref, ref_spec, chunk_rng, int(sizes[i]))
        return _per_batch(cfg, names, d, chunk_rng), d

    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        done = list(pool.map(work, range(len(sizes))))
    chunks = [c for c, _ in done]
    true_r = sum(float(d.sig_right.sum()) for _, d in done)
    true_l = sum(float(d.sig_longer.sum()) for _, d in done)
    lengths_sum = sum(float(d.lengths.sum()) for _, d in done)
    ref_lengths_sum = sum(float(d.ref_lengths.sum()) for _, d in done)
    lengths_sq = sum(float((d.lengths**2).sum()) for _, d in done)
    adv_sq = sum(float((d.adv**2).sum()) for _, d in done)
    n_answers = cfg.n_batches * cfg.n_groups * cfg.group_size
    true_r, true_l = true_r / n_answers, true_l / n_answers
    mean_len = lengths_sum / n_answers
    grad_norm = math.hypot(true_r, true_l)

    full = _concat(chunks)
    # Closed forms (docs/definitions.md) for the token-noise variance, with V = sigma^2 E[A^2]
    # (exact when correctness does not depend on length, kappa = 0), averaged over the same
    # lengths; the scale's closed form comes from the length distribution alone.
    token_var = cfg.token_noise**2 * expected_squared_advantage(
        cfg.p_correct, cfg.group_size, cfg.std_normalize
    )
    noise_theory = {
        name: token_var * full[name]["x2v"].mean() / full[name]["total"].mean() ** 2
        for name in names
    }
    overall = {name: _stats(full[name], true_r, true_l, cfg.max_len) for name in names}
    per_chunk = {
        name: [_stats(c[name], true_r, true_l, cfg.max_len) for c in chunks] for name in names
    }
    opt_noise = np.array([s["noise_variance"] for s in per_chunk[OPTIMAL]])

    def se(name: str, key: str) -> float:
        vals = np.array([s[key] for s in per_chunk[name]])
        return float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else float("nan")

    results = []
    for name in names:
        o = overall[name]
        info = AGGREGATORS.get(name)
        free_step = info.length_free_step if info else True
        eff_chunks = opt_noise / np.array([s["noise_variance"] for s in per_chunk[name]])
        display = info.display_name if info else "Optimal (oracle)"
        if name == "vl_norm":
            display = f"VL Norm (α={cfg.alpha:g}{', batch' if cfg.scope == 'batch' else ''})"
        scale_theory = scale_closed_form(name, cfg, ref)
        ref_theory = scale_closed_form(name, cfg, ref_ref)
        results.append(
            AggregatorResult(
                name=name,
                display_name=display,
                length_free_step=free_step,
                length_free_direction=info.length_free_direction if info else False,
                scale=o["scale"],
                scale_se=se(name, "scale"),
                scale_theory=scale_theory,
                reference_scale=o["reference_scale"],
                reference_scale_theory=ref_theory,
                relative_scale=o["relative_scale"],
                relative_scale_se=se(name, "relative_scale"),
                relative_scale_theory=scale_theory / ref_theory,
                drift=o["relative_scale"] - 1.0,
                scale_drift=o["scale_drift"],
                batch_drift=o["scale_drift"] / o["scale"],
                variance=o["variance"],
                variance_se=se(name, "variance"),
                noise_variance=o["noise_variance"],
                noise_variance_se=se(name, "noise_variance"),
                noise_variance_theory=noise_theory[name],
                signal_variance=o["variance"] - o["noise_variance"],
                cv=o["cv"],
                cv_se=se(name, "cv"),
                efficiency=overall[OPTIMAL]["noise_variance"] / o["noise_variance"]
                if free_step
                else None,
                efficiency_se=float(eff_chunks.std(ddof=1) / math.sqrt(len(eff_chunks)))
                if free_step and len(eff_chunks) > 1
                else (float("nan") if free_step else None),
                efficiency_theory=noise_theory[OPTIMAL] / noise_theory[name] if free_step else None,
                cosine=o["cosine"],
                cosine_se=se(name, "cosine"),
                direction_bias=1.0 - o["cosine"],
                angle_deg=o["angle"],
                length_tilt_deg=o["tilt"],
                length_tilt_se=se(name, "tilt"),
                ess=o["ess"],
                update_right=o["update_right"],
                update_longer=o["update_longer"],
            )
        )
    return LabResult(
        config=cfg,
        true_right=true_r,
        true_longer=true_l,
        grad_norm=grad_norm,
        mean_length=mean_len,
        reference_mean_length=ref_lengths_sum / n_answers,
        oracle_class=ORACLE_CLASS[cfg.scope],
        std_length=math.sqrt(max(lengths_sq / n_answers - mean_len**2, 0.0)),
        mean_accuracy=ref.p_bar,
        mean_sq_advantage=adv_sq / n_answers,
        theory_exact=cfg.length_slope == 0.0,
        results=results,
    )


class SweepPoint(BaseModel):
    """One point of a sweep: the swept value, the mean length there, and the lab's result."""

    value: float
    mean_length: float
    result: LabResult


def sweep_config(cfg: LabConfig, param: str, value: float) -> LabConfig:
    """The config with one parameter set to a sweep value (validated).

    Stretching the lengths (length_scale) keeps the reference lengths where they were, so the
    relative scale shows the step size drifting as answers grow away from the reference.
    Raises ValueError with a readable message when the value gives invalid settings (e.g.
    lengths stretched past what a length distribution allows).
    """
    if not math.isfinite(value):
        raise ValueError(f"{param} = {value} is not a finite number")
    try:
        if param == "length_scale":
            update = {
                "lengths": scale_spec(cfg.lengths, value),
                "length_growth": cfg.length_growth * value,
            }
        elif param in ("group_size", "max_len"):
            update = {param: int(round(value))}
        elif param in ("alpha", "rho", "length_slope"):
            update = {param: float(value)}
        else:
            raise ValueError(
                f"cannot sweep {param!r}; choose length_scale, alpha, group_size, rho, "
                "length_slope or max_len"
            )
        return LabConfig.model_validate({**cfg.model_dump(), **update})
    except ValidationError as err:
        raise ValueError(
            f"{param} = {format_number(value)} gives settings the lab cannot run:\n"
            + format_errors(err)
        ) from err


def run_sweep(cfg: LabConfig, param: str, values: list[float]) -> list[SweepPoint]:
    """Run the lab at each value of one parameter, with the same seed (common random numbers)."""
    points = []
    for value in values:
        result = run_lab(sweep_config(cfg, param, value))
        points.append(SweepPoint(value=float(value), mean_length=result.mean_length, result=result))
    return points


def best_alpha(points: list[SweepPoint], key: str = "variance", name: str = "vl_norm") -> float:
    """The swept alpha at which an aggregator's figure (e.g. total variance) is least."""
    values = [getattr(p.result.by_name()[name], key) for p in points]
    return points[int(np.argmin(values))].value
