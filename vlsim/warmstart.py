"""Supervised warm start of a tiny policy on CountDown traces, cached on disk by its config.

Runs that share everything the warm start depends on (see `warmstart_key`) share its weights:
the first trains and caches them, the others load them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlsim.config import TrainConfig
from vlsim.countdown import CharTokenizer, Problem, prompt_width
from vlsim.model import TinyGPT, model_config, sequence_logprobs
from vlsim.traces import build_sft_batch

WARMSTART_VERSION = 1  # bump when the warm-start procedure changes, to invalidate caches


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
