"""Scale, variance, CV and direction of every aggregator on the same per-answer gradients.

Groups of G are resampled from each prompt's R answers (balanced rounds without replacement,
so each answer is used equally often and E g_hat of weights that depend only on an answer's own
length carries no resampling noise). Drawing without replacement from R answers shrinks the
variance of a sum of G by (R - G) / (R - 1), and the R answers' own spread is on average
(R - 1) / R of the true variance, so the measured variance is multiplied by R / (R - G): exact
in expectation for fresh groups of G whenever the weights depend only on the answer's own length
(GRPO, Dr. GRPO, sequence sum), to first order for the ratio weights (DAPO, VL Norm: about 4%
high at R = 2G in a simulation with lognormal lengths).

Direction: the raw cosine between E g_hat and the reference (the mean of all answers) is below
1 from answer noise alone. The calibrated relative bias subtracts that noise's expectation,
sum_i shift_i^2 V_i with V_i unbiased per-answer variances around a per-prompt fit a + b log L
(`noise.design_variances`), and gets a percentile interval from a cluster bootstrap over prompts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vlsim.aggregators import (
    AGGREGATORS,
    _weights_unchecked,
    check_alpha,
    check_lengths,
    check_name,
    check_scope,
)
from vlsim.probes.noise import design_variances, residual_maker
from vlsim.probes.record import AggregatorFigures

GRAM_MAX_ROWS = 4096
"""aggregator_stats uses the N x N Gram matrix of the gradients up to this many answers."""

BOOTSTRAP = 2000
"""Cluster-bootstrap replicates of the calibrated relative bias's interval."""


def _as_tensor(grads: Any) -> torch.Tensor:
    """A float32 tensor of the gradients (numpy arrays land on the CPU)."""
    if isinstance(grads, torch.Tensor):
        return grads.detach().float()
    return torch.as_tensor(np.asarray(grads), dtype=torch.float32)


