"""Run a reproduction's sweeps in the store, one after the other, with a line per run.

The runs are trained by the sweep machinery (`vlsim.sweeps.run_sweep`: jobs of local worker
processes), so every record is stored as it is produced, a stop request (Ctrl-C, SIGTERM) lets
the running jobs end after their step, and running again skips what finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vlsim.reproduce.plan import sweeps
from vlsim.reproduce.spec import ReproduceConfig
from vlsim.store import Store
from vlsim.sweeps import PlannedRun, SweepOutcome, expand, run_sweep

PROGRESS_EVERY = 30.0
"""Seconds between the progress lines on the runs in progress."""

WARMING = "warm starts (supervised), before the first RL step"
"""The progress line while no run has logged an RL step yet."""

PROBE_MAX_BATCH = 1
"""Probed runs go one per job: runs of a slow preset then spread over the workers (on a CPU a
job trains its runs one after another anyway, so nothing is lost)."""


@dataclass
class Execution:
    """What one call of `run_all` did."""

    outcomes: list[SweepOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def interrupted(self) -> bool:
        """True when a stop request cut the reproduction short."""
        return any(o.interrupted for o in self.outcomes)

    @property
    def complete(self) -> bool:
        """True when every run of every sweep finished (now or before)."""
        return all(o.count("finished") + o.skipped == o.total and not o.busy for o in self.outcomes)


def progress(store: Store, groups: list[str]) -> str:
    """'name step 12/60; ...': the runs of these groups that are training now."""
    parts = []
    for group in groups:
        for info in store.list_runs(group_name=group, status="running"):
            step = store.last_step(info.id)
            if step is None:
                continue  # waiting for its job's earlier runs, or in its warm start
            parts.append(f"{info.name} step {step + 1}/{info.total_steps}")
    return "; ".join(parts)


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s"


def run_all(
    cfg: ReproduceConfig,
    store: Store,
    workers: int | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
) -> Execution:
    """Run every unfinished run of the reproduction's sweeps; log one line per run."""
    specs = sweeps(cfg)
    total = sum(len(expand(s)) for s in specs)
    done = 0
    t0 = time.monotonic()
    out = Execution()

    def on_event(what: str, p: PlannedRun, run_id: int | None, status: str) -> None:
        """One line per run skipped or ended (a job marks all its runs started at once)."""
        nonlocal done
        if what == "start":
            return
        done += 1
        word = f"already {status}" if what == "skip" else status
        log(
            f"[{done:>3}/{total}] {_clock(time.monotonic() - t0)}  {p.name}: {word}"
            + (f" (run {run_id})" if run_id is not None else "")
        )

    last_tick = time.monotonic()

    def stop_or_tick() -> bool:
        """The stop request; every PROGRESS_EVERY seconds also a line on the runs in progress."""
        nonlocal last_tick
        if time.monotonic() - last_tick >= PROGRESS_EVERY:
            last_tick = time.monotonic()
            busy = progress(store, [s.group() for s in specs]) or WARMING
            log(f"[{done:>3}/{total}] {_clock(last_tick - t0)}  in progress: {busy}")
        return should_stop()

    for spec in specs:
        if should_stop():
            break
        log(f"sweep {spec.name}: {len(expand(spec))} runs ({len(spec.seeds)} seeds)")
        outcome = run_sweep(
            spec, store, workers=workers, threads=threads, on_event=on_event,
            should_stop=stop_or_tick, max_batch=PROBE_MAX_BATCH if spec is specs[0] else None,
        )  # fmt: skip
        out.outcomes.append(outcome)
        log(outcome.summary())
        if outcome.interrupted:
            break
    out.seconds = time.monotonic() - t0
    return out
