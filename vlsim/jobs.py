"""Background training runs for the app: a queue in the store, one worker process per run.

The queue is the store itself: a submitted run is a row with status 'queued'. Any number of
`JobManager`s (app sessions share one per process; several processes may share a data dir)
launch queued runs oldest first, each claiming a run with one atomic UPDATE inside a write
transaction that also counts the running runs, so two managers never start the same run and
never exceed `max_concurrent` together. Each run trains in its own `python -m vlsim.worker`
process, so a Streamlit rerun, a closed tab or a crashed app never stops or corrupts training.

`poll()` (called every second by a daemon thread after `start()`) reaps finished workers,
marks runs whose worker died as 'failed' (keeping every record they wrote) and launches
queued runs while fewer than `max_concurrent` run. This module never imports Streamlit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import vlsim
from vlsim.config import TrainConfig
from vlsim.runner import create_training_run, pid_alive
from vlsim.store import RunInfo, Store
from vlsim.worker import THREADS_ENV, stop_file

START_GRACE_S = 60.0
"""A claimed run whose worker has not reported its pid after this long is marked failed."""

RESUMABLE = ("stopped", "failed")
"""Statuses from which `resume` re-queues a run."""


# ---------------------------------------------------------------- store-level queue operations


def claim_next(store: Store, max_concurrent: int) -> int | None:
    """Atomically move the oldest queued run to 'running' if fewer than max_concurrent run.

    One IMMEDIATE transaction counts the running runs and claims the run with
    ``UPDATE ... WHERE status = 'queued'``, so concurrent managers (threads or processes) can
    neither start a run twice nor exceed the limit together. The claimed run gets pid NULL and a
    fresh heartbeat until its worker reports. Returns the run id, or None.
    """
    now = time.time()
    with store._transaction() as conn:  # the store's own short write transaction
        running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
        if running >= max_concurrent:
            return None
        row = conn.execute(
            "SELECT id FROM runs WHERE status = 'queued' ORDER BY created, id LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        cur = conn.execute(
            "UPDATE runs SET status = 'running', pid = NULL, heartbeat = ?, error = NULL,"
            " finished = NULL, started = COALESCE(started, ?) WHERE id = ? AND status = 'queued'",
            (now, now, row[0]),
        )
        return int(row[0]) if cur.rowcount == 1 else None


def transition(
    store: Store, run_id: int, old: Iterable[str], new: str, error: str | None = None
) -> bool:
    """Set status `new` only if the run's status is one of `old` (atomic); True if it changed."""
    old = tuple(old)
    now = time.time()
    marks = ",".join("?" * len(old))
    finished = None if new in ("queued", "running") else now
    with store._transaction() as conn:
        cur = conn.execute(
            f"UPDATE runs SET status = ?, error = ?, finished = ? WHERE id = ? AND status IN ({marks})",
            (new, error, finished, run_id, *old),
        )
        return cur.rowcount == 1


def queued_runs(store: Store) -> list[RunInfo]:
    """Queued runs in launch order (oldest first)."""
    return sorted(store.list_runs(status="queued"), key=lambda r: (r.created, r.id))


def probe_counts(store: Store) -> dict[int, int]:
    """{run id: number of probe records} for every run that has any (one cheap query)."""
    return store.probe_counts()


