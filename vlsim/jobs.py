"""Jobs: the one queue of work. A job is a batch of runs executed together by one executor.

Everyone submits the same way (the Arena, the CLI, sweeps): a job's runs are rows with status
'queued' and a job id in the store. Executors:

- `execute_job`, in this process (the CLI's foreground `train`, and every worker);
- a local worker process, `python -m vlsim.worker JOB_ID`, started by a `JobManager` (the one
  spawner: `spawn`), so a Streamlit rerun, a closed tab or a crashed app never stops training;
- Ray tasks, each taking a batch (sweeps; `vlsim.sweeps.execute`).

One limit: a manager starts a queued job only while fewer than max_concurrent jobs run in the
store, whoever started them (`Store.claim_next_job`, atomic across processes). One stop path:
`vlsim.stopping`. One liveness check: `vlsim.liveness`. This module never imports Streamlit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import vlsim
from vlsim.batch_runner import execute_batch
from vlsim.config import TrainConfig
from vlsim.liveness import Heartbeat, check_runs, process_alive
from vlsim.runner import create_training_run, execute_lab, warmstart_cache_dir
from vlsim.stopping import clear_stop, request_stop, stop_file
from vlsim.store import RunInfo, Store

THREADS_ENV = "VLSIM_WORKER_THREADS"
"""Environment variable with the number of torch CPU threads of a worker (default 1)."""

RESUMABLE = ("stopped", "failed")
"""Statuses from which `resume` re-queues a run."""

END = ("finished", "failed", "stopped")
"""Statuses of a run that has ended."""


# ---------------------------------------------------------------- executing a job


def set_threads(threads: int) -> None:
    """torch CPU threads of this process (one inter-op thread)."""
    import torch

    torch.set_num_threads(max(1, threads))
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran
        torch.set_num_interop_threads(1)


class WarmstartLock:
    """An exclusive file lock per warm-start key, so concurrent jobs train a warm start once.

    The first holder trains and caches it; the others wait, then load the cached weights.
    Waiting polls, so a stop request is honoured while waiting. Without fcntl (Windows) every
    job trains its own warm start.
    """

    def __init__(self, path: Path):
        self.path = path
        self.file = None

    def acquire(self, should_stop: Callable[[], bool], on_wait=None) -> bool:
        """Take the lock (waiting as needed); False if a stop came first or locks are unsupported."""
        try:
            import fcntl
        except ImportError:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a")
        waited = False
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if should_stop():
                    self.release()
                    return False
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                time.sleep(0.2)

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing drops the lock
            self.file = None


def prepare_warmstarts(
    store: Store,
    run_ids: Sequence[int],
    should_stop: Callable[[], bool],
    on_warmstart: Callable[[int, int, float], None] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> None:
    """Train and cache each distinct warm start of these runs once, under its lock."""
    from vlsim.train import Trainer, warmstart_key

    cfgs: dict[str, TrainConfig] = {}
    for run_id in run_ids:
        try:
            cfg = TrainConfig.model_validate(store.get_run(run_id).config)
        except Exception:  # noqa: BLE001 - execute_run reports a bad config properly
            continue
        cfgs.setdefault(warmstart_key(cfg), cfg)
    cache = warmstart_cache_dir(store)
    for key, cfg in cfgs.items():
        if should_stop():
            return
        lock = WarmstartLock(cache / f"lock-{key}")
        try:
            lock.acquire(should_stop, on_wait)
            if should_stop():
                return
            try:
                Trainer(cfg, cache_dir=cache, warmstart_progress=on_warmstart)
            except KeyboardInterrupt:
                raise
            except Exception:  # noqa: BLE001 - execute_run meets and records the same error
                continue
        finally:
            lock.release()


def _settle(store: Store, run_ids: Iterable[int], status: str, error: str | None) -> None:
    """Runs of a job still marked 'running' when it ends get this status."""
    for run_id in run_ids:
        with contextlib.suppress(KeyError):
            store.transition(run_id, ["running", "queued"], status, error)


def execute_job(
    store: Store,
    run_ids: Sequence[int],
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, int, dict[str, Any]], None] | None = None,
    on_warmstart: Callable[[int, int, float], None] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> dict[int, str]:
    """Execute a job's runs in this process; returns {run id: final status}.

    Length Lab runs are evaluated one by one; training runs go to `execute_batch` after their
    warm starts are cached. While the job runs, a heartbeat thread keeps every run's pid and
    heartbeat fresh (the liveness check). A stop (should_stop) ends every run 'stopped'
    after its current step; a KeyboardInterrupt ends them 'stopped' at once and propagates.
    """
    run_ids = list(run_ids)
    infos = [store.get_run(i) for i in run_ids]
    lab = [i.id for i in infos if i.kind == "lab"]
    train = [i.id for i in infos if i.kind != "lab"]
    statuses: dict[int, str] = {}
    with Heartbeat(store, run_ids):
        try:
            for run_id in lab:
                if should_stop():
                    break
                statuses[run_id] = execute_lab(store, run_id)
            if train and not should_stop():
                prepare_warmstarts(store, train, should_stop, on_warmstart, on_wait)
                if not should_stop():
                    statuses.update(execute_batch(store, train, should_stop, on_step, on_warmstart))
        except KeyboardInterrupt:
            _settle(store, run_ids, "stopped", "interrupted")
            raise
    _settle(store, run_ids, "stopped", None)  # runs the job did not reach before a stop
    for run_id in run_ids:
        statuses.setdefault(run_id, store.get_run(run_id).status)
    return statuses


# ---------------------------------------------------------------- the one spawner


def python_env(threads: int | None = None) -> dict[str, str]:
    """This environment, with this vlsim first on PYTHONPATH and the worker thread count."""
    env = dict(os.environ)
    root = str(Path(vlsim.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env[THREADS_ENV] = str(threads or env.get(THREADS_ENV) or 1)
    return env


def spawn(
    module_args: Sequence[str],
    log: Path,
    new_session: bool = True,
    threads: int | None = None,
    python: str | None = None,
) -> subprocess.Popen:
    """Start `python -m MODULE ARGS...` with this vlsim importable, output appended to log.

    new_session: the process leaves this one's process group, so a Ctrl-C of the caller (the
    app) does not reach it; without it a Ctrl-C reaches both (a sweep driver and its workers).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [python or sys.executable, "-m", *map(str, module_args)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=python_env(threads),
            start_new_session=new_session,
        )


