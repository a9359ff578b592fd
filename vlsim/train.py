"""Warm start and GRPO-style RL of a tiny policy on CountDown, emitting metrics as plain records.

One RL step: B prompts x G sampled answers -> verifier rewards -> group advantages ->
PPO-clipped token losses -> ONE scalar through `vlsim.aggregators.aggregate` (the aggregator
under study) -> AdamW. Records use CleanRL-style names (`charts/...`, `losses/...`, `eval/...`,
`time/...`) and go to a `Sink` (the SQLite store, a list in tests, the CLI's progress bar).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vlsim.advantages import group_advantages
from vlsim.aggregators import aggregate, weights
from vlsim.config import TrainConfig
from vlsim.countdown import (
    CharTokenizer,
    Problem,
    build_sft_batch,
    encode_prompts,
    make_splits,
    prompt_width,
    reward,
)
from vlsim.model import TinyGPT, model_config, pick_device, sample, sequence_logprobs

WARMSTART_VERSION = 1  # bump when the warm-start procedure changes, to invalidate caches


class Sink(Protocol):
    """Where a run's records go; every method must persist before returning."""

    def log_metrics(self, step: int, record: dict[str, Any]) -> None: ...

    def log_probe(self, step: int, record: dict[str, Any]) -> None: ...

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None: ...


@dataclass
class MemorySink:
    """Keeps records in lists (tests, notebooks)."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def log_metrics(self, step: int, record: dict[str, Any]) -> None:
        self.metrics.append({"step": step, **record})

    def log_probe(self, step: int, record: dict[str, Any]) -> None:
        self.probes.append({"step": step, **record})

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        self.samples.extend({"step": step, **s} for s in samples)


# ---------------------------------------------------------------- warm start


def warmstart_key(cfg: TrainConfig) -> str:
    """Hash of everything the warm start depends on: same key, same cached weights."""
    parts = {
        "version": WARMSTART_VERSION,
        "task": cfg.task.model_dump(mode="json"),
        "trace": cfg.trace.model_dump(mode="json"),
        "model_size": cfg.model_size,
        "max_new_tokens": cfg.max_new_tokens,
        "sft_steps": cfg.sft_steps,
        "sft_batch_size": cfg.sft_batch_size,
        "sft_lr": cfg.sft_lr,
        "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def build_model(cfg: TrainConfig, tokenizer: CharTokenizer, device: torch.device) -> TinyGPT:
    """A freshly initialised policy sized for the task's prompts and the answer budget."""
    torch.manual_seed(cfg.seed)
    block = prompt_width(cfg.task) + cfg.max_new_tokens
    model = TinyGPT(model_config(cfg.model_size, tokenizer.vocab_size, block))
    return model.to(device)


