"""K independent TinyGPT policies as one stacked model: forward, sampling and teacher forcing.

Every TinyGPT parameter is stacked along a leading K axis; linear layers become batched
matmuls (`torch.baddbmm`), so policy k only ever reads slice k. A single TinyGPT is the case
K = 1 (`StackedPolicy.of_model` shares its parameters without a copy), so sampling and the
training pass are one code path for one run and for many. Each policy draws its sampling noise
from its own generator, so its tokens do not depend on which policies share its batch.

Shapes: K = policies, N = rows per policy, T = time, C = n_embd, H = heads, D = head size,
V = vocab, M = answer budget, Tp = prompt width, L = layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlsim.model import ModelConfig, TinyGPT

BUCKET_OVERHEAD = 96
"""Cost of one extra training-pass bucket, in positions (one pass's fixed work on 2 CPU cores)."""


def param_names(config: ModelConfig) -> list[str]:
    """TinyGPT's parameter names in `named_parameters()` order (the tied head is `wte.weight`)."""
    names = ["wte.weight", "wpe.weight"]
    for i in range(config.n_layer):
        p = f"blocks.{i}."
        names += [p + s for s in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
            "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
        )]  # fmt: skip
    return names + ["ln_f.weight", "ln_f.bias"]


class StackedCache:
    """Keys and values of K policies, preallocated: (L, K, N, H, capacity, D) each.

    `zeroed=False` leaves the memory uninitialised (zeroing the default preset's ~3 MB per
    rollout is work nothing reads): safe only when nothing reads positions past `length`, as in
    dynamic mode. Static mode attends over the whole capacity under a mask, and 0 x NaN is NaN,
    so it needs zeros.
    """

    def __init__(
        self,
        config: ModelConfig,
        K: int,
        N: int,
        capacity: int,
        like: torch.Tensor,
        zeroed: bool = True,
    ):
        D = config.n_embd // config.n_head
        shape = (config.n_layer, K, N, config.n_head, capacity, D)
        make = torch.zeros if zeroed else torch.empty
        self.k = make(shape, device=like.device, dtype=like.dtype)
        self.v = make(shape, device=like.device, dtype=like.dtype)
        self.length = 0  # positions filled (dynamic mode)

    def select_rows(self, order: torch.Tensor) -> None:
        """Keep rows order (K, n') of every policy (drops finished answers)."""
        kk = torch.arange(order.shape[0], device=order.device)[:, None]  # (K, 1)
        self.k = self.k[:, kk, order]  # (L, K, n', H, cap, D)
        self.v = self.v[:, kk, order]

    def repeat_rows(self, times: int) -> None:
        """Repeat every row `times` times in place of one: (L, K, n, ...) -> (L, K, n times, ...)."""
        self.k = self.k.repeat_interleave(times, dim=2)
        self.v = self.v.repeat_interleave(times, dim=2)


