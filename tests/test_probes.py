"""Tests for the gradient probes: per-answer gradients, all-aggregator statistics, Figure 4 fit."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vlsim.probes as probes
import vlsim.rollout
import vlsim.train as train
from vlsim.config import preset_config
from vlsim.model import TinyGPT, model_config
from vlsim.probes import (
    GaussianProjection,
    aggregator_stats,
    block_parameters,
    entropy_bins,
    fit_loglog_slope,
    per_answer_gradients,
    probe_policy,
    t_quantile_975,
    token_uncertainty,
)

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
    """Reference: one plain backward per row into .grad of the block's parameters."""
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


@pytest.mark.parametrize("block", ["last_attention", "all"])
@pytest.mark.parametrize("method", ["batched", "vmap"])
def test_per_answer_gradients_match_autograd_loop(batch, block, method):
    model, prompts, tokens, mask, adv = batch
    model.eval()
    ref = autograd_loop(model, prompts, tokens, mask, adv, block, 0.8)
    out = per_answer_gradients(model, prompts, tokens, mask, adv, block, 0.8, method=method)
    assert out.method == method
    assert out.grads.shape == (5, out.params) == ref.shape
    torch.testing.assert_close(out.grads, ref, rtol=1e-4, atol=1e-5)
    assert out.grads[2].abs().max() == 0  # A = 0: no gradient
    assert model.wte.weight.grad is None  # probes never touch .grad


@pytest.mark.parametrize("block", ["head", "last_block"])
def test_batched_trick_matches_functional_loop(batch, block):
    model, prompts, tokens, mask, adv = batch
    fast = per_answer_gradients(model, prompts, tokens, mask, adv, block, method="auto")
    slow = per_answer_gradients(model, prompts, tokens, mask, adv, block, method="loop")
    assert fast.method == "batched" and slow.method == "loop"
    torch.testing.assert_close(fast.grads, slow.grads, rtol=1e-4, atol=1e-5)


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


def test_chunks_projection_and_fallback(batch, monkeypatch):
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

    def broken(*args, **kwargs):
        raise RuntimeError("no batching rule")

    monkeypatch.setattr(probes, "_grads_vmap", broken)
    loop = per_answer_gradients(model, prompts, tokens, mask, adv, "head", method="vmap")
    assert loop.method == "loop" and "vmap failed" in loop.note
    with pytest.raises(ValueError, match="unknown block"):
        per_answer_gradients(model, prompts, tokens, mask, adv, "middle")


def test_projection_preserves_squared_norms_in_expectation():
    rng = np.random.default_rng(0)
    D, k = 3000, 64
    ratios = []
    for seed in range(12):
        proj = GaussianProjection(D, k, seed=seed)
        g = torch.as_tensor(rng.standard_normal((4, D)), dtype=torch.float32)
        ratios.extend(((proj(g) ** 2).sum(1) / (g**2).sum(1)).tolist())
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.08)  # sd of the mean ~ 0.025
    # the same map whether the matrix is cached or redrawn block by block, for a fixed seed
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
    s = aggregator_stats(g, L, 8, Mx, alpha=1.0, resamples=2000, rng=1)
    assert set(s) == {"grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm"}
    assert s["dr_grpo"]["scale"] == pytest.approx(1.0)
    assert s["vl_norm"]["scale"] == pytest.approx(1.0)
    assert s["seq_sum"]["scale"] == pytest.approx(Mx)
    assert s["grpo"]["scale"] == pytest.approx(Mx * np.mean(1.0 / L), rel=0.02)
    assert s["grpo"]["scale_drift"] > 0 and s["dr_grpo"]["scale_drift"] == pytest.approx(
        0, abs=1e-9
    )
    # Var(g) ~ L: weights ~ 1/L beat constant weights once the lengths vary
    assert s["vl_norm"]["variance"] < 0.8 * s["dr_grpo"]["variance"]
    assert s["vl_norm"]["relative_variance"] == pytest.approx(
        s["vl_norm"]["variance"] / s["dr_grpo"]["variance"]
    )
    assert s["seq_sum"]["variance"] == pytest.approx(s["dr_grpo"]["variance"], rel=1e-9)
    for name, v in s.items():
        assert v["cosine"] > 0.95, name
        assert v["direction_bias"] == pytest.approx(1 - v["cosine"])
    # balanced resampling: no Monte Carlo error in E g_hat of an unbiased aggregator
    assert s["dr_grpo"]["relative_bias"] == pytest.approx(0.0, abs=1e-6)
    # same expected gradient for every answer: length weights differ from the all-answer
    # reference by answer noise only, of the size bias_noise predicts
    for name in ("grpo", "vl_norm"):
        assert 0.3 < s[name]["relative_bias"] / s[name]["bias_noise"] < 3, name


