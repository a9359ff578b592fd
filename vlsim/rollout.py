"""Rollouts: sample answers for CountDown prompts from one or K stacked policies, and score them.

`rollout` serves one plain TinyGPT (the gradient probes use it); `rollout_stacked` serves K
policies at once, each with its own problems, temperature and generator. Both go through
`vlsim.batched.sample_stacked`, so one policy is the K = 1 case of the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlsim.batched import StackedPolicy, sample_stacked
from vlsim.config import TrainConfig
from vlsim.countdown import CharTokenizer, Problem, encode_prompts, reward
from vlsim.model import TinyGPT


@dataclass
class Rollouts:
    """B*G sampled answers of one policy, rows ordered group by group."""

    problems: list[Problem]  # (N,) the problem of each row
    prompts: torch.Tensor  # (N, Tp)
    tokens: torch.Tensor  # (N, M)
    mask: torch.Tensor  # (N, M) bool, the answer's tokens
    lengths: torch.Tensor  # (N,)
    truncated: torch.Tensor  # (N,) bool
    logprobs: torch.Tensor  # (N, M) at sampling time
    rewards: torch.Tensor  # (N,) float
    texts: list[str]  # decoded completions


@dataclass
class StackedRollouts:
    """The rollouts of K policies: tensors (K, N, ...), lists per policy."""

    problems: list[list[Problem]]  # K lists of N problems
    prompts: torch.Tensor  # (K, N, Tp)
    tokens: torch.Tensor  # (K, N, M)
    mask: torch.Tensor  # (K, N, M) bool
    lengths: torch.Tensor  # (K, N)
    truncated: torch.Tensor  # (K, N) bool
    logprobs: torch.Tensor  # (K, N, M) at sampling time
    rewards: torch.Tensor  # (K, N) float
    texts: list[list[str]]  # K lists of N decoded completions

    def policy(self, k: int) -> Rollouts:
        """Policy k's rollouts."""
        return Rollouts(
            self.problems[k], self.prompts[k], self.tokens[k], self.mask[k], self.lengths[k],
            self.truncated[k], self.logprobs[k], self.rewards[k], self.texts[k],
        )  # fmt: skip


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


def rollout_stacked(
    policy: StackedPolicy,
    problems: list[list[Problem]],
    cfgs: list[TrainConfig],
    tokenizer: CharTokenizer,
    generators: list[torch.Generator | None],
    group_size: int,
    greedy: bool = False,
) -> StackedRollouts:
    """Sample group_size answers per problem for each policy k (its own problems) and score them."""
    device = policy.device
    rows = [[p for p in probs for _ in range(group_size)] for probs in problems]
    prompts = torch.stack([encode_prompts(r, cfgs[0].task, tokenizer) for r in rows]).to(device)
    out = sample_stacked(
        policy, prompts, cfgs[0].max_new_tokens, tokenizer.eos_id, tokenizer.pad_id,
        [c.temperature for c in cfgs], greedy, generators, group_size=group_size,
    )  # fmt: skip
    lengths, tokens, cut = out.lengths.tolist(), out.tokens.tolist(), out.truncated.cpu()
    texts, rewards = [], []
    for k, cfg in enumerate(cfgs):
        t = [tokenizer.decode(r[:n]) for r, n in zip(tokens[k], lengths[k], strict=True)]
        texts.append(t)
        rewards.append(score(t, rows[k], cut[k], cfg.format_reward))
    return StackedRollouts(
        rows, prompts, out.tokens, out.mask, out.lengths, out.truncated, out.logprobs,
        torch.stack(rewards).to(device), texts,
    )  # fmt: skip


@torch.no_grad()
def rollout(
    model: TinyGPT,
    problems: list[Problem],
    cfg: TrainConfig,
    tokenizer: CharTokenizer,
    generator: torch.Generator,
    group_size: int,
    greedy: bool = False,
) -> Rollouts:
    """Sample group_size answers per problem from one TinyGPT and score them."""
    was_training = model.training
    model.eval()
    try:
        ro = rollout_stacked(
            StackedPolicy.of_model(model), [problems], [cfg], tokenizer, [generator],
            group_size, greedy,
        )  # fmt: skip
    finally:
        model.train(was_training)
    return ro.policy(0)
