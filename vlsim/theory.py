"""Closed forms of a weighting's figures: scale, variance, CV, ESS and efficiency.

The model: answer i's gradient g_i has mean grad J (the same for every length) and covariance
trace V * v(L_i), where v(L) = L^beta, or the exact variance of a sum of L AR(1) token terms.
The batch estimate is g_hat = sum_i x_i g_i, so given the lengths

    E[g_hat | L] = (sum_i x_i) grad J,    E||g_hat - E g_hat||^2 = V sum_i x_i^2 v(L_i).

Over a length distribution the total weight sum_i x_i may itself vary (the *scale drift* of
GRPO and DAPO), adding Var(sum x) |grad J|^2. Figures are "per unit scale": divided by
(E[sum x])^2, so a smaller step is not mistaken for less noise. Definitions of every figure:
docs/definitions.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vlsim.aggregators import AGGREGATORS, _weights_unchecked


def ar1_sum_variance(lengths: np.ndarray | float, rho: float) -> np.ndarray:
    """Var(e_1 + ... + e_L) for a stationary AR(1) sequence with unit marginal variance.

    With correlation rho between neighbours: L (1 + rho)/(1 - rho) - 2 rho (1 - rho^L)/(1 - rho)^2.
    It equals L for rho = 0 and grows like L^2 while L is short compared with 1/(1 - rho).
    """
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must lie in [0, 1), got {rho}")
    L = np.asarray(lengths, dtype=np.float64)
    if rho == 0.0:
        return L.copy()
    return L * (1 + rho) / (1 - rho) - 2 * rho * (1 - rho**L) / (1 - rho) ** 2


def answer_variance(
    lengths: np.ndarray | float, rho: float = 0.0, beta: float | None = None
) -> np.ndarray:
    """v(L): an answer's gradient variance in units of one token's: L^beta, or AR(1) if beta is None."""
    L = np.asarray(lengths, dtype=np.float64)
    if beta is not None:
        return L**beta
    return ar1_sum_variance(L, rho)


def effective_beta(rho: float, lengths: np.ndarray) -> float:
    """Least-squares slope of log v(L) on log L over the given lengths: the 'beta' AR(1) implies.

    Between 1 (independent tokens) and 2 (fully correlated); the optimal VL Norm alpha is
    about this value.
    """
    L = np.unique(np.asarray(lengths, dtype=np.float64))
    if L.size < 2:
        L = np.array([max(L[0] / 2, 1.0), L[0] * 2]) if L.size else np.array([1.0, 2.0])
    x, y = np.log(L), np.log(ar1_sum_variance(L, rho))
    return float(np.polyfit(x, y, 1)[0])


def optimal_weights(answer_var: np.ndarray, max_len: float, scope: str = "group") -> np.ndarray:
    """The least token-noise weights whose total does not depend on the lengths (the oracle).

    Lagrange: minimise sum x^2 v subject to sum x = c gives x proportional to 1/v over the set
    whose total is fixed. scope='group': every group's total is 1/(B M), so x_i = v_i^-1 /
    sum_j v_j^-1 / (B M) inside each group (the class of per-group constant totals: Dr. GRPO,
    the sequence sum, VL Norm per group). scope='batch': only the batch total 1/M is fixed, so
    x is proportional to 1/v over the whole batch (a larger class that also holds VL Norm per
    batch, hence never worse). answer_var has shape (..., B, G).
    """
    inv = 1.0 / np.asarray(answer_var, dtype=np.float64)  # (..., B, G)
    if scope == "batch":
        return inv / inv.sum(axis=(-2, -1), keepdims=True) / max_len
    if scope != "group":
        raise ValueError(f"scope must be 'group' or 'batch', got {scope!r}")
    B = inv.shape[-2]
    return inv / inv.sum(axis=-1, keepdims=True) / (B * max_len)


@dataclass(frozen=True)
class Figures:
    """The figures of one weighting, as defined in docs/definitions.md."""

    scale: float  # M * E[sum x]: 1 for Dr. GRPO and VL Norm whatever the lengths
    variance: float  # E||g_hat - E g_hat||^2 / E[sum x]^2, in units of V
    cv: float  # sqrt(variance) / |grad J|
    ess: float  # E[(sum x)^2 / sum x^2]: Kish effective number of answers
    # The oracle's token-noise variance (least of any weighting whose total does not depend on
    # the lengths, at the scope) / this variance: in (0, 1] for such weightings; None for
    # weightings outside that class (GRPO, DAPO), where the ratio compares unlike things.
    efficiency: float | None
    scale_drift: float  # std of M * sum x across length draws: 0 for length-free steps


def figures(
    x: np.ndarray,
    answer_var: np.ndarray,
    max_len: float,
    token_var: float = 1.0,
    grad_norm: float = 1.0,
    scope: str = "group",
    length_free_step: bool = True,
) -> Figures:
    """Figures of weights x for lengths whose answers have variance token_var * answer_var.

    x and answer_var have shape (B, G) for one batch, or (S, B, G) for S draws of the
    lengths, in which case every figure is the expectation over those draws (the scale drift
    Var(sum x) |grad J|^2 counts as variance). grad_norm = 0 gives the token-noise part alone
    (cv is then undefined: nan). scope picks the oracle's class (see `optimal_weights`);
    length_free_step=False (GRPO, DAPO) leaves the efficiency undefined (None).
    """
    x = np.asarray(x, dtype=np.float64)
    v = np.asarray(answer_var, dtype=np.float64)
    if x.ndim == 2:
        x, v = x[None], v[None]
    total = x.sum(axis=(-2, -1))  # (S,)
    noise = token_var * (x**2 * v).sum(axis=(-2, -1))  # (S,)
    x_opt = optimal_weights(v, max_len, scope)
    noise_opt = token_var * (x_opt**2 * v).sum(axis=(-2, -1))  # (S,), total weight 1/M exactly
    mean_total = total.mean()
    raw_var = noise.mean() + total.var() * grad_norm**2
    variance = raw_var / mean_total**2
    best = noise_opt.mean() * max_len**2
    return Figures(
        scale=float(max_len * mean_total),
        variance=float(variance),
        cv=float(np.sqrt(variance) / grad_norm) if grad_norm > 0 else float("nan"),
        ess=float((total**2 / (x**2).sum(axis=(-2, -1))).mean()),
        efficiency=float(best / variance) if length_free_step else None,
        scale_drift=float(max_len * total.std()),
    )


def aggregator_figures(
    name: str,
    lengths: np.ndarray,
    max_len: int,
    alpha: float = 1.0,
    scope: str = "group",
    rho: float = 0.0,
    beta: float | None = None,
    token_var: float = 1.0,
    grad_norm: float = 1.0,
) -> Figures:
    """Closed-form figures of one aggregator on lengths of shape (B, G) or (S, B, G)."""
    L = np.asarray(lengths)
    x = _weights_unchecked(name, L, max_len, alpha, scope)
    v = answer_variance(L, rho, beta)
    free = AGGREGATORS[name].length_free_step
    return figures(x, v, max_len, token_var, grad_norm, scope, free)


def grouped_variance_ratio(
    lengths_by_prompt: Sequence[Sequence[float]],
    group_size: int,
    max_len: int,
    beta: float,
    name: str = "vl_norm",
    base: str = "dr_grpo",
    alpha: float = 1.0,
    scope: str = "group",
    draws: int = 2000,
    seed: int = 0,
) -> float:
    """Closed-form token-noise variance of `name` over `base`, on observed lengths.

    Each draw takes, from every prompt with at least G observed lengths, G of them without
    replacement (a batch of B = those prompts), as the gradient probes resample groups; both
    variances are per unit scale with Var(g_i) = V L_i^beta (`aggregator_figures` with
    grad_norm = 0: the token-noise part alone), averaged over `draws` batches. NaN when no
    prompt has G lengths.
    """
    G = int(group_size)
    rng = np.random.default_rng(seed)
    groups = []
    for lengths in lengths_by_prompt:
        L = np.asarray(lengths, dtype=np.float64)
        if L.size < G:
            continue
        idx = rng.random((draws, L.size)).argsort(axis=-1)[:, :G]  # (S, G) without replacement
        groups.append(L[idx])
    if not groups:
        return float("nan")
    L = np.stack(groups, axis=1)  # (S, B, G)
    num = aggregator_figures(name, L, max_len, alpha, scope, beta=beta, grad_norm=0.0)
    den = aggregator_figures(base, L, max_len, alpha, scope, beta=beta, grad_norm=0.0)
    return num.variance / den.variance
