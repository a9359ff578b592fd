"""Gradient probes: per-answer gradients, unbiased noise variances, the Figure-4 slope and its
interval, every aggregator on the same gradients, and the probe record of a run."""

import importlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vlsim.rollout
import vlsim.train as train
from vlsim.advantages import group_advantages
from vlsim.aggregators import _weights_unchecked
from vlsim.config import preset_config
from vlsim.model import TinyGPT, model_config
from vlsim.probes import (
    GaussianProjection,
    ProbeRecord,
    Quadratic,
    aggregator_stats,
    answer_objective,
    block_deviations,
    block_parameters,
    design_variances,
    entropy_bins,
    fit_length_slope,
    loo_deviations,
    loo_variances,
    per_answer_gradients,
    probe_policy,
    residual_maker,
    token_uncertainty,
)
from vlsim.probes.length_noise import bootstrap_counts, fit_slopes, t_intervals

VOCAB, TP, M = 32, 5, 12


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these tensors are tiny, and a busy machine stalls thread pools."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- per-answer gradients


@pytest.fixture(scope="module")
def batch():
    """A tiny model and a handful of answers of different lengths (some A = 0)."""
    torch.manual_seed(0)
    model = TinyGPT(model_config("tiny", VOCAB, TP + M))
    N = 5
    prompts = torch.randint(0, VOCAB, (N, TP))
    tokens = torch.randint(0, VOCAB, (N, M))
    lengths = torch.tensor([1, 4, 7, 12, 9])
    mask = torch.arange(M)[None] < lengths[:, None]
    adv = torch.tensor([0.7, -1.3, 0.0, 2.0, -0.4])
    return model, prompts, tokens, mask, adv


def autograd_loop(model, prompts, tokens, mask, adv, block, temperature):
    """Oracle: one plain backward per row into .grad of the block's parameters."""
    params, _ = block_parameters(model, block)
    rows = []
    for i in range(prompts.shape[0]):
        model.zero_grad(set_to_none=True)
        x = torch.cat([prompts[i : i + 1], tokens[i : i + 1]], dim=1)[:, :-1]
        logp = F.log_softmax(model(x)[:, TP - 1 :] / temperature, dim=-1)
        tok = logp.gather(2, tokens[i : i + 1, :, None]).squeeze(2)
        (adv[i] * (tok * mask[i : i + 1]).sum()).backward()
        rows.append(
            torch.cat(
                [
                    torch.zeros(p.tensor.numel())
                    if p.tensor.grad is None
                    else p.tensor.grad.reshape(-1)
                    for p in params
                ]
            )
        )
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def vmap_oracle(model, prompts, tokens, mask, adv, block, temperature):
    """Oracle: torch.func vmap(grad(...)) over rows, the block's uses as block_parameters says."""
    from torch.func import functional_call, grad, vmap
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params, tied = block_parameters(model, block)
    mask = mask.float()

    def f(p, x, tok, m, a):
        logits = functional_call(model, p, (x[None],), tie_weights=tied, strict=False)
        return answer_objective(logits, tok[None], m[None], a[None], TP, temperature)

    x = torch.cat([prompts, tokens], dim=1)[:, :-1]
    values = {p.name: p.tensor.detach() for p in params}
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        g = vmap(grad(f), in_dims=(None, 0, 0, 0, 0))(values, x, tokens, mask, adv)
    return torch.cat([g[p.name].reshape(x.shape[0], -1) for p in params], dim=1)


@pytest.mark.parametrize("block", ["last_attention", "all"])
def test_per_answer_gradients_match_autograd_loop(batch, block):
    model, prompts, tokens, mask, adv = batch
    model.eval()
    ref = autograd_loop(model, prompts, tokens, mask, adv, block, 0.8)
    out = per_answer_gradients(model, prompts, tokens, mask, adv, block, 0.8)
    assert out.grads.shape == (5, out.params) == ref.shape
    torch.testing.assert_close(out.grads, ref, rtol=1e-4, atol=1e-5)
    assert out.grads[2].abs().max() == 0  # A = 0: no gradient
    assert model.wte.weight.grad is None  # probes never touch .grad