class StackedPolicy:
    """K TinyGPT parameter sets stacked on a leading axis, run as one batched computation."""

    def __init__(self, config: ModelConfig, params: dict[str, torch.Tensor]):
        self.config = config
        self.params = params  # name -> (K, ...) tensor
        self._views: dict[int, TinyGPT] = {}

    @classmethod
    def from_models(cls, models: list[TinyGPT]) -> StackedPolicy:
        """A new stacked copy of the models' weights (trainable leaves)."""
        if not models:
            raise ValueError("a stacked policy needs at least one model")
        config = models[0].config
        for m in models[1:]:
            if m.config != config:
                raise ValueError(f"models differ in shape: {m.config} vs {config}")
        own = [dict(m.named_parameters()) for m in models]
        params = {
            name: torch.stack([o[name].detach() for o in own]).clone().requires_grad_(True)
            for name in param_names(config)
        }
        return cls(config, params)

    @classmethod
    def of_model(cls, model: TinyGPT) -> StackedPolicy:
        """The model as K = 1, sharing its parameters (no copy; gradients reach the model)."""
        own = dict(model.named_parameters())
        return cls(model.config, {n: own[n].unsqueeze(0) for n in param_names(model.config)})

    @property
    def K(self) -> int:
        """Number of policies."""
        return self.params["wte.weight"].shape[0]

    @property
    def device(self) -> torch.device:
        return self.params["wte.weight"].device

    def parameters(self) -> list[torch.Tensor]:
        """The stacked tensors (K, ...), in TinyGPT's parameter order."""
        return [self.params[n] for n in param_names(self.config)]

    def num_parameters(self) -> int:
        """Parameters of one policy (the tied head counted once)."""
        return sum(p[0].numel() for p in self.parameters())

    def model(self, k: int) -> TinyGPT:
        """A plain TinyGPT whose parameters share storage with policy k (always current)."""
        if k not in self._views:
            view = TinyGPT(self.config).to(self.device)
            for name in param_names(self.config):
                parent, attr = _parent(view, name)
                parent._parameters[attr] = nn.Parameter(self.params[name].detach()[k])
            view.lm_head.weight = view.wte.weight  # re-tie to the shared embedding
            self._views[k] = view
        return self._views[k]

    def detached_copy(self) -> StackedPolicy:
        """A frozen copy (e.g. the KL reference policy)."""
        return StackedPolicy(self.config, {n: p.detach().clone() for n, p in self.params.items()})

    # -- the forward pass

    def forward(
        self,
        idx: torch.Tensor,
        cache: StackedCache | None = None,
        head_from: int = 0,
        start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (K, N, T - head_from, V) of tokens idx (K, N, T), continuing a cache if given.

        With `start` (a (1,) long tensor: the position of idx's first token) the cache is used
        statically: written at start.., attended over its whole capacity under a position mask,
        so shapes never change and the step can be captured in a CUDA graph.
        """
        K, N, T = idx.shape
        P, cfg = self.params, self.config
        past = 0 if cache is None else cache.length
        if start is None and past + T > cfg.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds block_size={cfg.block_size}")
        kk = torch.arange(K, device=idx.device)[:, None, None]  # (K, 1, 1)
        pos = torch.arange(T, device=idx.device) + (past if start is None else start)  # (T,)
        x = P["wte.weight"][kk, idx] + P["wpe.weight"][:, pos][:, None]  # (K, N, T, C)
        x = x.reshape(K, N * T, cfg.n_embd)  # (K, NT, C)
        for i in range(cfg.n_layer):
            b = f"blocks.{i}."
            h = _layer_norm(x, P[b + "ln_1.weight"], P[b + "ln_1.bias"])
            x = x + self._attention(h, i, N, T, cache, pos if start is not None else None)
            h = _layer_norm(x, P[b + "ln_2.weight"], P[b + "ln_2.bias"])
            h = F.gelu(_linear(h, P[b + "mlp.c_fc.weight"], P[b + "mlp.c_fc.bias"]))
            x = x + _linear(h, P[b + "mlp.c_proj.weight"], P[b + "mlp.c_proj.bias"])
        if cache is not None and start is None:
            cache.length += T
        x = x.view(K, N, T, cfg.n_embd)[:, :, head_from:]  # (K, N, T', C)
        T2 = x.shape[2]
        x = _layer_norm(x.reshape(K, N * T2, -1), P["ln_f.weight"], P["ln_f.bias"])
        logits = torch.bmm(x, P["wte.weight"].transpose(1, 2))  # (K, N T', V) tied head
        return logits.view(K, N, T2, -1)

    __call__ = forward

    def _attention(
        self,
        h: torch.Tensor,
        layer: int,
        N: int,
        T: int,
        cache: StackedCache | None,
        static_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Causal self-attention of layer `layer` on h (K, N T, C); returns (K, N T, C)."""
        P, b = self.params, f"blocks.{layer}.attn."
        K, _, C = h.shape
        H = self.config.n_head
        D = C // H
        qkv = _linear(h, P[b + "c_attn.weight"], P[b + "c_attn.bias"])  # (K, NT, 3C)
        qkv = qkv.view(K, N, T, 3, H, D).permute(3, 0, 1, 4, 2, 5)  # (3, K, N, H, T, D)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (K, N, H, T, D) each
        if static_pos is not None and cache is not None:  # fixed shapes: mask by position
            cache.k[layer].index_copy_(3, static_pos, k)
            cache.v[layer].index_copy_(3, static_pos, v)
            S = cache.k.shape[4]
            keys = torch.arange(S, device=h.device)
            mask = keys[None, :] <= static_pos[:, None]  # (T, S)
            q = q.reshape(K * N, H, T, D)
            k = cache.k[layer].reshape(K * N, H, S, D)
            v = cache.v[layer].reshape(K * N, H, S, D)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            y = y.view(K, N, H, T, D).permute(0, 1, 3, 2, 4).reshape(K, N * T, C)
            return _linear(y, P[b + "c_proj.weight"], P[b + "c_proj.bias"])
        past = 0 if cache is None else cache.length
        if cache is not None:
            cache.k[layer, :, :, :, past : past + T] = k
            cache.v[layer, :, :, :, past : past + T] = v
            k = cache.k[layer, :, :, :, : past + T]  # (K, N, H, past + T, D)
            v = cache.v[layer, :, :, :, : past + T]
        S = k.shape[3]
        q = q.reshape(K * N, H, T, D)
        k, v = k.reshape(K * N, H, S, D), v.reshape(K * N, H, S, D)
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            mask = torch.ones(T, S, dtype=torch.bool, device=h.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.view(K, N, H, T, D).permute(0, 1, 3, 2, 4).reshape(K, N * T, C)  # (K, NT, C)
        return _linear(y, P[b + "c_proj.weight"], P[b + "c_proj.bias"])


def _parent(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The submodule holding a dotted parameter name, and the attribute."""
    *path, attr = name.split(".")
    for part in path:
        module = getattr(module, part)
    return module, attr


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x (K, R, in) @ w (K, out, in)^T + b (K, out) -> (K, R, out), one batched matmul."""
    return torch.baddbmm(b[:, None, :], x, w.transpose(1, 2))


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last axis of x (K, R, C) with per-policy affine w, b (K, C)."""
    return torch.addcmul(b[:, None, :], F.layer_norm(x, x.shape[-1:]), w[:, None, :])


# ---------------------------------------------------------------- sampling


@dataclass
class SampleOutput:
    """Sampled completions, padded after EOS, with the bookkeeping the RL loss needs.

    Tensors are (N, M) / (N,) for one policy, or (K, N, M) / (K, N) for K stacked policies.
    """

    tokens: torch.Tensor  # long; pad_id after the EOS token
    lengths: torch.Tensor  # long; generated tokens including EOS (M if no EOS)
    truncated: torch.Tensor  # bool; True when the row emitted no EOS within M tokens
    logprobs: torch.Tensor  # float; log-prob of each sampled token, 0 where masked
    mask: torch.Tensor  # bool; position < length (the tokens of the answer)

    def trim(self) -> SampleOutput:
        """The same samples cut to the longest answer's width (drops all-pad columns)."""
        width = max(int(self.lengths.max()), 1) if self.lengths.numel() else 0
        return SampleOutput(
            self.tokens[..., :width],
            self.lengths,
            self.truncated,
            self.logprobs[..., :width],
            self.mask[..., :width],
        )

    def policy(self, k: int) -> SampleOutput:
        """Policy k's samples of a stacked output."""
        return SampleOutput(
            self.tokens[k], self.lengths[k], self.truncated[k], self.logprobs[k], self.mask[k]
        )


def _check_sample_args(prompt, M, greedy, temperatures, block_size) -> None:
    if M <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {M}")
    if not greedy and any(t <= 0 for t in temperatures):
        raise ValueError(f"temperature must be > 0 (or use greedy=True), got {temperatures}")
    Tp = prompt.shape[-1]
    if Tp == 0:
        raise ValueError("prompt must contain at least one token per row")
    if Tp + M > block_size:
        raise ValueError(
            f"prompt width {Tp} + max_new_tokens {M} = {Tp + M} exceeds the model's "
            f"block_size={block_size}"
        )


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
    """Sample up to max_new_tokens (= M) for equal-width prompts (N, Tp) from one TinyGPT.

    The K = 1 case of `sample_stacked` (same code), with (N, M) outputs.
    """
    if prompt.dim() != 2:
        raise ValueError(f"prompt must be a 2-D tensor (N, Tp), got shape {tuple(prompt.shape)}")
    was_training = model.training
    model.eval()
    try:
        out = sample_stacked(
            StackedPolicy.of_model(model), prompt[None], max_new_tokens, eos_id, pad_id,
            [temperature], greedy, [generator],
        )  # fmt: skip
    finally:
        model.train(was_training)
    return out.policy(0)


@torch.no_grad()
def sample_stacked(
    policy: StackedPolicy,
    prompt: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperatures: list[float],
    greedy: bool = False,
    generators: list[torch.Generator | None] | None = None,
    static: bool | None = None,
    group_size: int = 1,
) -> SampleOutput:
    """Sample up to M tokens per row for K policies at once; prompt (K, N, Tp) -> (K, N, M).

    Policy k's noise is a (N, M) block of uniforms drawn up front from generators[k], and row
    i's token at step t is the inverse-CDF draw at u[k, i, t]: tokens depend only on the policy,
    its prompts and its generator, whatever else is batched or when rows leave the batch. The
    prompt is prefilled once into a KV cache and the loop ends as soon as every row of every
    policy has ended. Dynamic mode (CPU default) drops finished rows now and then and attends
    only to filled positions; static mode (CUDA default) keeps every shape fixed and replays
    the decode step as a CUDA graph on CUDA, so a step costs one launch, not hundreds.
    With group_size G > 1, rows gG..gG+G-1 share one prompt (checked), and dynamic mode
    prefills each prompt once and copies its cache G times (the same numbers, G times less
    prefill work: a 32-token call of the default preset took 123 ms instead of 141 ms).
    """
    K, N, Tp = prompt.shape
    M = max_new_tokens
    _check_sample_args(prompt, M, greedy, temperatures, policy.config.block_size)
    device = prompt.device
    static = device.type == "cuda" if static is None else static
    generators = generators or [None] * K
    if len(generators) != K or len(temperatures) != K:
        raise ValueError(f"need one generator and one temperature per policy (K = {K})")
    noise = None
    if not greedy:
        noise = torch.stack(
            [torch.rand(N, M, generator=g, device=device) for g in generators]
        )  # (K, N, M)
    temp = torch.tensor([t if t > 0 else 1.0 for t in temperatures], device=device)[
        :, None, None
    ]  # (K, 1, 1)
    tokens = torch.full((K, N, M), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(K, N, M, device=device)
    lengths = torch.full((K, N), M, dtype=torch.long, device=device)
    rows = torch.arange(N, device=device)[None].expand(K, N)  # (K, n) output row of each row
    live = torch.ones(K, N, dtype=torch.bool, device=device)  # (K, n)
    _check_shared_prompts(prompt, group_size)
    G = group_size
    if static:  # prefills every row: one launch on CUDA, where sharing would save little
        decode = _static_decoder(policy, K, N, Tp + M, device)
        logits = decode.prefill(prompt)  # (K, N, V)
    else:
        cache = StackedCache(
            policy.config, K, N // G, Tp + M, policy.params["wte.weight"], zeroed=False
        )
        logits = policy(prompt[:, ::G], cache, head_from=Tp - 1)[:, :, -1]  # (K, N/G, V) prefill
        if G > 1:
            cache.repeat_rows(G)
            logits = logits.repeat_interleave(G, dim=1)  # (K, N, V)
    check_every = 8 if device.type == "cuda" else 1  # each check waits for the device
    for t in range(M):
        logp = F.log_softmax(logits.float() / temp, dim=-1)  # (K, n, V)
        if greedy:
            tok = logp.argmax(dim=-1)  # (K, n)
        else:
            cdf = logp.exp().cumsum(dim=-1)  # (K, n, V)
            u = noise[:, :, t].gather(1, rows) * cdf[..., -1]  # (K, n)
            tok = (cdf < u[..., None]).sum(-1).clamp(max=cdf.shape[-1] - 1)  # (K, n)
        tok_logp = logp.gather(2, tok[..., None]).squeeze(2)  # (K, n)
        # rows that ended earlier write pad / 0, which their columns already hold
        tokens[:, :, t].scatter_(1, rows, torch.where(live, tok, pad_id))
        logprobs[:, :, t].scatter_(1, rows, torch.where(live, tok_logp, 0.0))
        stop = live & (tok == eos_id)  # (K, n) rows that emit EOS now
        lengths.scatter_(1, rows, torch.where(stop, t + 1, lengths.gather(1, rows)))
        live &= ~stop
        if t == M - 1:
            break
        if (t + 1) % check_every == 0:
            n_live = int(live.sum(1).max())
            if n_live == 0:
                break
            if not static and n_live <= 0.75 * rows.shape[1]:  # drop finished rows
                order = torch.argsort((~live).to(torch.int8), dim=1, stable=True)[:, :n_live]
                rows, tok, live = rows.gather(1, order), tok.gather(1, order), live.gather(1, order)
                cache.select_rows(order)
        # (K, n, V) one step
        logits = decode.step(tok, Tp + t) if static else policy(tok[..., None], cache)[:, :, -1]
    mask = torch.arange(M, device=device) < lengths[..., None]  # (K, N, M)
    ended = (tokens == eos_id).any(dim=2)  # (K, N)
    return SampleOutput(tokens, lengths, ~ended, logprobs, mask)


def _check_shared_prompts(prompt: torch.Tensor, group_size: int) -> None:
    """Refuse a group_size that does not divide the rows of prompt (K, N, Tp) into runs of one
    shared prompt each."""
    K, N, Tp = prompt.shape
    if group_size < 1 or N % group_size:
        raise ValueError(f"group_size={group_size} must be >= 1 and divide the {N} rows")
    grouped = prompt.view(K, N // group_size, group_size, Tp)
    if group_size > 1 and not torch.equal(grouped, grouped[:, :, :1].expand_as(grouped)):
        raise ValueError(f"rows in a group of {group_size} must share one prompt")


class _StaticDecoder:
    """Prefill and one-token decode with a fixed-shape cache; on CUDA the step is a graph."""

    def __init__(self, policy: StackedPolicy, K: int, N: int, capacity: int, device):
        self.policy = policy
        self.cache = StackedCache(policy.config, K, N, capacity, policy.params["wte.weight"])
        self.tok = torch.zeros(K, N, dtype=torch.long, device=device)  # (K, N) input buffer
        self.pos = torch.zeros(1, dtype=torch.long, device=device)  # (1,) its position
        self.graph = None
        if device.type == "cuda":  # capture once; parameters are read in place at replay
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self._step()

    def _step(self) -> torch.Tensor:
        return self.policy(self.tok[..., None], self.cache, start=self.pos)[:, :, -1]

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """Write the prompt (K, N, Tp) at positions 0..Tp-1; logits of its last token."""
        zero = torch.zeros(1, dtype=torch.long, device=prompt.device)
        return self.policy(prompt, self.cache, head_from=prompt.shape[2] - 1, start=zero)[:, :, -1]

    def step(self, tok: torch.Tensor, position: int) -> torch.Tensor:
        """Logits (K, N, V) after feeding tok (K, N) at `position`."""
        self.tok.copy_(tok)
        self.pos.fill_(position)
        if self.graph is None:
            return self._step()
        self.graph.replay()
        return self.out


def _static_decoder(policy: StackedPolicy, K: int, N: int, capacity: int, device):
    """The policy's static decoder for this shape, built (and captured) once."""
    key = (K, N, capacity)
    cached = getattr(policy, "_decoders", None)
    if cached is None:
        cached = policy._decoders = {}
    if key not in cached:
        cached[key] = _StaticDecoder(policy, K, N, capacity, device)
    return cached[key]


# ---------------------------------------------------------------- the training pass


@dataclass
class Buckets:
    """Rows grouped by length rank for the training pass; the same ranks for every policy."""

    order: torch.Tensor  # (K, N) row ids of each policy sorted by length
    bounds: list[tuple[int, int, int]]  # (first rank, end rank, width) of each bucket
    processed: int  # positions the pass runs, all policies
    real: int  # positions holding a real token (prompt + answer), all policies

    @property
    def padded_fraction(self) -> float:
        """Share of processed positions that are padding."""
        return 1.0 - self.real / self.processed if self.processed else 0.0


def plan_buckets(
    lengths: torch.Tensor, prompt_width: int, overhead: float = BUCKET_OVERHEAD
) -> Buckets:
    """Split rows into length buckets minimising processed positions + overhead per bucket.

    lengths (K, N) are answer lengths (0 = row not trained). Each policy's rows are sorted by
    length; bucket j holds the same rank range of every policy and is as wide as the longest
    answer at those ranks. Exact dynamic programme over the N sorted ranks.
    """
    K, N = lengths.shape
    order = torch.argsort(lengths, dim=1, stable=True)  # (K, N)
    ranked = lengths.gather(1, order).max(0).values.cpu().numpy().astype(np.int64)  # (N,)
    width = np.where(ranked > 0, prompt_width + ranked - 1, 0)  # input positions per row
    best = np.full(N + 1, np.inf)
    best[0], cut = 0.0, np.zeros(N + 1, dtype=np.int64)
    for j in range(1, N + 1):  # bucket (i, j] costs (j - i) rows x the widest row j - 1
        i = np.arange(j)
        cost = best[:j] + (j - i) * K * width[j - 1] + overhead * (width[j - 1] > 0)
        cut[j] = int(np.argmin(cost))
        best[j] = cost[cut[j]]
    bounds, j = [], N
    while j > 0:
        i = int(cut[j])
        if ranked[j - 1] > 0:
            bounds.append((i, j, int(ranked[j - 1])))
        j = i
    bounds.reverse()
    processed = sum((b - a) * K * (prompt_width + w - 1) for a, b, w in bounds)
    trained = lengths[lengths > 0]
    real = int((trained + prompt_width - 1).sum())
    return Buckets(order, bounds, processed, real)


def single_bucket(lengths: torch.Tensor, prompt_width: int, width: int) -> Buckets:
    """Every row in one bucket of the given width: the padded computation (for checks)."""
    K, N = lengths.shape
    order = torch.arange(N, device=lengths.device)[None].expand(K, N)
    trained = lengths[lengths > 0]
    real = int((trained + prompt_width - 1).sum())
    return Buckets(order, [(0, N, width)], K * N * (prompt_width + width - 1), real)


def token_logprobs(
    policy: StackedPolicy,
    prompt: torch.Tensor,
    tokens: torch.Tensor,
    buckets: Buckets,
    temperatures: list[float],
    with_entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Teacher-forced log-prob and entropy (K, N, W) of answer tokens, bucket by bucket.

    prompt (K, N, Tp), tokens (K, N, M); W = the widest bucket. Positions past a row's bucket
    width are never computed (they hold 0), so the pass costs what the real tokens cost.
    """
    K, N, Tp = prompt.shape
    W = max(w for _, _, w in buckets.bounds)
    temp = torch.tensor(temperatures, device=prompt.device)[:, None, None, None]  # (K,1,1,1)
    logps, ents = [], []
    for a, b, w in buckets.bounds:
        rows = buckets.order[:, a:b]  # (K, n)
        p = prompt.gather(1, rows[..., None].expand(-1, -1, Tp))  # (K, n, Tp)
        t = tokens.gather(1, rows[..., None].expand(-1, -1, tokens.shape[2]))[..., :w]
        x = torch.cat([p, t], dim=2)[..., :-1]  # (K, n, Tp + w - 1)
        logp = F.log_softmax(policy(x, head_from=Tp - 1).float() / temp, dim=-1)  # (K,n,w,V)
        logps.append(F.pad(logp.gather(3, t[..., None]).squeeze(3), (0, W - w)))  # (K, n, W)
        if with_entropy:
            ents.append(F.pad(-(logp.exp() * logp).sum(-1), (0, W - w)))
    skipped = buckets.bounds[0][0]  # the shortest ranks: rows of length 0, not computed
    index = torch.argsort(buckets.order, dim=1)[..., None].expand(-1, -1, W)  # (K, N, W)
    logp = torch.cat([logps[0].new_zeros(K, skipped, W), *logps], dim=1)  # length order
    logp = logp.gather(1, index)  # (K, N, W) in row order
    entropy = None
    if with_entropy:
        entropy = torch.cat([ents[0].new_zeros(K, skipped, W), *ents], dim=1).gather(1, index)
    return logp, entropy