def test_aggregator_stats_sees_length_correlated_direction():
    """E g_i tilts with length: 1/L weights lean toward the short answers' direction."""
    g, L = synthetic(P=4, R=32, D=16, mean_size=0.0, seed=3)
    z = (np.log(L) - np.log(L).mean()) / np.log(L).std()
    g = 0.1 * g + 3.0 * np.eye(16)[0] + 3.0 * z[..., None] * np.eye(16)[1]  # right + longer
    s = aggregator_stats(g, L, 8, 200, resamples=512, rng=0)
    assert s["grpo"]["relative_bias"] > 3 * s["grpo"]["bias_noise"]
    assert s["grpo"]["cosine"] < s["dr_grpo"]["cosine"]
    assert s["dr_grpo"]["relative_bias"] == pytest.approx(0.0, abs=1e-6)


def test_aggregator_stats_whole_set_has_no_variance():
    g, L = synthetic(P=3, R=6, D=5)
    s = aggregator_stats(g, L, 6, 200, resamples=20, rng=0)  # G = R: every resample is all
    for name, v in s.items():
        assert v["variance"] == pytest.approx(0.0, abs=1e-9), name
    assert s["grpo"]["scale"] == pytest.approx(200 * np.mean(1.0 / L))
    assert s["dapo"]["scale"] == pytest.approx(200 / L.mean())
    assert s["dr_grpo"]["cosine"] == pytest.approx(1.0)


def test_aggregator_stats_hand_checked_tiny_case():
    """One prompt, answers g = 1 (L = 1) and g = 3 (L = 2), M = 2, groups of one."""
    g = np.array([[[1.0], [3.0]]])
    L = np.array([[1, 2]])
    s = aggregator_stats(g, L, 1, 2, names=["dr_grpo", "grpo"], resamples=40_000, rng=0)
    # dr_grpo: x = 1/2, g_hat = g_j / 2; per unit scale the variance of picking 1 or 3 is 1
    assert s["dr_grpo"]["scale"] == pytest.approx(1.0)
    assert s["dr_grpo"]["variance"] == pytest.approx(1.0, rel=0.02)
    assert s["dr_grpo"]["cv"] == pytest.approx(0.5, rel=0.02)  # reference = 2
    # grpo: x = 1/L, sum x in {1, 1/2}: scale 1.5; g_hat in {1, 1.5}: var 1/16 / 0.75^2
    assert s["grpo"]["scale"] == pytest.approx(1.5, rel=0.01)
    assert s["grpo"]["variance"] == pytest.approx(1 / 9, rel=0.03)
    assert s["grpo"]["relative_bias"] == pytest.approx(1 / 6, rel=0.03)  # |1.25/0.75 - 2| / 2
    assert s["grpo"]["relative_variance"] == pytest.approx(1 / 9, rel=0.04)


def test_aggregator_stats_paths_agree_and_validate(monkeypatch):
    g, L = synthetic(P=2, R=10, D=7, seed=2)
    gram = aggregator_stats(g, L, 4, 200, resamples=300, rng=5)
    monkeypatch.setattr(probes, "_GRAM_MAX_ROWS", 0)  # form every g_hat directly
    direct = aggregator_stats(torch.as_tensor(g), L, 4, 200, resamples=300, rng=5)
    for name in gram:
        for key, value in gram[name].items():
            assert direct[name][key] == pytest.approx(value, rel=1e-5, abs=1e-9), (name, key)
    with pytest.raises(ValueError, match="group_size"):
        aggregator_stats(g, L, 11, 200)
    with pytest.raises(ValueError, match="shape"):
        aggregator_stats(g, L[:, :5], 4, 200)
    zero = aggregator_stats(np.zeros((1, 4, 3)), np.array([[1, 2, 3, 4]]), 2, 4, resamples=10)
    assert zero["grpo"]["cv"] is None and zero["grpo"]["variance"] == 0.0