@pytest.mark.parametrize("block", ["head", "last_block"])
def test_per_answer_gradients_match_vmap(batch, block):
    model, prompts, tokens, mask, adv = batch
    model.eval()
    fast = per_answer_gradients(model, prompts, tokens, mask, adv, block)
    oracle = vmap_oracle(model, prompts, tokens, mask, adv, block, 1.0)
    torch.testing.assert_close(fast.grads, oracle, rtol=1e-4, atol=1e-5)


def test_score_gradient_times_advantage_is_the_policy_gradient(batch):
    model, prompts, tokens, mask, adv = batch
    s = per_answer_gradients(model, prompts, tokens, mask, None, "last_attention").grads
    g = per_answer_gradients(model, prompts, tokens, mask, adv, "last_attention").grads
    torch.testing.assert_close(adv[:, None] * s, g, rtol=1e-4, atol=1e-6)
    assert s[2].abs().max() > 0  # the score of an A = 0 answer is not zero


def test_head_is_the_output_use_of_the_tied_matrix(batch):
    """g = A sum_t (onehot - p) h_t^T at the output layer, h = the final hidden state."""
    model, prompts, tokens, mask, adv = batch
    seen = {}
    handle = model.lm_head.register_forward_hook(lambda m, i, o: seen.update(h=i[0]))
    with torch.no_grad():
        x = torch.cat([prompts, tokens], dim=1)[:, :-1]
        p = F.softmax(model(x)[:, TP - 1 :], dim=-1)  # (N, M, V)
    handle.remove()
    h = seen["h"][:, TP - 1 :]  # (N, M, C)
    score = (F.one_hot(tokens, VOCAB).float() - p) * mask[..., None] * adv[:, None, None]
    expected = torch.einsum("ntv,ntc->nvc", score, h).reshape(5, -1)
    out = per_answer_gradients(model, prompts, tokens, mask, adv, "head")
    torch.testing.assert_close(out.grads, expected, rtol=1e-4, atol=1e-5)


def test_chunks_and_projection(batch):
    model, prompts, tokens, mask, adv = batch
    full = per_answer_gradients(model, prompts, tokens, mask, adv, "last_attention")
    chunked = per_answer_gradients(
        model, prompts, tokens, mask, adv, "last_attention", chunk_rows=2
    )
    torch.testing.assert_close(chunked.grads, full.grads)
    proj = GaussianProjection(full.params, 16, seed=3)
    projected = per_answer_gradients(
        model, prompts, tokens, mask, adv, "last_attention", projection=proj
    )
    torch.testing.assert_close(projected.grads, full.grads @ proj.matrix_t(), rtol=1e-4, atol=1e-5)
    redrawn = GaussianProjection(full.params, 16, seed=3)
    redrawn.cache_max = 0  # blocks drawn as parameters are projected one at a time
    piecewise = per_answer_gradients(
        model, prompts, tokens, mask, adv, "last_attention", projection=redrawn, chunk_rows=3
    )
    torch.testing.assert_close(piecewise.grads, projected.grads, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unknown block"):
        per_answer_gradients(model, prompts, tokens, mask, adv, "middle")
    with pytest.raises(ValueError, match="projection expects"):
        per_answer_gradients(model, prompts, tokens, mask, adv, "head", projection=proj)


def test_projection_preserves_squared_norms_in_expectation():
    rng = np.random.default_rng(0)
    D, k = 3000, 64
    ratios = []
    for seed in range(12):
        proj = GaussianProjection(D, k, seed=seed)
        g = torch.as_tensor(rng.standard_normal((4, D)), dtype=torch.float32)
        ratios.extend(((proj(g) ** 2).sum(1) / (g**2).sum(1)).tolist())
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.08)  # sd of the mean ~ 0.025
    proj = GaussianProjection(D, k, seed=5)
    g = torch.randn(3, D)
    cached = proj(g)
    proj2 = GaussianProjection(D, k, seed=5)
    proj2.cache_max = 0
    torch.testing.assert_close(proj2(g), cached, rtol=1e-5, atol=1e-5)


