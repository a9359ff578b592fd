"""Figure 4: how an answer's gradient noise grows with its length, Var(g_i) = c_prompt * L_i^beta.

The slope beta is fitted to unbiased per-answer variance estimates y_i (`noise.loo_variances`)
by the gamma quasi-likelihood with a log link and one intercept per prompt: beta solves

    sum_p sum_{i in p} (y_i L_i^-beta / c_p(beta) - 1) (x_i - xbar_p) = 0,
    c_p(beta) = mean_{i in p} y_i L_i^-beta,  x = log L,

which estimates beta in E[y_i] = c_p L_i^beta without a log of noisy (possibly negative) values.
The equation is a sum of per-prompt terms, so its cluster bootstrap over prompts is exact and
cheap: each prompt's term is tabulated on a grid of beta, a bootstrap replicate's equation is the
count-weighted sum of the prompts' rows, and its root is read off the grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import t as student_t

from vlsim.probes.record import SlopeFit

SCATTER_POINTS = 512
"""At most this many (length, deviation) points go into a probe record for the scatter chart."""

BETA_GRID = np.linspace(-3.0, 6.0, 226)
"""Slopes the estimating equation is tabulated on (step 0.04; roots are interpolated linearly)."""

BOOTSTRAP = 2000
"""Cluster bootstrap replicates (resampled prompt sets) of the slope's interval."""


