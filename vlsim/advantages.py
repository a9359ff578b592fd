"""Group-relative advantages (GRPO): the same formula for numpy arrays and torch tensors."""

from __future__ import annotations

import math
from typing import TypeVar

ArrayT = TypeVar("ArrayT")

STD_EPS = 1e-4
"""Added to the group's reward std before dividing, as GRPO trainers do (TRL, verl)."""


def group_advantages(rewards: ArrayT, std_normalize: bool = True, eps: float = STD_EPS) -> ArrayT:
    """A_i = r_i - mean(r) over the last axis (one group), divided by std(r) + eps if asked.

    The std uses Bessel's correction like torch.std in GRPO trainers; std_normalize=False is
    Dr. GRPO's advice. Works on numpy arrays and torch tensors of shape (..., G).
    """
    centred = rewards - rewards.mean(axis=-1, keepdims=True)  # (..., G)
    if not std_normalize:
        return centred
    G = rewards.shape[-1]
    std = ((centred**2).sum(axis=-1, keepdims=True) / max(G - 1, 1)) ** 0.5  # (..., 1)
    return centred / (std + eps)


def expected_squared_advantage(
    p_correct: float, group_size: int, std_normalize: bool = True, eps: float = STD_EPS
) -> float:
    """E[A_i^2] for 0/1 rewards drawn independently with P(correct) = p, summed exactly over k."""
    G = group_size
    if G < 2:
        return 0.0
    total = 0.0
    for k in range(G + 1):
        prob = math.comb(G, k) * p_correct**k * (1 - p_correct) ** (G - k)
        mean = k / G
        sum_sq = k * (1 - mean) ** 2 + (G - k) * mean**2  # sum_i (r_i - mean)^2
        if std_normalize:
            std = math.sqrt(sum_sq / (G - 1))
            sum_sq = sum_sq / (std + eps) ** 2
        total += prob * sum_sq / G
    return total


__all__ = ["STD_EPS", "expected_squared_advantage", "group_advantages"]