def test_token_uncertainty_score_norm(batch):
    model, prompts, tokens, mask, _ = batch
    entropy, score = token_uncertainty(model, prompts, tokens, temperature=1.5)
    with torch.no_grad():
        x = torch.cat([prompts, tokens], dim=1)[:, :-1]
        p = F.softmax(model(x)[:, TP - 1 :] / 1.5, dim=-1)
    direct = ((F.one_hot(tokens, VOCAB).float() - p) ** 2).sum(-1)
    torch.testing.assert_close(score, direct, rtol=1e-5, atol=1e-6)
    assert entropy.shape == (5, M) and (entropy <= math.log(VOCAB) + 1e-5).all()
    bins = entropy_bins(
        np.array([0.05, 0.1, 2.0]), np.array([0.0, 0.2, 0.8]), np.array([1.0, 1.0, 2.0]), 4, 2.0
    )
    assert bins["count"] == [2, 0, 0, 1]
    assert bins["score_mean"] == [pytest.approx(0.1), None, None, pytest.approx(0.8)]
    assert bins["contribution_share"][3] == pytest.approx(1.6 / 1.8)


# ---------------------------------------------------------------- unbiased answer variances


def test_loo_deviations_by_hand():
    v = np.array([[[0.0], [2.0], [4.0], [10.0]]])  # one prompt, four 1-d answers
    d = loo_deviations(v)
    others = [(2 + 4 + 10) / 3, (0 + 4 + 10) / 3, (0 + 2 + 10) / 3, (0 + 2 + 4) / 3]
    np.testing.assert_allclose(
        d[0], [(x - o) ** 2 for x, o in zip([0, 2, 4, 10], others, strict=True)]
    )


def test_deviations_from_gram_blocks_and_scaled_products():
    rng = np.random.default_rng(8)
    v = rng.standard_normal((3, 6, 5)) + 4.0
    K = np.einsum("prd,pqd->prq", v, v)
    np.testing.assert_allclose(block_deviations(K), loo_deviations(v), rtol=1e-10)
    s = torch.as_tensor(v.reshape(18, 5), dtype=torch.float32)
    a = torch.as_tensor(rng.standard_normal(18))
    scaled = Quadratic(s).scaled(a)  # products of a_i s_i from the Gram of s
    direct = Quadratic((s * a[:, None]).float())
    W = torch.as_tensor(rng.standard_normal((4, 18)))
    torch.testing.assert_close(scaled.inner(W, W), direct.inner(W, W), rtol=1e-5, atol=1e-6)
    blocks = scaled.prompt_blocks(3, 6)
    gv = a.numpy().reshape(3, 6, 1) * v
    np.testing.assert_allclose(block_deviations(blocks), loo_deviations(gv), rtol=1e-5)
    L = rng.integers(1, 30, (3, 6))
    one = aggregator_stats(gv, L, 2, 30, resamples=30, rng=1, boot=50)
    two = aggregator_stats(scaled, L, 2, 30, resamples=30, rng=1, boot=50)
    for name in one:
        for key, value in one[name].to_json().items():
            # None (a figure with no value) must stay None; pytest >= 9.2 refuses approx(None)
            expected = value if value is None else pytest.approx(value, rel=1e-4, abs=1e-6)
            assert two[name].to_json()[key] == expected, key


def test_loo_variances_are_unbiased_with_unequal_variances():
    """E[V_hat_i] = V_i for every answer although the answers' variances differ 40-fold."""
    rng = np.random.default_rng(1)
    V = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 20.0])
    draws = 20_000
    e = rng.standard_normal((draws, 6, 3)) * np.sqrt(V / 3)[None, :, None] + 7.0  # shared mean
    est = loo_variances(loo_deviations(e)).mean(0)  # (6,)
    np.testing.assert_allclose(est, V, rtol=0.05)
    naive = (loo_deviations(e) * 5 / 6).mean(0)  # the homoskedastic (R-1)/R correction
    assert naive[0] > 1.5 * V[0]  # flattens the slope: short answers look too noisy


