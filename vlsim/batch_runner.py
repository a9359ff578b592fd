"""Train several stored runs as one batched job: status, metrics, checkpoints, resume per run.

`execute_batch` is `vlsim.runner.execute_run` for a batch: every run's records are committed as
they are produced, a stop request or Ctrl-C leaves every unfinished run 'stopped' (resumable
from its own checkpoint), and a crash leaves them 'failed' with the error. The runs train as
`BatchTrainer` passes of up to `policies_per_pass` policies (memory and device decide).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

import torch

from vlsim.batch_trainer import BatchTrainer, check_batchable
from vlsim.config import TrainConfig
from vlsim.countdown import CharTokenizer, prompt_width
from vlsim.model import MODEL_SIZES, pick_device
from vlsim.probes import probe_policy
from vlsim.runner import StoreSink, checkpoint_path, warmstart_cache_dir
from vlsim.store import Store
from vlsim.train import run_batch

CPU_POLICIES_PER_PASS = 1
"""Policies per pass on CPU. The training pass is compute-bound there: on the default preset
(1 thread) K = 4 stacked reached 1.19-1.20 policy-steps/s against 1.17-1.23 for one policy at
a time, no gain, so CPU batches train their runs one after another (separate processes then
use separate cores). Re-measure with benchmarks/bench_batched.py before raising this."""

MEMORY_SHARE = 0.6
"""Share of the device's free memory a batch may plan to use."""


def policy_bytes(cfg: TrainConfig) -> int:
    """Estimated peak bytes of one policy in a batch: weights, optimizer, activations, cache."""
    size = MODEL_SIZES[cfg.model_size]
    L, C = size["n_layer"], size["n_embd"]
    V = CharTokenizer().vocab_size
    T = prompt_width(cfg.task) + cfg.max_new_tokens
    params = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
    copies = 5 if cfg.kl_coef > 0 else 4  # weights, gradient, two moments (+ reference)
    rows = max(cfg.prompts_per_step * cfg.group_size, len_eval_rows(cfg))
    activations = rows * T * (L * 24 * C + 4 * V)  # saved for backward, plus logits
    cache = 2 * L * rows * T * C
    return 4 * (copies * params + activations + cache)


def len_eval_rows(cfg: TrainConfig) -> int:
    """Rows of the sampled evaluation (test problems x eval samples)."""
    return cfg.task.n_test * cfg.eval_samples


def free_bytes(device: torch.device) -> int:
    """Free memory of the device (CUDA), or available RAM (CPU and others)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def policies_per_pass(cfg: TrainConfig, device: torch.device, wanted: int) -> int:
    """How many policies one pass trains: memory allows it, and CPU prefers one at a time."""
    need = policy_bytes(cfg)
    budget = MEMORY_SHARE * free_bytes(device)
    fit = int(budget // need)
    if fit < 1:
        raise ValueError(
            f"one policy needs about {need / 2**20:.0f} MiB ({cfg.model_size}, "
            f"{cfg.prompts_per_step}x{cfg.group_size} answers of <= {cfg.max_new_tokens} tokens) "
            f"but {budget / 2**20:.0f} MiB are available on {device}: use a smaller model, "
            "fewer answers per step or a shorter max_new_tokens"
        )
    if device.type == "cpu":
        fit = min(fit, CPU_POLICIES_PER_PASS)
    return max(1, min(fit, wanted))


def execute_batch(
    store: Store,
    run_ids: list[int],
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, int, dict[str, Any]], None] | None = None,
    on_warmstart: Callable[[int, int, float], None] | None = None,
) -> dict[int, str]:
    """Train (or resume) the stored runs as batched passes; returns {run_id: final status}.

    Runs must share model shape, task and M (ValueError naming the field, before anything
    runs). on_step(run_id, step, record) after each record is stored.
    """
    run_ids = list(run_ids)
    cfgs = [TrainConfig.model_validate(store.get_run(r).config) for r in run_ids]
    check_batchable(cfgs)
    per_pass = policies_per_pass(cfgs[0], pick_device(cfgs[0].device), len(run_ids))
    status: dict[int, str] = {}
    for r in run_ids:
        store.set_status(r, "running")
        store.heartbeat(r, pid=os.getpid())
    try:
        for start in range(0, len(run_ids), per_pass):
            if should_stop():
                break
            ids = run_ids[start : start + per_pass]
            status.update(
                _train_pass(store, ids, cfgs[start : start + per_pass], should_stop, on_step,
                            on_warmstart)
            )  # fmt: skip
    except KeyboardInterrupt:
        for r in run_ids:
            if r not in status:
                store.set_status(r, "stopped", error="interrupted")
        raise
    except Exception as err:  # the unfinished runs fail; everything logged so far stays
        error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
        for r in run_ids:
            if r not in status:
                store.set_status(r, "failed", error=error)
        raise
    for r in run_ids:
        if r not in status:
            status[r] = "stopped"
            store.set_status(r, "stopped")
    return status


def _train_pass(
    store: Store,
    run_ids: list[int],
    cfgs: list[TrainConfig],
    should_stop: Callable[[], bool],
    on_step: Callable[[int, int, dict[str, Any]], None] | None,
    on_warmstart: Callable[[int, int, float], None] | None,
) -> dict[int, str]:
    """One BatchTrainer over these runs, from their checkpoints; sets and returns statuses."""
    trainer = BatchTrainer(cfgs, cache_dir=warmstart_cache_dir(store),
                           warmstart_progress=on_warmstart)  # fmt: skip
    paths = [checkpoint_path(store, r) for r in run_ids]
    for k, path in enumerate(paths):
        if path.exists():
            trainer.load_checkpoint(k, path)

    def step_done(k: int, step: int, record: dict[str, Any]) -> None:
        store.heartbeat(run_ids[k])
        if on_step is not None:
            on_step(run_ids[k], step, record)

    done = run_batch(
        trainer, [StoreSink(store, r) for r in run_ids], paths, should_stop, step_done,
        probe_fn=probe_policy,
    )  # fmt: skip
    out = {}
    for r, n, cfg in zip(run_ids, done, cfgs, strict=True):
        out[r] = "finished" if n >= cfg.steps else "stopped"
        store.set_status(r, out[r])
    return out
