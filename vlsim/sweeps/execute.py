"""Running a sweep: its unfinished runs, packed into jobs, on local workers or on Ray.

Packing rule (`pack`): runs that may share a batch (same kind, model shape, task and answer
budget M) are ordered so that runs sharing a warm start sit together, then cut into batches of
`batch_size(n, workers) = min(MAX_BATCH, ceil(n / workers))` runs: every worker gets a batch,
and no batch grows past MAX_BATCH.

Executors:

- `local` (default): each batch is a job in the store's queue, executed by a
  `python -m vlsim.worker` process (`vlsim.jobs.JobManager`); at most `workers` jobs run at once,
  counting every running job of the store. Each run writes its records as it trains (and
  checkpoints), so a crash of the driver keeps every finished run and the others' progress.
- `ray`: each batch is a Ray task (`ray_address`, else $RAY_ADDRESS, else a local Ray). Workers
  elsewhere cannot write the driver's SQLite file, so a batch's records come back to the driver
  when the task ends and the driver stores them at once. A task whose worker is lost is retried
  (`retries`); after that its runs are marked failed with the error. Ray is optional: it is
  imported only here, with a clear message when missing.

Stopping: a first Ctrl-C (or should_stop()) stops launching and stops the running jobs after
their step (the runs end 'stopped' and continue from their checkpoint next time); a second one
ends them at once. Finished runs are never touched again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlsim.config import TrainConfig
from vlsim.jobs import END, JobManager, WarmstartLock, python_env, set_threads
from vlsim.liveness import Heartbeat, process_alive
from vlsim.probes import probe_policy
from vlsim.runner import lab_records
from vlsim.stopping import StopFlag
from vlsim.store import RunInfo, Store
from vlsim.sweeps.plan import PlannedRun, expand, stored_runs, warm_group
from vlsim.sweeps.spec import EXECUTORS, SweepError, SweepSpec
from vlsim.sweeps.state import save_sweep

MAX_BATCH = 8
"""The most runs one job (one worker process or Ray task) executes together."""

BATCH_FIELDS = ("model_size", "task", "max_new_tokens")
"""Fields every run of a batch shares (a batched engine trains them as one model)."""

Event = Callable[[str, PlannedRun, "int | None", str], None]
"""on_event(what, run, run id, status): what is 'skip', 'start' or 'end'."""


def fit_workers(workers: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads each) that fill the cores: by default 1 thread each."""
    cores = max(1, int(cores or os.cpu_count() or 1))
    workers = max(1, int(workers or cores))
    return workers, max(1, cores // workers)


def batch_size(n_runs: int, workers: int) -> int:
    """Runs per job: enough jobs for every worker, at most MAX_BATCH runs each."""
    return max(1, min(MAX_BATCH, math.ceil(n_runs / max(1, workers))))


def pack(
    kind: str, configs: Mapping[int, Mapping[str, Any]], workers: int, max_batch: int | None = None
) -> list[list[int]]:
    """Batches of run ids (see the module docstring), in plan order where the rule allows.

    max_batch caps the runs per batch further (1: a job per run, so long runs of one shape
    spread over the workers instead of queuing in one job).
    """
    size = batch_size(len(configs), workers)
    if max_batch:
        size = max(1, min(size, int(max_batch)))
    if kind == "lab":
        ids = list(configs)
        return [ids[k : k + size] for k in range(0, len(ids), size)]
    groups: dict[str, dict[str, list[int]]] = {}
    for run_id, config in configs.items():
        shared = json.dumps({k: config.get(k) for k in BATCH_FIELDS}, sort_keys=True)
        groups.setdefault(shared, {}).setdefault(warm_group(config), []).append(run_id)
    batches = []
    for by_warm in groups.values():
        ids = [run_id for members in by_warm.values() for run_id in members]
        batches += [ids[k : k + size] for k in range(0, len(ids), size)]
    return batches


# ---------------------------------------------------------------- runs without a store (Ray)


def run_in_memory(
    kind: str, config: Mapping[str, Any], threads: int = 1, cache_dir: str | None = None
) -> dict[str, Any]:
    """Run one config with no store; return its records (what a Ray worker sends back)."""
    out: dict[str, Any] = {"metrics": [], "probes": [], "samples": [], "status": "finished",
                           "error": None, "host": socket.gethostname()}  # fmt: skip
    try:
        if kind == "lab":
            metrics, probe = lab_records(config)
            out["metrics"], out["probes"] = [{"step": 0, **metrics}], [{"step": 0, **probe}]
            return out
        from vlsim.train import MemorySink, Trainer, run_training, warmstart_key

        set_threads(threads)
        cfg = TrainConfig.model_validate(dict(config))
        cache = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "vlsim-warmstart"
        sink = MemorySink()
        out["metrics"], out["probes"], out["samples"] = sink.metrics, sink.probes, sink.samples
        lock = WarmstartLock(cache / f"lock-{warmstart_key(cfg)}")
        try:
            lock.acquire(lambda: False)
            trainer = Trainer(cfg, cache_dir=cache)
        finally:
            lock.release()
        run_training(trainer, sink, probe_fn=probe_policy)
    except Exception as err:  # noqa: BLE001 - sent back; the driver marks the run failed
        out["status"] = "failed"
        out["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
    return out


def run_batch_in_memory(
    kind: str, configs: list[Mapping[str, Any]], threads: int = 1, cache_dir: str | None = None
) -> list[dict[str, Any]]:
    """A batch of configs with no store (one Ray task); one record set per config."""
    return [run_in_memory(kind, config, threads, cache_dir) for config in configs]


def store_records(store: Store, run_id: int, result: Mapping[str, Any]) -> str:
    """Write a run's records sent back by a remote worker, then its final status."""
    for record in result.get("metrics", []):
        record = dict(record)
        store.log_metrics(run_id, int(record.pop("step")), record)
    for record in result.get("probes", []):
        record = dict(record)
        store.log_probe(run_id, int(record.pop("step")), record)
    by_step: dict[int, list[dict[str, Any]]] = {}
    for sample in result.get("samples", []):
        sample = dict(sample)
        by_step.setdefault(int(sample.pop("step")), []).append(sample)
    for step, samples in by_step.items():
        store.log_samples(run_id, step, samples)
    status = str(result.get("status", "failed"))
    store.set_status(run_id, status, error=result.get("error"))
    return status


# ---------------------------------------------------------------- the driver


@dataclass
class SweepOutcome:
    """What one call of `run_sweep` did."""

    name: str
    total: int
    skipped: int = 0
    busy: int = 0
    statuses: dict[int, str] = field(default_factory=dict)
    interrupted: bool = False

    def count(self, status: str) -> int:
        """Runs of this call that ended with this status."""
        return sum(1 for s in self.statuses.values() if s == status)

    def summary(self) -> str:
        """One line: what ran, what was skipped, what failed."""
        parts = [f"{self.count('finished')} finished"]
        for status in ("failed", "stopped"):
            if self.count(status):
                parts.append(f"{self.count(status)} {status}")
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.busy:
            parts.append(f"{self.busy} running elsewhere")
        tail = " (interrupted; run the sweep again to continue)" if self.interrupted else ""
        return f"sweep {self.name}: {self.total} runs: " + ", ".join(parts) + tail


@dataclass
class _Batch:
    """The runs of one job, with their planned runs (for events)."""

    job_id: int
    runs: dict[int, PlannedRun]


def _todo(
    store: Store, spec: SweepSpec, plan: list[PlannedRun], outcome: SweepOutcome,
    on_event: Event | None,
) -> list[tuple[PlannedRun, RunInfo | None]]:  # fmt: skip
    """The runs still to do; finished ones (and ones another live process runs) are skipped."""
    stored = stored_runs(store, spec)  # after the liveness check
    todo = []
    for p in plan:
        info = stored.get(p.key)
        if info is not None and info.status == "finished":
            outcome.skipped += 1
            if on_event:
                on_event("skip", p, info.id, "finished")
        elif info is not None and info.status == "running" and process_alive(info.pid):
            outcome.busy += 1
            if on_event:
                on_event("skip", p, info.id, "running")
        else:
            todo.append((p, info))
    return todo


def _submit(
    store: Store, spec: SweepSpec, todo: list[tuple[PlannedRun, RunInfo | None]], workers: int,
    queue: bool = True, max_batch: int | None = None,
) -> list[_Batch]:  # fmt: skip
    """Record the runs to do, packed into jobs; queue=True queues each job in one transaction."""
    planned: dict[int, PlannedRun] = {}
    configs: dict[int, dict[str, Any]] = {}
    for p, info in todo:
        if info is None:
            run_id = store.create_run(
                name=p.name, kind=spec.kind, config=p.config, seed=p.seed,
                group_name=spec.group(),
                total_steps=int(p.config.get("steps", 1)) if spec.kind == "train" else 1,
                status="new",
            )  # fmt: skip
        else:
            run_id = info.id
        planned[run_id] = p
        configs[run_id] = info.config if info is not None else p.config
    batches = []
    for ids in pack(spec.kind, configs, workers, max_batch):
        job_id = store.create_job(spec.group())
        if queue:
            store.queue_job(job_id, ids)
        batches.append(_Batch(job_id, {i: planned[i] for i in ids}))
    return batches


def run_sweep(
    spec: SweepSpec,
    store: Store,
    executor: Literal["local", "ray"] = "local",
    workers: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    retries: int = 2,
    on_event: Event | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_batch: int | None = None,
) -> SweepOutcome:
    """Run every unfinished run of the sweep as jobs; records land in the store as runs train.

    max_batch caps the runs of one job (see `pack`; default: the packing rule alone).
    """
    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    ray = _import_ray() if executor == "ray" else None
    plan = expand(spec)
    save_sweep(store, spec)
    outcome = SweepOutcome(spec.name, len(plan))
    todo = _todo(store, spec, plan, outcome, on_event)
    store.set_sweep_state(spec.name, "running", pid=os.getpid(), executor=executor)
    flag = StopFlag(also=should_stop)
    try:
        if todo:
            n_workers, n_threads = fit_workers(workers)
            n_threads = int(threads) if threads else n_threads
            if ray is None:
                batches = _submit(store, spec, todo, min(n_workers, len(todo)), True, max_batch)
                _run_local(store, batches, outcome, n_workers, n_threads, on_event, flag)
            else:
                _run_ray(ray, spec, store, todo, outcome, workers, n_threads, ray_address,
                         retries, on_event, flag, max_batch)  # fmt: skip
    except BaseException as err:
        outcome.interrupted = True
        state = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
        with contextlib.suppress(Exception):
            store.set_sweep_state(spec.name, state, message=f"{type(err).__name__}: {err}"[:2000])
        raise
    outcome.interrupted = outcome.interrupted or flag.requested
    done = all(s == "finished" for s in outcome.statuses.values()) and not outcome.busy
    state = "stopped" if outcome.interrupted else ("done" if done else "incomplete")
    store.set_sweep_state(spec.name, state, message=outcome.summary())
    return outcome


def _run_local(
    store: Store,
    batches: list[_Batch],
    outcome: SweepOutcome,
    workers: int,
    threads: int,
    on_event: Event | None,
    flag: StopFlag,
) -> None:
    """The sweep's jobs on local worker processes (in this process group: a Ctrl-C reaches them)."""
    manager = JobManager(
        store.data_dir, max_concurrent=workers, threads=threads, new_session=False,
        own_jobs_only=True,
    )  # fmt: skip
    planned = {run_id: p for b in batches for run_id, p in b.runs.items()}
    started: set[int] = set()
    asked = False
    try:
        for b in batches:
            manager.own_jobs.add(b.job_id)
        while planned:
            try:
                if flag() and not asked:
                    asked = True
                    for b in batches:
                        manager.stop_job(b.job_id)
                manager.poll()
                for run_id, p in list(planned.items()):
                    status = store.get_run(run_id).status
                    if status in ("running", *END) and run_id not in started:
                        started.add(run_id)
                        if on_event:
                            on_event("start", p, run_id, "running")
                    if status in END:
                        del planned[run_id]
                        outcome.statuses[run_id] = status
                        if on_event:
                            on_event("end", p, run_id, status)
                if planned:
                    time.sleep(0.3)
            except KeyboardInterrupt:
                if flag.requested:  # a second interrupt: now
                    raise
                flag.request()  # a first one: after the current step
    except BaseException:
        manager.kill_all("sweep interrupted")
        for run_id, p in planned.items():
            store.transition(run_id, ["running", "queued", "new"], "stopped", "sweep interrupted")
            outcome.statuses[run_id] = "stopped"
            if on_event:
                on_event("end", p, run_id, "stopped")
        raise
    finally:
        manager.shutdown()


def _import_ray():
    """Ray, or a SweepError that says how to get it."""
    try:
        import ray
    except ImportError as err:
        raise SweepError(
            "the 'ray' executor needs Ray, which is not installed here: pip install 'ray>=2.40' "
            "(or run the sweep with --executor local)"
        ) from err
    return ray


def _ray_runtime_env(address: str | None) -> dict[str, Any]:
    """How Ray workers import vlsim: ship the package to a cluster, or point at it locally."""
    if address:
        return {"py_modules": [str(Path(__file__).resolve().parents[1])]}
    return {"env_vars": {"PYTHONPATH": python_env()["PYTHONPATH"]}}


def _run_ray(
    ray: Any,
    spec: SweepSpec,
    store: Store,
    todo: list[tuple[PlannedRun, RunInfo | None]],
    outcome: SweepOutcome,
    workers: int | None,
    threads: int,
    ray_address: str | None,
    retries: int,
    on_event: Event | None,
    flag: StopFlag,
    max_batch: int | None = None,
) -> None:
    """One Ray task per batch; each returns its runs' records, stored as they arrive."""
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    local_workers, _ = fit_workers(workers)
    owned = not ray.is_initialized()
    if owned:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING}  # fmt: skip
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=local_workers * threads, **kwargs)
    inflight: dict[Any, _Batch] = {}
    try:
        cpus = int(ray.cluster_resources().get("CPU", local_workers * threads))
        n_workers = max(1, int(workers) if workers else cpus // threads)
        queue = _submit(store, spec, todo, n_workers, False, max_batch)  # claimed as they go
        cache_dir = None if address else str(store.data_dir / "warmstart")
        remote = ray.remote(run_batch_in_memory).options(
            num_cpus=threads,
            max_retries=max(0, int(retries)),
            retry_exceptions=False,
            runtime_env=_ray_runtime_env(address),
        )
        running = lambda: [r for b in inflight.values() for r in b.runs]  # noqa: E731
        with Heartbeat(store, running):
            while queue or inflight:
                try:
                    while queue and len(inflight) < n_workers and not flag():
                        batch = queue.pop(0)
                        ids = store.queue_job(batch.job_id, list(batch.runs), status="running")
                        store.heartbeat_many(ids, pid=os.getpid())
                        configs = [store.get_run(i).config for i in ids]
                        inflight[remote.remote(spec.kind, configs, threads, cache_dir)] = batch
                        for run_id in ids:
                            if on_event:
                                on_event("start", batch.runs[run_id], run_id, "running")
                    if flag() and queue:
                        for batch in queue:
                            for run_id in batch.runs:
                                store.transition(run_id, ["new"], "stopped")
                        queue.clear()
                    if not inflight:
                        break
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                    for ref in ready:
                        batch = inflight.pop(ref)
                        try:
                            results = ray.get(ref)
                            ends = {
                                run_id: store_records(store, run_id, result)
                                for run_id, result in zip(batch.runs, results, strict=True)
                            }
                        except Exception as err:  # noqa: BLE001 - a lost worker, after retries
                            why = f"Ray task failed after {retries} retries: {type(err).__name__}: {err}"
                            ends = {}
                            for run_id in batch.runs:
                                store.transition(run_id, ["running"], "failed", why[:4000])
                                ends[run_id] = "failed"
                        for run_id, status in ends.items():
                            outcome.statuses[run_id] = status
                            if on_event:
                                on_event("end", batch.runs[run_id], run_id, status)
                except KeyboardInterrupt:
                    if flag.requested:
                        raise
                    flag.request()
    except BaseException:
        for ref, batch in inflight.items():
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            for run_id, p in batch.runs.items():
                store.transition(run_id, ["running"], "stopped", "sweep interrupted")
                outcome.statuses[run_id] = "stopped"
                if on_event:
                    on_event("end", p, run_id, "stopped")
        raise
    finally:
        if owned:
            ray.shutdown()
