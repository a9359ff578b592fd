"""probe_policy: draw R answers on fixed prompts, take per-answer gradients, measure everything.

The view passed in is duck-typed: `cfg` (TrainConfig), `model` (a TinyGPT with the run's
current weights), `tokenizer`, `step_index`, `train_problems`, `test_problems`, `device`.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vlsim.advantages import group_advantages
from vlsim.aggregators import AGGREGATORS
from vlsim.probes.aggregation import Quadratic, aggregator_stats, resamples_used
from vlsim.probes.gradients import block_parameters, per_answer_gradients
from vlsim.probes.length_noise import fit_length_slope, scatter_points
from vlsim.probes.noise import block_deviations, loo_variances
from vlsim.probes.projection import GaussianProjection, mix_seed
from vlsim.probes.record import LengthNoise, ProbeMeta, ProbeRecord, Timing, TokenBins, Tokens
from vlsim.probes.tokens import ENTROPY_BINS, entropy_bins, token_uncertainty
from vlsim.train import rollout

if TYPE_CHECKING:
    from vlsim.config import ProbeConfig


@lru_cache(maxsize=2)
def _projection(dim_in: int, dim_out: int, seed: int) -> GaussianProjection:
    """The run's fixed projection, kept between probes (its matrix too, when small)."""
    return GaussianProjection(dim_in, dim_out, seed)


def length_noise_record(
    deviations: np.ndarray,
    lengths: np.ndarray,
    used: np.ndarray,
    quantity: str,
    boot: int,
    seed: int,
) -> LengthNoise:
    """Figure 4 from leave-one-out deviations (P, R): the slope fit and its scatter points."""
    P, R = lengths.shape
    dev = np.asarray(deviations, dtype=np.float64)
    fit = fit_length_slope(lengths, loo_variances(dev), used, boot=boot, rng=seed)
    shown = np.where(used, dev * (R - 1) / R, np.nan)  # on average Var(v_i) when variances match
    prompt_ids = np.broadcast_to(np.arange(P)[:, None], (P, R))
    points = scatter_points(lengths, shown, prompt_ids, seed=seed)
    return LengthNoise(**fit.model_dump(), quantity=quantity, points=points)


