"""Loss aggregators of RLVR: the per-answer weight x each one gives, and the aggregated loss.

Every aggregator turns per-token losses into one scalar as

    loss = sum_k sum_i x[k, i] * sum_t token_loss[k, i, t]

for B groups (prompts) of G answers, answer (k, i) having L[k, i] tokens and M the maximum
number of new tokens. The weight x alone decides whether the step size moves with the lengths,
whether the direction tilts when length and correctness are linked, and how noisy the update
is (docs/definitions.md). The formulas live in one place, `_weights_unchecked`, which
works on any leading batch shape, so the Monte Carlo lab evaluates millions of batches at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ALPHA_RANGE = (0.0, 2.0)


@dataclass(frozen=True)
class AggregatorInfo:
    """What the UI and docs say about one aggregator."""

    name: str
    display_name: str
    aliases: tuple[str, ...]  # what trainers call it
    latex: str  # x_{k,i} as LaTeX
    description: str
    length_free_step: bool  # step size independent of lengths: sum x is the same for any lengths
    length_free_direction: bool  # direction unaffected by a length-correctness link: x ignores L


AGGREGATORS: dict[str, AggregatorInfo] = {
    "grpo": AggregatorInfo(
        name="grpo",
        display_name="GRPO",
        aliases=("seq-mean-token-mean (verl)", "loss_type='grpo' (TRL)"),
        latex=r"x_{k,i} = \frac{1}{B\,G\,L_{k,i}}",
        description=(
            "Mean over each answer's tokens, then over answers: short answers weigh more, the "
            "step size moves with the lengths, and the direction tilts when length and "
            "correctness are linked."
        ),
        length_free_step=False,
        length_free_direction=False,
    ),
    "dapo": AggregatorInfo(
        name="dapo",
        display_name="DAPO",
        aliases=("token-mean (verl)", "loss_type='dapo' / 'bnpo' (TRL)"),
        latex=r"x_{k,i} = \frac{1}{\sum_{k',j} L_{k',j}}",
        description=(
            "Mean over every token of the batch: the step shrinks when answers get longer. "
            "Answers of one batch weigh the same, but batches of long answers weigh less, so "
            "the direction tilts slightly when length and correctness are linked."
        ),
        length_free_step=False,
        length_free_direction=False,
    ),
    "dr_grpo": AggregatorInfo(
        name="dr_grpo",
        display_name="Dr. GRPO",
        aliases=("seq-mean-token-sum-norm (verl)", "loss_type='dr_grpo' (TRL)"),
        latex=r"x_{k,i} = \frac{1}{B\,G\,M}",
        description=(
            "Token sums divided by a constant M: step size and direction independent of the "
            "lengths, but long answers bring their token noise in full."
        ),
        length_free_step=True,
        length_free_direction=True,
    ),
    "seq_sum": AggregatorInfo(
        name="seq_sum",
        display_name="Sequence sum",
        aliases=("seq-mean-token-sum (verl)",),
        latex=r"x_{k,i} = \frac{1}{B\,G}",
        description=(
            "Plain mean of per-answer token sums: Dr. GRPO times M (a learning-rate factor), "
            "so step size and direction are independent of the lengths."
        ),
        length_free_step=True,
        length_free_direction=True,
    ),
    "vl_norm": AggregatorInfo(
        name="vl_norm",
        display_name="VL Norm",
        aliases=("Delta L Normalization",),
        latex=(
            r"x_{k,i} = \frac{1}{B\,M}\,"
            r"\frac{L_{k,i}^{-\alpha}}{\sum_{j=1}^{G} L_{k,j}^{-\alpha}}"
        ),
        description=(
            "Weights proportional to 1/L^alpha with a constant total: the step size is "
            "independent of the lengths, and alpha = beta gives the least token-noise variance "
            "when Var(g_i) = V L_i^beta. Its weights depend on length, so the direction tilts "
            "when length and correctness are linked (nearly as much as GRPO's)."
        ),
        length_free_step=True,
        length_free_direction=False,
    ),
}
"""Registry of the aggregators, keyed by the names the API accepts."""

VL_NORM_BATCH_LATEX = r"x_{k,i} = \frac{1}{M}\,\frac{L_{k,i}^{-\alpha}}{\sum_{k'=1}^{B}\sum_{j=1}^{G} L_{k',j}^{-\alpha}}"
"""VL Norm with scope='batch' (the released code): normalised over all B*G answers."""


def check_name(name: str) -> str:
    """Return the name if it is a known aggregator, else raise a ValueError listing them."""
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregator {name!r}; choose one of: {', '.join(AGGREGATORS)}")
    return name


def check_alpha(alpha: float) -> float:
    """VL Norm's exponent must lie in [0, 2] (alpha > 1 is for correlated tokens)."""
    lo, hi = ALPHA_RANGE
    if not np.isfinite(alpha) or not lo <= alpha <= hi:
        raise ValueError(f"alpha must be between {lo:g} and {hi:g}, got {alpha}")
    return float(alpha)


def check_scope(scope: str) -> str:
    """VL Norm normalises inside each group ('group', the paper) or over the batch ('batch')."""
    if scope not in ("group", "batch"):
        raise ValueError(f"scope must be 'group' or 'batch', got {scope!r}")
    return scope


