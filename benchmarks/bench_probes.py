"""Cost of the gradient probes against an ordinary batched backward pass over the same answers.

    python benchmarks/bench_probes.py [--presets quick default] [--rollouts 32] [--prompts 32]

For the model sizes of the given presets (quick: tiny, default: small), P prompts x R answers
with random tokens and lengths uniform in [1, M] are pushed through
  - baseline: one batched forward + backward of sum_i A_i sum_t log pi(o_it) into .grad
    (all parameters), what an RL step's backward costs on these answers;
  - per_answer_gradients for each block (one batched backward plus per-row contractions),
    and aggregator_stats (G = 16, 256 resamples, 2000 bootstrap replicates, every
    aggregator) on the result.
Times are the best of --repeats runs; ratio = per-answer gradient time / baseline time and
total = (gradients + aggregator_stats) / baseline time. The baseline is re-timed right before
each row so that a shared machine's load drifts less between the two.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from vlsim.config import preset_config
from vlsim.countdown import CharTokenizer, prompt_width
from vlsim.model import TinyGPT, model_config
from vlsim.probes import GaussianProjection, aggregator_stats, per_answer_gradients


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Least wall time of `repeats` calls (after one warm-up call), and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def baseline(model: TinyGPT, prompts, tokens, mask, adv) -> None:
    """Ordinary batched forward + backward of the summed policy-gradient objective."""
    tp = prompts.shape[1]
    x = torch.cat([prompts, tokens], dim=1)[:, :-1]
    logp = F.log_softmax(model(x)[:, tp - 1 :].float(), dim=-1)
    tok_logp = logp.gather(2, tokens[:, :, None]).squeeze(2)
    loss = -(adv[:, None] * tok_logp * mask).sum()
    model.zero_grad(set_to_none=True)
    loss.backward()


def bench_preset(preset: str, args: argparse.Namespace) -> None:
    """Print the table of one preset's model size."""
    cfg = preset_config(preset)
    tok = CharTokenizer()
    tp, M = prompt_width(cfg.task), cfg.max_new_tokens
    torch.manual_seed(0)
    model = TinyGPT(model_config(cfg.model_size, tok.vocab_size, tp + M))
    P, R = args.prompts, args.rollouts
    N = P * R
    prompts = torch.randint(0, tok.vocab_size, (N, tp))
    tokens = torch.randint(0, tok.vocab_size, (N, M))
    lengths = torch.randint(1, M + 1, (N,))
    mask = torch.arange(M)[None] < lengths[:, None]
    adv = torch.randn(N)
    data = (model, prompts, tokens, mask, adv)
    base_fn = partial(baseline, *data)

    print(
        f"\npreset {preset}: model {cfg.model_size} ({model.num_parameters():,} params), "
        f"N = {P} x {R} = {N} answers, prompt {tp} + answer width {M} tokens"
    )
    print(
        f"  {'block':15s} {'method':8s} {'D':>9s} {'base ms':>9s} {'probe ms':>9s} "
        f"{'ratio':>6s} {'stats ms':>9s} {'total':>6s}"
    )
    rows = [(block, None) for block in args.blocks]
    if args.projection:
        D = model.num_parameters()
        rows.append(("all", GaussianProjection(D, args.projection, seed=0)))
    for block, proj in rows:
        base, _ = best_of(base_fn, args.repeats)
        fn = partial(per_answer_gradients, *data, block, projection=proj)
        t, ag = best_of(fn, args.repeats)
        g = ag.grads.reshape(P, R, -1)
        L = lengths.numpy().reshape(P, R)
        ts, _ = best_of(partial(aggregator_stats, g, L, 16, M, resamples=256, rng=0), 1)
        label = block if proj is None else f"all -> k={proj.dim_out}"
        print(
            f"  {label:15s} {ag.method:8s} {ag.params:9,d} {base * 1000:9.1f} {t * 1000:9.1f} "
            f"{t / base:6.2f} {ts * 1000:9.1f} {(t + ts) / base:6.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["quick", "default"])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--rollouts", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--blocks", nargs="+", default=["last_attention", "last_block", "head", "all"])
    ap.add_argument("--projection", type=int, default=256, help="k of the projected 'all' row")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: steadier timings on a shared machine; 0 = torch's)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    for preset in args.presets:
        bench_preset(preset, args)


if __name__ == "__main__":
    main()