def probe_policy(view: Any, probe: ProbeConfig | None = None) -> dict[str, Any]:
    """Probe the view's current policy; returns `ProbeRecord.to_json()` (plain JSON).

    Probe prompts are the first `probe.prompts` problems of the test split (the training split
    if there is none), the same at every call. R answers per prompt are drawn with a generator
    seeded by (run seed, step), so probes are reproducible and the trainer's own random state
    is untouched. One batched backward gives every answer's score gradient s_i (A = 1); the
    policy gradient is g_i = A_i s_i with advantages over all R answers of a prompt (a
    low-noise baseline, so each answer has one fixed g_i whichever group a resample puts it
    in). Resampled groups have G = min(group_size, R - 1) answers.
    """
    t0 = time.perf_counter()
    cfg = view.cfg
    pc = probe or cfg.probe
    step = int(view.step_index)
    source = view.test_problems or view.train_problems
    problems = list(source[: pc.prompts])
    P, R, M = len(problems), pc.rollouts, cfg.max_new_tokens
    G = min(cfg.group_size, R - 1)
    model, device = view.model, view.device

    gen = torch.Generator(device=device).manual_seed(mix_seed(cfg.seed, 0x5EED, step))
    ro = rollout(model, problems, cfg, view.tokenizer, gen, R)
    t_sample = time.perf_counter()

    rewards = ro.rewards.float().view(P, R)
    adv = group_advantages(rewards, cfg.std_normalize)  # (P, R)
    params, _ = block_parameters(model, pc.block)
    D = sum(p.tensor.numel() for p in params)
    projection = None
    if pc.projection_dim:
        projection = _projection(D, pc.projection_dim, mix_seed(cfg.seed, 0x9807))
    ag = per_answer_gradients(
        model,
        ro.prompts,
        ro.tokens,
        ro.mask,
        None,  # A = 1: the score gradient s_i
        block=pc.block,
        temperature=cfg.temperature,
        projection=projection,
    )
    width = int(ro.lengths.max())  # answer columns that hold any token
    entropy, score = token_uncertainty(model, ro.prompts, ro.tokens[:, :width], cfg.temperature)
    t_grad = time.perf_counter()

    lengths = ro.lengths.to("cpu").numpy().reshape(P, R)
    adv_np = adv.to("cpu").numpy().astype(np.float64)  # (P, R)
    quad_s = Quadratic(ag.grads)  # one N x N Gram of the score gradients s_i
    quad_g = quad_s.scaled(adv.reshape(-1))  # and of the policy gradients g_i = A_i s_i
    stats = aggregator_stats(
        quad_g,
        lengths,
        group_size=G,
        max_len=M,
        names=list(AGGREGATORS),
        alpha=cfg.alpha,
        scope=cfg.scope,
        resamples=pc.resamples,
        rng=np.random.default_rng([cfg.seed, 0x57A7, step]),
        boot=pc.bootstrap,
    )
    nonzero = adv_np != 0
    seed = mix_seed(cfg.seed, 0xF16, step)
    dev_g = block_deviations(quad_g.prompt_blocks(P, R))
    dev_s = block_deviations(quad_s.prompt_blocks(P, R))
    paper = length_noise_record(dev_g, lengths, nonzero, "A_i s_i", pc.bootstrap, seed)
    free = length_noise_record(dev_s, lengths, np.ones_like(nonzero), "s_i", pc.bootstrap, seed)
    # token-level view
    mask = ro.mask[:, :width].to("cpu").numpy().astype(bool)
    score_np = score.to("cpu").numpy() * mask
    w_tok = np.broadcast_to((adv_np.reshape(-1) ** 2)[:, None], mask.shape)
    ent_np = entropy.to("cpu").numpy()
    vocab = model.config.vocab_size
    bins = entropy_bins(ent_np[mask], score_np[mask], w_tok[mask], ENTROPY_BINS, math.log(vocab))
    t_end = time.perf_counter()

    L = lengths.astype(np.float64)
    record = ProbeRecord(
        meta=ProbeMeta(
            block=pc.block,
            params=ag.params,
            dim=int(ag.grads.shape[-1]),
            projection_dim=pc.projection_dim,
            prompts=P,
            rollouts=R,
            group_size=G,
            resamples=resamples_used(pc.resamples, R, G),
            bootstrap=pc.bootstrap,
            method=ag.method,
            note="" if cfg.group_size == G else f"groups of {G}: below R = {R}",
            max_len=M,
            alpha=cfg.alpha,
            scope=cfg.scope,
            std_normalize=cfg.std_normalize,
            temperature=cfg.temperature,
            aggregators=list(AGGREGATORS),
        ),
        reward_mean=float(rewards.mean()),
        accuracy=float((rewards >= 1).float().mean()),
        length_mean=float(L.mean()),
        length_std=float(L.std()),
        truncation_rate=float(ro.truncated.float().mean()),
        informative_prompts=float((rewards.max(1).values > rewards.min(1).values).float().mean()),
        zero_advantage=int((~nonzero).sum()),
        reference_norm=math.sqrt(max(quad_g.mean_sq, 0.0)),
        aggregators=stats,
        length_noise=paper,
        length_noise_free=free,
        tokens=Tokens(
            n=int(mask.sum()),
            score_mean=float(score_np[mask].mean()) if mask.any() else None,
            entropy_mean=float(ent_np[mask].mean()) if mask.any() else None,
            bins=TokenBins(**bins),
        ),
        seconds=t_end - t0,
        time=Timing(sampling=t_sample - t0, gradients=t_grad - t_sample, stats=t_end - t_grad),
    )
    return record.to_json()