def _equation_rows(x: np.ndarray, y: np.ndarray, used: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each prompt's estimating function on the grid: (P, K); NaN where c_p(beta) <= 0."""
    n = used.sum(axis=1, keepdims=True)  # (P, 1)
    xbar = np.where(used, x, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1)
    xc = np.where(used, x - xbar, 0.0)  # (P, R) centred log lengths
    yc = np.where(used, y, 0.0)
    E = np.multiply(xc[:, :, None], -grid[None, None, :])  # (P, R, K)
    np.exp(E, out=E)  # L_i^-beta up to a per-prompt constant
    c = np.matmul(yc[:, None, :], E)[:, 0]  # (P, K) sum_i y_i L_i^-beta
    s = np.matmul((yc * xc)[:, None, :], E)[:, 0]  # (P, K) sum_i y_i L_i^-beta xc_i
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = n * s / c  # sum_i (y_i L_i^-beta / c_p - 1) xc_i, c_p the mean
    return np.where(c > 0, rows, np.nan)


def _roots(F: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The first downward zero crossing of each row of F (S, K) on the grid, interpolated: (S,)."""
    a, b = F[:, :-1], F[:, 1:]
    cross = (a > 0) & (b <= 0)  # NaN compares False: no crossing through undefined points
    has = cross.any(axis=1)
    k = cross.argmax(axis=1)
    rows = np.arange(F.shape[0])
    fa, fb = a[rows, k], b[rows, k]
    t = fa / np.where(fa - fb != 0, fa - fb, 1.0)
    root = grid[k] + t * (grid[k + 1] - grid[k])
    return np.where(has, root, np.nan)


def t_intervals(
    point: np.ndarray, reps: np.ndarray, prompts: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard errors and Student-t intervals (S,) from point estimates (S,), replicates (S, B).

    se = sd(replicates) * sqrt(P / (P - 1)) (undoing the cluster bootstrap's shrinkage with P
    clusters), interval = point +- t_{P-1} se. NaN where fewer than 10 replicates or 2 prompts.
    """
    reps = np.asarray(reps, dtype=np.float64)
    prompts = np.asarray(prompts, dtype=np.float64)
    good = np.isfinite(reps).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.nansum(reps, axis=1) / good
        var = np.nansum((reps - mean[:, None]) ** 2, axis=1) / (good - 1)
        se = np.sqrt(var * prompts / (prompts - 1))
    se = np.where((good >= 10) & (prompts >= 2), se, np.nan)
    half = student_t.ppf(0.5 + level / 2, np.maximum(prompts - 1, 1)) * se
    return se, point - half, point + half


def bootstrap_counts(prompts: int, boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of P prompts is drawn in `boot` resamples with replacement: (boot, P)."""
    idx = rng.integers(0, prompts, (boot, prompts))
    flat = (np.arange(boot)[:, None] * prompts + idx).ravel()
    return np.bincount(flat, minlength=boot * prompts).reshape(boot, prompts).astype(np.float64)


def fit_slopes(
    lengths: np.ndarray, variances: np.ndarray, used: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slopes of S data sets (S, P, R) at once: estimates (S,), replicates (S, B), prompts (S,), used.

    counts (B, P) are the bootstrap's prompt multiplicities (shared by the data sets). A prompt
    with under two used answers, no spread of lengths or a non-positive total is left out (its
    rows are zero); `prompts` counts the rest.
    """
    L = np.asarray(lengths, dtype=np.float64)
    y = np.asarray(variances, dtype=np.float64)
    ok = np.asarray(used, dtype=bool) & np.isfinite(L) & np.isfinite(y) & (L > 0)
    x = np.log(np.where(ok, L, 1.0))
    n = ok.sum(axis=-1)  # (S, P)
    big, small = np.where(ok, x, -np.inf).max(-1), np.where(ok, x, np.inf).min(-1)
    keep = (n >= 2) & (big - small > 1e-9) & (np.where(ok, y, 0.0).sum(-1) > 0)  # (S, P)
    ok &= keep[..., None]
    S, P, R = L.shape
    F = _equation_rows(x.reshape(S * P, R), y.reshape(S * P, R), ok.reshape(S * P, R), BETA_GRID)
    F = np.where(keep.reshape(-1)[:, None], F, 0.0).reshape(S, P, -1)  # (S, P, K)
    point = _roots(F.sum(axis=1), BETA_GRID)  # NaN where some prompt is undefined
    finite = np.isfinite(F)
    K = F.shape[-1]
    stack = np.where(finite, F, 0.0).transpose(1, 0, 2).reshape(P, S * K)  # one 2-D product
    Fb = (counts @ stack).reshape(-1, S, K).transpose(1, 0, 2)  # (S, B, K)
    if not finite.all():  # a drawn prompt undefined at that slope
        undefined = (counts @ (~finite).transpose(1, 0, 2).reshape(P, S * K)).reshape(-1, S, K)
        Fb = np.where(undefined.transpose(1, 0, 2) > 0, np.nan, Fb)
    reps = _roots(Fb.reshape(-1, K), BETA_GRID).reshape(S, -1)
    return point, reps, keep.sum(-1), ok


def fit_length_slope(
    lengths: Any,
    variances: Any,
    used: Any | None = None,
    boot: int = BOOTSTRAP,
    rng: np.random.Generator | int | None = 0,
    level: float = 0.95,
) -> SlopeFit:
    """beta in E[variance_i] = c_prompt * L_i^beta, with a cluster-bootstrap interval over prompts.

    lengths, variances (P, R): unbiased per-answer variance estimates (may be negative); used
    (P, R) marks the answers that enter the fit (default: all finite ones). The interval is
    slope +- t_{P'-1} * sqrt(P' / (P' - 1)) * sd of `boot` replicates that resample the P'
    usable prompts with replacement (the factor undoes the bootstrap's (P'-1)/P' variance
    shrinkage; with the t quantile it keeps 95% coverage down to about a dozen prompts, where a
    percentile interval covers about 92%).
    """
    L = np.asarray(lengths, dtype=np.float64)
    y = np.asarray(variances, dtype=np.float64)
    if L.shape != y.shape or L.ndim != 2:
        raise ValueError(f"lengths and variances must both be (P, R), got {L.shape} and {y.shape}")
    ok = np.isfinite(L) & np.isfinite(y) & (L > 0)
    if used is not None:
        ok &= np.asarray(used, dtype=bool)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    counts = bootstrap_counts(L.shape[0], boot, rng)
    point, reps, prompts, used_fit = fit_slopes(L[None], y[None], ok[None], counts)
    return summarise(point[0], reps[0], int(prompts[0]), used_fit[0], level)


def summarise(
    point: float, reps: np.ndarray, prompts: int, used: np.ndarray, level: float = 0.95
) -> SlopeFit:
    """A SlopeFit from a point estimate, its bootstrap replicates and the answers used."""
    fit = SlopeFit(
        n=int(used.sum()),
        prompts=prompts,
        skipped=int(used.size - used.sum()),  # answers outside the fit, skipped prompts' too
        skipped_prompts=int(used.shape[0] - prompts),
        level=level,
    )
    if prompts < 2 or not np.isfinite(point):
        return fit
    good = int(np.isfinite(reps).sum())
    update: dict[str, Any] = {"slope": float(point), "boot": good, "boot_failed": reps.size - good}
    se, low, high = t_intervals(np.array([point]), reps[None], np.array([prompts]), level)
    update.update(se=se[0], ci_low=low[0], ci_high=high[0])
    return fit.model_copy(update=update)


def scatter_points(
    lengths: np.ndarray,
    deviations: np.ndarray,
    prompt_ids: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
    cap: int = SCATTER_POINTS,
    seed: int = 0,
) -> dict[str, list]:
    """Points with a positive deviation as plain lists, subsampled (seeded) to at most `cap`."""
    dev = np.asarray(deviations, dtype=np.float64).reshape(-1)
    idx = np.flatnonzero(np.isfinite(dev) & (dev > 0))
    if idx.size > cap:
        idx = np.sort(np.random.default_rng(seed).choice(idx, cap, replace=False))
    out = {
        "length": [int(v) for v in np.asarray(lengths).reshape(-1)[idx]],
        "deviation": [float(v) for v in dev[idx]],
        "prompt": [int(v) for v in np.asarray(prompt_ids).reshape(-1)[idx]],
    }
    for key, values in (extra or {}).items():
        out[key] = [float(v) for v in np.asarray(values).reshape(-1)[idx]]
    return out
