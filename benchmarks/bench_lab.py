"""Length Lab speed: one evaluation and a 25-point sweep, at the settings the targets name.

Prints seconds (best of N repeats) for:
  * one lab evaluation: 20,000 batches x B=8 x G=16, d=32, log-normal lengths up to M=4096,
    all five aggregators (plus the oracle row); target < 0.25 s on a 2-core machine;
  * a 25-point sweep of alpha at the same settings with 4,000 batches a point; target < 3 s.
Run: python benchmarks/bench_lab.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from vlsim.config import LabConfig
from vlsim.montecarlo import _threads, run_lab, run_sweep


def best_of(fn, repeats: int) -> float:
    """Fastest wall time of fn() over repeats (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = LabConfig(
        lengths={"kind": "lognormal", "median": 300, "sigma": 0.8},
        max_len=4096,
        n_groups=8,
        group_size=16,
        dim=32,
        n_batches=20_000,
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, lab threads {_threads()}"
    )
    one = best_of(lambda: run_lab(cfg), args.repeats)
    print(
        f"one lab evaluation (20,000 batches x 8 x 16, d=32, M=4096, 5 aggregators): {one:.3f} s  (target < 0.25 s)"
    )
    sweep_cfg = cfg.model_copy(update={"n_batches": 4000})
    values = [i * 2 / 24 for i in range(25)]
    sweep = best_of(lambda: run_sweep(sweep_cfg, "alpha", values), max(1, args.repeats // 2))
    print(f"25-point alpha sweep (4,000 batches a point): {sweep:.3f} s  (target < 3 s)")
    full_sweep = best_of(lambda: run_sweep(cfg, "alpha", values), 1)
    print(f"25-point alpha sweep at 20,000 batches a point: {full_sweep:.3f} s")


if __name__ == "__main__":
    main()
