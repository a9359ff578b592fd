"""The token-level view: a token's score norm against the policy's entropy where it was written."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from vlsim.model import TinyGPT

ENTROPY_BINS = 10
"""Equal-width entropy bins on [0, log V] of the token-level view (fixed, so steps compare)."""


@torch.no_grad()
def token_uncertainty(
    model: TinyGPT, prompts: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy (N, M) of the policy at each answer position and the token's score norm (N, M).

    The score norm is ||d log pi(o_t) / d z||^2 = ||onehot(o_t) - p||^2 = 1 - 2 p_o + sum_v p_v^2
    for the tempered logits z = logits / T (exact at the output layer, no backward pass): near 0
    where the policy is sure of the token it wrote, so such tokens add almost no noise.
    """
    was_training = model.training
    model.eval()
    try:
        tp = prompts.shape[1]
        x = torch.cat([prompts, tokens], dim=1)[:, :-1]
        logits = model(x)[:, tp - 1 :].float() / temperature  # (N, M, V)
    finally:
        model.train(was_training)
    logp = F.log_softmax(logits, dim=-1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)  # (N, M)
    p_o = p.gather(2, tokens[:, :, None]).squeeze(2)  # (N, M)
    score = (1.0 - 2.0 * p_o + (p * p).sum(-1)).clamp_min(0.0)  # (N, M)
    return entropy, score


def entropy_bins(
    entropy: np.ndarray,
    score: np.ndarray,
    weight: np.ndarray,
    n_bins: int = ENTROPY_BINS,
    max_entropy: float = 1.0,
) -> dict[str, list]:
    """Binned means of a token's score norm against its entropy (1-D arrays over tokens).

    weight is each token's A_i^2, so `contribution_mean` is the mean squared size of the
    token's term in g_i at the output layer and `contribution_share` each bin's share of the
    total. Bins are equal-width on [0, max_entropy]; an empty bin has None means.
    """
    edges = np.linspace(0.0, max_entropy, n_bins + 1)
    which = np.clip(np.searchsorted(edges, entropy, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(float)
    sums = {
        "entropy": np.bincount(which, entropy, n_bins),
        "score": np.bincount(which, score, n_bins),
        "contribution": np.bincount(which, weight * score, n_bins),
    }
    total = sums["contribution"].sum()

    def means(v: np.ndarray) -> list:
        return [float(s / c) if c > 0 else None for s, c in zip(v, count, strict=True)]

    return {
        "edges": [float(e) for e in edges],
        "count": [int(c) for c in count],
        "entropy_mean": means(sums["entropy"]),
        "score_mean": means(sums["score"]),
        "contribution_mean": means(sums["contribution"]),
        "contribution_share": [
            float(s / total) if total > 0 else None for s in sums["contribution"]
        ],
    }
