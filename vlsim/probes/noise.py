"""Unbiased per-answer noise variances from the answers of each prompt (heteroskedastic-exact).

Within a prompt, answer i's gradient is g_i = mu_i + e_i with independent noise of variance
V_i = E||e_i||^2 and a mean mu_i that follows a small design (a constant, or a + b log L_i).
The residuals r = Q g of the least-squares fit (Q = I - H, H the hat matrix) have
E||r_i||^2 = sum_j Q_ij^2 V_j, so V = (Q o Q)^{-1} ||r||^2 estimates every V_i without bias
whatever the variances are (a single answer's estimate can be negative). For the constant design
this is the leave-one-out deviation with its exact correction (`loo_variances`).
"""

from __future__ import annotations

import numpy as np


def loo_deviations(vectors: np.ndarray) -> np.ndarray:
    """||v_i - mean of the other R - 1 answers of its prompt||^2 for vectors (P, R, D): (P, R)."""
    v = np.asarray(vectors, dtype=np.float64)
    R = v.shape[1]
    if R < 2:
        raise ValueError(f"leave-one-out deviations need at least 2 answers per prompt, got {R}")
    centred = v - v.mean(axis=1, keepdims=True)  # (P, R, D)
    # v_i - mean_{-i} = R / (R - 1) * (v_i - mean)
    return (R / (R - 1)) ** 2 * np.einsum("prd,prd->pr", centred, centred)


def block_deviations(gram_blocks: np.ndarray) -> np.ndarray:
    """Leave-one-out deviations (P, R) from each prompt's Gram matrix of its answers (P, R, R).

    ||v_i - m||^2 = K_ii - 2 (K 1)_i / R + 1'K1 / R^2 for the prompt mean m, times (R/(R-1))^2;
    any common shift of a prompt's vectors leaves it unchanged.
    """
    K = np.asarray(gram_blocks, dtype=np.float64)
    R = K.shape[-1]
    if R < 2:
        raise ValueError(f"leave-one-out deviations need at least 2 answers per prompt, got {R}")
    row = K.sum(-1)  # (P, R)
    e = np.einsum("pii->pi", K) - 2 * row / R + row.sum(-1, keepdims=True) / R**2
    return (R / (R - 1)) ** 2 * e


def loo_variances(deviations: np.ndarray) -> np.ndarray:
    """Unbiased Var(v_i) from leave-one-out deviations d (P, R) when a prompt's answers share a mean.

    E d_i = V_i + sum_{j != i} V_j / (R - 1)^2, so
    V_i = (d_i - sum_j d_j / (R (R - 1))) * (R - 1)^2 / (R (R - 2)); with equal variances this
    is the familiar d_i (R - 1) / R on average. Needs R >= 3.
    """
    d = np.asarray(deviations, dtype=np.float64)
    R = d.shape[-1]
    if R < 3:
        raise ValueError(f"unbiased answer variances need at least 3 answers per prompt, got {R}")
    offset = d.sum(axis=-1, keepdims=True) / (R * (R - 1))  # (P, 1)
    return (d - offset) * (R - 1) ** 2 / (R * (R - 2))


def residual_maker(log_lengths: np.ndarray) -> np.ndarray:
    """Q = I - H for the per-prompt design [1, log L] (pinv: constant lengths are fine): (P, R, R)."""
    x = np.asarray(log_lengths, dtype=np.float64)
    P, R = x.shape
    x = x - x.mean(axis=1, keepdims=True)
    X = np.stack([np.ones_like(x), x], axis=2)  # (P, R, 2)
    H = X @ np.linalg.pinv(X)  # (P, R, R)
    return np.eye(R)[None] - H


def design_variances(gram_blocks: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Unbiased V_i from each prompt's Gram matrix of its answers (P, R, R) and Q (P, R, R).

    Solves (Q o Q) V = diag(Q K Q) for every prompt (least squares if singular): (P, R). Linear
    in K, so the estimate of an average of Gram matrices is the average of the estimates.
    """
    K = np.asarray(gram_blocks, dtype=np.float64)
    r2 = np.einsum("pij,pjk,pik->pi", Q, K, Q)  # (P, R) squared residual norms
    A = Q * Q  # (P, R, R)
    try:
        return np.linalg.solve(A, r2[..., None])[..., 0]
    except np.linalg.LinAlgError:  # a singular prompt (e.g. R = 2): least squares, one by one
        return np.stack([np.linalg.lstsq(A[p], r2[p], rcond=None)[0] for p in range(A.shape[0])])
