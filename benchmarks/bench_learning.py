"""Does RL learn? Held-out sampled accuracy (mean@k) from the warm start over a wall-time budget.

For each aggregator: the same seed, problems and warm start; RL steps until the RL wall time
(sampling + update, evaluation excluded) reaches --minutes; held-out greedy accuracy and
sampled mean@k every --eval-every steps. Prints one table row per aggregator (start, best and
final mean@k, the rise in points, steps done, seconds a step) and writes every evaluation to
--out as CSV, so the curves can be drawn.

--parallel 2 trains two aggregators at once with one torch thread each (each then has one of
the two cores); --parallel 1 trains them one after another on --threads threads.
Run: python benchmarks/bench_learning.py [--preset default] [--minutes 10] [--parallel 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from vlsim.config import preset_config
from vlsim.train import Trainer

DEFAULT_AGGREGATORS = ["grpo", "dapo", "dr_grpo", "vl_norm"]


def train_for(
    preset: str,
    aggregator: str,
    minutes: float,
    eval_every: int,
    threads: int,
    cache: str,
    extra: str,
) -> list[dict[str, Any]]:
    """RL with one aggregator until the RL wall time reaches `minutes`; the evaluation records."""
    torch.set_num_threads(threads)
    cfg = preset_config(
        preset,
        aggregator=aggregator,
        steps=1_000_000,
        eval_every=0,
        threads=threads,
        **json.loads(extra),
    )
    trainer = Trainer(cfg, cache_dir=Path(cache))
    rows = [{"aggregator": aggregator, "step": 0, "rl_seconds": 0.0, **trainer.evaluate()}]
    rl_seconds = 0.0
    while rl_seconds < minutes * 60:
        record = trainer.step()
        rl_seconds += record["time/step"]
        if trainer.step_index % eval_every == 0:
            rows.append(
                {
                    "aggregator": aggregator,
                    "step": trainer.step_index,
                    "rl_seconds": rl_seconds,
                    **trainer.evaluate(),
                }
            )
    if rows[-1]["step"] != trainer.step_index:
        rows.append(
            {
                "aggregator": aggregator,
                "step": trainer.step_index,
                "rl_seconds": rl_seconds,
                **trainer.evaluate(),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default")
    parser.add_argument("--aggregators", nargs="+", default=DEFAULT_AGGREGATORS)
    parser.add_argument("--minutes", type=float, default=10.0, help="RL wall time per run")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=0, help="0: 2 // parallel, at least 1")
    parser.add_argument("--cache", default="vlsim-data/warmstart", help="warm-start cache dir")
    parser.add_argument("--out", default="learning.csv")
    parser.add_argument("--extra", default="{}", help="JSON overrides of the preset")
    args = parser.parse_args()
    threads = args.threads or max(1, 2 // args.parallel)

    # Warm start once (cached), so the parallel runs share it instead of racing to build it.
    warm = preset_config(args.preset, threads=2, **json.loads(args.extra))
    start = time.perf_counter()
    Trainer(warm, cache_dir=Path(args.cache))
    print(f"warm start ready in {time.perf_counter() - start:.0f} s ({args.preset} preset)")

    jobs = [
        (args.preset, a, args.minutes, args.eval_every, threads, args.cache, args.extra)
        for a in args.aggregators
    ]
    with ProcessPoolExecutor(max_workers=args.parallel) as pool:
        results = list(pool.map(train_for, *zip(*jobs, strict=True)))

    rows = [row for result in results for row in result]
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    print(
        f"\n{args.preset} preset, {args.minutes:g} min of RL per aggregator, "
        f"{args.parallel} at once x {threads} torch thread(s); held-out sampled mean@k:"
    )
    print(
        f"{'aggregator':>10} {'start':>7} {'best':>7} {'final':>7} {'rise':>7} {'steps':>6} {'s/step':>7}"
    )
    for result in results:
        start_acc = result[0]["eval/mean_at_k"]
        best = max(r["eval/mean_at_k"] for r in result)
        final = result[-1]["eval/mean_at_k"]
        steps = result[-1]["step"]
        per_step = result[-1]["rl_seconds"] / max(steps, 1)
        print(
            f"{result[0]['aggregator']:>10} {start_acc:7.1%} {best:7.1%} {final:7.1%} "
            f"{100 * (final - start_acc):+6.1f}p {steps:6d} {per_step:7.2f}"
        )
    print(f"every evaluation: {args.out}")


if __name__ == "__main__":
    main()
