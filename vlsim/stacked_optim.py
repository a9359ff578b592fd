"""AdamW for K stacked policies: per-policy learning rate, weight decay, clipping and state.

The update is torch.optim.AdamW's (decoupled weight decay, bias-corrected moments), applied
to every policy's slice at once; a policy whose `active` flag is off is left untouched (no
moment decay, no step count), exactly as if its own optimizer had not been stepped.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class StackedAdamW:
    """One AdamW per policy k over stacked parameters (K, ...), in one vectorised update."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: list[float],
        weight_decay: list[float],
        max_grad_norm: list[float],
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
    ):
        self.params = params
        K = params[0].shape[0]
        if not len(lr) == len(weight_decay) == len(max_grad_norm) == K:
            raise ValueError(f"need one lr, weight_decay and max_grad_norm per policy (K = {K})")
        dev = params[0].device
        self.lr = torch.tensor(lr, device=dev)  # (K,)
        self.weight_decay = torch.tensor(weight_decay, device=dev)  # (K,)
        # 0 means no clipping
        self.max_norm = torch.tensor([m if m > 0 else math.inf for m in max_grad_norm], device=dev)
        self.betas, self.eps = betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(K, device=dev)  # (K,) optimizer steps taken per policy

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def grad_norms(self) -> torch.Tensor:
        """Each policy's total gradient 2-norm (K,), as torch.nn.utils.clip_grad_norm_ computes it."""
        K = self.params[0].shape[0]
        per_param = [
            p.grad.reshape(K, -1).norm(dim=1) for p in self.params if p.grad is not None
        ]  # each (K,)
        if not per_param:
            return torch.zeros(K, device=self.lr.device)
        return torch.stack(per_param, dim=1).norm(dim=1)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> torch.Tensor:
        """Clip each active policy's gradient to its max norm, then update it; returns the norms.

        active (K,) bool: policies to update; the others keep parameters and state as they are.
        """
        norms = self.grad_norms()  # (K,)
        coef = (self.max_norm / (norms + 1e-6)).clamp(max=1.0)  # (K,)
        beta1, beta2 = self.betas
        steps = self.steps + active.float()
        safe = steps.clamp(min=1)
        step_size = self.lr / (1 - beta1**safe)  # (K,)
        bc2_sqrt = torch.sqrt(1 - beta2**safe)  # (K,)
        decay = 1 - self.lr * self.weight_decay  # (K,)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.view(shape)
            g = p.grad * coef.view(shape)
            m_new = m.lerp(g, 1 - beta1)
            v_new = v * beta2 + (1 - beta2) * g * g
            denom = v_new.sqrt() / bc2_sqrt.view(shape) + self.eps
            p_new = p * decay.view(shape) - step_size.view(shape) * m_new / denom
            p.copy_(torch.where(on, p_new, p))
            m.copy_(torch.where(on, m_new, m))
            v.copy_(torch.where(on, v_new, v))
        self.steps = steps
        return norms

    # -- per-policy state (checkpoints hold one run each)

    def state_of(self, k: int) -> dict[str, Any]:
        """Policy k's optimizer state (moments in TinyGPT parameter order, step count)."""
        return {
            "format": "stacked_adamw",
            "exp_avg": [m[k].clone() for m in self.exp_avg],
            "exp_avg_sq": [v[k].clone() for v in self.exp_avg_sq],
            "step": float(self.steps[k]),
        }

    @torch.no_grad()
    def load_state_of(self, k: int, state: dict[str, Any]) -> None:
        """Restore policy k's state; also reads a torch.optim.AdamW state_dict of one TinyGPT."""
        if state.get("format") == "stacked_adamw":
            moments, moments_sq, step = state["exp_avg"], state["exp_avg_sq"], state["step"]
        else:  # torch.optim.AdamW: state indexed by position in model.parameters()
            per = state["state"]
            if not per:
                moments = [torch.zeros_like(m[k]) for m in self.exp_avg]
                moments_sq = [torch.zeros_like(v[k]) for v in self.exp_avg_sq]
                step = 0.0
            else:
                moments = [per[i]["exp_avg"] for i in range(len(self.params))]
                moments_sq = [per[i]["exp_avg_sq"] for i in range(len(self.params))]
                step = float(per[0]["step"])
        for m, saved in zip(self.exp_avg, moments, strict=True):
            m[k].copy_(saved)
        for v, saved in zip(self.exp_avg_sq, moments_sq, strict=True):
            v[k].copy_(saved)
        self.steps[k] = step
