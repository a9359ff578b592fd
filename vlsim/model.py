"""A tiny decoder-only transformer policy (one parameter set; `vlsim.batched` stacks K of them).

Shapes: N or B = rows (answers), T = time, C = n_embd, H = heads, D = head size, V = vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator, model_validator

# Named presets; parameter counts are for a small vocabulary (~30 tokens) and block_size 128.
MODEL_SIZES: dict[str, dict] = {
    "tiny": {"n_layer": 2, "n_head": 4, "n_embd": 64},  # ~0.11M parameters
    "small": {"n_layer": 2, "n_head": 4, "n_embd": 128},  # ~0.42M
    "medium": {"n_layer": 4, "n_head": 4, "n_embd": 176},  # ~1.5M
    "large": {"n_layer": 6, "n_head": 8, "n_embd": 256},  # ~4.8M
}


class ModelConfig(BaseModel):
    """Hyper-parameters of TinyGPT; validated so that a bad value fails early and by name."""

    vocab_size: int = Field(description="Number of distinct token ids (embedding rows).")
    block_size: int = Field(
        default=128, description="Maximum total tokens in one sequence (prompt + completion)."
    )
    n_layer: int = Field(default=2, description="Number of transformer blocks.")
    n_head: int = Field(default=4, description="Attention heads per block.")
    n_embd: int = Field(default=128, description="Width of the residual stream.")
    dropout: float = Field(default=0.0, description="Dropout probability during training.")

    @field_validator("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
    @classmethod
    def _positive(cls, value: int, info) -> int:
        if value <= 0:
            raise ValueError(f"{info.field_name} must be a positive integer, got {value}")
        return value

    @field_validator("dropout")
    @classmethod
    def _dropout_range(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {value}")
        return value

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) "
                "so that every head gets the same size"
            )
        return self


def model_config(size: str, vocab_size: int, block_size: int) -> ModelConfig:
    """Build a ModelConfig from a named preset in MODEL_SIZES."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(MODEL_SIZES)}")
    return ModelConfig(vocab_size=vocab_size, block_size=block_size, **MODEL_SIZES[size])


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention via scaled_dot_product_attention."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network with 4x expansion and GELU."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    """Decoder-only transformer with learned positions and an lm head tied to the embedding."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Number of distinct parameters (the tied head is counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for tokens idx (B, T)."""
        B, T = idx.shape
        if self.config.block_size < T:
            raise ValueError(
                f"sequence of {T} tokens exceeds block_size={self.config.block_size}; "
                "raise block_size or shorten the input"
            )
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        return self.lm_head(self.ln_f(x))  # (B, T, V)


def pick_device(preference: str = "auto") -> torch.device:
    """Choose a device: 'auto' tries cuda, then mps, then cpu; explicit names are checked."""
    pref = preference.lower().strip()
    has_cuda = torch.cuda.is_available()
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if pref == "auto":
        return torch.device("cuda" if has_cuda else "mps" if has_mps else "cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref == "cuda" or pref.startswith("cuda:"):
        if not has_cuda:
            raise ValueError(
                f"device {preference!r} was requested but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use 'cpu' or 'auto'"
            )
        return torch.device(pref)
    if pref == "mps":
        if not has_mps:
            raise ValueError(
                "device 'mps' was requested but Apple MPS is not available on this machine; "
                "use 'cpu' or 'auto'"
            )
        return torch.device("mps")
    raise ValueError(f"unknown device {preference!r}; choose 'auto', 'cpu', 'cuda' or 'mps'")


def sequence_logprobs(
    model: TinyGPT, prompt: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced log-prob (N, M) and policy entropy (N, M) of each completion token."""
    if prompt.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"prompt has {prompt.shape[0]} rows but tokens has {tokens.shape[0]}; they must match"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    Tp = prompt.shape[1]
    x = torch.cat([prompt, tokens], dim=1)[:, :-1]  # (N, Tp + M - 1) inputs
    logits = model(x)[:, Tp - 1 :]  # (N, M, V) predictions of the completion tokens
    logp = F.log_softmax(logits.float() / temperature, dim=-1)  # (N, M, V)
    token_logp = logp.gather(2, tokens[:, :, None]).squeeze(2)  # (N, M)
    entropy = -(logp.exp() * logp).sum(dim=-1)  # (N, M)
    return token_logp, entropy
