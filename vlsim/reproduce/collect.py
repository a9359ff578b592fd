"""Read a reproduction's records back from the store: probes, metric frames and its compute.

Only runs of the current plan that finished count (a run is matched to the plan by its config,
as `vlsim.sweeps.plan.stored_runs` does), so a store that also holds older attempts gives the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from vlsim.store import RunInfo, Store
from vlsim.sweeps import SweepSpec, expand, stored_runs
from vlsim.sweeps.plan import warm_group


@dataclass
class Collected:
    """One sweep's finished runs, condition -> seed -> run."""

    spec: SweepSpec
    runs: dict[str, dict[int, RunInfo]] = field(default_factory=dict)
    planned: int = 0

    @property
    def finished(self) -> int:
        """Finished runs of the plan."""
        return sum(len(by_seed) for by_seed in self.runs.values())


def collect(store: Store, spec: SweepSpec) -> Collected:
    """The finished runs of a sweep's plan, by condition and seed (plan order)."""
    plan = expand(spec)
    stored = stored_runs(store, spec)
    out = Collected(spec, {p.condition: {} for p in plan}, len(plan))
    for p in plan:
        info = stored.get(p.key)
        if info is not None and info.status == "finished":
            out.runs[p.condition][p.seed] = info
    return out


def probe_records(store: Store, runs: Collected) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """condition -> seed -> the run's probe records (each with its 'step'), in step order."""
    return {
        cond: {seed: store.probes(info.id) for seed, info in by_seed.items()}
        for cond, by_seed in runs.runs.items()
    }


def metric_frames(store: Store, runs: Collected) -> dict[str, dict[int, pd.DataFrame]]:
    """condition -> seed -> the run's metrics (distribution columns dropped)."""
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for cond, by_seed in runs.runs.items():
        out[cond] = {}
        for seed, info in by_seed.items():
            df = store.metrics(info.id)
            out[cond][seed] = df.drop(columns=[c for c in df.columns if c.startswith("dist/")])
    return out


def compute(store: Store, collected: list[Collected]) -> dict[str, Any]:
    """What the finished runs cost: runs, RL policy-steps, warm starts, probes and their times.

    worker_seconds sums, over the jobs, the time from the job's first run start to its last
    run end (a job is one worker process: about the core time with one thread per worker);
    elapsed_seconds is the wall time while some run was training: the first start to the last
    finish less the gaps with none running (runs redone later, in another sitting, add their
    own time, not the days between).
    """
    infos = [info for c in collected for by_seed in c.runs.values() for info in by_seed.values()]
    steps = sum(int(i.config.get("steps", 0)) for i in infos)
    warm = {warm_group(i.config) for i in infos}
    sft = sum(int(json_cfg["sft_steps"]) for json_cfg in _warm_configs(infos))
    counts = store.probe_counts()
    probes = sum(counts.get(i.id, 0) for i in infos)
    steps_per_run = {
        c.spec.name: sorted(
            {int(i.config.get("steps", 0)) for b in c.runs.values() for i in b.values()}
        )
        for c in collected
    }
    return {
        "runs": len(infos),
        "steps_per_run": steps_per_run,
        "runs_planned": sum(c.planned for c in collected),
        "policy_steps": steps,
        "warm_starts": len(warm),
        "sft_steps": sft,
        "probes": probes,
        "worker_seconds": _job_seconds(infos),
        "elapsed_seconds": _busy_seconds(infos),
    }


def _busy_seconds(infos: list[RunInfo]) -> float | None:
    """Length of the union of the runs' (start, finish) intervals; None if no run has both."""
    spans = sorted(
        (i.started, i.finished) for i in infos if i.started is not None and i.finished is not None
    )
    if not spans:
        return None
    total, lo, hi = 0.0, *spans[0]
    for start, end in spans[1:]:
        if start > hi:
            total += hi - lo
            lo = start
        hi = max(hi, end)
    return total + hi - lo


def _warm_configs(infos: list[RunInfo]) -> list[dict[str, Any]]:
    """One config per distinct warm start."""
    seen: dict[str, dict[str, Any]] = {}
    for info in infos:
        seen.setdefault(warm_group(info.config), info.config)
    return list(seen.values())


def _job_seconds(infos: list[RunInfo]) -> float:
    """Sum over jobs of (last run end - first run start)."""
    spans: dict[int, tuple[float, float]] = {}
    for info in infos:
        if info.started is None or info.finished is None:
            continue
        key = info.job_id if info.job_id is not None else -info.id
        lo, hi = spans.get(key, (info.started, info.finished))
        spans[key] = (min(lo, info.started), max(hi, info.finished))
    return sum(hi - lo for lo, hi in spans.values())
