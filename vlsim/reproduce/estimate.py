"""How long a reproduction takes, from per-step times measured per preset.

`MEASURED` holds what `benchmarks/bench_reproduce.py` printed (one torch thread per process,
as each of two workers on a 2-core machine uses). `estimate_seconds` adds up every warm
start, RL step, evaluation and probe of the plan and divides each sweep's total by the workers
it can keep busy. It ignores process start-up and imbalance between jobs, so it is a floor on
a quiet machine; other load slows every figure alike.
"""

from __future__ import annotations

import math
from typing import Any

from vlsim.reproduce.plan import sweeps
from vlsim.reproduce.spec import ReproduceConfig
from vlsim.sweeps import expand
from vlsim.sweeps.plan import warm_group

MEASURED: dict[str, dict[str, float]] = {
    "quick": {"sft_step": 0.202, "rl_step": 0.498, "eval": 0.86, "eval_samples": 4,
              "probe_256": 1.642, "probe_1024": 8.144},
    "default": {"sft_step": 0.417, "rl_step": 1.288, "eval": 2.153, "eval_samples": 4,
                "probe_256": 5.325, "probe_1024": 27.326},
    "long": {"sft_step": 1.518, "rl_step": 2.356, "eval": 6.678, "eval_samples": 4,
             "probe_256": 8.889, "probe_1024": 52.332},
    "wide": {"sft_step": 0.892, "rl_step": 1.499, "eval": 2.705, "eval_samples": 4,
             "probe_256": 4.087, "probe_1024": 22.232},
}  # fmt: skip
"""Seconds per warm-start step, RL step (no evaluation), evaluation (at eval_samples) and probe
(256 and 1,024 probed answers) of each preset: benchmarks/bench_reproduce.py, one thread, on
the shared 2-core development machine (AMD EPYC) while other work kept its load average at 4-5,
so on a quiet machine expect about half."""

MEASURED_NOTE = (
    "per-step times of each preset measured by benchmarks/bench_reproduce.py on the shared "
    "2-core machine at load average 4-5"
)

QUIET_SPEEDUP = (1.5, 2.5)
"""How much faster the same steps ran on a quieter machine: the quick preset's RL step took
0.33 s at load average 1.6 against 0.50 s in MEASURED, the default preset's 0.52 s on the quiet
machine (README's bench_train.py figure) against 1.29 s."""


def quiet_range(seconds: float) -> tuple[float, float]:
    """(low, high) wall seconds on a quiet machine for an estimate at MEASURED's load."""
    return seconds / QUIET_SPEEDUP[1], seconds / QUIET_SPEEDUP[0]


FALLBACK = "default"
"""Preset whose times stand in for a preset not measured yet."""


def _times(preset: str) -> dict[str, float]:
    return MEASURED.get(preset, MEASURED[FALLBACK])


def probe_seconds(preset: str, answers: int) -> float:
    """One probe of P x R answers: a power law through the two measured points."""
    t = _times(preset)
    power = math.log(t["probe_1024"] / t["probe_256"]) / math.log(4.0)
    return t["probe_256"] * (answers / 256.0) ** power


def run_seconds(config: dict[str, Any]) -> float:
    """RL steps, evaluations and probes of one planned run (no warm start)."""
    t = _times(config.get("preset", FALLBACK))
    steps = int(config["steps"])
    total = steps * t["rl_step"]
    if config.get("eval_every"):
        evals = steps // int(config["eval_every"]) + 2  # before RL, every K steps, at the end
        total += evals * t["eval"] * int(config["eval_samples"]) / t["eval_samples"]
    probe = config.get("probe", {})
    if probe.get("every"):
        count = math.ceil(steps / int(probe["every"])) + 1  # step 0, every K, the last step
        total += count * probe_seconds(config["preset"], probe["prompts"] * probe["rollouts"])
    return total


def estimate_seconds(cfg: ReproduceConfig, workers: int = 2) -> float:
    """Wall seconds of the whole reproduction with `workers` worker processes (a floor)."""
    seen: set[str] = set()
    wall = 0.0
    for spec in sweeps(cfg):
        plan = expand(spec)
        core = 0.0
        for p in plan:
            group = warm_group(p.config)
            if group not in seen:  # each warm start is trained once, then cached
                seen.add(group)
                core += int(p.config["sft_steps"]) * _times(p.config["preset"])["sft_step"]
            core += run_seconds(p.config)
        wall += core / max(1, min(workers, len(plan)))
    return wall