def test_design_variances_match_loo_and_remove_a_length_trend():
    rng = np.random.default_rng(2)
    P, R, D = 3, 10, 4
    L = rng.integers(2, 60, (P, R)).astype(float)
    V = L / 10.0
    e = rng.standard_normal((4000, P, R, D)) * np.sqrt(V / D)[None, ..., None]
    # constant design: exactly the leave-one-out estimate
    K = np.einsum("prd,pqd->prq", e[0], e[0])
    Q1 = np.eye(R)[None] - np.full((P, R, R), 1.0 / R)
    np.testing.assert_allclose(design_variances(K, Q1), loo_variances(loo_deviations(e[0])))
    # a mean that moves with log L is not noise for the [1, log L] design; the estimate is
    # linear in the Gram matrix, so its mean over draws is the estimate of the mean Gram
    y = e + np.log(L)[..., None] * np.array([3.0, -2.0, 0.0, 1.0])  # (S, P, R, D)
    K_mean = np.einsum("sprd,spqd->prq", y, y) / e.shape[0]
    est = design_variances(K_mean, residual_maker(np.log(L)))
    np.testing.assert_allclose(est, V, rtol=0.08)
    assert design_variances(K_mean, Q1)[0].max() > 2 * V[0].max()  # the constant design can't


# ---------------------------------------------------------------- Figure 4 slope


def synthetic_answers(rng, S, P, R, D, beta, kappa, logit_p=-0.5):
    """S data sets of score gradients s (S, P, R, D) with Var(s_i) = L_i^beta, their lengths and
    group advantages; an answer is correct with probability sigmoid(logit_p + kappa z_i),
    z = standardised log length (long answers more often right when kappa > 0)."""
    L = np.clip(np.round(np.exp(np.log(16) + 0.8 * rng.standard_normal((S, P, R)))), 1, 64)
    z = (np.log(L) - np.log(L).mean()) / np.log(L).std()
    r = (rng.random((S, P, R)) < 1 / (1 + np.exp(-(logit_p + kappa * z)))).astype(float)
    A = group_advantages(r, True)
    mu = rng.standard_normal((S, P, 1, D)) * 0.3  # each prompt its own expected gradient
    s = mu + rng.standard_normal((S, P, R, D)) * np.sqrt(L[..., None] ** beta / D)
    return L, A, s


def slopes(L, vectors, used, boot, rng):
    """Point estimates and Student-t intervals of S data sets at once, as fit_length_slope."""
    S, P, R, D = vectors.shape
    y = loo_variances(loo_deviations(vectors.reshape(S * P, R, D))).reshape(S, P, R)
    point, reps, prompts, _ = fit_slopes(L, y, used, bootstrap_counts(P, boot, rng))
    _, low, high = t_intervals(point, reps, prompts)
    return point, low, high


BETAS_KAPPAS = [(b, k) for b in (0.5, 1.0, 1.5) for k in (-1.5, 0.0, 1.5)]


@pytest.mark.slow
@pytest.mark.parametrize(("beta", "kappa"), BETAS_KAPPAS)
def test_free_slope_interval_covers_beta(beta, kappa):
    """100 data sets of 16 prompts x 64 answers: the advantage-free 95% CI covers beta >= 90%."""
    rng = np.random.default_rng([int(10 * beta), int(10 * kappa) + 20])
    L, A, s = synthetic_answers(rng, 100, 16, 64, 8, beta, kappa)
    point, low, high = slopes(L, s, np.ones(A.shape, bool), 400, rng)
    coverage = np.mean((low <= beta) & (beta <= high))
    assert coverage >= 0.90, coverage
    assert abs(point.mean() - beta) < 0.02  # unbiased, not merely wide


@pytest.mark.slow
def test_free_slope_covers_beta_where_the_papers_does_not():
    """kappa = -1.5 (long answers more often wrong), beta = 1: the paper's slope mixes in how
    E[A^2] changes with length and lands far from 1; the advantage-free one does not."""
    rng = np.random.default_rng(7)
    beta = 1.0
    L, A, s = synthetic_answers(rng, 100, 16, 32, 8, beta, -1.5)
    point, low, high = slopes(L, s, np.ones(A.shape, bool), 400, rng)
    assert np.mean((low <= beta) & (beta <= high)) >= 0.90
    paper, p_low, p_high = slopes(L, A[..., None] * s, A != 0, 400, rng)
    assert paper.mean() < beta - 0.2  # biased, and
    assert np.mean((p_low <= beta) & (beta <= p_high)) < 0.2  # its interval misses beta


