"""CountDown verifier and solver speed, at the settings the targets name.

Prints seconds per call (median and best of N repeats) for:
  * verify("(12-7)*3+8/4", (3, 7, 12, 8, 4), 17), 200 calls a repeat; target median < 0.2 ms
    (the reward of a 64-answer batch then costs well under 15 ms);
  * solve((3, 7, 12, 5), 42), one call a repeat (every solution of a four-number problem);
    target best < 50 ms (building a problem set of thousands stays interactive).
Timings depend on the machine and its load; say which when reporting them.
Run: python benchmarks/bench_verifier.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import timeit

from vlsim.countdown import solve, verify

VERIFY_CALLS = 200  # calls per timed repeat of verify
VERIFY_TARGET_S = 0.2e-3
SOLVE_TARGET_S = 0.05


def per_call_seconds(fn, number: int, repeats: int) -> list[float]:
    """Seconds per call of fn(), one figure per repeat of `number` calls."""
    return [t / number for t in timeit.Timer(fn).repeat(repeat=repeats, number=number)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")

    verify_s = per_call_seconds(
        lambda: verify("(12-7)*3+8/4", (3, 7, 12, 8, 4), 17), VERIFY_CALLS, args.repeats
    )
    median = statistics.median(verify_s)
    print(
        f"verify, 5 numbers ({args.repeats} repeats x {VERIFY_CALLS} calls): median "
        f"{median * 1e3:.4f} ms, best {min(verify_s) * 1e3:.4f} ms a call "
        f"(target median < {VERIFY_TARGET_S * 1e3:g} ms: {'met' if median < VERIFY_TARGET_S else 'MISSED'})"
    )

    solve_s = per_call_seconds(lambda: solve((3, 7, 12, 5), 42), 1, max(1, args.repeats // 3))
    best = min(solve_s)
    print(
        f"solve, 4 numbers ({len(solve_s)} repeats): best {best * 1e3:.2f} ms, median "
        f"{statistics.median(solve_s) * 1e3:.2f} ms "
        f"(target best < {SOLVE_TARGET_S * 1e3:g} ms: {'met' if best < SOLVE_TARGET_S else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
