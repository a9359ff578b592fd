"""A tiny decoder-only transformer policy and fast batched sampling with a KV cache.

Shapes: N or B = rows (answers), T = time, C = n_embd, H = heads, D = head size, V = vocab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


class KVCache:
    """Per-layer keys and values, preallocated (block_size by default) so decoding never copies."""

    def __init__(
        self,
        config: ModelConfig,
        batch_size: int,
        capacity: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        capacity = config.block_size if capacity is None else min(capacity, config.block_size)
        head_size = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, capacity, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, H, capacity, D)
        self.v = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, H, capacity, D)
        self.length = 0  # positions already filled

    @property
    def capacity(self) -> int:
        """Most positions the cache can hold."""
        return self.k.shape[3]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Write new keys/values at the current length; return all keys/values so far."""
        t0, t1 = self.length, self.length + k.shape[2]
        self.k[layer, :, :, t0:t1] = k
        self.v[layer, :, :, t0:t1] = v
        return self.k[layer, :, :, :t1], self.v[layer, :, :, :t1]  # (B, H, t1, D) each

    def select_rows(self, keep: torch.Tensor) -> None:
        """Keep only some batch rows (bool mask or index over B), e.g. to drop finished answers."""
        self.k = self.k[:, keep]  # (L, B', H, capacity, D)
        self.v = self.v[:, keep]  # (L, B', H, capacity, D)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention via scaled_dot_product_attention."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        past = 0 if cache is None else cache.length
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, past + T, D)
        dropout_p = self.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif T == 1:  # one new token sees every cached position: no mask needed
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:  # several new tokens after a cached prefix: query i sees keys <= past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
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

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0):
        x = x + self.attn(self.ln_1(x), cache, layer)
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

    def new_cache(self, batch_size: int, capacity: int | None = None) -> KVCache:
        """An empty KV cache on this model's device and dtype (capacity defaults to block_size)."""
        p = self.wte.weight
        return KVCache(self.config, batch_size, capacity, device=p.device, dtype=p.dtype)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, V) for tokens idx (B, T); with a cache, idx continues the cached prefix."""
        B, T = idx.shape
        past = 0 if cache is None else cache.length
        if past + T > self.config.block_size:
            raise ValueError(
                f"sequence of {past + T} tokens (cached {past} + new {T}) exceeds "
                f"block_size={self.config.block_size}; raise block_size or shorten the input"
            )
        if cache is not None and cache.k.shape[1] != B:
            raise ValueError(f"cache was built for {cache.k.shape[1]} rows but idx has {B}")
        if cache is not None and past + T > cache.capacity:
            raise ValueError(f"KV cache holds {cache.capacity} positions; {past + T} needed")
        pos = torch.arange(past, past + T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)  # (B, T, C)
        if cache is not None:
            cache.length += T
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


@dataclass
class SampleOutput:
    """Sampled completions, padded after EOS, with the bookkeeping the RL loss needs."""

    tokens: torch.Tensor  # (N, M) long; pad_id after the EOS token
    lengths: torch.Tensor  # (N,) long; generated tokens including EOS (M if no EOS)
    truncated: torch.Tensor  # (N,) bool; True when the row emitted no EOS within M tokens
    logprobs: torch.Tensor  # (N, M) float; log-prob of each sampled token, 0 where masked
    mask: torch.Tensor  # (N, M) bool; position < length (the tokens of the answer)

    def trim(self) -> SampleOutput:
        """The same samples cut to the longest answer's width (drops all-pad columns)."""
        width = max(int(self.lengths.max()), 1) if self.lengths.numel() else 0
        return SampleOutput(
            self.tokens[:, :width],
            self.lengths,
            self.truncated,
            self.logprobs[:, :width],
            self.mask[:, :width],
        )


@torch.no_grad()
def sample(
    model: TinyGPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> SampleOutput:
    """Sample up to max_new_tokens (= M, the output width) for equal-width prompts (N, Tp).

    The prompt is prefilled once into a KV cache, then one token per step is drawn for every
    row still going; rows that emitted EOS are dropped from the batch now and then, and the loop
    ends as soon as every row has ended. Reproducible for a given generator on CPU.
    """
    if prompt.dim() != 2:
        raise ValueError(f"prompt must be a 2-D tensor (N, Tp), got shape {tuple(prompt.shape)}")
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if not greedy and temperature <= 0:
        raise ValueError(f"temperature must be > 0 (or use greedy=True), got {temperature}")
    N, Tp = prompt.shape
    M = max_new_tokens
    if Tp == 0:
        raise ValueError("prompt must contain at least one token per row")
    if Tp + M > model.config.block_size:
        raise ValueError(
            f"prompt width {Tp} + max_new_tokens {M} = {Tp + M} exceeds the model's "
            f"block_size={model.config.block_size}"
        )
    device = prompt.device
    was_training = model.training
    model.eval()  # dropout off, so the recorded log-probs are the policy's
    try:
        tokens = torch.full((N, M), pad_id, dtype=torch.long, device=device)  # (N, M)
        logprobs = torch.zeros(N, M, device=device)  # (N, M)
        lengths = torch.full((N,), M, dtype=torch.long, device=device)  # (N,)
        ended = torch.zeros(N, dtype=torch.bool, device=device)  # (N,) emitted EOS
        cache = model.new_cache(N, capacity=Tp + M)  # (L, N, H, Tp + M, D) keys and values
        rows = torch.arange(N, device=device)  # (n,) output row of each cache row
        live = torch.ones(N, dtype=torch.bool, device=device)  # (n,) cache rows still going
        scale = temperature if temperature > 0 else 1.0  # greedy logprobs: at temperature
        logits = model(prompt, cache)[:, -1]  # (n, V) prefill the prompt once
        for t in range(M):
            logp = F.log_softmax(logits.float() / scale, dim=-1)  # (n, V)
            if greedy:
                tok = logp.argmax(dim=-1)  # (n,)
            else:
                tok = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)  # (n,)
            tok_logp = logp.gather(1, tok[:, None]).squeeze(1)  # (n,)
            out_rows = rows[live]
            tokens[out_rows, t] = tok[live]
            logprobs[out_rows, t] = tok_logp[live]
            stop = live & (tok == eos_id)  # (n,) rows that emit EOS now
            lengths[rows[stop]] = t + 1
            ended[rows[stop]] = True
            live &= ~stop
            n_live = int(live.sum())
            if n_live == 0 or t == M - 1:
                break
            if n_live <= 0.75 * len(rows):  # drop finished rows once a quarter is dead weight
                rows, tok = rows[live], tok[live]
                cache.select_rows(live)
                live = torch.ones(n_live, dtype=torch.bool, device=device)
            logits = model(tok[:, None], cache)[:, -1]  # (n, V) one step
    finally:
        model.train(was_training)
    mask = torch.arange(M, device=device)[None, :] < lengths[:, None]  # (N, M)
    return SampleOutput(tokens, lengths, ~ended, logprobs, mask)


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
