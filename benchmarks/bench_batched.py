"""Policy-steps per second of K policies trained as one batched computation, for several K.

Each K trains K runs of one preset (aggregators cycling through grpo, dapo, dr_grpo, vl_norm,
learning rates spread around the preset's) as one `BatchTrainer` and reports the median step
time over --steps steps (after --warmup), policy-steps/s = K / step time, the ratio to K = 1
(K = 1 run K times one after another is the sequential baseline), the training pass's padded
share, and peak memory per policy (CUDA: torch.cuda.max_memory_allocated; CPU: the estimate
`vlsim.batch_runner.policy_bytes`). K = 1, 2, 4, 8; on CUDA also 16, 32, 64.
Run: python benchmarks/bench_batched.py [--preset default] [--steps 10] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch

from vlsim.batch_runner import policy_bytes
from vlsim.batch_trainer import BatchTrainer
from vlsim.config import preset_config
from vlsim.model import pick_device

AGGREGATORS = ("grpo", "dapo", "dr_grpo", "vl_norm")


def configs(args: argparse.Namespace, K: int) -> list:
    """K runs sharing one warm start (same seed), differing in aggregator and learning rate."""
    base = {"device": args.device, "threads": args.threads, "sft_steps": args.sft_steps,
            "eval_every": 0, "checkpoint_every": 0, "sample_log_every": 0}  # fmt: skip
    if args.model_size:
        base["model_size"] = args.model_size
    lr = preset_config(args.preset).lr
    return [
        preset_config(args.preset, **base, aggregator=AGGREGATORS[k % 4], lr=lr * (1 + 0.1 * k))
        for k in range(K)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sft-steps", type=int, default=200, help="warm start (cached)")
    parser.add_argument("--model-size", default=None)
    parser.add_argument("--ks", default=None, help="comma-separated K values to measure")
    args = parser.parse_args()
    device = pick_device(args.device)
    ks = [1, 2, 4, 8] + ([16, 32, 64] if device.type == "cuda" else [])
    if args.ks:
        ks = [int(k) for k in args.ks.split(",")]
    cfg = configs(args, 1)[0]
    print(
        f"preset {args.preset}: {cfg.model_size} policy, B={cfg.prompts_per_step} x "
        f"G={cfg.group_size} answers of <= M={cfg.max_new_tokens} tokens, device {device}, "
        f"torch threads {args.threads if device.type == 'cpu' else '-'}, "
        f"{args.steps} measured steps after {args.warmup}"
    )
    print(f"{'K':>4} {'step s':>8} {'sampling s':>10} {'pass s':>8} {'policy-steps/s':>15} "
          f"{'x K=1':>7} {'padded':>7} {'MiB/policy':>11}")  # fmt: skip
    base_rate = None
    with tempfile.TemporaryDirectory() as cache:
        for K in ks:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            trainer = BatchTrainer(configs(args, K), cache_dir=Path(cache))
            for _ in range(args.warmup):
                trainer.step()
            recs, padded = [], []
            for _ in range(args.steps):
                recs.append(trainer.step()[0])
                padded.append(trainer.padded_fraction)
            step = statistics.median(r["time/step"] for r in recs)
            sampling = statistics.median(r["time/sampling"] for r in recs)
            train_pass = statistics.median(r["time/backward"] + r["time/optimizer"] for r in recs)
            rate = K / step
            if K == 1:
                base_rate = rate
            if device.type == "cuda":
                mib = torch.cuda.max_memory_allocated(device) / K / 2**20
                mem = f"{mib:11.1f}"
            else:
                mem = f"{policy_bytes(trainer.cfgs[0]) / 2**20:10.1f}e"
            print(f"{K:>4} {step:8.3f} {sampling:10.3f} {train_pass:8.3f} {rate:15.2f} "
                  f"{rate / base_rate if base_rate else float('nan'):7.2f} "
                  f"{statistics.median(padded):7.1%} {mem}")  # fmt: skip
            del trainer
    print("e = estimate (CPU); load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip


if __name__ == "__main__":
    main()