def test_fit_length_slope_exact_data_and_edge_cases():
    rng = np.random.default_rng(3)
    L = rng.integers(2, 60, (6, 20)).astype(float)
    y = np.exp(rng.normal(0, 2, 6))[:, None] * L**1.3  # no noise: every prompt says 1.3
    fit = fit_length_slope(L, y, boot=200, rng=0)
    assert fit.slope == pytest.approx(1.3, abs=2e-3)
    assert fit.ci_high - fit.ci_low < 0.01 and fit.prompts == 6 and fit.n == 120
    used = np.ones_like(L, bool)
    used[0, 1:] = False  # prompt 0 keeps one answer: left out
    used[1, :3] = False
    fit = fit_length_slope(L, y, used, boot=200, rng=0)
    assert fit.skipped_prompts == 1 and fit.prompts == 5 and fit.n == 5 * 20 - 3
    flat = fit_length_slope(np.full((3, 5), 7.0), np.ones((3, 5)), boot=50)  # one length each
    assert flat.slope is None and flat.ci_low is None and flat.skipped_prompts == 3
    assert json.loads(json.dumps(flat.to_json()))["slope"] is None
    with pytest.raises(ValueError, match=r"\(P, R\)"):
        fit_length_slope(L[0], y[0])


# ---------------------------------------------------------------- aggregator statistics


def synthetic(P=6, R=48, D=32, beta=1.0, seed=0, mean_size=0.5):
    """g_i = mu + noise with Var(g_i) = L_i^beta (trace), lengths spread over [4, 200]."""
    rng = np.random.default_rng(seed)
    L = rng.integers(4, 201, (P, R))
    mu = rng.standard_normal(D) * mean_size
    noise = rng.standard_normal((P, R, D)) * np.sqrt(L[..., None] ** beta / D)
    return mu + noise, L


def test_aggregator_stats_on_synthetic_gradients():
    g, L = synthetic()
    Mx = 200
    s = aggregator_stats(g, L, 8, Mx, alpha=1.0, resamples=2000, rng=1, boot=200)
    assert set(s) == {"grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm"}
    assert s["dr_grpo"].scale == pytest.approx(1.0)
    assert s["vl_norm"].scale == pytest.approx(1.0)
    assert s["seq_sum"].scale == pytest.approx(Mx)
    assert s["grpo"].scale == pytest.approx(Mx * np.mean(1.0 / L), rel=0.02)
    assert s["grpo"].scale_drift > 0
    assert s["dr_grpo"].scale_drift == pytest.approx(0, abs=1e-9)
    # Var(g) ~ L: weights ~ 1/L beat constant weights once the lengths vary
    assert s["vl_norm"].variance < 0.8 * s["dr_grpo"].variance
    assert s["vl_norm"].relative_variance == pytest.approx(
        s["vl_norm"].variance / s["dr_grpo"].variance
    )
    assert s["seq_sum"].variance == pytest.approx(s["dr_grpo"].variance, rel=1e-9)
    for name, v in s.items():
        assert v.cosine > 0.95, name
        assert v.direction_bias == pytest.approx(1 - v.cosine)
    # balanced resampling: no Monte Carlo error in E g_hat of an unbiased aggregator
    assert s["dr_grpo"].relative_bias == pytest.approx(0.0, abs=1e-6)
    for name in ("grpo", "vl_norm"):  # raw bias = noise, of the size bias_noise predicts
        assert 0.3 < s[name].relative_bias / s[name].bias_noise < 3, name