def describe_exit(returncode: int) -> str:
    """'worker process exited with code N' or '... was killed by signal S (NAME)'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"worker process was killed by signal {-returncode} ({name})"
    return f"worker process exited with code {returncode}"


def probe_counts(store: Store) -> dict[int, int]:
    """{run id: number of probe records} for every run that has any (one cheap query)."""
    return store.probe_counts()


# ---------------------------------------------------------------- the manager


class JobManager:
    """Submit, start, watch, stop and resume jobs of one data dir in local worker processes.

    Thread-safe. One manager per process and data dir is enough (the app shares one through
    st.cache_resource); managers in other processes cooperate through the store. With
    `own_jobs_only`, it starts only jobs it submitted (a sweep driver), still counting every
    running job against max_concurrent.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        max_concurrent: int = 2,
        threads: int | None = None,
        poll_interval: float = 1.0,
        python: str | None = None,
        new_session: bool = True,
        own_jobs_only: bool = False,
    ):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.store = Store(data_dir)
        self.data_dir = self.store.data_dir
        self.max_concurrent = int(max_concurrent)
        self.threads = threads
        self.poll_interval = float(poll_interval)
        self.python = python
        self.new_session = new_session
        self.own_jobs: set[int] | None = set() if own_jobs_only else None
        self._procs: dict[int, subprocess.Popen] = {}  # job id -> its worker
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self.last_error: str | None = None  # the last exception of the polling thread

    # -- submitting

    def submit(self, cfg: TrainConfig, group_name: str | None = None) -> int:
        """Queue a one-run job of cfg; returns the run's id."""
        return self.submit_many([cfg], group_name)[0]

    def submit_many(self, cfgs: Iterable[TrainConfig], group_name: str | None = None) -> list[int]:
        """Queue the configs as ONE job (one worker trains them together); returns run ids."""
        ids = [create_training_run(self.store, cfg, group_name, status="new") for cfg in cfgs]
        self.submit_runs(ids, group_name or "")
        return ids

    def submit_runs(self, run_ids: Sequence[int], label: str = "") -> int:
        """Queue stored runs (not running or finished) as one new job; returns its id.

        The runs join the queue in one transaction, so no executor ever sees half a job.
        """
        job_id = self.store.create_job(label)
        self.store.queue_job(job_id, run_ids)
        self._own(job_id)
        self._kick()
        return job_id

    def _own(self, job_id: int) -> None:
        if self.own_jobs is not None:
            self.own_jobs.add(job_id)

    # -- controlling

    def stop_job(self, job_id: int) -> dict[int, str]:
        """Stop every run of a job: {run id: 'unqueued' | 'stopping' | 'not active'}.

        Queued runs end 'stopped' at once; running ones end 'stopped' (resumable) once the
        worker has finished its current step.
        """
        out: dict[int, str] = {}
        with self._lock:
            signal_worker = False
            for info in self.store.job_runs(job_id):
                if self.store.transition(info.id, ["queued"], "stopped"):
                    out[info.id] = "unqueued"
                elif info.status == "running":
                    out[info.id] = "stopping"
                    signal_worker = True
                else:
                    out[info.id] = "not active"
            if signal_worker:
                request_stop(self.data_dir, job_id)  # seen even before the worker's pid is known
                pids = {i.pid for i in self.store.job_runs(job_id) if i.status == "running"}
                for pid in pids:
                    self._signal(job_id, pid, signal.SIGTERM)
        return out

    def stop(self, run_id: int) -> str:
        """Stop a run: un-queue it if it is queued, else stop its job ('stopping').

        Returns 'unqueued', 'stopping' or 'not active'. A running run stops with every run of
        its job (they train together).
        """
        with self._lock:
            if self.store.transition(run_id, ["queued"], "stopped"):
                return "unqueued"
            info = self.store.get_run(run_id)
            if info.status != "running" or info.job_id is None:
                return "not active"
            return self.stop_job(info.job_id).get(run_id, "not active")

    def stop_runs(self, run_ids: Iterable[int]) -> dict[int, str]:
        """Stop these runs and every job they belong to: {run id: what happened}."""
        out: dict[int, str] = {}
        for run_id in run_ids:
            if run_id not in out:
                with contextlib.suppress(KeyError):
                    info = self.store.get_run(run_id)
                    if info.job_id is None:
                        out[run_id] = self.stop(run_id)
                    else:
                        out.update(self.stop_job(info.job_id))
        return out

    def resume(self, run_id: int) -> bool:
        """Queue a stopped or failed run again, with every resumable run of its job.

        They continue from their last checkpoints, as one job. True if run_id was queued.
        """
        with self._lock:
            info = self.store.get_run(run_id)
            if info.status not in RESUMABLE:
                return False
            mates = self.store.job_runs(info.job_id) if info.job_id is not None else [info]
            ids = [r.id for r in mates if r.status in RESUMABLE] or [run_id]
            if info.job_id is not None:
                clear_stop(self.data_dir, info.job_id)
                if any(r.status == "running" for r in mates):  # part of the job still runs
                    ids = [run_id]
                    job_id = self.store.create_job(self.store.job_label(info.job_id) or "")
                else:
                    job_id = info.job_id
            else:
                job_id = self.store.create_job("")
            moved = self.store.queue_job(job_id, ids)
            self._own(job_id)
        if moved:
            self._kick()
        return run_id in moved

    def delete(self, run_id: int, timeout: float = 10.0) -> None:
        """Stop a run at once if it is active (its whole job), then delete it and its records."""
        with self._lock:
            self.store.transition(run_id, ["queued"], "stopped")
            info = self.store.get_run(run_id)
            if info.status == "running" and info.job_id is not None:
                self._signal(info.job_id, info.pid, signal.SIGKILL)
                self._wait_gone(info.job_id, info.pid, timeout)
                for mate in self.store.job_runs(info.job_id):  # its job's other runs
                    self.store.transition(
                        mate.id, ["running"], "stopped", f"stopped: run {run_id} was deleted"
                    )
                self._reap()
            self.store.delete_run(run_id)

    # -- watching

    def poll(self) -> list[int]:
        """Reap workers, check every running run's liveness, start queued jobs; returns job ids."""
        with self._lock:
            self._reap()
            self._check_others()
            launched = []
            while True:
                mine = sorted(self.own_jobs) if self.own_jobs is not None else None
                claimed = self.store.claim_next_job(self.max_concurrent, mine)
                if claimed is None:
                    break
                job_id, run_ids = claimed
                try:
                    self._launch(job_id, run_ids)
                except Exception as err:  # noqa: BLE001 - the job fails, the queue goes on
                    for run_id in run_ids:
                        self.store.transition(
                            run_id, ["running"], "failed",
                            f"could not start a worker process: {type(err).__name__}: {err}",
                        )  # fmt: skip
                    continue
                launched.append(job_id)
            return launched

    def queue_position(self, run_id: int) -> int | None:
        """1 for the run's job if it starts next, 2 after that, ...; None if it is not queued."""
        order: list[int | None] = []
        found = None
        for info in self.queued():
            key = info.job_id if info.job_id is not None else -info.id
            if key not in order:
                order.append(key)
            if info.id == run_id:
                found = key
        return None if found is None else order.index(found) + 1

    def queued(self) -> list[RunInfo]:
        """Queued runs in launch order (oldest first)."""
        return sorted(self.store.list_runs(status="queued"), key=lambda r: (r.created, r.id))

    def active(self) -> list[RunInfo]:
        """Running runs (oldest first), then queued runs in launch order."""
        running = sorted(self.store.list_runs(status="running"), key=lambda r: (r.created, r.id))
        return running + self.queued()

    def log_path(self, run_id: int) -> Path:
        """The output (stdout and stderr) of the worker of a run's job."""
        job = self.store.get_run(run_id).job_id
        return self.data_dir / "logs" / (f"job-{job}.log" if job is not None else f"{run_id}.log")

    def log_tail(self, run_id: int, chars: int = 4000) -> str:
        """The last characters of a run's worker output ('' if there is none)."""
        try:
            path = self.log_path(run_id)
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - chars))
                return f.read().decode("utf-8", "replace")
        except (OSError, KeyError):
            return ""

    def jobs_running(self) -> list[int]:
        """Ids of the jobs whose workers this manager started and that still run."""
        with self._lock:
            return [j for j, p in self._procs.items() if p.poll() is None]

    # -- the polling thread

    def start(self) -> JobManager:
        """Start the daemon thread that polls every poll_interval seconds (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._halt.clear()
                self._thread = threading.Thread(target=self._loop, name="vlsim-jobs", daemon=True)
                self._thread.start()
        return self

    def shutdown(self, stop_runs: bool = False, timeout: float = 10.0) -> None:
        """Stop polling; with stop_runs, also stop this manager's jobs and wait for them."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if stop_runs:
            with self._lock:
                procs = dict(self._procs)
            for job_id in procs:
                self.stop_job(job_id)
            deadline = time.monotonic() + timeout
            for proc in procs.values():
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.poll_reap_only()

    def kill_all(self, reason: str) -> None:
        """Kill this manager's workers at once; their runs end 'stopped' with the reason."""
        with self._lock:
            for job_id, proc in list(self._procs.items()):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
                for info in self.store.job_runs(job_id):
                    self.store.transition(info.id, ["running", "queued"], "stopped", reason)
                del self._procs[job_id]

    def poll_reap_only(self) -> None:
        """Reap finished workers and check liveness, without starting anything."""
        with self._lock:
            self._reap()
            self._check_others()

    @property
    def running(self) -> bool:
        """True while the polling thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                self.poll()
                self.last_error = None
            except Exception as err:  # noqa: BLE001 - keep polling (e.g. a locked database)
                self.last_error = f"{type(err).__name__}: {err}"
            self._halt.wait(self.poll_interval)

    def _kick(self) -> None:
        """Launch at once when no polling thread will do it soon."""
        if not self.running:
            self.poll()

    # -- internals

    def _launch(self, job_id: int, run_ids: list[int]) -> None:
        log = self.data_dir / "logs" / f"job-{job_id}.log"
        args = ["vlsim.worker", str(job_id), "--data-dir", str(self.data_dir)]
        proc = spawn(args, log, self.new_session, self.threads, self.python)
        self._procs[job_id] = proc
        self.store.heartbeat_many(run_ids, pid=proc.pid)

    def _reap(self) -> None:
        """Collect exited workers; runs they left 'running' were stopped or failed."""
        for job_id, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[job_id]
            stop = stop_file(self.data_dir, job_id)
            for info in self.store.job_runs(job_id):
                if info.status != "running" or info.pid not in (None, proc.pid):
                    continue
                if code == -signal.SIGTERM or stop.exists():  # a stop it could not report
                    self.store.transition(info.id, ["running"], "stopped", "stopped while starting")
                else:
                    self.store.transition(info.id, ["running"], "failed", describe_exit(code))
            stop.unlink(missing_ok=True)

    def _check_others(self) -> None:
        """The liveness check for running runs whose worker is not this manager's child."""
        ours = set(self._procs)
        others = [r for r in self.store.list_runs(status="running") if r.job_id not in ours]
        check_runs(self.store, others)

    def _signal(self, job_id: int, pid: int | None, sig: int) -> None:
        proc = self._procs.get(job_id)
        target = proc.pid if proc is not None and proc.poll() is None else pid
        if target and process_alive(target):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, sig)

    def _wait_gone(self, job_id: int, pid: int | None, timeout: float) -> None:
        proc = self._procs.get(job_id)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        while pid and process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


__all__ = [
    "END",
    "RESUMABLE",
    "JobManager",
    "WarmstartLock",
    "describe_exit",
    "execute_job",
    "prepare_warmstarts",
    "probe_counts",
    "python_env",
    "set_threads",
    "spawn",
]
