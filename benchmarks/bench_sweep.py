"""Wall time of an 8-run sweep of quick configs: 1 and 2 local workers, and Ray on this machine.

The sweep: 2 aggregators x 4 seeds of the quick preset, cut to --sft-steps warm-start steps and
--steps RL steps, so the whole benchmark takes a few minutes on 2 cores. Each executor starts
from an empty store (warm starts are trained again: one per seed, shared by the aggregators)
and includes its own start-up (process pool or Ray). Prints each wall time and the speed-ups
over one worker.
Run: python benchmarks/bench_sweep.py [--steps 10] [--sft-steps 100] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from vlsim.store import Store
from vlsim.sweeps import SweepSpec, expand, fit_workers, parse_spec, run_sweep


def spec(steps: int, sft_steps: int) -> SweepSpec:
    """The benchmark's 8-run sweep."""
    return parse_spec(
        {
            "name": "bench",
            "preset": "quick",
            "base": {
                "sft_steps": sft_steps,
                "steps": steps,
                "eval_every": max(1, steps // 2),
                "checkpoint_every": 0,
                "task": {"n_train": 400, "n_test": 32},
            },
            "grid": {"aggregator": ["dapo", "vl_norm"]},
            "seeds": [0, 1, 2, 3],
        }
    )


def timed(label: str, executor: str, workers: int, threads: int, steps: int, sft: int) -> float:
    """Run the sweep in a fresh store; returns its wall time in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        outcome = run_sweep(
            spec(steps, sft), Store(tmp), executor=executor, workers=workers, threads=threads
        )
        seconds = time.perf_counter() - t0
    finished = outcome.count("finished")
    print(f"{label:28s} {seconds:7.1f} s  ({finished}/{outcome.total} runs finished)", flush=True)
    return seconds


def main() -> None:
    """Time the sweep with each executor and print the speed-ups."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10, help="RL steps per run")
    parser.add_argument("--sft-steps", type=int, default=100, help="warm-start steps per seed")
    parser.add_argument(
        "--workers", default="", help="local worker counts to time (default: 1, 2 and all cores)"
    )
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    n_runs = len(expand(spec(args.steps, args.sft_steps)))
    counts = [int(w) for w in args.workers.split(",") if w.strip()] or sorted(
        {1, min(2, cores), min(cores, n_runs)}
    )
    print(
        f"{n_runs} runs: 2 aggregators x 4 seeds, quick preset, {args.sft_steps} warm-start + "
        f"{args.steps} RL steps each; {cores} cores; workers x torch threads fitted to the cores"
    )
    times = {}
    for w in counts:
        w, threads = fit_workers(w)
        times[w] = timed(f"local, {w} x {threads} threads", "local", w, threads, args.steps,
                         args.sft_steps)  # fmt: skip
    base = times[min(times)]
    for w, seconds in times.items():
        if w != min(times):
            print(f"speed-up of {w} local workers over {min(times)}: {base / seconds:.2f}x")
    if args.no_ray:
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray is not installed: pip install -r requirements-dev.txt to time it")
        return
    w, threads = fit_workers(max(counts))
    on_ray = timed(f"ray (local), {w} x {threads} threads", "ray", w, threads, args.steps,
                   args.sft_steps)  # fmt: skip
    print(f"speed-up of Ray ({w} workers) over {min(times)} local worker: {base / on_ray:.2f}x")


if __name__ == "__main__":
    main()
