"""Gradient probes: per-answer gradients on fixed prompts, every aggregator evaluated on them.

During a training run (`vlsim.train.run_training`) the probe draws R answers for each of a few
fixed test prompts, computes every answer's own policy gradient

    g_i = grad_theta [ A_i * sum_t log pi(o_{i,t} | q, o_{i,<t}) ]       (DESIGN section 1)

(the gradient of the objective, i.e. minus the gradient of the loss) for the parameters of one
block, and then asks what each aggregator would do with these very answers: it resamples groups
of G out of the R answers many times, weights them as the aggregator does and measures scale,
variance per unit scale, CV and direction (DESIGN section 2, "Figures every view reports"). It
also reports the paper's Figure 4 (an answer's squared deviation from its prompt's mean gradient
against its length, with a log-log slope) and the token-level view of DESIGN section 3 (a token's
score norm against the policy's entropy there).

Everything returned is a plain JSON-safe dict; undefined values (e.g. a CV when the reference
gradient is zero) are None rather than NaN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlsim.advantages import group_advantages
from vlsim.aggregators import (
    AGGREGATORS,
    _weights_unchecked,
    check_alpha,
    check_lengths,
    check_name,
    check_scope,
)

if TYPE_CHECKING:
    from vlsim.config import ProbeConfig
    from vlsim.model import TinyGPT
    from vlsim.train import Trainer

Block = Literal["all", "last_attention", "last_block", "head"]
Method = Literal["auto", "batched", "vmap", "loop"]

SCATTER_POINTS = 512
"""At most this many (length, deviation) points go into a probe record for the scatter chart."""

ENTROPY_BINS = 10
"""Equal-width entropy bins on [0, log V] of the token-level view (fixed, so steps compare)."""

_CHUNK_BYTES = 512 * 2**20
"""Rough memory budget of one chunk of per-answer gradients (rows are processed in chunks)."""

_GRAM_MAX_ROWS = 4096
"""aggregator_stats uses the N x N Gram matrix of the gradients up to this many answers."""


# ---------------------------------------------------------------- which parameters


@dataclass(frozen=True)
class ProbedParam:
    """One probed parameter tensor and the modules whose use of it is differentiated."""

    name: str  # its name in model.named_parameters() terms (the key for functional_call)
    tensor: torch.Tensor
    modules: tuple[nn.Module, ...]  # the modules (and only these uses) that are differentiated


def block_parameters(model: TinyGPT, block: str) -> tuple[list[ProbedParam], bool]:
    """The probed parameters of a block, and whether tied weights stay tied.

    all             every parameter; the output head is tied to the token embedding, so that
                    matrix's gradient sums both of its uses (tied = True).
    last_attention  the last block's attention (qkv and output projections).
    last_block      the whole last transformer block (layer norms, attention, MLP).
    head            the output projection only: the tied embedding matrix differentiated through
                    its use as the output layer, not as the input embedding (tied = False).
    """
    if block == "all":
        root, prefix, tied = model, "", True
    elif block == "last_attention":
        root, prefix, tied = model.blocks[-1].attn, f"blocks.{len(model.blocks) - 1}.attn.", False
    elif block == "last_block":
        root, prefix, tied = model.blocks[-1], f"blocks.{len(model.blocks) - 1}.", False
    elif block == "head":
        return [ProbedParam("lm_head.weight", model.lm_head.weight, (model.lm_head,))], False
    else:
        raise ValueError(f"unknown block {block!r}; choose all, last_attention, last_block or head")
    found: dict[int, ProbedParam] = {}
    for mod_name, module in root.named_modules(remove_duplicate=False):
        for attr, tensor in module._parameters.items():
            if tensor is None:
                continue
            key = id(tensor)
            if key in found:
                old = found[key]
                if module not in old.modules:
                    found[key] = ProbedParam(old.name, old.tensor, (*old.modules, module))
            else:
                name = prefix + (f"{mod_name}.{attr}" if mod_name else attr)
                found[key] = ProbedParam(name, tensor, (module,))
    return list(found.values()), tied


# ---------------------------------------------------------------- random projection


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (SeedSequence), for torch generators."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


class GaussianProjection:
    """A fixed random map R^D -> R^k with N(0, 1/k) entries, so E||P g||^2 = ||g||^2.

    The matrix is drawn in column blocks from generators seeded by (seed, block), so the same
    seed always gives the same map; it is kept in memory when it is small (k * D <= cache_max
    floats) and otherwise redrawn block by block as columns are projected.
    """

    _COLS = 8192
    cache_max = 2**25  # keep the matrix when k * D is at most this many floats

    def __init__(self, dim_in: int, dim_out: int, seed: int = 0):
        if dim_in < 1 or dim_out < 1:
            raise ValueError(f"projection dims must be positive, got {dim_in} -> {dim_out}")
        self.dim_in, self.dim_out, self.seed = int(dim_in), int(dim_out), int(seed)
        self._cache: dict[torch.device, torch.Tensor] = {}
        self._last: tuple[int, torch.device, torch.Tensor] | None = None  # last drawn block

    def _block(self, j: int, device: torch.device) -> torch.Tensor:
        """Columns [j*COLS, (j+1)*COLS) of the matrix, transposed: (cols, k)."""
        if self._last is not None and self._last[:2] == (j, device):
            return self._last[2]
        cols = min(self._COLS, self.dim_in - j * self._COLS)
        gen = torch.Generator().manual_seed(_seed(self.seed, j))
        block = (torch.randn(cols, self.dim_out, generator=gen) / math.sqrt(self.dim_out)).to(
            device
        )
        self._last = (j, device, block)
        return block

    def matrix_t(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The whole map transposed, (D, k)."""
        device = torch.device(device)
        n_blocks = -(-self.dim_in // self._COLS)
        return torch.cat([self._block(j, device) for j in range(n_blocks)])

    def project_columns(self, g: torch.Tensor, start: int) -> torch.Tensor:
        """P[:, start:start+w] g for g (n, w) holding coordinates start..start+w-1: (n, k).

        Projecting a vector piece by piece (e.g. one parameter tensor at a time) and summing
        the pieces gives its projection; pieces in increasing order draw each block once.
        """
        stop = start + g.shape[-1]
        if not 0 <= start <= stop <= self.dim_in:
            raise ValueError(f"columns {start}:{stop} outside 0:{self.dim_in}")
        if self.dim_in * self.dim_out <= self.cache_max:
            if g.device not in self._cache:
                self._cache[g.device] = self.matrix_t(g.device)
            return g @ self._cache[g.device][start:stop]
        out = torch.zeros(*g.shape[:-1], self.dim_out, device=g.device, dtype=g.dtype)
        for j in range(start // self._COLS, -(-stop // self._COLS)):
            lo, hi = max(start, j * self._COLS), min(stop, (j + 1) * self._COLS)
            block = self._block(j, g.device)[lo - j * self._COLS : hi - j * self._COLS]
            out += g[..., lo - start : hi - start] @ block
        return out

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """Project rows: (n, D) -> (n, k)."""
        if g.shape[-1] != self.dim_in:
            raise ValueError(f"expected vectors of size {self.dim_in}, got {g.shape[-1]}")
        return self.project_columns(g, 0)


# ---------------------------------------------------------------- per-answer gradients


@dataclass
class AnswerGradients:
    """Per-answer gradients of one batch of answers."""

    grads: torch.Tensor  # (N, D) or (N, k) when projected; float32, on the model's device
    params: int  # D: number of probed parameters
    names: list[str]  # probed parameter names, in the order of the flattened vector
    method: str  # 'batched', 'vmap' or 'loop'
    note: str = ""  # why a slower method was used, when it was


def _objective(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    prompt_width: int,
    temperature: float,
) -> torch.Tensor:
    """sum over rows of A_i * sum_t log pi(o_t) over the answer tokens; logits (n, Tp+M-1, V)."""
    logp = F.log_softmax(logits[:, prompt_width - 1 :].float() / temperature, dim=-1)  # (n, M, V)
    tok = logp.gather(2, tokens[:, :, None]).squeeze(2)  # (n, M)
    return (advantages[:, None] * tok * mask).sum()


def _supported(params: list[ProbedParam]) -> bool:
    """The batched trick knows Linear, LayerNorm and plain Embedding layers."""
    for p in params:
        for m in p.modules:
            if isinstance(m, nn.Embedding):
                if m.max_norm is not None or m.sparse:
                    return False
            elif isinstance(m, nn.LayerNorm):
                if not m.elementwise_affine:
                    return False
            elif not isinstance(m, nn.Linear):
                return False
    return True


def _per_row_param_grad(
    module: nn.Module, tensor: torch.Tensor, inp: torch.Tensor, dy: torch.Tensor, n: int
) -> torch.Tensor:
    """Per-row gradient (n, *tensor.shape) of one parameter from one call of its module.

    inp is the module's input and dy the gradient of the objective w.r.t. its output; rows do
    not interact, so the row's own gradient is the row's own sum over positions.
    """
    if isinstance(module, nn.Linear):
        x = inp.reshape(n, -1, inp.shape[-1])  # (n, T, in)
        d = dy.reshape(n, -1, dy.shape[-1])  # (n, T, out)
        if tensor is module.weight:
            return torch.einsum("nto,nti->noi", d, x)  # (n, out, in)
        return d.sum(1)  # (n, out)
    if isinstance(module, nn.LayerNorm):
        shape = tuple(module.normalized_shape)
        d = dy.reshape(n, -1, *shape)
        if tensor is module.weight:
            x_hat = F.layer_norm(inp, shape, None, None, module.eps).reshape(n, -1, *shape)
            return (d * x_hat).sum(1)  # (n, *shape)
        return d.sum(1)
    if isinstance(module, nn.Embedding):
        idx = inp if inp.dim() > 1 else inp.expand(n, *inp.shape)  # (n, T)
        idx = idx.reshape(n, -1)
        d = dy.reshape(n, idx.shape[1], -1)  # (n, T, C)
        g = torch.zeros(n, *tensor.shape, device=dy.device, dtype=dy.dtype)  # (n, V, C)
        g.scatter_add_(1, idx[:, :, None].expand(-1, -1, d.shape[-1]), d)
        if module.padding_idx is not None:
            g[:, module.padding_idx] = 0.0
        return g
    raise TypeError(f"no per-row gradient rule for {type(module).__name__}")


def _grads_batched(
    model: nn.Module,
    params: list[ProbedParam],
    x: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    adv: torch.Tensor,
    tp: int,
    temperature: float,
    emit: Callable[[int, int, torch.Tensor | None], None],
) -> None:
    """Per-row gradients from ONE batched forward and backward, one parameter at a time.

    emit(column, size, g) receives each probed parameter's per-row gradient g (n, size), or
    None when the objective does not depend on it, and the column where it starts in the flat
    vector of all probed parameters.

    Forward hooks keep each probed module's input and output; one autograd call gives the
    gradient of the summed objective w.r.t. those outputs, which row by row is the row's own
    (rows never interact); the parameter gradient of each row is then a per-row contraction
    (Goodfellow's per-example gradient trick). An embedding looked up without a batch axis
    (positions) has its output expanded to one copy per row, so its gradient is per row too.
    """
    n = x.shape[0]
    modules = list(dict.fromkeys(m for p in params for m in p.modules))
    calls: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {m: [] for m in modules}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        out = output
        if isinstance(module, nn.Embedding) and inputs[0].dim() == 1:
            out = out.expand(n, *out.shape)  # one copy per row: per-row gradient
        if not out.requires_grad:  # model without grad-requiring parameters
            out = out.detach().requires_grad_()
        calls[module].append((inputs[0].detach(), out))
        return out

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.enable_grad():
            logits = model(x)
            obj = _objective(logits, tokens, mask, adv, tp, temperature)
            outs = [out for m in modules for _, out in calls[m]]
            dys = torch.autograd.grad(obj, outs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    k = 0
    dy_of: dict[nn.Module, list[torch.Tensor | None]] = {}
    for m in modules:
        dy_of[m] = list(dys[k : k + len(calls[m])])
        k += len(calls[m])
    with torch.no_grad():
        col = 0
        for p in params:
            size = p.tensor.numel()
            g = None
            for m in p.modules:
                for (inp, _), dy in zip(calls[m], dy_of[m], strict=True):
                    if dy is not None:
                        part = _per_row_param_grad(m, p.tensor, inp, dy, n).reshape(n, size)
                        g = part if g is None else g.add_(part)
            emit(col, size, g)
            col += size


def _row_objective(model: nn.Module, tied: bool, tp: int, temperature: float) -> Callable:
    """f(params, x_row, tokens_row, mask_row, adv) for one row, via functional_call."""
    from torch.func import functional_call

    def f(p: dict, x: torch.Tensor, tok: torch.Tensor, m: torch.Tensor, a: torch.Tensor):
        logits = functional_call(model, p, (x[None],), tie_weights=tied, strict=False)
        return _objective(logits, tok[None], m[None], a[None], tp, temperature)

    return f


def _grads_vmap(model, params, tied, x, tokens, mask, adv, tp, temperature) -> torch.Tensor:
    """(n, D) per-row gradients with torch.func: vmap(grad(f)) over rows."""
    from torch.func import grad, vmap
    from torch.nn.attention import SDPBackend, sdpa_kernel

    f = _row_objective(model, tied, tp, temperature)
    values = {p.name: p.tensor.detach() for p in params}
    # The math attention kernel is made of ops vmap has batching rules for (the fused CPU
    # kernel has none, and vmap would fall back to a slow per-row loop inside it).
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        g = vmap(grad(f), in_dims=(None, 0, 0, 0, 0))(values, x, tokens, mask, adv)
    return torch.cat([g[p.name].reshape(x.shape[0], -1) for p in params], dim=1)


def _grads_loop(model, params, tied, x, tokens, mask, adv, tp, temperature) -> torch.Tensor:
    """(n, D) per-row gradients, one autograd call per row (slow; the fallback)."""
    f = _row_objective(model, tied, tp, temperature)
    rows = []
    for i in range(x.shape[0]):
        values = {p.name: p.tensor.detach().requires_grad_() for p in params}
        with torch.enable_grad():
            out = f(values, x[i], tokens[i], mask[i], adv[i])
            gs = torch.autograd.grad(out, list(values.values()), allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (torch.zeros_like(v) if g is None else g).reshape(-1)
                    for v, g in zip(values.values(), gs, strict=True)
                ]
            )
        )
    return torch.stack(rows)


def _activation_bytes(model: nn.Module, width: int) -> int:
    """Rough bytes of activations one row of `width` tokens keeps for its backward pass."""
    cfg = getattr(model, "config", None)
    try:
        per_token = cfg.n_embd * cfg.n_layer * 24 + cfg.vocab_size * 4
    except AttributeError:
        per_token = 16384
    return width * per_token * 4


def per_answer_gradients(
    model: TinyGPT,
    prompts: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    block: str = "last_attention",
    temperature: float = 1.0,
    projection: GaussianProjection | None = None,
    method: Method = "auto",
    chunk_rows: int | None = None,
) -> AnswerGradients:
    """Per-answer gradients g_i = grad [A_i * sum_t log pi(o_it)] of a block's parameters.

    prompts (N, Tp), tokens and mask (N, M) (mask = the answer's tokens), advantages (N,).
    Log-probs are taken at `temperature`, as the RL loss does. Rows are processed in chunks
    (memory stays near `_CHUNK_BYTES`) and projected right away when a projection is given
    (the batched method projects one parameter tensor at a time, so no (n, D) block is ever
    formed). Methods: 'batched' (one batched pass plus per-row contractions; the fast default
    for TinyGPT's Linear / LayerNorm / Embedding layers), 'vmap' (torch.func vmap(grad(...))
    over rows), 'loop' (one autograd call per row). 'auto' uses 'batched' when every probed
    layer is of a known kind, else 'vmap', and falls back to 'loop' only if vmap fails; the
    method used (and why, for a fallback) is returned.
    """
    N, tp = prompts.shape
    if tokens.shape[0] != N or mask.shape != tokens.shape or advantages.shape != (N,):
        raise ValueError(
            f"shapes disagree: prompts {tuple(prompts.shape)}, tokens {tuple(tokens.shape)}, "
            f"mask {tuple(mask.shape)}, advantages {tuple(advantages.shape)}"
        )
    params, tied = block_parameters(model, block)
    D = sum(p.tensor.numel() for p in params)
    if projection is not None and projection.dim_in != D:
        raise ValueError(f"projection expects {projection.dim_in} inputs; the block has {D}")
    device = prompts.device
    width = max(int(mask.sum(1).max()), 1) if N else 1  # drop all-pad columns (causal model)
    tokens, mask = tokens[:, :width], mask[:, :width].float()
    x = torch.cat([prompts, tokens], dim=1)[:, :-1]  # (N, Tp + M - 1) inputs
    adv = advantages.to(device=device, dtype=torch.float32)

    note = ""
    if method == "auto":
        method = "batched" if _supported(params) else "vmap"
        if method == "vmap":
            note = "some probed layer is not Linear/LayerNorm/Embedding: used torch.func vmap"
    if method not in ("batched", "vmap", "loop"):
        raise ValueError(f"unknown method {method!r}; choose auto, batched, vmap or loop")
    act = _activation_bytes(model, x.shape[1])  # forward/backward memory of one row
    if method == "batched" and projection is not None:  # one parameter at a time: no (n, D)
        per_row = act + 8 * max(p.tensor.numel() for p in params)
    else:
        per_row = act + D * 4 * (2 if method == "batched" else 6)
    chunk = chunk_rows or max(1, min(N, _CHUNK_BYTES // per_row))
    out_dim = projection.dim_out if projection is not None else D
    out = torch.empty(N, out_dim, device=device)
    was_training = model.training
    model.eval()  # no dropout: the gradient of the policy that sampled
    try:
        for s in range(0, N, chunk):
            rows = slice(s, min(N, s + chunk))
            dest = out[rows]  # (n, D or k), a view
            args = (x[rows], tokens[rows], mask[rows], adv[rows], tp, temperature)
            if method == "batched":
                if projection is None:

                    def emit(col: int, size: int, g: torch.Tensor | None, dest=dest) -> None:
                        if g is None:
                            dest[:, col : col + size].zero_()
                        else:
                            dest[:, col : col + size].copy_(g)

                else:
                    dest.zero_()

                    def emit(col: int, size: int, g: torch.Tensor | None, dest=dest) -> None:
                        if g is not None:
                            dest.add_(projection.project_columns(g, col))

                _grads_batched(model, params, *args, emit)
                continue
            if method == "vmap":
                try:
                    g = _grads_vmap(model, params, tied, *args)
                except (RuntimeError, NotImplementedError) as err:
                    method, note = (
                        "loop",
                        f"vmap failed ({type(err).__name__}: {err}); per-row loop",
                    )
                    g = _grads_loop(model, params, tied, *args)
            else:
                g = _grads_loop(model, params, tied, *args)
            dest.copy_(projection(g) if projection is not None else g)
    finally:
        model.train(was_training)
    return AnswerGradients(out, D, [p.name for p in params], method, note)


# ---------------------------------------------------------------- token-level view


@torch.no_grad()
def token_uncertainty(
    model: TinyGPT, prompts: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy (N, M) of the policy at each answer position and the token's score norm (N, M).

    The score norm is ||d log pi(o_t) / d z||^2 = ||onehot(o_t) - p||^2 = 1 - 2 p_o + sum_v p_v^2
    for the tempered logits z = logits / T (exact at the output layer, no backward pass): near 0
    where the policy is sure of the token it wrote, so such tokens add almost no noise.
    """
    was_training = model.training
    model.eval()
    try:
        tp = prompts.shape[1]
        x = torch.cat([prompts, tokens], dim=1)[:, :-1]
        logits = model(x)[:, tp - 1 :].float() / temperature  # (N, M, V)
    finally:
        model.train(was_training)
    logp = F.log_softmax(logits, dim=-1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)  # (N, M)
    p_o = p.gather(2, tokens[:, :, None]).squeeze(2)  # (N, M)
    score = (1.0 - 2.0 * p_o + (p * p).sum(-1)).clamp_min(0.0)  # (N, M)
    return entropy, score


def entropy_bins(
    entropy: np.ndarray,
    score: np.ndarray,
    weight: np.ndarray,
    n_bins: int = ENTROPY_BINS,
    max_entropy: float = 1.0,
) -> dict[str, list]:
    """Binned means of a token's score norm against its entropy (1-D arrays over tokens).

    weight is each token's A_i^2, so `contribution_mean` is the mean squared size of the
    token's term in g_i at the output layer and `contribution_share` each bin's share of the
    total. Bins are equal-width on [0, max_entropy]; an empty bin has None means.
    """
    edges = np.linspace(0.0, max_entropy, n_bins + 1)
    which = np.clip(np.searchsorted(edges, entropy, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(float)
    sums = {
        "entropy": np.bincount(which, entropy, n_bins),
        "score": np.bincount(which, score, n_bins),
        "contribution": np.bincount(which, weight * score, n_bins),
    }
    total = sums["contribution"].sum()

    def means(v: np.ndarray) -> list:
        return [float(s / c) if c > 0 else None for s, c in zip(v, count, strict=True)]

    return {
        "edges": [float(e) for e in edges],
        "count": [int(c) for c in count],
        "entropy_mean": means(sums["entropy"]),
        "score_mean": means(sums["score"]),
        "contribution_mean": means(sums["contribution"]),
        "contribution_share": [
            float(s / total) if total > 0 else None for s in sums["contribution"]
        ],
    }


# ---------------------------------------------------------------- all aggregators


def _as_tensor(grads: Any) -> torch.Tensor:
    """A float32 tensor of the gradients (numpy arrays land on the CPU)."""
    if isinstance(grads, torch.Tensor):
        return grads.detach().float()
    return torch.as_tensor(np.asarray(grads), dtype=torch.float32)


class _Quadratic:
    """Inner products of weighted sums sum_i w_i g_i of N gradient vectors, in float64.

    Up to `_GRAM_MAX_ROWS` vectors it keeps the Gram matrix of the *centred* gradients
    c_i = g_i - m (m = their mean) and the products u_i = c_i . m, so that

        <sum v_i g_i, sum w_i g_i> = v K w + (sum v)(u . w) + (sum w)(u . v) + (sum v)(sum w)|m|^2

    (centring keeps float32 products accurate when the gradients share a large mean); beyond
    that it forms the weighted sums directly.
    """

    def __init__(self, flat: torch.Tensor):
        N, D = flat.shape
        mean32 = flat.mean(0)  # (D,)
        self.mean = mean32.double()
        self.mean_sq = float(self.mean @ self.mean)
        self.gram = N <= _GRAM_MAX_ROWS
        if self.gram:
            self.K = torch.zeros(N, N, dtype=torch.float64, device=flat.device)
            self.u = torch.zeros(N, dtype=torch.float64, device=flat.device)
            for c in range(0, D, 16384):
                part = flat[:, c : c + 16384] - mean32[c : c + 16384]  # (N, cols) centred
                self.K += (part @ part.T).double()
                self.u += (part @ mean32[c : c + 16384]).double()
        else:
            self.flat = flat.double()

    def sq_norms(self, W: torch.Tensor) -> torch.Tensor:
        """|sum_i W[s, i] g_i|^2 for every row s of W (s, N)."""
        if not self.gram:
            gh = W @ self.flat  # (s, D)
            return (gh * gh).sum(1)
        tot = W.sum(1)  # (s,)
        return ((W @ self.K) * W).sum(1) + 2 * tot * (W @ self.u) + tot * tot * self.mean_sq

    def noise(self, log_lengths: torch.Tensor) -> torch.Tensor:
        """Each answer's noise variance estimate |g_i - E g_i|^2, rows prompt by prompt: (N,).

        Within each prompt E g_i is modelled as a + b log L_i (so a real length effect is not
        counted as noise): the squared residual of that least-squares fit, divided by
        1 - leverage, estimates Var(g_i). log_lengths is (P, R).
        """
        P, R = log_lengths.shape
        x = log_lengths - log_lengths.mean(1, keepdim=True)  # (P, R)
        X = torch.stack([torch.ones_like(x), x], dim=2)  # (P, R, 2)
        H = X @ torch.linalg.pinv(X)  # (P, R, R) hat matrix (pinv: constant lengths are fine)
        Q = torch.eye(R, dtype=H.dtype, device=H.device) - H  # residual maker
        if self.gram:
            K = self.K.reshape(P, R, P, R).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # (P, R, R)
            res = (Q @ K @ Q).diagonal(dim1=1, dim2=2)  # (P, R) squared residual norms
        else:
            r = Q @ self.flat.reshape(P, R, -1)  # (P, R, D)
            res = (r * r).sum(-1)
        leverage = H.diagonal(dim1=1, dim2=2)
        return (res.clamp_min(0.0) / (1 - leverage).clamp_min(1e-6)).reshape(-1)

    def dot(self, v: torch.Tensor, w: torch.Tensor) -> float:
        """<sum v_i g_i, sum w_i g_i> for two weight vectors (N,)."""
        if not self.gram:
            return float((v @ self.flat) @ (w @ self.flat))
        sv, sw = v.sum(), w.sum()
        return float(
            v @ self.K @ w + sv * (self.u @ w) + sw * (self.u @ v) + sv * sw * self.mean_sq
        )


def resamples_used(resamples: int, rollouts: int, group_size: int) -> int:
    """The resamples aggregator_stats draws: rounded up to a multiple of R // G."""
    per_round = max(rollouts // group_size, 1)
    return -(-resamples // per_round) * per_round


def aggregator_stats(
    grads: Any,
    lengths: Any,
    group_size: int,
    max_len: int,
    names: Sequence[str] | None = None,
    alpha: float = 1.0,
    scope: str = "group",
    resamples: int = 256,
    rng: np.random.Generator | int | None = None,
) -> dict[str, dict[str, float | None]]:
    """Scale, variance, CV and direction of every aggregator on the same per-answer gradients.

    grads (P, R, D) (numpy or torch): R answers' gradients for each of P prompts; lengths
    (P, R). One resample draws, for every prompt, G = group_size of its R answers without
    replacement: a batch of B = P groups, weighted x = weights(name, (P, G) lengths) and
    summed, g_hat = sum x g. Over the resamples:

      scale          M E[sum x]  (1 for the unbiased aggregators; scale_drift = M std(sum x))
      variance       E||g_hat - E g_hat||^2 / E[sum x]^2   (per unit scale)
      reference      the unbiased estimate from all answers: mean over prompts of each
                     prompt's mean g (the best stand-in for grad J these answers allow)
      cv             sqrt(variance) / |reference|
      cosine         cos(E g_hat, reference); direction_bias = 1 - cosine
      relative_bias  |E g_hat / E[sum x] - reference| / |reference|
      bias_noise     the relative_bias that answer noise alone would give if all answers of a
                     prompt had the same expected gradient (the reference is itself an
                     estimate from R answers): relative_bias well above it means that the
                     weighting genuinely tilts the update (e.g. length and reward correlate).
                     Var(g_i) is estimated around a per-prompt fit a + b log L (`_Quadratic.
                     noise`), so a real length effect does not inflate it
      relative_variance  variance / variance of dr_grpo (when dr_grpo is among the names)

    Resamples come in balanced rounds: one random permutation of each prompt's answers is cut
    into R // G disjoint groups, and batch b of the round takes group b of every prompt. Each
    batch is still a uniform draw of G answers per prompt, but every answer is used equally
    often, so E g_hat of the unbiased aggregators carries no resampling noise (relative_bias
    is then 0 up to rounding, not Monte Carlo error). `resamples` is rounded up to whole rounds
    (a multiple of R // G; see `resamples_used`).

    Vectorised over resamples (chunks of rounds, no loop per resample): a resample's weights
    are scattered into a vector w over all N = P R answers, and E||g_hat||^2 = E[w^T K w] with
    K the Gram matrix of the gradients (see `_Quadratic`). Cost: one N x N x D product, then
    O(resamples N^2) per aggregator. Undefined figures (a zero reference) are None.
    """
    g = _as_tensor(grads)
    if g.ndim != 3:
        raise ValueError(f"grads must have shape (P, R, D), got {tuple(g.shape)}")
    P, R, D = g.shape
    L = check_lengths(lengths, max_len)
    if L.shape != (P, R):
        raise ValueError(f"lengths must have shape {(P, R)} like grads, got {L.shape}")
    G = int(group_size)
    if not 1 <= G <= R:
        raise ValueError(f"group_size must be between 1 and R = {R}, got {group_size}")
    names = list(AGGREGATORS) if names is None else [check_name(n) for n in names]
    alpha, scope = check_alpha(alpha), check_scope(scope)
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    N = P * R
    quad = _Quadratic(g.reshape(N, D))
    dev = quad.mean.device
    # the reference: every prompt has R answers, so the mean over prompts of the prompts'
    # means is the plain mean of all N gradients
    w_ref = torch.full((N,), 1.0 / N, dtype=torch.float64, device=dev)
    ref_sq = quad.dot(w_ref, w_ref)
    ref_norm = math.sqrt(max(ref_sq, 0.0))

    acc: dict[str, dict[str, Any]] = {n: {"tot": [], "q": 0.0, "w": np.zeros(N)} for n in names}
    per_round = R // G  # disjoint groups one random permutation of a prompt's answers gives
    resamples = resamples_used(resamples, R, G)  # whole rounds only
    rounds_per_chunk = max(1, 2**22 // (N * per_round))
    done = 0
    while done < resamples:
        r = min(rounds_per_chunk, (resamples - done) // per_round)
        perm = rng.random((r, P, R)).argsort(axis=-1)[..., : per_round * G]  # (r, P, k G)
        idx = perm.reshape(r, P, per_round, G).transpose(0, 2, 1, 3).reshape(-1, P, G)
        # (s, P, G): batch b of a round takes block b of every prompt's permutation
        s = idx.shape[0]
        L_sel = np.take_along_axis(np.broadcast_to(L, (s, P, R)), idx, axis=-1)  # (s, P, G)
        for name in names:
            x = _weights_unchecked(name, L_sel, max_len, alpha, scope)  # (s, P, G)
            W = np.zeros((s, P, R))
            np.put_along_axis(W, idx, x, axis=-1)
            W = W.reshape(s, N)
            a = acc[name]
            a["tot"].append(x.sum(axis=(1, 2)))  # (s,) sum x of each resample
            a["w"] += W.sum(axis=0)
            a["q"] += float(quad.sq_norms(torch.from_numpy(W).to(dev)).sum())
        done += s

    log_L = torch.from_numpy(np.log(L.astype(np.float64))).to(dev)
    noise_i = quad.noise(log_L)  # (N,) each answer's noise variance
    out: dict[str, dict[str, float | None]] = {}
    for name in names:
        a = acc[name]
        tot = np.concatenate(a["tot"])
        mt = float(tot.mean())  # E[sum x]
        w_bar = torch.from_numpy(a["w"] / resamples).to(dev)  # E[w]: E g_hat = sum w_bar g
        mean_sq, dot_ref = quad.dot(w_bar, w_bar), quad.dot(w_bar, w_ref)
        var = max(a["q"] / resamples - mean_sq, 0.0) / mt**2
        drift = float(tot.std())
        mean_norm = math.sqrt(max(mean_sq, 0.0))
        cos = None
        if mean_norm > 0 and ref_norm > 0:
            cos = max(-1.0, min(1.0, dot_ref / (mean_norm * ref_norm)))
        # E g_hat / E[sum x] - reference = sum shift_i g_i (no cancellation of large terms)
        shift = w_bar / mt - w_ref
        bias_sq = quad.dot(shift, shift)
        # what relative_bias would be from answer noise alone, if every answer of a prompt had
        # the same expected gradient: E|sum shift_i g_i|^2 = sum shift_i^2 Var(g_i)
        noise_sq = float((shift * shift * noise_i).sum())
        out[name] = {
            "scale": max_len * mt,
            "scale_drift": max_len * drift,
            "variance": var,
            "cv": math.sqrt(var) / ref_norm if ref_norm > 0 else None,
            "cosine": cos,
            "direction_bias": 1.0 - cos if cos is not None else None,
            "relative_bias": math.sqrt(max(bias_sq, 0.0)) / ref_norm if ref_norm > 0 else None,
            "bias_noise": math.sqrt(noise_sq) / ref_norm if ref_norm > 0 else None,
        }
    base = out["dr_grpo"]["variance"] if "dr_grpo" in out else None
    for name in names:
        out[name]["relative_variance"] = out[name]["variance"] / base if base else None
    return out


# ---------------------------------------------------------------- Figure 4: noise vs length

_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: float) -> float:
    """The 97.5% quantile of Student's t with df degrees of freedom (two-sided 95%).

    A table (3 decimals) for df <= 30; beyond, the Cornish-Fisher expansion around the normal
    quantile 1.959964, accurate to about 1e-4 there (scipy is not a dependency).
    """
    if df < 1:
        return float("nan")
    if df <= 30:
        return _T975[int(df) - 1]
    z = 1.959963984540054
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def fit_loglog_slope(lengths: Any, deviations: Any, prompt_ids: Any) -> dict[str, float | int]:
    """OLS slope of log(deviation) on log(length), with a separate intercept per prompt.

    Both logs are demeaned within each prompt (the fixed-effects estimator), so only how
    deviation grows with length *inside* a prompt counts. Points with deviation <= 0 (answers
    with A_i = 0 have g_i = 0) or non-finite values are skipped, as are prompts left with fewer
    than two points. The 95% CI uses Student's t with n - prompts - 1 degrees of freedom.
    Returns slope, ci_low, ci_high, se, n (points used), prompts (used), df, skipped (points
    dropped for a zero / invalid value) and skipped_prompts; the slope is NaN when undefined.
    """
    L = np.asarray(lengths, dtype=np.float64).reshape(-1)
    dev = np.asarray(deviations, dtype=np.float64).reshape(-1)
    pid = np.asarray(prompt_ids).reshape(-1)
    if not L.shape == dev.shape == pid.shape:
        raise ValueError("lengths, deviations and prompt_ids must have the same number of items")
    ok = np.isfinite(L) & np.isfinite(dev) & (L > 0) & (dev > 0)
    skipped = int((~ok).sum())
    L, dev, pid = L[ok], dev[ok], pid[ok]
    _, inv, counts = np.unique(pid, return_inverse=True, return_counts=True)
    keep = counts[inv] >= 2
    skipped_prompts = int((counts < 2).sum())
    L, dev, inv = L[keep], dev[keep], inv[keep]
    _, inv = np.unique(inv, return_inverse=True)
    n, k = L.size, (int(inv.max()) + 1 if L.size else 0)
    nan = float("nan")
    result: dict[str, float | int] = {
        "slope": nan, "ci_low": nan, "ci_high": nan, "se": nan, "n": int(n), "prompts": k,
        "df": max(n - k - 1, 0), "skipped": skipped, "skipped_prompts": skipped_prompts,
    }  # fmt: skip
    if n == 0:
        return result
    x, y = np.log(L), np.log(dev)
    x = x - (np.bincount(inv, x) / np.bincount(inv))[inv]
    y = y - (np.bincount(inv, y) / np.bincount(inv))[inv]
    sxx = float(x @ x)
    if sxx <= 1e-12:
        return result
    slope = float(x @ y) / sxx
    result["slope"] = slope
    df = n - k - 1
    if df >= 1:
        resid = y - slope * x
        se = math.sqrt(float(resid @ resid) / df / sxx)
        half = t_quantile_975(df) * se
        result.update(se=se, ci_low=slope - half, ci_high=slope + half)
    return result


def scatter_points(
    lengths: np.ndarray,
    deviations: np.ndarray,
    prompt_ids: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
    cap: int = SCATTER_POINTS,
    seed: int = 0,
) -> dict[str, list]:
    """Points with a positive deviation as plain lists, subsampled (seeded) to at most `cap`."""
    dev = np.asarray(deviations, dtype=np.float64).reshape(-1)
    idx = np.flatnonzero(np.isfinite(dev) & (dev > 0))
    if idx.size > cap:
        idx = np.sort(np.random.default_rng(seed).choice(idx, cap, replace=False))
    out = {
        "length": [int(v) for v in np.asarray(lengths).reshape(-1)[idx]],
        "deviation": [float(v) for v in dev[idx]],
        "prompt": [int(v) for v in np.asarray(prompt_ids).reshape(-1)[idx]],
    }
    for key, values in (extra or {}).items():
        out[key] = [float(v) for v in np.asarray(values).reshape(-1)[idx]]
    return out


# ---------------------------------------------------------------- the probe of a run


def _clean(obj: Any) -> Any:
    """Plain JSON-safe values: numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


@lru_cache(maxsize=2)
def _projection(dim_in: int, dim_out: int, seed: int) -> GaussianProjection:
    """The run's fixed projection, kept between probes (its matrix too, when small)."""
    return GaussianProjection(dim_in, dim_out, seed)


def probe_policy(trainer: Trainer, probe: ProbeConfig | None = None) -> dict[str, Any]:
    """Probe the trainer's current policy; returns a JSON-safe record (see the module doc).

    Probe prompts are the first `probe.prompts` problems of the test split (the training split
    if there is no test split), the same at every call. R answers per prompt are drawn with a
    generator seeded by (run seed, step), so a run's probes are reproducible and the trainer's
    own random state is untouched. Advantages use all R answers of a prompt as its group, with
    the run's std_normalize: a low-noise baseline, so each answer has one fixed g_i whichever
    G answers a resample groups it with (training computes advantages inside each group of G,
    which adds baseline noise that the probe leaves out). Resamples then form groups of
    G = min(group_size, R). With a projection every figure is computed on the projected
    gradients (norms and variances are then unbiased estimates of the full ones).

    Record layout (plain JSON; None where a figure is undefined):
      meta              block, params (D), dim (D, or k when projected), projection_dim,
                        prompts (P), rollouts (R), group_size (G), resamples (as used), method,
                        note, max_len (M), alpha, scope, std_normalize, temperature, aggregators
      reward_mean, accuracy, length_mean, length_std, truncation_rate,
      informative_prompts (share of prompts whose R rewards differ), zero_advantage (answers
      with A = 0, left out of the Figure 4 fit), reference_norm (|mean g|)
      aggregators       {name: scale, scale_drift, variance, cv, cosine, direction_bias,
                        relative_bias, bias_noise, relative_variance} (see aggregator_stats)
      length_noise      Figure 4: slope, ci_low, ci_high, se, n, prompts, df, skipped,
                        skipped_prompts of log deviation on log length (fit_loglog_slope);
                        fit_uncertain: the same fit against each answer's summed token score
                        norm instead of its length; points: {length, deviation, prompt,
                        score_sum} lists (at most SCATTER_POINTS) for the scatter chart
      tokens            n, entropy_mean, score_mean, bins (entropy_bins on [0, log V])
      seconds, time     {sampling, gradients, stats} wall seconds
    """
    from vlsim.train import rollout

    t0 = time.perf_counter()
    cfg = trainer.cfg
    pc = probe or cfg.probe
    step = int(trainer.step_index)
    source = trainer.test_problems or trainer.train_problems
    problems = list(source[: pc.prompts])
    P, R, M = len(problems), pc.rollouts, cfg.max_new_tokens
    G = min(cfg.group_size, R)
    model, device = trainer.model, trainer.device

    gen = torch.Generator(device=device).manual_seed(_seed(cfg.seed, 0x5EED, step))
    ro = rollout(model, problems, cfg, trainer.tokenizer, gen, R)
    t_sample = time.perf_counter()

    rewards = ro.rewards.float().view(P, R)
    adv = group_advantages(rewards, cfg.std_normalize)  # (P, R)
    params, _ = block_parameters(model, pc.block)
    D = sum(p.tensor.numel() for p in params)
    projection = None
    if pc.projection_dim:
        projection = _projection(D, pc.projection_dim, _seed(cfg.seed, 0x9807))
    ag = per_answer_gradients(
        model,
        ro.prompts,
        ro.tokens,
        ro.mask,
        adv.reshape(-1),
        block=pc.block,
        temperature=cfg.temperature,
        projection=projection,
    )
    width = int(ro.lengths.max())  # answer columns that hold any token
    entropy, score = token_uncertainty(model, ro.prompts, ro.tokens[:, :width], cfg.temperature)
    t_grad = time.perf_counter()

    lengths = ro.lengths.to("cpu").numpy().reshape(P, R)
    adv_np = adv.to("cpu").numpy()
    stats = aggregator_stats(
        ag.grads.reshape(P, R, -1),
        lengths,
        group_size=G,
        max_len=M,
        names=list(AGGREGATORS),
        alpha=cfg.alpha,
        scope=cfg.scope,
        resamples=pc.resamples,
        rng=np.random.default_rng([cfg.seed, 0x57A7, step]),
    )
    grads = ag.grads.detach().to("cpu", torch.float32).numpy().reshape(P, R, -1)
    ref = grads.astype(np.float64).mean(axis=(0, 1))
    # Figure 4: each answer's squared deviation from its prompt's mean gradient over all R
    # answers (that mean's own noise adds about mean_j Var(g_j) / R to every deviation)
    dev = ((grads - grads.mean(axis=1, keepdims=True)) ** 2).sum(-1)  # (P, R)
    nonzero = adv_np != 0
    prompt_ids = np.broadcast_to(np.arange(P)[:, None], (P, R))
    mask = ro.mask[:, :width].to("cpu").numpy()
    score_np = score.to("cpu").numpy() * mask
    score_sum = score_np.sum(1).reshape(P, R)  # per answer: summed token score norms
    fit = fit_loglog_slope(lengths[nonzero], dev[nonzero], prompt_ids[nonzero])
    fit_unc = fit_loglog_slope(score_sum[nonzero], dev[nonzero], prompt_ids[nonzero])
    points = scatter_points(
        lengths[nonzero], dev[nonzero], prompt_ids[nonzero], {"score_sum": score_sum[nonzero]}
    )
    # token-level view
    m = mask.astype(bool)
    w_tok = np.broadcast_to((adv_np.reshape(-1) ** 2)[:, None], m.shape)
    ent_np = entropy.to("cpu").numpy()
    vocab = model.config.vocab_size
    bins = entropy_bins(ent_np[m], score_np[m], w_tok[m], ENTROPY_BINS, math.log(vocab))
    t_end = time.perf_counter()

    L = lengths.astype(np.float64)
    record = {
        "meta": {
            "block": pc.block,
            "params": ag.params,
            "dim": int(grads.shape[-1]),
            "projection_dim": pc.projection_dim,
            "prompts": P,
            "rollouts": R,
            "group_size": G,
            "resamples": resamples_used(pc.resamples, R, G),
            "method": ag.method,
            "note": ag.note,
            "max_len": M,
            "alpha": cfg.alpha,
            "scope": cfg.scope,
            "std_normalize": cfg.std_normalize,
            "temperature": cfg.temperature,
            "aggregators": list(AGGREGATORS),
        },
        "reward_mean": float(rewards.mean()),
        "accuracy": float((rewards >= 1).float().mean()),
        "length_mean": float(L.mean()),
        "length_std": float(L.std()),
        "truncation_rate": float(ro.truncated.float().mean()),
        "informative_prompts": float(
            (rewards.max(1).values > rewards.min(1).values).float().mean()
        ),
        "zero_advantage": int((~nonzero).sum()),
        "reference_norm": float(np.sqrt(ref @ ref)),
        "aggregators": stats,
        "length_noise": {**fit, "fit_uncertain": fit_unc, "points": points},
        "tokens": {
            "n": int(m.sum()),
            "score_mean": float(score_np[m].mean()) if m.any() else None,
            "entropy_mean": float(ent_np[m].mean()) if m.any() else None,
            "bins": bins,
        },
        "seconds": t_end - t0,
        "time": {
            "sampling": t_sample - t0,
            "gradients": t_grad - t_sample,
            "stats": t_end - t_grad,
        },
    }
    return _clean(record)


__all__ = [
    "AnswerGradients",
    "GaussianProjection",
    "ProbedParam",
    "aggregator_stats",
    "block_parameters",
    "entropy_bins",
    "fit_loglog_slope",
    "per_answer_gradients",
    "probe_policy",
    "resamples_used",
    "scatter_points",
    "t_quantile_975",
    "token_uncertainty",
]