def test_aggregator_stats_hand_checked_tiny_case():
    """One prompt, answers g = 1, 3 (L = 1, 2) twice over, M = 2, groups of one.

    Fresh groups of one answer: Dr. GRPO's g_hat = g / 2 per unit scale is 1 or 3 with
    population variance 1; from 4 answers the unbiased variance is 1 * 4 / 3 (R / (R - 1))."""
    g = np.array([[[1.0], [3.0], [1.0], [3.0]]])
    L = np.array([[1, 2, 1, 2]])
    s = aggregator_stats(g, L, 1, 2, names=["dr_grpo", "grpo"], resamples=4000, rng=0, boot=50)
    assert s["dr_grpo"].scale == pytest.approx(1.0)
    assert s["dr_grpo"].variance == pytest.approx(4 / 3, rel=1e-9)  # balanced rounds: exact
    assert s["dr_grpo"].cv == pytest.approx(math.sqrt(4 / 3) / 2, rel=1e-9)
    # grpo: x = 1/L, sum x in {1, 1/2}: scale 1.5; g_hat in {1, 1.5}: var 1/16 / 0.75^2
    assert s["grpo"].scale == pytest.approx(1.5, rel=1e-9)
    assert s["grpo"].variance == pytest.approx(1 / 9 * 4 / 3, rel=1e-9)
    assert s["grpo"].relative_bias == pytest.approx(1 / 6, rel=1e-9)  # |1.25/0.75 - 2| / 2


def test_aggregator_variance_matches_fresh_groups():
    """The probe's variance (groups resampled from R = 64 answers) equals, on average over
    data sets, the variance of batches of fresh groups of G = 16 (without the R / (R - G)
    correction Dr. GRPO read 0.75 of it)."""
    rng = np.random.default_rng(4)
    P, R, G, D, Mx = 4, 64, 16, 6, 64

    def draw(shape):
        L = np.clip(np.round(np.exp(np.log(16) + 0.8 * rng.standard_normal(shape))), 1, Mx)
        return (0.3 + rng.standard_normal((*shape, D)) * np.sqrt(L / D)[..., None]), L

    g, L = draw((20_000, P, G))  # fresh batches: the truth
    names = ["dr_grpo", "grpo", "vl_norm"]
    truth = {}
    for name in names:
        x = _weights_unchecked(name, L, Mx)  # (S, P, G)
        gh = (x[..., None] * g).sum(axis=(1, 2))  # (S, D)
        truth[name] = gh.var(0).sum() / x.sum(axis=(1, 2)).mean() ** 2
    est = {name: [] for name in names}
    for _ in range(40):
        gs, Ls = draw((P, R))
        out = aggregator_stats(gs, Ls, G, Mx, names=names, resamples=128, rng=rng, boot=10)
        for name in names:
            est[name].append(out[name].variance)
    for name in names:  # sd of the 40-set mean is about 3% of the truth
        assert np.mean(est[name]) == pytest.approx(truth[name], rel=0.08), name


def test_calibrated_bias_covers_zero_without_a_tilt_and_sees_one():
    """All answers share one expected gradient: the raw cosine of GRPO is below 1 from noise
    alone, the calibrated relative bias's interval covers 0 in most data sets; with E g_i
    tilting with length it excludes 0."""
    rng = np.random.default_rng(5)
    covered = []
    for seed in range(30):
        g, L = synthetic(P=12, R=24, D=16, seed=100 + seed, mean_size=0.5)
        out = aggregator_stats(g, L, 8, 200, names=["grpo", "vl_norm"], resamples=24, rng=rng)
        for v in out.values():
            covered.append(v.relative_bias_ci_low <= 0 <= v.relative_bias_ci_high)
    assert np.mean(covered) >= 0.85, np.mean(covered)
    g, L = synthetic(P=12, R=24, D=16, mean_size=0.0, seed=3)
    z = (np.log(L) - np.log(L).mean()) / np.log(L).std()
    g = g + 3.0 * np.eye(16)[0] + 3.0 * z[..., None] * np.eye(16)[1]  # right, and longer
    out = aggregator_stats(g, L, 8, 200, resamples=24, rng=0)
    assert out["grpo"].relative_bias_ci_low > 0
    assert out["grpo"].cosine < out["dr_grpo"].cosine
    assert out["dr_grpo"].relative_bias_calibrated == pytest.approx(0.0, abs=1e-6)


