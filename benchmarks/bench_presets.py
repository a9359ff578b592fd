"""Do a preset's answer lengths stay a live variable? Spread and growth of lengths over a run.

Runs one preset (optionally with a recipe or another aggregator) for --steps RL steps and
prints, at every evaluation, the spread of the step's answer lengths (p10, p90 and p90/p10 of
`charts/response_length_*`), the step's mean length, and held-out sampled accuracy (mean@k);
on a mixed task a second line gives the step's lengths and share correct per problem size (it
shows which sizes set p10 and p90, and whether an unsolved size's answers keep their length).
The summary gives the smallest p90/p10 over the evaluations (the `wide` preset's target: >= 3),
the mean length at the start and end (mean of the first and last --window steps; the `growing`
preset's target: end/start >= 1.5), held-out accuracy start and end, steps, RL minutes and the
machine's load average (timings on a shared machine are disturbed by others' work).

Run: python benchmarks/bench_presets.py --preset wide --steps 1000 [--recipe dapo] [--out F.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlsim.config import preset_config
from vlsim.train import Trainer


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train and return one row per evaluation (step 0 = the warm-started policy)."""
    overrides: dict[str, Any] = {
        "steps": args.steps,
        "eval_every": 0,
        "threads": args.threads,
        "seed": args.seed,
        "recipe": args.recipe,
        **json.loads(args.set),
    }
    if args.aggregator:
        overrides["aggregator"] = args.aggregator
    cfg = preset_config(args.preset, **overrides)
    print(
        f"preset {cfg.preset}, recipe {cfg.recipe}, aggregator {cfg.aggregator}, seed {cfg.seed}, "
        f"model {cfg.model_size}, M={cfg.max_new_tokens}, B={cfg.prompts_per_step}, "
        f"G={cfg.group_size}, lr={cfg.lr:g}, task sizes {cfg.task.counts()}, "
        f"threads {args.threads}",
        flush=True,
    )
    t0 = time.perf_counter()
    trainer = Trainer(cfg, cache_dir=Path(args.cache))
    print(f"warm start {time.perf_counter() - t0:.0f} s ({trainer.warmstart_info})", flush=True)
    rows = [{"step": 0, "rl_minutes": 0.0, **trainer.evaluate()}]
    window: list[dict[str, Any]] = []
    rl_seconds = 0.0
    print(
        f"{'step':>6} {'p10':>5} {'p90':>5} {'p90/p10':>7} {'mean':>6} {'mean@k':>7} {'RL min':>6}"
    )
    _print(rows[0])
    while trainer.step_index < cfg.steps:
        record = trainer.step()
        rl_seconds += record["time/step"]
        window.append(record)
        if trainer.step_index % args.eval_every == 0 or trainer.step_index == cfg.steps:
            row = {
                "step": trainer.step_index,
                "rl_minutes": rl_seconds / 60,
                "p10": record["charts/response_length_p10"],
                "p90": record["charts/response_length_p90"],
                "mean": record["charts/response_length_mean"],
                "accuracy": record["charts/accuracy"],
                **trainer.evaluate(),
            }
            row["ratio"] = row["p90"] / max(row["p10"], 1.0)
            rows.append(row)
            _print(row)
            if len(cfg.task.counts()) > 1:
                print(by_size(trainer), flush=True)
    rows[0]["step_means"] = [r["charts/response_length_mean"] for r in window]
    return rows


def by_size(trainer: Trainer) -> str:
    """The step's answers per problem size: median (quartiles) of lengths and share correct."""
    ro = trainer.batch.last_rollouts.policy(0)
    parts = []
    for size in trainer.cfg.task.counts():
        rows = [i for i, p in enumerate(ro.problems) if len(p.numbers) == size]
        if not rows:
            continue
        lengths = ro.lengths[rows].float()
        correct = (ro.rewards[rows] >= 1).float().mean()
        parts.append(
            f"{size} numbers: median {lengths.quantile(0.5):.0f} (p25 {lengths.quantile(0.25):.0f}, "
            f"p75 {lengths.quantile(0.75):.0f}), correct {correct:.2f}"
        )
    return "       " + " | ".join(parts)


def _print(row: dict[str, Any]) -> None:
    ratio = f"{row['ratio']:7.2f}" if "ratio" in row else f"{'':>7}"
    p10 = f"{row['p10']:5.0f}" if "p10" in row else f"{'':>5}"
    p90 = f"{row['p90']:5.0f}" if "p90" in row else f"{'':>5}"
    mean = f"{row['mean']:6.1f}" if "mean" in row else f"{'':>6}"
    print(
        f"{row['step']:6d} {p10} {p90} {ratio} {mean} {row.get('eval/mean_at_k', 0):7.3f} "
        f"{row['rl_minutes']:6.1f}",
        flush=True,
    )


def summarise(rows: list[dict[str, Any]], window: int) -> None:
    """The figures a preset is judged by."""
    means = np.asarray(rows[0].pop("step_means"))
    evals = rows[1:]
    start, end = means[:window].mean(), means[-window:].mean()
    ratios = [r["ratio"] for r in evals]
    print(
        f"\np90/p10 at the {len(evals)} evaluations: min {min(ratios):.2f}, "
        f"median {np.median(ratios):.2f}; mean length first {window} steps {start:.1f}, "
        f"last {window} steps {end:.1f} (x{end / start:.2f}); held-out mean@k "
        f"{rows[0]['eval/mean_at_k']:.3f} -> {evals[-1]['eval/mean_at_k']:.3f} "
        f"(best {max(r['eval/mean_at_k'] for r in evals):.3f}); {evals[-1]['step']} steps in "
        f"{evals[-1]['rl_minutes']:.1f} RL minutes; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="wide")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--recipe", default="none")
    parser.add_argument("--aggregator", default="", help="override the preset's aggregator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--window", type=int, default=25, help="steps averaged for start/end")
    parser.add_argument("--set", default="{}", help="more config fields as JSON")
    parser.add_argument("--cache", default="/tmp/vlsim-bench-cache")
    parser.add_argument("--out", default="", help="write the evaluation rows as CSV")
    args = parser.parse_args()
    rows = run(args)
    summarise(rows, args.window)
    if args.out:
        keys = sorted({k for r in rows for k in r})
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
