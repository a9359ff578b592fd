"""Per-answer policy gradients g_i = grad [A_i sum_t log pi(o_it)] from one batched backward pass.

Forward hooks keep each probed layer's input and output; one autograd call gives the gradient of
the summed objective w.r.t. those outputs, which row by row is the row's own (rows never
interact in a causal decoder); each row's parameter gradient is then a per-row contraction
(Goodfellow's per-example gradient trick). Covers Linear, LayerNorm and Embedding layers, which
is all TinyGPT is made of. Without advantages (A_i = 1) this is the score-function gradient
s_i = grad sum_t log pi(o_it), and g_i = A_i s_i.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlsim.probes.projection import GaussianProjection

if TYPE_CHECKING:
    from vlsim.model import TinyGPT

Block = Literal["all", "last_attention", "last_block", "head"]

_CHUNK_BYTES = 512 * 2**20
"""Rough memory budget of one chunk of per-answer gradients (rows are processed in chunks)."""


@dataclass(frozen=True)
class ProbedParam:
    """One probed parameter tensor and the modules whose use of it is differentiated."""

    name: str  # its name in model.named_parameters() terms
    tensor: torch.Tensor
    modules: tuple[nn.Module, ...]  # the modules (and only these uses) that are differentiated


@dataclass
class AnswerGradients:
    """Per-answer gradients of one batch of answers."""

    grads: torch.Tensor  # (N, D) or (N, k) when projected; float32, on the model's device
    params: int  # D: number of probed parameters
    names: list[str]  # probed parameter names, in the order of the flattened vector
    method: str = "batched"  # how they were computed (one batched backward + contractions)


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


def answer_objective(
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


def _check_supported(params: list[ProbedParam]) -> None:
    """The per-row contractions know Linear, affine LayerNorm and plain Embedding layers."""
    for p in params:
        for m in p.modules:
            ok = (
                (isinstance(m, nn.Embedding) and m.max_norm is None and not m.sparse)
                or (isinstance(m, nn.LayerNorm) and m.elementwise_affine)
                or isinstance(m, nn.Linear)
            )
            if not ok:
                raise TypeError(
                    f"per-answer gradients support Linear, LayerNorm and Embedding layers; "
                    f"{p.name} is used by a {type(m).__name__}"
                )


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
    vector of all probed parameters. An embedding looked up without a batch axis (positions)
    has its output expanded to one copy per row, so its gradient is per row too.
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
            obj = answer_objective(logits, tokens, mask, adv, tp, temperature)
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
    advantages: torch.Tensor | None = None,
    block: str = "last_attention",
    temperature: float = 1.0,
    projection: GaussianProjection | None = None,
    chunk_rows: int | None = None,
) -> AnswerGradients:
    """Per-answer gradients g_i = grad [A_i * sum_t log pi(o_it)] of a block's parameters.

    prompts (N, Tp), tokens and mask (N, M) (mask = the answer's tokens), advantages (N,) or
    None for A_i = 1 (the score-function gradient). Log-probs are taken at `temperature`, as
    the RL loss does. Rows are processed in chunks (memory stays near `_CHUNK_BYTES`) and
    projected one parameter tensor at a time when a projection is given (no (n, D) block is
    formed). The model's .grad fields are never touched.
    """
    N, tp = prompts.shape
    if advantages is None:
        advantages = torch.ones(N, device=prompts.device)
    if tokens.shape[0] != N or mask.shape != tokens.shape or advantages.shape != (N,):
        raise ValueError(
            f"shapes disagree: prompts {tuple(prompts.shape)}, tokens {tuple(tokens.shape)}, "
            f"mask {tuple(mask.shape)}, advantages {tuple(advantages.shape)}"
        )
    params, _ = block_parameters(model, block)
    _check_supported(params)
    D = sum(p.tensor.numel() for p in params)
    if projection is not None and projection.dim_in != D:
        raise ValueError(f"projection expects {projection.dim_in} inputs; the block has {D}")
    device = prompts.device
    width = max(int(mask.sum(1).max()), 1) if N else 1  # drop all-pad columns (causal model)
    tokens, mask = tokens[:, :width], mask[:, :width].float()
    x = torch.cat([prompts, tokens], dim=1)[:, :-1]  # (N, Tp + M - 1) inputs
    adv = advantages.to(device=device, dtype=torch.float32)

    act = _activation_bytes(model, x.shape[1])  # forward/backward memory of one row
    if projection is not None:  # one parameter at a time: no (n, D)
        per_row = act + 8 * max(p.tensor.numel() for p in params)
    else:
        per_row = act + D * 8
    chunk = chunk_rows or max(1, min(N, _CHUNK_BYTES // per_row))
    out = torch.empty(N, projection.dim_out if projection is not None else D, device=device)
    was_training = model.training
    model.eval()  # no dropout: the gradient of the policy that sampled
    try:
        for s in range(0, N, chunk):
            rows = slice(s, min(N, s + chunk))
            dest = out[rows]  # (n, D or k), a view
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

            args = (x[rows], tokens[rows], mask[rows], adv[rows], tp, temperature)
            _grads_batched(model, params, *args, emit)
    finally:
        model.train(was_training)
    return AnswerGradients(out, D, [p.name for p in params])