def test_aggregator_stats_paths_agree_and_validate(monkeypatch):
    agg = importlib.import_module("vlsim.probes.aggregation")

    g, L = synthetic(P=2, R=10, D=7, seed=2)
    gram = aggregator_stats(g, L, 4, 200, resamples=300, rng=5, boot=100)
    monkeypatch.setattr(agg, "GRAM_MAX_ROWS", 0)  # form every g_hat directly
    direct = aggregator_stats(torch.as_tensor(g), L, 4, 200, resamples=300, rng=5, boot=100)
    for name in gram:
        for key, value in gram[name].to_json().items():
            other = direct[name].to_json()[key]
            if value is None:
                assert other is None, (name, key)
            else:
                assert other == pytest.approx(value, rel=1e-5, abs=1e-9), (name, key)
    with pytest.raises(ValueError, match="group_size"):
        aggregator_stats(g, L, 10, 200)  # G = R leaves nothing to resample
    with pytest.raises(ValueError, match="shape"):
        aggregator_stats(g, L[:, :5], 4, 200)
    zero = aggregator_stats(np.zeros((1, 4, 3)), np.array([[1, 2, 3, 4]]), 2, 4, resamples=10)
    assert zero["grpo"].cv is None and zero["grpo"].variance == 0.0


# ---------------------------------------------------------------- probes of a run


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    cfg = preset_config(
        "quick",
        sft_steps=20,
        sft_batch_size=16,
        task={"n_train": 200, "n_test": 8},
        steps=1,
        prompts_per_step=2,
        group_size=4,
        eval_every=0,
        sample_log_every=0,
        checkpoint_every=0,
        probe={"every": 1, "prompts": 3, "rollouts": 8, "resamples": 32, "bootstrap": 200},
    )
    return train.Trainer(cfg, cache_dir=tmp_path_factory.mktemp("warmstart"))


def odd_length_reward(texts, problems, truncated, format_reward):
    """Stand-in verifier so that a barely trained policy gets mixed rewards."""
    return torch.tensor([float(len(t) % 2) for t in texts])


def test_probe_policy_record(trainer, monkeypatch):
    monkeypatch.setattr(vlsim.rollout, "score", odd_length_reward)
    state = trainer.generator.get_state()
    rec = probe_policy(trainer)
    assert torch.equal(trainer.generator.get_state(), state)  # training draws untouched
    json.dumps(rec, allow_nan=False)  # plain JSON
    ProbeRecord.model_validate(rec)  # the typed record, field by field
    meta = rec["meta"]
    assert meta["block"] == "last_attention" and meta["prompts"] == 3 and meta["rollouts"] == 8
    assert meta["group_size"] == 4 and meta["dim"] == meta["params"] > 0
    assert set(rec["aggregators"]) == {"grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm"}
    assert rec["aggregators"]["dr_grpo"]["scale"] == pytest.approx(1.0)
    assert 0 < rec["reward_mean"] < 1 and rec["seconds"] > 0
    paper, free = rec["length_noise"], rec["length_noise_free"]
    assert {"slope", "ci_low", "ci_high", "n", "skipped", "points"} <= set(paper)
    assert paper["quantity"] == "A_i s_i" and free["quantity"] == "s_i"
    assert free["n"] + free["skipped"] == 24 and paper["skipped"] >= rec["zero_advantage"]
    assert len(free["points"]["length"]) == len(free["points"]["deviation"]) <= 512
    bins = rec["tokens"]["bins"]
    assert len(bins["count"]) == 10 and sum(bins["count"]) == rec["tokens"]["n"] > 0
    again = probe_policy(trainer)  # same step: same draws, same numbers
    assert again["aggregators"] == rec["aggregators"]
    assert again["length_noise_free"] == rec["length_noise_free"]
    projected = probe_policy(
        trainer, trainer.cfg.probe.model_copy(update={"block": "head", "projection_dim": 8})
    )
    assert projected["meta"]["dim"] == 8 and projected["meta"]["params"] > 8
    small = probe_policy(trainer, trainer.cfg.probe.model_copy(update={"rollouts": 4}))
    assert small["meta"]["group_size"] == 3 and "groups of 3" in small["meta"]["note"]


def test_run_training_logs_probes(trainer):
    sink = train.MemorySink()
    train.run_training(trainer, sink, probe_fn=probe_policy)
    assert [p["step"] for p in sink.probes] == [0]
    assert "aggregators" in sink.probes[0]