def describe_exit(returncode: int) -> str:
    """'worker process exited with code N' or '... was killed by signal S (NAME)'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"worker process was killed by signal {-returncode} ({name})"
    return f"worker process exited with code {returncode}"


def worker_alive(pid: int | None) -> bool:
    """True if the process exists and is not a zombie (an exited child nobody reaped)."""
    if not pid_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS) or no access: trust the signal check
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"]


# ---------------------------------------------------------------- the manager


class JobManager:
    """Start, watch, stop and resume training runs of one data dir in worker processes.

    Thread-safe. One manager per process and data dir is enough (the app shares one through
    st.cache_resource); managers in other processes cooperate through the store.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        max_concurrent: int = 2,
        threads: int | None = None,
        poll_interval: float = 1.0,
        python: str | None = None,
    ):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.store = Store(data_dir)
        self.data_dir = self.store.data_dir
        self.max_concurrent = int(max_concurrent)
        self.threads = threads
        self.poll_interval = float(poll_interval)
        self.python = python or sys.executable
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self.last_error: str | None = None  # the last exception of the polling thread

    # -- submitting

    def submit(self, cfg: TrainConfig, group_name: str | None = None) -> int:
        """Queue a run of cfg; returns its id (it starts when a slot is free)."""
        run_id = create_training_run(self.store, cfg, group_name)
        self._kick()
        return run_id

    def submit_many(self, cfgs: Iterable[TrainConfig], group_name: str | None = None) -> list[int]:
        """Queue several runs under one group name, in order; returns their ids."""
        ids = [create_training_run(self.store, cfg, group_name) for cfg in cfgs]
        self._kick()
        return ids

    # -- controlling

    def stop(self, run_id: int) -> str:
        """Stop a run: un-queue a queued run, or ask a running worker to stop after its step.

        Returns what happened: 'unqueued', 'stopping' or 'not active'. A running run ends
        'stopped' (resumable) once its worker has finished the current step.
        """
        with self._lock:
            if transition(self.store, run_id, ["queued"], "stopped"):
                return "unqueued"
            info = self.store.get_run(run_id)
            if info.status != "running":
                return "not active"
            path = stop_file(self.data_dir, run_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()  # seen by the worker even before its pid is known
            self._signal(run_id, info.pid, signal.SIGTERM)
            return "stopping"

    def resume(self, run_id: int) -> bool:
        """Queue a stopped or failed run again (it continues from its last checkpoint)."""
        with self._lock:
            stop_file(self.data_dir, run_id).unlink(missing_ok=True)
            ok = transition(self.store, run_id, RESUMABLE, "queued")
        if ok:
            self._kick()
        return ok

    def delete(self, run_id: int, timeout: float = 10.0) -> None:
        """Stop a run at once if it is active, then delete it and all its records."""
        with self._lock:
            transition(self.store, run_id, ["queued"], "stopped")
            info = self.store.get_run(run_id)
            if info.status == "running":
                self._signal(run_id, info.pid, signal.SIGKILL)
                self._wait_gone(run_id, info.pid, timeout)
            self._procs.pop(run_id, None)
            self.store.delete_run(run_id)
            stop_file(self.data_dir, run_id).unlink(missing_ok=True)
            self.log_path(run_id).unlink(missing_ok=True)

    # -- watching

    def poll(self) -> list[int]:
        """Reap workers, fail runs whose worker died, launch queued runs; returns launched ids."""
        with self._lock:
            self._reap()
            self._fail_orphans()
            launched = []
            while True:
                run_id = claim_next(self.store, self.max_concurrent)
                if run_id is None:
                    break
                try:
                    self._launch(run_id)
                except Exception as err:  # noqa: BLE001 - the run fails, the queue goes on
                    transition(
                        self.store,
                        run_id,
                        ["running"],
                        "failed",
                        f"could not start a worker process: {type(err).__name__}: {err}",
                    )
                    continue
                launched.append(run_id)
            return launched

    def queue_position(self, run_id: int) -> int | None:
        """1 for the next run to start, 2 for the one after, ...; None if it is not queued."""
        for pos, info in enumerate(queued_runs(self.store), start=1):
            if info.id == run_id:
                return pos
        return None

    def active(self) -> list[RunInfo]:
        """Running runs (oldest first), then queued runs in launch order."""
        running = sorted(self.store.list_runs(status="running"), key=lambda r: (r.created, r.id))
        return running + queued_runs(self.store)

    def log_path(self, run_id: int) -> Path:
        """The worker's output (stdout and stderr) of a run."""
        return self.data_dir / "logs" / f"{int(run_id)}.log"

    def log_tail(self, run_id: int, chars: int = 4000) -> str:
        """The last characters of a run's worker output ('' if there is none)."""
        path = self.log_path(run_id)
        try:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - chars))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

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
        """Stop polling; with stop_runs, also stop this manager's workers and wait for them."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if stop_runs:
            with self._lock:
                procs = dict(self._procs)
            for run_id in procs:
                self.stop(run_id)
            deadline = time.monotonic() + timeout
            for proc in procs.values():
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.poll_reap_only()

    def poll_reap_only(self) -> None:
        """Reap finished workers and fail dead runs, without launching anything."""
        with self._lock:
            self._reap()
            self._fail_orphans()

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

    def _launch(self, run_id: int) -> None:
        log = self.log_path(run_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env[THREADS_ENV] = str(self.threads or env.get(THREADS_ENV) or 1)
        root = str(Path(vlsim.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = [self.python, "-m", "vlsim.worker", str(run_id), "--data-dir", str(self.data_dir)]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # a Ctrl-C of the app does not reach the workers
            )
        self._procs[run_id] = proc
        self.store.heartbeat(run_id, pid=proc.pid)

    def _reap(self) -> None:
        """Collect exited workers; a run they left 'running' failed (its records are kept)."""
        for run_id, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[run_id]
            try:
                info = self.store.get_run(run_id)
            except KeyError:
                continue
            if info.status == "running" and info.pid in (None, proc.pid):
                stop = stop_file(self.data_dir, run_id)
                if code == -signal.SIGTERM or stop.exists():  # a stop it could not report
                    transition(self.store, run_id, ["running"], "stopped", "stopped while starting")
                else:
                    transition(self.store, run_id, ["running"], "failed", describe_exit(code))
                stop.unlink(missing_ok=True)

    def _fail_orphans(self) -> None:
        """Runs marked 'running' whose worker is gone (started by anyone) become 'failed'."""
        now = time.time()
        for info in self.store.list_runs(status="running"):
            if info.id in self._procs:
                continue  # our own child: _reap knows its exit status
            if info.pid is None:
                if now - (info.heartbeat or info.created) > START_GRACE_S:
                    transition(
                        self.store,
                        info.id,
                        ["running"],
                        "failed",
                        f"worker process never started (no pid after {START_GRACE_S:.0f} s)",
                    )
                continue
            if not worker_alive(info.pid):
                transition(
                    self.store,
                    info.id,
                    ["running"],
                    "failed",
                    f"worker process (pid {info.pid}) is no longer running; its exit status is "
                    "unknown (it was started by another process)",
                )

    def _signal(self, run_id: int, pid: int | None, sig: int) -> None:
        proc = self._procs.get(run_id)
        target = proc.pid if proc is not None and proc.poll() is None else pid
        if target and worker_alive(target):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, sig)

    def _wait_gone(self, run_id: int, pid: int | None, timeout: float) -> None:
        proc = self._procs.get(run_id)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        while pid and worker_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


__all__ = [
    "JobManager",
    "claim_next",
    "describe_exit",
    "probe_counts",
    "queued_runs",
    "transition",
    "worker_alive",
]
