"""GRPO-style RL of K independent policies as one batched computation (K = 1: a single run).

One RL step, for every policy k at once: B prompts x G sampled answers (its own problems and
noise) -> verifier rewards -> group advantages -> PPO-clipped token losses from a training
pass bucketed by answer length (no position past an answer's end is computed) -> ONE scalar
per policy through `vlsim.aggregators.aggregate` with that run's aggregator -> AdamW with
that run's learning rate, clipping and state. Policy k's numbers never depend on the others.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlsim.advantages import group_advantages
from vlsim.aggregators import aggregate, weights
from vlsim.batched import StackedPolicy, plan_buckets, token_logprobs
from vlsim.config import TrainConfig
from vlsim.countdown import CharTokenizer, make_splits
from vlsim.model import TinyGPT, pick_device
from vlsim.rollout import StackedRollouts, rollout_stacked
from vlsim.stacked_optim import StackedAdamW
from vlsim.warmstart import warm_start

SHARED_FIELDS = (
    "model_size", "task", "max_new_tokens", "prompts_per_step", "group_size", "inner_epochs",
    "eval_samples", "device",
)  # fmt: skip
"""TrainConfig fields every run of one batch must share (they fix the tensors' shapes)."""

SAMPLE_GROUPS_FULL = 2
"""Sample logs keep every answer of this many first groups ..."""
SAMPLE_GROUPS = 8
"""... and the first answer of the following groups, up to this many groups in all."""


def check_batchable(cfgs: list[TrainConfig]) -> None:
    """Raise ValueError naming the first field that differs between runs of one batch."""
    if not cfgs:
        raise ValueError("a batch needs at least one run")
    first = cfgs[0]
    for i, cfg in enumerate(cfgs[1:], start=1):
        for name in SHARED_FIELDS:
            a, b = getattr(first, name), getattr(cfg, name)
            if a != b:
                raise ValueError(
                    f"runs of one batch must share {name}: run 0 has {_show(a)}, "
                    f"run {i} has {_show(b)}"
                )


def _show(value: Any) -> str:
    return repr(value.model_dump()) if hasattr(value, "model_dump") else repr(value)


class BatchTrainer:
    """K runs' policies (stacked), optimizers, data and random streams; `step()` updates all."""

    def __init__(
        self,
        cfgs: list[TrainConfig],
        cache_dir: Path | None = None,
        warmstart_progress: Callable[[int, int, float], None] | None = None,
        on_warmstart: Callable[[int], None] | None = None,
    ):
        check_batchable(cfgs)
        self.cfgs = list(cfgs)
        first = cfgs[0]
        if first.threads:
            torch.set_num_threads(first.threads)
        self.device = pick_device(first.device)
        self.tokenizer = CharTokenizer()
        self.train_problems, self.test_problems = make_splits(first.task)
        models, self.warmstart_info = [], []
        for k, cfg in enumerate(cfgs):
            if on_warmstart is not None:
                on_warmstart(k)
            model, info = warm_start(
                cfg, self.train_problems, self.tokenizer, self.device, cache_dir,
                warmstart_progress,
            )  # fmt: skip
            models.append(model)
            self.warmstart_info.append(info)
        self.policy = StackedPolicy.from_models(models)
        del models
        self.reference: StackedPolicy | None = None
        if any(c.kl_coef > 0 for c in cfgs):
            self.reference = self.policy.detached_copy()
        self.optimizer = StackedAdamW(
            self.policy.parameters(),
            lr=[c.lr for c in cfgs],
            weight_decay=[c.weight_decay for c in cfgs],
            max_grad_norm=[c.max_grad_norm for c in cfgs],
        )
        self.rngs = [np.random.default_rng([c.seed, 2]) for c in cfgs]  # prompt order
        self.generators = [
            torch.Generator(device=self.device).manual_seed(c.seed + 3) for c in cfgs
        ]
        self.step_index = [0] * len(cfgs)  # the next step of each run
        self.started = time.perf_counter()
        self.elapsed_before = [0.0] * len(cfgs)
        self.last_rollouts: StackedRollouts | None = None
        self.last_advantages: torch.Tensor | None = None
        self.padded_fraction = 0.0  # of the last training pass

    @property
    def K(self) -> int:
        return len(self.cfgs)

    def active(self) -> list[bool]:
        """Runs with steps left."""
        return [s < c.steps for s, c in zip(self.step_index, self.cfgs, strict=True)]

    # -- one step

    def step(self) -> list[dict[str, Any] | None]:
        """One RL step of every run with steps left; its record, or None for finished runs."""
        cfgs, K, t0 = self.cfgs, self.K, time.perf_counter()
        B, G = cfgs[0].prompts_per_step, cfgs[0].group_size
        active = self.active()
        problems, generators = [], []
        for k in range(K):
            if active[k]:
                progress = self.step_index[k] / max(cfgs[k].steps - 1, 1)
                problems.append(
                    cfgs[k].task.draw_training_problems(
                        self.train_problems, B, progress, self.rngs[k]
                    )
                )
                generators.append(self.generators[k])
            else:  # a finished run rides along without touching its random streams
                problems.append(self.train_problems[:B])
                generators.append(torch.Generator(device=self.device).manual_seed(0))
        ro = rollout_stacked(self.policy, problems, cfgs, self.tokenizer, generators, G)
        t_sample = time.perf_counter()
        rewards = ro.rewards.view(K, B, G)  # (K, B, G)
        adv = torch.stack(
            [group_advantages(rewards[k], c.std_normalize) for k, c in enumerate(cfgs)]
        ).reshape(K, B * G)  # (K, N)
        informative = rewards.max(dim=2).values > rewards.min(dim=2).values  # (K, B)
        keep = torch.ones(K, B * G, dtype=torch.bool, device=self.device)  # (K, N)
        for k, c in enumerate(cfgs):
            if c.dynamic_sampling:
                keep[k] = informative[k].repeat_interleave(G)
            if not active[k]:
                keep[k] = False
        t_reward = time.perf_counter()

        updated = keep.any(dim=1)  # (K,)
        stats: list[dict[str, float]] = [{} for _ in range(K)]
        grad_norm = torch.zeros(K)
        t_backward = t_optim = 0.0
        if bool(updated.any()):
            buckets = plan_buckets(ro.lengths * keep, ro.prompts.shape[2])
            self.padded_fraction = buckets.padded_fraction
            for _ in range(cfgs[0].inner_epochs):
                tb = time.perf_counter()
                losses, stats = policy_loss(
                    self.policy, ro, adv, keep, cfgs, buckets, self.reference
                )
                self.optimizer.zero_grad()
                torch.stack(losses).sum().backward()  # policy k's loss reaches only slice k
                to = time.perf_counter()
                t_backward += to - tb
                grad_norm = self.optimizer.step(updated).cpu()
                t_optim += time.perf_counter() - to
        t_end = time.perf_counter()

        self.last_rollouts, self.last_advantages = ro, adv
        records: list[dict[str, Any] | None] = []
        for k, c in enumerate(cfgs):
            if not active[k]:
                records.append(None)
                continue
            rec = _step_record(ro, k, c, informative[k], bool(updated[k]), float(grad_norm[k]))
            rec.update(stats[k])
            rec.update({
                "time/sampling": t_sample - t0,
                "time/reward": t_reward - t_sample,
                "time/backward": t_backward,
                "time/optimizer": t_optim,
                "time/step": t_end - t0,
                "charts/tokens_per_second": float(ro.lengths[k].sum()) / max(t_end - t0, 1e-9),
                "dist/response_lengths": ro.lengths[k].cpu().tolist(),
            })  # fmt: skip
            self.step_index[k] += 1
            rec["time/elapsed"] = self.elapsed(k)
            records.append(rec)
        return records

    def elapsed(self, k: int) -> float:
        """Wall seconds spent in RL by run k so far, across resumed sessions."""
        return self.elapsed_before[k] + time.perf_counter() - self.started

    # -- evaluation

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """Held-out accuracy of every run: greedy, and sampled mean@k at its temperature."""
        if not self.test_problems:
            return [{} for _ in self.cfgs]
        problems = [self.test_problems] * self.K
        gens = [torch.Generator(device=self.device).manual_seed(c.seed + 7) for c in self.cfgs]
        greedy = rollout_stacked(
            self.policy, problems, self.cfgs, self.tokenizer, gens, 1, greedy=True
        )
        sampled = rollout_stacked(
            self.policy, problems, self.cfgs, self.tokenizer, gens, self.cfgs[0].eval_samples
        )
        return [
            {
                "eval/accuracy_greedy": float((greedy.rewards[k] >= 1).float().mean()),
                "eval/mean_at_k": float((sampled.rewards[k] >= 1).float().mean()),
                "eval/response_length_mean": float(sampled.lengths[k].float().mean()),
                "eval/truncation_rate": float(sampled.truncated[k].float().mean()),
            }
            for k in range(self.K)
        ]

    def sample_records(self, k: int) -> list[dict[str, Any]]:
        """Run k's rollouts of the last step as plain dicts: the first groups in full, then one
        answer per group (prompt, trace, answer, reward, length, advantage, token ids)."""
        ro, adv = self.last_rollouts, self.last_advantages
        if ro is None or adv is None:
            return []
        G = self.cfgs[k].group_size
        n_groups = len(ro.problems[k]) // G
        picks = [
            (g, j)
            for g in range(min(SAMPLE_GROUPS, n_groups))
            for j in range(G if g < SAMPLE_GROUPS_FULL else 1)
        ]
        tokens, lengths = ro.tokens[k].tolist(), ro.lengths[k].tolist()
        out = []
        for g, j in picks:
            i = g * G + j
            text = ro.texts[k][i]
            trace, _, rest = text.partition("<ans>")
            out.append({
                "numbers": list(ro.problems[k][i].numbers),
                "target": ro.problems[k][i].target,
                "trace": trace,
                "answer": rest.split("<eos>")[0] if rest else "",
                "reward": float(ro.rewards[k, i]),
                "length": int(lengths[i]),
                "truncated": bool(ro.truncated[k, i]),
                "group": g,
                "index": j,
                "advantage": float(adv[k, i]),
                "token_ids": tokens[i][: lengths[i]],
            })  # fmt: skip
        return out

    # -- checkpoints (one per run)

    def model(self, k: int) -> TinyGPT:
        """A plain TinyGPT holding run k's current weights (shares their storage)."""
        return self.policy.model(k)

    def state_dict(self, k: int) -> dict[str, Any]:
        """Everything run k needs to continue exactly: weights, optimizer, RNG, step, time."""
        return {
            "model": self.model(k).state_dict(),
            "optimizer": self.optimizer.state_of(k),
            "rng": self.rngs[k].bit_generator.state,
            "generator": self.generators[k].get_state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "step_index": self.step_index[k],
            "elapsed": self.elapsed(k),
        }

    def load_state_dict(self, k: int, state: dict[str, Any]) -> None:
        """Restore run k from a `state_dict(k)` (or a checkpoint of the earlier single-run code)."""
        self.model(k).load_state_dict(state["model"])
        self.optimizer.load_state_of(k, state["optimizer"])
        self.rngs[k].bit_generator.state = state["rng"]
        self.generators[k].set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.step_index[k] = int(state["step_index"])
        self.elapsed_before[k] = float(state["elapsed"]) - (time.perf_counter() - self.started)

    def save_checkpoint(self, k: int, path: Path) -> None:
        """Write run k's checkpoint atomically (a crash never leaves a half-written file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(k), tmp)
        tmp.replace(path)

    def load_checkpoint(self, k: int, path: Path) -> None:
        """Continue run k from a checkpoint written by `save_checkpoint`."""
        self.load_state_dict(k, torch.load(path, map_location=self.device, weights_only=False))


def policy_loss(
    policy: StackedPolicy,
    ro: StackedRollouts,
    advantages: torch.Tensor,
    keep: torch.Tensor,
    cfgs: list[TrainConfig],
    buckets,
    reference: StackedPolicy | None = None,
) -> tuple[list[torch.Tensor], list[dict[str, float]]]:
    """Each policy's PPO-clipped token losses turned into one scalar by its aggregator.

    advantages and keep are (K, N); rows with keep False are left out of policy k's loss.
    Returns K scalar losses (0 for a policy without rows) and K stats dicts.
    """
    temps = [c.temperature for c in cfgs]
    logp, entropy = token_logprobs(policy, ro.prompts, ro.tokens, buckets, temps)  # (K, N, W)
    W = logp.shape[2]
    mask = ro.mask[..., :W]  # (K, N, W)
    ratio = torch.exp(logp - ro.logprobs[..., :W])  # (K, N, W)
    low = torch.tensor([1 - c.clip_low for c in cfgs], device=logp.device)[:, None, None]
    high = torch.tensor([1 + c.clip_high for c in cfgs], device=logp.device)[:, None, None]
    adv = advantages[..., None]  # (K, N, 1)
    clipped = torch.minimum(torch.maximum(ratio, low), high)
    token_loss = -torch.minimum(ratio * adv, clipped * adv)  # (K, N, W)
    kl = None
    if reference is not None:
        with torch.no_grad():
            ref_logp, _ = token_logprobs(
                reference, ro.prompts, ro.tokens, buckets, temps, with_entropy=False
            )
        log_ratio = ref_logp - logp  # k3 estimator of KL(pi || ref), always >= 0
        kl = torch.exp(log_ratio) - log_ratio - 1  # (K, N, W)
        coef = torch.tensor([c.kl_coef for c in cfgs], device=logp.device)[:, None, None]
        token_loss = token_loss + coef * kl
    losses, stats = [], []
    for k, c in enumerate(cfgs):
        rows = keep[k]
        if not bool(rows.any()):
            losses.append(logp.new_zeros(()))
            stats.append({})
            continue
        mk = mask[k][rows]  # (n, W)
        loss = aggregate(
            c.aggregator, token_loss[k][rows], mk, c.group_size, c.max_new_tokens, c.alpha, c.scope
        )
        losses.append(loss)
        m = mk.float()
        with torch.no_grad():
            r, cl = ratio[k][rows], clipped[k][rows]
            clip_frac = (((r - 1).abs() > 1e-6) & (cl != r)).float()
            kl_value = 0.0
            if kl is not None and c.kl_coef > 0:
                kl_value = float((kl[k][rows] * m).sum() / m.sum())
            stats.append({
                "losses/policy": float(loss.detach()),
                "losses/kl": kl_value,
                "losses/clip_fraction": float((clip_frac * m).sum() / m.sum()),
                "charts/entropy": float((entropy[k][rows] * m).sum() / m.sum()),
            })  # fmt: skip
    return losses, stats


def _step_record(
    ro: StackedRollouts,
    k: int,
    cfg: TrainConfig,
    informative: torch.Tensor,
    updated: bool,
    grad_norm: float,
) -> dict[str, Any]:
    """The sampling-side metrics of run k's step (CleanRL-style names)."""
    B, G = cfg.prompts_per_step, cfg.group_size
    lengths = ro.lengths[k].float().cpu().numpy()
    x = weights(
        cfg.aggregator, ro.lengths[k].view(B, G).cpu().numpy(), cfg.max_new_tokens, cfg.alpha,
        cfg.scope,
    )  # fmt: skip
    rewards = ro.rewards[k]
    return {
        "charts/reward_mean": float(rewards.mean()),
        "charts/accuracy": float((rewards >= 1).float().mean()),
        "charts/response_length_mean": float(lengths.mean()),
        "charts/response_length_std": float(lengths.std()),
        "charts/response_length_min": float(lengths.min()),
        "charts/response_length_max": float(lengths.max()),
        "charts/response_length_p10": float(np.percentile(lengths, 10)),
        "charts/response_length_p50": float(np.percentile(lengths, 50)),
        "charts/response_length_p90": float(np.percentile(lengths, 90)),
        "charts/truncation_rate": float(ro.truncated[k].float().mean()),
        "charts/informative_groups": float(informative.float().mean()),
        "charts/aggregate_scale": float(cfg.max_new_tokens * x.sum()),
        "charts/updated": float(updated),
        "grad/norm": grad_norm,
    }