def sft_loss(
    model: TinyGPT, prompts: torch.Tensor, completions: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Mean token cross-entropy of the completions (positions < length, EOS included)."""
    logp, _ = sequence_logprobs(model, prompts, completions)  # (N, M)
    mask = torch.arange(completions.shape[1], device=logp.device)[None] < lengths[:, None]
    return -(logp * mask).sum() / mask.sum()


def warm_start(
    cfg: TrainConfig,
    train_problems: list[Problem],
    tokenizer: CharTokenizer,
    device: torch.device,
    cache_dir: Path | None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[TinyGPT, dict[str, Any]]:
    """Supervised training on generated traces, cached on disk by `warmstart_key`."""
    key = warmstart_key(cfg)
    path = cache_dir / f"warmstart-{key}.pt" if cache_dir else None
    model = build_model(cfg, tokenizer, device)
    if path is not None and path.exists():
        saved = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        return model, {**saved["info"], "cached": True}

    rng = np.random.default_rng([cfg.seed, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / max(cfg.sft_steps, 1)))
        ),
    )
    start, loss_value = time.perf_counter(), float("nan")
    model.train()
    for step in range(cfg.sft_steps):
        idx = rng.integers(len(train_problems), size=cfg.sft_batch_size)
        batch = [train_problems[i] for i in idx]
        prompts, completions, lengths = build_sft_batch(
            batch, cfg.task, cfg.trace, tokenizer, cfg.max_new_tokens, rng
        )
        completions = completions[:, : int(lengths.max())]  # drop all-pad columns
        loss = sft_loss(model, prompts.to(device), completions.to(device), lengths.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        loss_value = float(loss.detach())
        if progress is not None:
            progress(step + 1, cfg.sft_steps, loss_value)
    info = {"key": key, "sft_loss": loss_value, "seconds": time.perf_counter() - start}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "info": info}, tmp)
        tmp.replace(path)  # atomic: a crash never leaves a half-written cache
    return model, {**info, "cached": False}


# ---------------------------------------------------------------- rollouts and rewards


@dataclass
class Rollouts:
    """B*G sampled answers of one step, rows ordered group by group."""

    problems: list[Problem]  # (N,) the problem of each row
    prompts: torch.Tensor  # (N, Tp)
    tokens: torch.Tensor  # (N, M)
    mask: torch.Tensor  # (N, M) bool, the answer's tokens
    lengths: torch.Tensor  # (N,)
    truncated: torch.Tensor  # (N,) bool
    logprobs: torch.Tensor  # (N, M) at sampling time
    rewards: torch.Tensor  # (N,) float
    texts: list[str]  # decoded completions


def score(
    texts: list[str], problems: list[Problem], truncated: torch.Tensor, format_reward: float
) -> torch.Tensor:
    """Verifier rewards; an answer cut at the budget gets 0 whatever it says."""
    cut = truncated.tolist()
    values = [
        0.0 if cut[i] else reward(text, problem, format_reward)
        for i, (text, problem) in enumerate(zip(texts, problems, strict=True))
    ]
    return torch.tensor(values)


def rollout(
    model: TinyGPT,
    problems: list[Problem],
    cfg: TrainConfig,
    tokenizer: CharTokenizer,
    generator: torch.Generator,
    group_size: int,
    temperature: float | None = None,
    greedy: bool = False,
) -> Rollouts:
    """Sample group_size answers per problem and score them."""
    device = next(model.parameters()).device
    rows = [p for p in problems for _ in range(group_size)]
    prompts = encode_prompts(rows, cfg.task, tokenizer).to(device)  # (N, Tp)
    out = sample(
        model,
        prompts,
        cfg.max_new_tokens,
        tokenizer.eos_id,
        tokenizer.pad_id,
        temperature=cfg.temperature if temperature is None else temperature,
        greedy=greedy,
        generator=generator,
    )
    lengths = out.lengths.tolist()
    texts = [tokenizer.decode(row[:n]) for row, n in zip(out.tokens.tolist(), lengths, strict=True)]
    rewards = score(texts, rows, out.truncated.cpu(), cfg.format_reward).to(device)
    return Rollouts(
        rows,
        prompts,
        out.tokens,
        out.mask,
        out.lengths,
        out.truncated,
        out.logprobs,
        rewards,
        texts,
    )


# ---------------------------------------------------------------- the RL loss


def policy_loss(
    model: TinyGPT,
    ro: Rollouts,
    advantages: torch.Tensor,
    cfg: TrainConfig,
    reference: TinyGPT | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clipped token losses turned into one scalar by the configured aggregator."""
    logp, entropy = sequence_logprobs(model, ro.prompts, ro.tokens, cfg.temperature)  # (N, M)
    ratio = torch.exp(logp - ro.logprobs)  # (N, M)
    adv = advantages[:, None]  # (N, 1)
    clipped = torch.clamp(ratio, 1 - cfg.clip_low, 1 + cfg.clip_high)
    token_loss = -torch.minimum(ratio * adv, clipped * adv)  # (N, M)
    kl_value = 0.0
    if reference is not None and cfg.kl_coef > 0:
        with torch.no_grad():
            ref_logp, _ = sequence_logprobs(reference, ro.prompts, ro.tokens, cfg.temperature)
        log_ratio = ref_logp - logp  # k3 estimator of KL(pi || ref), always >= 0
        kl = torch.exp(log_ratio) - log_ratio - 1  # (N, M)
        token_loss = token_loss + cfg.kl_coef * kl
        kl_value = float((kl.detach() * ro.mask).sum() / ro.mask.sum())
    loss = aggregate(
        cfg.aggregator,
        token_loss,
        ro.mask,
        cfg.group_size,
        cfg.max_new_tokens,
        cfg.alpha,
        cfg.scope,
    )
    m = ro.mask.float()
    with torch.no_grad():
        clip_frac = (((ratio - 1).abs() > 1e-6) & (clipped != ratio)).float()
        stats = {
            "losses/policy": float(loss.detach()),
            "losses/kl": kl_value,
            "losses/clip_fraction": float((clip_frac * m).sum() / m.sum()),
            "charts/entropy": float((entropy * m).sum() / m.sum()),
        }
    return loss, stats


# ---------------------------------------------------------------- the trainer


class Trainer:
    """Holds the policy, optimizer, data and RNG of one run; `step()` does one RL update."""

    def __init__(
        self,
        cfg: TrainConfig,
        cache_dir: Path | None = None,
        warmstart_progress: Callable[[int, int, float], None] | None = None,
    ):
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        self.tokenizer = CharTokenizer()
        self.train_problems, self.test_problems = make_splits(cfg.task)
        self.model, self.warmstart_info = warm_start(
            cfg, self.train_problems, self.tokenizer, self.device, cache_dir, warmstart_progress
        )
        self.reference: TinyGPT | None = None
        if cfg.kl_coef > 0:
            self.reference = build_model(cfg, self.tokenizer, self.device)
            self.reference.load_state_dict(self.model.state_dict())
            self.reference.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99)
        )
        self.rng = np.random.default_rng([cfg.seed, 2])  # prompt order
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 3)
        self.step_index = 0  # the next step to run
        self.started = time.perf_counter()
        self.elapsed_before = 0.0  # seconds of earlier sessions of a resumed run

    # -- one step

    def step(self) -> dict[str, Any]:
        """One RL step; returns its metric record (the step index is `self.step_index - 1`)."""
        cfg, t0 = self.cfg, time.perf_counter()
        idx = self.rng.choice(len(self.train_problems), size=cfg.prompts_per_step, replace=False)
        problems = [self.train_problems[i] for i in idx]
        ro = rollout(self.model, problems, cfg, self.tokenizer, self.generator, cfg.group_size)
        t_sample = time.perf_counter()
        B, G = cfg.prompts_per_step, cfg.group_size
        rewards = ro.rewards.view(B, G)  # (B, G)
        advantages = group_advantages(rewards, cfg.std_normalize).reshape(-1)  # (N,)
        informative = rewards.max(dim=1).values > rewards.min(dim=1).values  # (B,)
        t_reward = time.perf_counter()

        ro_train = ro
        if cfg.dynamic_sampling:
            keep = informative.repeat_interleave(G)  # (N,)
            ro_train = _select_rows(ro, keep)
            advantages = advantages[keep]
        stats: dict[str, float] = {}
        grad_norm = 0.0
        t_backward = t_optim = 0.0
        updated = ro_train.tokens.shape[0] > 0
        if updated:
            for _ in range(cfg.inner_epochs):
                tb = time.perf_counter()
                loss, stats = policy_loss(self.model, ro_train, advantages, cfg, self.reference)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                to = time.perf_counter()
                t_backward += to - tb
                max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
                self.optimizer.step()
                t_optim += time.perf_counter() - to
        t_end = time.perf_counter()

        lengths = ro.lengths.float().cpu().numpy()
        x = weights(
            cfg.aggregator,
            ro.lengths.view(B, G).cpu().numpy(),
            cfg.max_new_tokens,
            cfg.alpha,
            cfg.scope,
        )
        record: dict[str, Any] = {
            "charts/reward_mean": float(ro.rewards.mean()),
            "charts/accuracy": float((ro.rewards >= 1).float().mean()),
            "charts/response_length_mean": float(lengths.mean()),
            "charts/response_length_std": float(lengths.std()),
            "charts/response_length_min": float(lengths.min()),
            "charts/response_length_max": float(lengths.max()),
            "charts/response_length_p10": float(np.percentile(lengths, 10)),
            "charts/response_length_p50": float(np.percentile(lengths, 50)),
            "charts/response_length_p90": float(np.percentile(lengths, 90)),
            "charts/truncation_rate": float(ro.truncated.float().mean()),
            "charts/informative_groups": float(informative.float().mean()),
            "charts/aggregate_scale": float(cfg.max_new_tokens * x.sum()),
            "charts/updated": float(updated),
            "grad/norm": grad_norm,
            **stats,
            "time/sampling": t_sample - t0,
            "time/reward": t_reward - t_sample,
            "time/backward": t_backward,
            "time/optimizer": t_optim,
            "time/step": t_end - t0,
            "charts/tokens_per_second": float(lengths.sum()) / max(t_end - t0, 1e-9),
            "dist/response_lengths": ro.lengths.cpu().tolist(),  # every answer's length
        }
        self.last_rollouts = ro
        self.step_index += 1
        record["time/elapsed"] = self.elapsed()
        return record

    def elapsed(self) -> float:
        """Wall seconds spent in RL so far, across resumed sessions."""
        return self.elapsed_before + time.perf_counter() - self.started

    # -- evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy: greedy, and sampled mean@k at the training temperature."""
        cfg = self.cfg
        problems = self.test_problems
        if not problems:
            return {}
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 7)  # same draws each eval
        greedy = rollout(self.model, problems, cfg, self.tokenizer, gen, 1, greedy=True)
        sampled = rollout(self.model, problems, cfg, self.tokenizer, gen, cfg.eval_samples)
        return {
            "eval/accuracy_greedy": float((greedy.rewards >= 1).float().mean()),
            "eval/mean_at_k": float((sampled.rewards >= 1).float().mean()),
            "eval/response_length_mean": float(sampled.lengths.float().mean()),
            "eval/truncation_rate": float(sampled.truncated.float().mean()),
        }

    def sample_records(self, limit: int = 8) -> list[dict[str, Any]]:
        """A few rollouts of the last step as plain dicts (prompt, trace, answer, reward, length)."""
        ro = getattr(self, "last_rollouts", None)
        if ro is None:
            return []
        G = self.cfg.group_size
        picks = [g * G for g in range(min(limit, len(ro.problems) // G))]
        out = []
        for i in picks:
            text = ro.texts[i]
            trace, _, rest = text.partition("<ans>")
            out.append(
                {
                    "numbers": list(ro.problems[i].numbers),
                    "target": ro.problems[i].target,
                    "trace": trace,
                    "answer": rest.split("<eos>")[0] if rest else "",
                    "reward": float(ro.rewards[i]),
                    "length": int(ro.lengths[i]),
                    "truncated": bool(ro.truncated[i]),
                }
            )
        return out

    # -- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimizer, RNG states, step, time."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "step_index": self.step_index,
            "elapsed": self.elapsed(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.step_index = int(state["step_index"])
        self.elapsed_before = float(state["elapsed"])
        self.started = time.perf_counter()

    def save_checkpoint(self, path: Path) -> None:
        """Write a checkpoint atomically (a crash never leaves a half-written file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: Path) -> None:
        """Continue from a checkpoint written by `save_checkpoint`."""
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=False))


def _select_rows(ro: Rollouts, keep: torch.Tensor) -> Rollouts:
    """The rollouts of the rows where keep is True."""
    idx = keep.nonzero().squeeze(1).tolist()
    return Rollouts(
        problems=[ro.problems[i] for i in idx],
        prompts=ro.prompts[keep],
        tokens=ro.tokens[keep],
        mask=ro.mask[keep],
        lengths=ro.lengths[keep],
        truncated=ro.truncated[keep],
        logprobs=ro.logprobs[keep],
        rewards=ro.rewards[keep],
        texts=[ro.texts[i] for i in idx],
    )


# ---------------------------------------------------------------- the whole run


def run_training(
    trainer: Trainer,
    sink: Sink,
    checkpoint_path: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> int:
    """Run the remaining RL steps, logging every record as soon as it exists.

    Evaluates at step 0 and every `eval_every` steps (and at the end), probes every
    `probe.every` steps, checkpoints every `checkpoint_every` steps. Returns the number of
    steps completed. A stop request is honoured between steps.
    """
    cfg = trainer.cfg
    if trainer.step_index == 0 and cfg.eval_every:
        record = {**trainer.evaluate(), "time/elapsed": 0.0}
        sink.log_metrics(-1, record)  # step -1: the warm-started policy before any RL
        if on_step:
            on_step(-1, record)
    while trainer.step_index < cfg.steps and not should_stop():
        step = trainer.step_index
        record = trainer.step()
        last = trainer.step_index == cfg.steps
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
            record.update(trainer.evaluate())
        if cfg.probe.every and (step % cfg.probe.every == 0 or last):
            from vlsim.probes import probe_policy

            sink.log_probe(step, probe_policy(trainer))
        sink.log_metrics(step, record)
        if cfg.sample_log_every and (step % cfg.sample_log_every == 0 or last):
            sink.log_samples(step, trainer.sample_records())
        if (
            checkpoint_path is not None
            and cfg.checkpoint_every
            and ((step + 1) % cfg.checkpoint_every == 0 or last)
        ):
            trainer.save_checkpoint(checkpoint_path)
        if on_step:
            on_step(step, record)
    return trainer.step_index