def check_lengths(lengths: object, max_len: int) -> np.ndarray:
    """Validate lengths as a rectangular (B, G) integer array with 1 <= L <= max_len."""
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len (M) must be a positive integer, got {max_len!r}")
    try:
        arr = np.asarray(lengths)
    except ValueError as err:  # ragged nested lists
        raise ValueError(
            "lengths must be a rectangular (B, G) array: every group needs the same number "
            "of answers"
        ) from err
    if arr.dtype == object:
        raise ValueError(
            "lengths must be a rectangular (B, G) array: every group needs the same number "
            "of answers"
        )
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"lengths must have shape (B, G) with B groups of G answers, got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"lengths must be integers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError("lengths must be whole numbers of tokens")
    if arr.min() < 1:
        raise ValueError(
            f"every length must be at least 1 token, got {arr.min():g}; an answer always has a "
            "token (at least its end token)"
        )
    if arr.max() > max_len:
        raise ValueError(
            f"a length of {arr.max():g} exceeds max_len = {max_len}; lengths must lie in "
            f"[1, max_len]"
        )
    return arr.astype(np.int64)


def _weights_unchecked(
    name: str, lengths: np.ndarray, max_len: float, alpha: float = 1.0, scope: str = "group"
) -> np.ndarray:
    """The per-answer weights x for lengths of shape (..., B, G); no validation (hot path)."""
    L = np.asarray(lengths, dtype=np.float64)  # (..., B, G)
    B, G = L.shape[-2], L.shape[-1]
    if name == "grpo":
        return 1.0 / (B * G * L)
    if name == "dapo":
        total = L.sum(axis=(-2, -1), keepdims=True)  # (..., 1, 1)
        return np.broadcast_to(1.0 / total, L.shape).copy()
    if name == "dr_grpo":
        return np.full(L.shape, 1.0 / (B * G * max_len))
    if name == "seq_sum":
        return np.full(L.shape, 1.0 / (B * G))
    if name == "vl_norm":
        # Dividing by the mean length first changes nothing mathematically (the ratio is
        # scale-free) and keeps L^-alpha well inside float range, as the paper's code does.
        rel = L / L.mean(axis=(-2, -1), keepdims=True)
        p = rel ** (-alpha)  # (..., B, G)
        if scope == "group":
            return p / p.sum(axis=-1, keepdims=True) / (B * max_len)
        return p / p.sum(axis=(-2, -1), keepdims=True) / max_len
    raise ValueError(f"unknown aggregator {name!r}; choose one of: {', '.join(AGGREGATORS)}")


def weights(
    name: str,
    lengths: object,
    max_len: int,
    alpha: float = 1.0,
    scope: str = "group",
) -> np.ndarray:
    """Per-answer weights x of shape (B, G) for integer lengths of shape (B, G)."""
    check_name(name)
    check_alpha(alpha)
    check_scope(scope)
    L = check_lengths(lengths, max_len)
    return _weights_unchecked(name, L, max_len, alpha, scope)


def aggregate(
    name: str,
    token_loss: torch.Tensor,
    mask: torch.Tensor,
    group_size: int,
    max_len: int,
    alpha: float = 1.0,
    scope: str = "group",
) -> torch.Tensor:
    """Differentiable scalar loss sum_i x_i sum_t token_loss[i, t] * mask[i, t].

    token_loss and mask have shape (N, T) with N = B * G rows ordered group by group
    (row r belongs to group r // group_size). The weights are constants (no gradient flows
    through the lengths), computed by the same `weights` the rest of vlsim uses.
    """
    if token_loss.ndim != 2 or mask.shape != token_loss.shape:
        raise ValueError(
            f"token_loss and mask must both have shape (N, T); got {tuple(token_loss.shape)} "
            f"and {tuple(mask.shape)}"
        )
    n_rows = token_loss.shape[0]
    if group_size < 1 or n_rows % group_size != 0:
        raise ValueError(
            f"the {n_rows} rows cannot be split into groups of group_size = {group_size}; "
            "N must be a multiple of G"
        )
    if token_loss.shape[1] > max_len:
        raise ValueError(
            f"token_loss has {token_loss.shape[1]} token columns but max_len = {max_len}"
        )
    maskf = mask.to(token_loss.dtype)
    lengths = maskf.sum(dim=1).detach().round().to("cpu").numpy()  # (N,)
    x = weights(
        name, lengths.reshape(-1, group_size).astype(np.int64), max_len, alpha, scope
    )  # (B, G)
    x_t = torch.as_tensor(x.reshape(-1), dtype=token_loss.dtype, device=token_loss.device)
    per_answer = (token_loss * maskf).sum(dim=1)  # (N,)
    return (x_t * per_answer).sum()


def group_sums(
    name: str, lengths: object, max_len: int, alpha: float = 1.0, scope: str = "group"
) -> np.ndarray:
    """Total weight sum_i x[k, i] of each group, shape (B,): constant for length-free steps.

    (Batch-scope VL Norm keeps only the batch total constant, not each group's.)
    """
    return weights(name, lengths, max_len, alpha, scope).sum(axis=1)