# ---------------------------------------------------------------- Figure 4 slope


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_fit_loglog_slope_recovers_exponent(beta):
    rng = np.random.default_rng(int(beta * 10))
    P, R, D = 5, 60, 8
    L = rng.integers(2, 300, (P, R))
    scale = np.exp(rng.normal(0, 2, P))[:, None]  # a different intercept per prompt
    g = rng.standard_normal((P, R, D)) * np.sqrt(scale * L**beta)[..., None]
    dev = (g**2).sum(-1)  # ||g_i - E g_i||^2 with E g_i = 0 known
    dev[0, :7] = 0.0  # answers with A = 0
    ids = np.repeat(np.arange(P), R)
    fit = fit_loglog_slope(L.reshape(-1), dev.reshape(-1), ids)
    assert fit["skipped"] == 7 and fit["n"] == P * R - 7 and fit["prompts"] == P
    assert fit["ci_low"] < beta < fit["ci_high"]
    assert fit["ci_high"] - fit["ci_low"] < 0.3
    # pooling prompts with different intercepts (no per-prompt intercept) would be far worse
    assert abs(fit["slope"] - beta) < 0.15


def test_fit_loglog_slope_edge_cases():
    assert t_quantile_975(1) == pytest.approx(12.706)
    assert t_quantile_975(30) == pytest.approx(2.042)
    assert t_quantile_975(31) == pytest.approx(2.0395, abs=2e-4)
    assert t_quantile_975(1e6) == pytest.approx(1.96, abs=1e-3)
    none = fit_loglog_slope([3, 3, 3], [1.0, 2.0, 4.0], [0, 0, 0])  # no length variation
    assert math.isnan(none["slope"]) and none["n"] == 3
    lone = fit_loglog_slope([1, 2, 4, 8], [1.0, 2.0, 4.0, 5.0], [0, 0, 0, 1])
    assert lone["skipped_prompts"] == 1 and lone["n"] == 3 and lone["slope"] == pytest.approx(1.0)


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
        probe={"every": 1, "prompts": 2, "rollouts": 8, "resamples": 32},
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
    meta = rec["meta"]
    assert meta["block"] == "last_attention" and meta["prompts"] == 2 and meta["rollouts"] == 8
    assert meta["group_size"] == 4 and meta["dim"] == meta["params"] > 0
    assert meta["method"] == "batched"
    assert set(rec["aggregators"]) == {"grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm"}
    assert rec["aggregators"]["dr_grpo"]["scale"] == pytest.approx(1.0)
    assert 0 < rec["reward_mean"] < 1 and rec["seconds"] > 0
    fig4 = rec["length_noise"]
    assert {"slope", "ci_low", "ci_high", "n", "skipped", "points"} <= set(fig4)
    assert len(fig4["points"]["length"]) == len(fig4["points"]["deviation"]) <= 512
    bins = rec["tokens"]["bins"]
    assert len(bins["count"]) == 10 and sum(bins["count"]) == rec["tokens"]["n"] > 0
    again = probe_policy(trainer)  # same step: same draws, same numbers
    assert again["aggregators"] == rec["aggregators"]
    projected = probe_policy(
        trainer, trainer.cfg.probe.model_copy(update={"block": "head", "projection_dim": 8})
    )
    assert projected["meta"]["dim"] == 8 and projected["meta"]["params"] > 8


def test_run_training_logs_probes(trainer):
    sink = train.MemorySink()
    train.run_training(trainer, sink, probe_fn=probe_policy)
    assert [p["step"] for p in sink.probes] == [0]
    assert "aggregators" in sink.probes[0]
