"""Running a sweep: every unfinished run of its plan, on this machine or on Ray.

Executors:

- `local` (default): a process pool on this machine, workers x torch threads fitted to the
  cores. Each run writes its records to the SQLite store as it trains (and checkpoints), so a
  crash of the driver keeps every finished run and the progress of the others.
- `ray`: the same runs as Ray tasks on a cluster (`ray_address`, else $RAY_ADDRESS, else a
  local Ray instance). Workers elsewhere cannot write the driver's SQLite file, so each run's
  records come back to the driver when the run ends and the driver stores them at once. A task
  whose worker is lost is retried (`retries`); after that the run is marked failed with the
  error. Ray is optional: it is imported only here, with a clear message when missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlsim.config import LabConfig, TrainConfig
from vlsim.store import RunInfo, Store
from vlsim.sweeps.plan import PlannedRun, expand, stored_runs, warm_group
from vlsim.sweeps.spec import EXECUTORS, SweepError, SweepSpec
from vlsim.sweeps.state import save_sweep, set_sweep_state

# ---------------------------------------------------------------- running one run


def fit_workers(workers: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads each) that fill the cores: by default 1 thread each."""
    cores = max(1, int(cores or os.cpu_count() or 1))
    workers = max(1, int(workers or cores))
    return workers, max(1, cores // workers)


def lab_records(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the Length Lab once: (metrics record, probe-style record) for the store."""
    from vlsim.montecarlo import run_lab

    result = run_lab(LabConfig.model_validate(dict(config)))
    metrics: dict[str, Any] = {
        "lab/mean_length": result.mean_length,
        "lab/std_length": result.std_length,
        "lab/mean_accuracy": result.mean_accuracy,
        "lab/grad_norm": result.grad_norm,
    }
    aggs = {}
    for r in result.results:
        row = {
            k: getattr(r, k)
            for k in ("scale", "variance", "cv", "efficiency", "cosine", "direction_bias")
        }
        aggs[r.name] = row
        metrics.update({f"lab/{r.name}/{k}": v for k, v in row.items()})
    return metrics, {"aggregators": aggs}


def _execute_lab(store: Store, run_id: int) -> str:
    """A stored Length Lab run: evaluate and record it; returns its final status."""
    info = store.get_run(run_id)
    store.set_status(run_id, "running")
    store.heartbeat(run_id, pid=os.getpid())
    try:
        metrics, probe = lab_records(info.config)
    except Exception as err:  # noqa: BLE001 - the run fails, the sweep goes on
        store.set_status(run_id, "failed", error=f"{type(err).__name__}: {err}")
        return "failed"
    store.log_metrics(run_id, 0, metrics)
    store.log_probe(run_id, 0, probe)
    store.set_status(run_id, "finished")
    return "finished"


_TERM_REQUESTED = False


def _on_term(signum: int, frame: Any) -> None:
    global _TERM_REQUESTED
    _TERM_REQUESTED = True


def _pool_init(threads: int, kind: str) -> None:
    """Pool process set-up: torch threads; Ctrl-C is the driver's, SIGTERM stops the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    if kind == "train":
        from vlsim.worker import _set_threads

        _set_threads(threads)


def _pool_run(data_dir: str, run_id: int, kind: str) -> str:
    """Execute one stored run in a pool process (records go to the store as they are made)."""
    global _TERM_REQUESTED
    from vlsim.worker import _warmstart_lock, stop_file

    _TERM_REQUESTED = False
    store = Store(data_dir)
    stop = stop_file(data_dir, run_id)

    def should_stop() -> bool:
        """A SIGTERM to this process, or the run's stop file."""
        return _TERM_REQUESTED or stop.exists()

    try:
        if kind == "lab":
            return _execute_lab(store, run_id)
        from vlsim.runner import execute_run

        lock = _warmstart_lock(store, run_id)

        def on_warmstart(step: int, total: int, loss: float) -> None:
            """Leave the warm start at once when a stop is asked for."""
            if should_stop():
                raise KeyboardInterrupt("stop requested during the warm start")

        try:
            lock.acquire(should_stop)
            if should_stop():
                store.set_status(run_id, "stopped")
                return "stopped"
            return execute_run(
                store,
                run_id,
                should_stop=should_stop,
                on_step=lambda step, record: lock.release(),
                on_warmstart=on_warmstart,
            )
        except KeyboardInterrupt:
            return "stopped"  # execute_run recorded it
        except Exception:  # noqa: BLE001 - execute_run recorded the error
            return "failed"
        finally:
            lock.release()
    finally:
        stop.unlink(missing_ok=True)
        store.close()


def run_in_memory(
    kind: str, config: Mapping[str, Any], threads: int = 1, cache_dir: str | None = None
) -> dict[str, Any]:
    """Run one config with no store; return its records (what a Ray worker sends back)."""
    import socket

    out: dict[str, Any] = {"metrics": [], "probes": [], "samples": [], "status": "finished",
                           "error": None, "host": socket.gethostname()}  # fmt: skip
    try:
        if kind == "lab":
            metrics, probe = lab_records(config)
            out["metrics"], out["probes"] = [{"step": 0, **metrics}], [{"step": 0, **probe}]
            return out
        from vlsim.train import MemorySink, Trainer, run_training
        from vlsim.worker import WarmstartLock, _set_threads

        _set_threads(threads)
        cfg = TrainConfig.model_validate(dict(config))
        cache = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "vlsim-warmstart"
        sink = MemorySink()
        out["metrics"], out["probes"], out["samples"] = sink.metrics, sink.probes, sink.samples
        from vlsim.train import warmstart_key

        lock = WarmstartLock(cache / f"lock-{warmstart_key(cfg)}")
        try:
            lock.acquire(lambda: False)
            trainer = Trainer(cfg, cache_dir=cache)
        finally:
            lock.release()
        run_training(trainer, sink)
    except Exception as err:  # noqa: BLE001 - sent back; the driver marks the run failed
        out["status"] = "failed"
        out["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
    return out


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


Event = Callable[[str, PlannedRun, "int | None", str], None]
"""on_event(what, run, run id, status): what is 'skip', 'start' or 'end'."""


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


def _claim(store: Store, spec: SweepSpec, p: PlannedRun, info: RunInfo | None) -> int:
    """Create the run (or take over its stored row) as 'running' under this driver's pid."""
    if info is None:
        run_id = store.create_run(
            name=p.name,
            kind=spec.kind,
            config=p.config,
            seed=p.seed,
            group_name=spec.group(),
            total_steps=int(p.config.get("steps", 1)) if spec.kind == "train" else 1,
            status="running",
        )
    else:
        run_id = info.id
        store.set_status(run_id, "running")
    store.heartbeat(run_id, pid=os.getpid())
    return run_id


def _todo(
    store: Store,
    spec: SweepSpec,
    plan: list[PlannedRun],
    outcome: SweepOutcome,
    on_event: Event | None,
) -> list[tuple[PlannedRun, RunInfo | None]]:
    """The runs still to do; finished ones (and ones another live process runs) are skipped."""
    from vlsim.jobs import worker_alive

    stored = stored_runs(store, spec)
    todo = []
    for p in plan:
        info = stored.get(p.key)
        if info is not None and info.status == "finished":
            outcome.skipped += 1
            if on_event:
                on_event("skip", p, info.id, "finished")
        elif (
            info is not None
            and info.status == "running"
            and info.pid not in (None, os.getpid())
            and worker_alive(info.pid)
        ):
            outcome.busy += 1
            if on_event:
                on_event("skip", p, info.id, "running")
        else:
            todo.append((p, info))
    return todo


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
) -> SweepOutcome:
    """Run every unfinished run of the sweep; records land in the store as runs finish.

    A first Ctrl-C (or should_stop()) stops launching and asks the running runs to stop after
    their step (they end 'stopped' and continue from their checkpoint next time); a second one
    ends them at once. Finished runs are never touched again.
    """
    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    plan = expand(spec)
    save_sweep(store, spec)
    outcome = SweepOutcome(spec.name, len(plan))
    todo = _todo(store, spec, plan, outcome, on_event)
    set_sweep_state(store, spec.name, "running", pid=os.getpid(), executor=executor)
    try:
        if todo:
            runner = _run_local if executor == "local" else _run_ray
            runner(
                spec,
                store,
                todo,
                outcome,
                workers,
                threads,
                ray_address,
                retries,
                on_event,
                should_stop,
            )
    except BaseException as err:
        outcome.interrupted = True
        state = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
        with contextlib.suppress(Exception):
            set_sweep_state(store, spec.name, state, message=f"{type(err).__name__}: {err}"[:2000])
        raise
    done = all(s == "finished" for s in outcome.statuses.values()) and not outcome.busy
    state = "stopped" if outcome.interrupted else ("done" if done else "incomplete")
    set_sweep_state(store, spec.name, state, message=outcome.summary())
    return outcome


def _next_index(
    queue: list[tuple[PlannedRun, RunInfo | None]], inflight: Iterable[tuple[PlannedRun, int]]
) -> int:
    """The next run to start: the first in plan order whose warm start no running run shares.

    Runs that share a warm start wait for each other (the first trains it, the others load
    it), so starting a run of another seed instead keeps every worker busy; the plan order is
    kept otherwise.
    """
    busy = {warm_group(p.config) for p, _ in inflight}
    for k, (p, _) in enumerate(queue):
        if warm_group(p.config) not in busy:
            return k
    return 0


class _Stopper:
    """Turns the first Ctrl-C into a graceful stop; remembers whether a second one came."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop
        self.interrupts = 0

    def __call__(self) -> bool:
        return self.interrupts > 0 or self.should_stop()


def _end(
    store: Store,
    outcome: SweepOutcome,
    p: PlannedRun,
    run_id: int,
    status: str,
    on_event: Event | None,
) -> None:
    outcome.statuses[run_id] = status
    if on_event:
        on_event("end", p, run_id, status)


def _run_local(
    spec: SweepSpec,
    store: Store,
    todo: list[tuple[PlannedRun, RunInfo | None]],
    outcome: SweepOutcome,
    workers: int | None,
    threads: int | None,
    ray_address: str | None,
    retries: int,
    on_event: Event | None,
    should_stop: Callable[[], bool],
) -> None:
    """A process pool on this machine; each run writes to the store itself."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from vlsim.jobs import transition
    from vlsim.worker import stop_file

    n_workers, n_threads = fit_workers(workers)
    n_workers = min(n_workers, len(todo))
    if threads:
        n_threads = int(threads)
    data_dir = str(store.data_dir)
    stopper = _Stopper(should_stop)
    queue = list(todo)
    inflight: dict[Any, tuple[PlannedRun, int]] = {}
    pool = ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_pool_init,
        initargs=(n_threads, spec.kind),
    )
    asked = False
    try:
        while queue or inflight:
            try:
                while queue and len(inflight) < n_workers and not stopper():
                    p, info = queue.pop(_next_index(queue, inflight.values()))
                    run_id = _claim(store, spec, p, info)
                    with _no_main_reimport():  # submit may start a pool process
                        fut = pool.submit(_pool_run, data_dir, run_id, spec.kind)
                    inflight[fut] = (p, run_id)
                    if on_event:
                        on_event("start", p, run_id, "running")
                if stopper() and not asked:
                    asked = True
                    outcome.interrupted = True
                    queue.clear()
                    for _, run_id in inflight.values():
                        path = stop_file(data_dir, run_id)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.touch()
                if not inflight:
                    break
                done, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    p, run_id = inflight.pop(fut)
                    try:
                        status = fut.result()
                    except BrokenProcessPool as err:
                        status = "failed"
                        transition(
                            store, run_id, ["running"], "failed", f"worker process died: {err}"
                        )
                    except Exception as err:  # noqa: BLE001 - the run fails, the sweep goes on
                        status = "failed"
                        transition(
                            store, run_id, ["running"], "failed", f"{type(err).__name__}: {err}"
                        )
                    _end(store, outcome, p, run_id, status, on_event)
            except KeyboardInterrupt:
                stopper.interrupts += 1
                if stopper.interrupts >= 2:
                    raise
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                proc.kill()
        for p, run_id in inflight.values():
            transition(store, run_id, ["running"], "stopped", "sweep interrupted")
            _end(store, outcome, p, run_id, "stopped", on_event)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _no_main_reimport() -> Iterator[None]:
    """Start pool processes without re-running the caller's __main__ in them.

    A spawned process re-imports the parent's main script; when the caller is a Streamlit
    page, a notebook or a test runner that ran one, that script is no place to start from.
    The pool's work lives in this module, so the children need nothing from __main__.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


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
    package = Path(__file__).resolve().parents[1]
    if address:
        return {"py_modules": [str(package)]}
    root = str(package.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def _run_ray(
    spec: SweepSpec,
    store: Store,
    todo: list[tuple[PlannedRun, RunInfo | None]],
    outcome: SweepOutcome,
    workers: int | None,
    threads: int | None,
    ray_address: str | None,
    retries: int,
    on_event: Event | None,
    should_stop: Callable[[], bool],
) -> None:
    """Ray tasks; each returns its run's records, which the driver stores as they arrive."""
    ray = _import_ray()
    from vlsim.jobs import transition

    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    local_workers, local_threads = fit_workers(workers)
    n_threads = int(threads) if threads else local_threads
    owned = not ray.is_initialized()
    if owned:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING}  # fmt: skip
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=local_workers * n_threads, **kwargs)
    try:
        cpus = int(ray.cluster_resources().get("CPU", local_workers * n_threads))
        n_workers = max(1, int(workers) if workers else cpus // n_threads)
        cache_dir = None if address else str(store.data_dir / "warmstart")
        remote = ray.remote(run_in_memory).options(
            num_cpus=n_threads,
            max_retries=max(0, int(retries)),
            retry_exceptions=False,
            runtime_env=_ray_runtime_env(address),
        )
        stopper = _Stopper(should_stop)
        queue = list(todo)
        inflight: dict[Any, tuple[PlannedRun, int]] = {}
        try:
            while queue or inflight:
                try:
                    while queue and len(inflight) < n_workers and not stopper():
                        p, info = queue.pop(_next_index(queue, inflight.values()))
                        run_id = _claim(store, spec, p, info)
                        config = info.config if info is not None else p.config
                        ref = remote.remote(spec.kind, config, n_threads, cache_dir)
                        inflight[ref] = (p, run_id)
                        if on_event:
                            on_event("start", p, run_id, "running")
                    if stopper() and queue:
                        outcome.interrupted = True
                        queue.clear()
                    if not inflight:
                        break
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                    for ref in ready:
                        p, run_id = inflight.pop(ref)
                        try:
                            status = store_records(store, run_id, ray.get(ref))
                        except Exception as err:  # noqa: BLE001 - a lost worker, after retries
                            status = "failed"
                            transition(
                                store, run_id, ["running"], "failed",
                                f"Ray task failed after {retries} retries: {type(err).__name__}: {err}"[:4000],
                            )  # fmt: skip
                        _end(store, outcome, p, run_id, status, on_event)
                except KeyboardInterrupt:
                    stopper.interrupts += 1
                    if stopper.interrupts >= 2:
                        raise
        except BaseException:
            for ref, (p, run_id) in inflight.items():
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
                transition(store, run_id, ["running"], "stopped", "sweep interrupted")
                _end(store, outcome, p, run_id, "stopped", on_event)
            raise
    finally:
        if owned:
            ray.shutdown()
