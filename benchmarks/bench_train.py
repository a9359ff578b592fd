"""RL step speed of the tiny-policy trainer, with the time split the step records.

Default preset: B=8 prompts x G=16 answers = 128 answers of up to M=64 new tokens, a ~0.4M
parameter policy ('small'), sampling with the KV cache. Target: <= 0.12 s a step on 2 CPU cores.
Prints the median over --steps steps (after --warmup) of each part: sampling, reward,
backward, optimizer, and the whole step; tokens per second; and the share of padded positions
in the training pass (length buckets; target < 25%) beside the share a pass padded to the
longest answer, and to M, would process.
Run: python benchmarks/bench_train.py [--preset default] [--steps 20] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vlsim.batched import plan_buckets, single_bucket
from vlsim.config import preset_config
from vlsim.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sft-steps", type=int, default=300, help="warm start (cached in a temp dir)"
    )
    parser.add_argument("--model-size", default=None)
    args = parser.parse_args()
    overrides = {"device": args.device, "threads": args.threads, "sft_steps": args.sft_steps}
    if args.model_size:
        overrides["model_size"] = args.model_size
    cfg = preset_config(args.preset, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, cache_dir=Path(tmp))
    print(
        f"preset {args.preset}: {cfg.model_size} policy ({trainer.model.num_parameters() / 1e6:.2f}M params), "
        f"B={cfg.prompts_per_step} x G={cfg.group_size} = {cfg.prompts_per_step * cfg.group_size} answers, "
        f"M={cfg.max_new_tokens}, device {trainer.device}, torch threads {torch.get_num_threads()}"
    )
    for _ in range(args.warmup):
        trainer.step()
    keys = ["time/sampling", "time/reward", "time/backward", "time/optimizer", "time/step"]
    records, padded, longest, full, processed = [], [], [], [], []
    for _ in range(args.steps):
        records.append(trainer.step())
        ro = trainer.batch.last_rollouts
        Tp = ro.prompts.shape[2]
        buckets = plan_buckets(ro.lengths, Tp)
        padded.append(buckets.padded_fraction)
        processed.append(buckets.processed)
        longest.append(single_bucket(ro.lengths, Tp, int(ro.lengths.max())).padded_fraction)
        full.append(single_bucket(ro.lengths, Tp, cfg.max_new_tokens).padded_fraction)
    for key in keys:
        print(f"{key:16s} median {statistics.median(r[key] for r in records):.3f} s")
    print(
        f"mean answer length {statistics.mean(r['charts/response_length_mean'] for r in records):.1f} tokens"
    )
    print(
        f"tokens/s (generated) median {statistics.median(r['charts/tokens_per_second'] for r in records):.0f}"
    )
    print(
        f"padded positions in the training pass: {statistics.median(padded):.1%} (length "
        f"buckets) vs {statistics.median(longest):.1%} (padded to the longest answer) vs "
        f"{statistics.median(full):.1%} (padded to M)"
    )
    print(f"steps/s {1 / statistics.median(r['time/step'] for r in records):.2f}")
    floor(
        trainer.model,
        statistics.median(processed),
        statistics.median(r["time/backward"] for r in records),
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


def floor(model: torch.nn.Module, positions: float, measured: float) -> None:
    """Print the training pass's matmul work, this machine's matmul speed at its shapes, and the
    time the pass cannot go under (forward + backward = 3 x 2 x weights multiply-adds a position)."""
    cfg = model.config
    weights = sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks."))
    weights += cfg.n_embd * cfg.vocab_size  # the tied output head
    flop = 6 * weights * positions
    n, C = int(positions), cfg.n_embd
    speeds = []
    for k, m in ((C, 3 * C), (C, 4 * C), (4 * C, C)):  # the qkv, MLP-in and MLP-out shapes
        a, b = torch.randn(n, k), torch.randn(k, m)
        a @ b
        start = time.perf_counter()
        for _ in range(20):
            a @ b
        speeds.append(2 * n * k * m * 20 / (time.perf_counter() - start))
    peak = max(speeds)
    print(
        f"training pass: {flop / 1e9:.1f} GFLOP ({positions:.0f} positions x 6 x {weights / 1e6:.2f}M "
        f"weights); float32 matmuls at its shapes run at {min(speeds) / 1e9:.0f}-{peak / 1e9:.0f} "
        f"GFLOPS here, so the pass cannot take under {flop / peak:.3f} s (measured {measured:.3f} s)"
    )


if __name__ == "__main__":
    main()
