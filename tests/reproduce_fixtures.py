"""Hand-made probe records, metric frames and a small report for the reproduction tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from vlsim.reproduce.claim_bias import claims23
from vlsim.reproduce.claim_noise import claim1, figure4
from vlsim.reproduce.claim_speed import claim4
from vlsim.reproduce.lengths import length_rows
from vlsim.reproduce.report import CLAIMS, FORMAT

NAMES = ("grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm")


def fit(slope: float, half: float = 0.2, prompts: int = 4, seed: int = 0) -> dict[str, Any]:
    """A slope fit with its interval and scatter points that follow deviation = L^slope."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 40, size=(prompts, 8))
    points = {
        "length": lengths.ravel().tolist(),
        "deviation": (lengths.ravel() ** slope * 1e-4).tolist(),
        "prompt": np.repeat(np.arange(prompts), 8).tolist(),
    }
    return {"slope": slope, "ci_low": slope - half, "ci_high": slope + half, "se": half / 2,
            "n": prompts * 8, "prompts": prompts, "quantity": "", "points": points}  # fmt: skip


def probe_record(
    step: int,
    paper: float = 1.0,
    free: float = 1.1,
    vl_ratio: float = 0.6,
    grpo_scale: float = 2.0,
    spread: float = 0.1,
    vl_bias: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """A probe record as probe_policy writes it, with chosen slopes, ratios and spreads."""
    aggs = {}
    for name in NAMES:
        free_step = name in ("dr_grpo", "seq_sum", "vl_norm")
        var = 1e-4 * (vl_ratio if name == "vl_norm" else 1.0)
        scale = 1.0 if name in ("dr_grpo", "vl_norm") else grpo_scale
        aggs[name] = {
            "scale": scale, "scale_drift": 0.0 if free_step else spread * scale,
            "variance": var, "relative_bias_calibrated": vl_bias if name == "vl_norm" else 0.0,
            "relative_bias_ci_low": -0.01, "relative_bias_ci_high": 0.1,
        }  # fmt: skip
    meta = {"rollouts": 8, "group_size": 4, "max_len": 48, "alpha": 1.0, "scope": "group",
            "prompts": 4}  # fmt: skip
    return {"step": step, "meta": meta, "aggregators": aggs,
            "length_noise": fit(paper, seed=seed), "length_noise_free": fit(free, seed=seed + 1)}  # fmt: skip


def probes(
    papers: list[float], ratios: list[float] | None = None, spreads: list[float] | None = None
) -> dict[int, list[dict[str, Any]]]:
    """seed -> [first, last] probe records; the last carries the chosen slope and ratio."""
    ratios = ratios or [0.6] * len(papers)
    spreads = spreads or [0.1] * len(papers)
    out = {}
    for seed, (paper, ratio, spread) in enumerate(zip(papers, ratios, spreads, strict=True)):
        first = probe_record(0, paper, seed=seed, grpo_scale=2.0, spread=spread)
        last = probe_record(9, paper, vl_ratio=ratio, grpo_scale=1.5, spread=spread, seed=seed)
        out[seed] = [first, last]
    return out


def frames(
    first_hits: dict[int, int], steps: int = 100, every: int = 10
) -> dict[int, pd.DataFrame]:
    """seed -> metrics whose accuracy jumps from 0.1 to 0.5 at its first hit step."""
    out = {}
    for seed, hit in first_hits.items():
        rows = [{"step": -1, "eval/mean_at_k": 0.1}]
        for s in range(every - 1, steps, every):
            rows.append({"step": s, "eval/mean_at_k": 0.5 if s + 1 >= hit else 0.1})
        out[seed] = pd.DataFrame(rows)
    return out


def small_report(scale: str = "quick") -> dict[str, Any]:
    """A whole report built by the claim functions from hand-made records (no training)."""
    recs = {"quick": probes([0.9, 1.0, 1.1], [0.5, 0.6, 0.55])}
    tables, c2, c3 = claims23(recs, draws=20)
    speed = {
        "DAPO": frames({0: 80, 1: 70, 2: 90, 3: 80}),
        "DAPO + VL Norm": frames({0: 30, 1: 40, 2: 20, 3: 30}),
    }
    claims = [claim1(recs), c2, c3, claim4(speed, [("DAPO", "DAPO + VL Norm")], 0.3)]
    for claim in claims:
        claim["title"], claim["paper"] = CLAIMS[claim["id"]]
    return {
        "format": FORMAT, "scale": scale, "created": "2026-01-01 00:00:00 UTC",
        "command": f"python -m vlsim reproduce --{scale}", "complete": True, "config": {},
        "seeds": {"probes": [0, 1, 2], "speed": [0, 1, 2, 3]},
        "machine": {"cpu": "Test CPU", "cores": 2, "platform": "Linux", "python": "3.11",
                    "torch": "2.x", "vlsim": "0.1.0", "device": "cpu", "workers": 2,
                    "threads_per_worker": 1, "load_average": [1.0, 1.0, 1.0]},
        "compute": {"runs": 11, "runs_planned": 11, "policy_steps": 860, "warm_starts": 4,
                    "sft_steps": 800, "probes": 6, "worker_seconds": 600.0,
                    "elapsed_seconds": 300.0, "command_seconds": 300.0},
        "estimate": {"this_scale_seconds": 290.0, "full_seconds": 3000.0, "workers": 2},
        "notes": [], "claims": claims, "figure4": figure4(recs["quick"], "quick"),
        "aggregators": tables, "runs": {},
        "lengths": {"probes": length_rows({"quick": length_frames([(10, 40, 20.0), (12, 30, 16.0)])}),
                    "speed": length_rows({"DAPO": length_frames([(10, 18, 12.0)])})},
    }  # fmt: skip


def length_frames(steps: list[tuple[float, float, float]]) -> dict[int, pd.DataFrame]:
    """Seed 0's metrics with these (p10, p90, mean) answer lengths at steps 0, 1, ..."""
    rows = [{"step": -1}] + [
        {"step": i, "charts/response_length_p10": a, "charts/response_length_p90": b,
         "charts/response_length_mean": m}
        for i, (a, b, m) in enumerate(steps)
    ]  # fmt: skip
    return {0: pd.DataFrame(rows)}