class Quadratic:
    """Inner products of weighted sums sum_i w_i g_i of N gradient vectors, in float64.

    Up to `GRAM_MAX_ROWS` vectors it keeps the Gram matrix of the *centred* gradients
    c_i = g_i - m (m = their mean) and the products u_i = c_i . m, so that

        <sum v_i g_i, sum w_i g_i> = v K w + (sum v)(u . w) + (sum w)(u . v) + (sum v)(sum w)|m|^2

    (centring keeps float32 products accurate when the gradients share a large mean); beyond
    that it forms the weighted sums directly.
    """

    def __init__(self, flat: torch.Tensor):
        N, D = flat.shape
        mean32 = flat.mean(0)  # (D,)
        self.mean: torch.Tensor | None = mean32.double()
        self.mean_sq = float(self.mean @ self.mean)
        self.gram = N <= GRAM_MAX_ROWS
        if self.gram:
            self.K = torch.zeros(N, N, dtype=torch.float64, device=flat.device)
            self.u = torch.zeros(N, dtype=torch.float64, device=flat.device)
            for c in range(0, D, 16384):
                part = flat[:, c : c + 16384] - mean32[c : c + 16384]  # (N, cols) centred
                self.K += (part @ part.T).double()
                self.u += (part @ mean32[c : c + 16384]).double()
        else:
            self.flat = flat.double()

    @classmethod
    def from_gram(cls, G: torch.Tensor) -> Quadratic:
        """The same products from an uncentred Gram matrix G (N, N) of the vectors, in float64."""
        G = G.double()
        N = G.shape[0]
        q = cls.__new__(cls)
        row = G.sum(1) / N  # (N,) g_i . m
        q.mean_sq = float(row.sum() / N)
        q.mean = None  # not needed on the Gram path
        q.gram = True
        q.u = row - q.mean_sq  # (g_i - m) . m
        q.K = G - row[:, None] - row[None] + q.mean_sq  # centred Gram
        return q

    def gram_matrix(self) -> torch.Tensor:
        """The uncentred Gram matrix <g_i, g_j> (N, N), float64."""
        if not self.gram:
            return self.flat @ self.flat.T
        return self.K + self.u[:, None] + self.u[None] + self.mean_sq

    def scaled(self, a: torch.Tensor) -> Quadratic:
        """The products of the vectors a_i g_i (e.g. g_i = A_i s_i from score gradients s_i)."""
        a = a.to(dtype=torch.float64, device=self.u.device if self.gram else self.flat.device)
        if not self.gram:
            return Quadratic((self.flat * a[:, None]).float())
        return Quadratic.from_gram(self.gram_matrix() * a[:, None] * a[None])

    def inner(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """<sum_i A[s, i] g_i, sum_i B[t, i] g_i> for weight rows A (S, N), B (T, N): (S, T)."""
        if not self.gram:
            return (A @ self.flat) @ (B @ self.flat).T
        sa, sb = A.sum(1), B.sum(1)  # (S,), (T,)
        ua, ub = A @ self.u, B @ self.u
        return (
            A @ self.K @ B.T
            + sa[:, None] * ub[None]
            + ua[:, None] * sb[None]
            + sa[:, None] * sb[None] * self.mean_sq
        )

    def sq_norms(self, W: torch.Tensor) -> torch.Tensor:
        """|sum_i W[s, i] g_i|^2 for every row s of W (s, N)."""
        if not self.gram:
            gh = W @ self.flat  # (s, D)
            return (gh * gh).sum(1)
        tot = W.sum(1)  # (s,)
        return ((W @ self.K) * W).sum(1) + 2 * tot * (W @ self.u) + tot * tot * self.mean_sq

    def prompt_blocks(self, P: int, R: int) -> np.ndarray:
        """Each prompt's R x R Gram block (P, R, R), centred at a common point (the leave-one-out
        deviations and residuals that use it do not depend on that point)."""
        if self.gram:
            K = self.K.reshape(P, R, P, R).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
            return K.cpu().numpy()
        c = self.flat.reshape(P, R, -1)
        return (c @ c.transpose(1, 2)).cpu().numpy()  # uncentred: blocks serve shift-free uses


def resamples_used(resamples: int, rollouts: int, group_size: int) -> int:
    """The resamples aggregator_stats draws: rounded up to a multiple of R // G."""
    per_round = max(rollouts // group_size, 1)
    return -(-resamples // per_round) * per_round


def _signed_root(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.sqrt(np.abs(x))


def _calibrated_bias(
    gram2: np.ndarray, W: np.ndarray, Q: np.ndarray, R: int, counts: np.ndarray
) -> np.ndarray:
    """Calibrated relative bias for prompt multiplicities counts (S, P): (S,).

    gram2 (2P, 2P): Gram of u_p = sum_{i in p} wbar_i g_i and v_p = sum_{i in p} g_i;
    W (P,) = sum_{i in p} wbar_i; Q (P, 3) = sum_{i in p} (wbar^2 V, wbar V, V). A prompt drawn
    n times enters with weight n and its noise with n^2 (the copies' noise is one noise).
    """
    tw = counts @ W  # (S,) total weight
    tn = R * counts.sum(1)  # (S,) answers
    c = np.concatenate([counts / tw[:, None], -counts / tn[:, None]], axis=1)  # (S, 2P)
    b_sq = np.einsum("sa,ab,sb->s", c, gram2, c)
    n2 = counts**2
    noise = n2 @ Q[:, 0] / tw**2 - 2 * (n2 @ Q[:, 1]) / (tw * tn) + n2 @ Q[:, 2] / tn**2
    P = W.shape[0]
    r = counts / tn[:, None]  # (S, P)
    ref_sq = np.einsum("sa,ab,sb->s", r, gram2[P:, P:], r) - n2 @ Q[:, 2] / tn**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return _signed_root(b_sq - noise) / np.sqrt(np.where(ref_sq > 0, ref_sq, np.nan))


def aggregator_stats(
    grads: Any,
    lengths: Any,
    group_size: int,
    max_len: int,
    names: Sequence[str] | None = None,
    alpha: float = 1.0,
    scope: str = "group",
    resamples: int = 256,
    rng: np.random.Generator | int | None = None,
    boot: int = BOOTSTRAP,
) -> dict[str, AggregatorFigures]:
    """Every aggregator's figures on per-answer gradients grads (P, R, D) with lengths (P, R).

    grads may also be a `Quadratic` of the N = P R gradients (rows prompt by prompt), so that
    one Gram matrix serves several figures.

    One resample draws, for every prompt, G = group_size of its R answers without
    replacement (G < R): a batch of B = P groups weighted x = weights(name, (P, G) lengths) and
    summed, g_hat = sum x g. The reference is the mean of all N = P R gradients. Figures (see
    `AggregatorFigures`): scale = M E[sum x], scale_drift = M std(sum x), variance =
    E||g_hat - E g_hat||^2 / E[sum x]^2 * R / (R - G), cv, cosine, relative_bias, bias_noise,
    the calibrated relative bias with its interval, relative_variance (to Dr. GRPO).
    `resamples` is rounded up to whole rounds (see `resamples_used`).
    """
    L = check_lengths(lengths, max_len)
    if isinstance(grads, Quadratic):
        g, (P, R), D = None, L.shape, 0
        if (grads.K.shape[0] if grads.gram else grads.flat.shape[0]) != P * R:
            raise ValueError(f"the gradients' products do not match lengths of shape {L.shape}")
    else:
        g = _as_tensor(grads)
        if g.ndim != 3:
            raise ValueError(f"grads must have shape (P, R, D), got {tuple(g.shape)}")
        P, R, D = g.shape
    if L.shape != (P, R):
        raise ValueError(f"lengths must have shape {(P, R)} like grads, got {L.shape}")
    G = int(group_size)
    if not 1 <= G < R:
        raise ValueError(
            f"group_size must be at least 1 and below R = {R} (groups are drawn from the R "
            f"answers; G = R leaves no variance to measure), got {group_size}"
        )
    if R < 4:
        raise ValueError(f"need at least 4 answers per prompt, got R = {R}")
    names = list(AGGREGATORS) if names is None else [check_name(n) for n in names]
    alpha, scope = check_alpha(alpha), check_scope(scope)
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    N = P * R
    quad = grads if isinstance(grads, Quadratic) else Quadratic(g.reshape(N, D))
    dev = quad.K.device if quad.gram else quad.flat.device
    w_ref = torch.full((1, N), 1.0 / N, dtype=torch.float64, device=dev)
    ref_norm = math.sqrt(max(float(quad.inner(w_ref, w_ref)), 0.0))
    fpc = R / (R - G)  # fresh groups of G from the answers' distribution

    acc: dict[str, dict[str, Any]] = {n: {"tot": [], "q": 0.0, "w": np.zeros(N)} for n in names}
    per_round = R // G  # disjoint groups one random permutation of a prompt's answers gives
    resamples = resamples_used(resamples, R, G)  # whole rounds only
    rounds_per_chunk = max(1, 2**22 // (N * per_round))
    done = 0
    while done < resamples:
        r = min(rounds_per_chunk, (resamples - done) // per_round)
        perm = rng.random((r, P, R)).argsort(axis=-1)[..., : per_round * G]  # (r, P, k G)
        idx = perm.reshape(r, P, per_round, G).transpose(0, 2, 1, 3).reshape(-1, P, G)
        s = idx.shape[0]  # (s, P, G): batch b of a round takes block b of every permutation
        L_sel = np.take_along_axis(np.broadcast_to(L, (s, P, R)), idx, axis=-1)  # (s, P, G)
        for name in names:
            x = _weights_unchecked(name, L_sel, max_len, alpha, scope)  # (s, P, G)
            Wfull = np.zeros((s, P, R))
            np.put_along_axis(Wfull, idx, x, axis=-1)
            Wfull = Wfull.reshape(s, N)
            a = acc[name]
            a["tot"].append(x.sum(axis=(1, 2)))  # (s,) sum x of each resample
            a["w"] += Wfull.sum(axis=0)
            a["q"] += float(quad.sq_norms(torch.from_numpy(Wfull).to(dev)).sum())
        done += s

    # unbiased per-answer noise variances around a per-prompt fit a + b log L
    V = design_variances(quad.prompt_blocks(P, R), residual_maker(np.log(L)))  # (P, R)
    counts = rng.multinomial(P, np.full(P, 1.0 / P), size=boot).astype(np.float64)  # (B, P)
    eye = np.repeat(np.eye(P), R, axis=1)  # (P, N): answer i belongs to prompt i // R
    out: dict[str, AggregatorFigures] = {}
    for name in names:
        a = acc[name]
        tot = np.concatenate(a["tot"])
        mt = float(tot.mean())  # E[sum x]
        wbar = a["w"] / resamples  # (N,) E[w]: E g_hat = sum wbar g
        w_bar = torch.from_numpy(wbar).to(dev)[None]
        mean_sq = float(quad.inner(w_bar, w_bar))
        dot_ref = float(quad.inner(w_bar, w_ref))
        var = max(a["q"] / resamples - mean_sq, 0.0) / mt**2 * fpc
        mean_norm = math.sqrt(max(mean_sq, 0.0))
        cos = None
        if mean_norm > 0 and ref_norm > 0:
            cos = max(-1.0, min(1.0, dot_ref / (mean_norm * ref_norm)))
        shift = w_bar / mt - w_ref  # E g_hat / E[sum x] - reference = sum shift_i g_i
        bias_sq = float(quad.inner(shift, shift))
        shift_np = shift.cpu().numpy().reshape(P, R)
        noise_sq = float((shift_np**2 * V).sum())
        # per-prompt sums for the calibrated bias and its cluster bootstrap
        C = torch.from_numpy(np.concatenate([eye * wbar[None], eye])).to(dev)  # (2P, N)
        gram2 = quad.inner(C, C).cpu().numpy()
        wp = wbar.reshape(P, R)
        Qs = np.stack([(wp**2 * V).sum(1), (wp * V).sum(1), V.sum(1)], axis=1)  # (P, 3)
        W = wp.sum(1)
        calibrated = _calibrated_bias(gram2, W, Qs, R, np.ones((1, P)))[0]
        reps = _calibrated_bias(gram2, W, Qs, R, counts)
        reps = reps[np.isfinite(reps)]
        low = high = None
        if reps.size >= 10 and ref_norm > 0:
            low, high = (float(v) for v in np.quantile(reps, [0.025, 0.975]))
        out[name] = AggregatorFigures(
            scale=max_len * mt,
            scale_drift=max_len * float(tot.std()),
            variance=var,
            cv=math.sqrt(var) / ref_norm if ref_norm > 0 else None,
            cosine=cos,
            direction_bias=1.0 - cos if cos is not None else None,
            relative_bias=math.sqrt(max(bias_sq, 0.0)) / ref_norm if ref_norm > 0 else None,
            bias_noise=math.sqrt(max(noise_sq, 0.0)) / ref_norm if ref_norm > 0 else None,
            relative_bias_calibrated=calibrated if ref_norm > 0 else None,
            relative_bias_ci_low=low,
            relative_bias_ci_high=high,
        )
    base = out["dr_grpo"].variance if "dr_grpo" in out else None
    for name in names:
        v = out[name].variance
        out[name].relative_variance = v / base if base and v is not None else None
    return out
