"""The one liveness check of a run, whoever started it: its process id and its heartbeat.

Every process that executes runs records its pid and beats their heart every few seconds
(`Heartbeat`). A run still marked 'running' whose process is gone, or whose heart stopped, did
not end by itself: `check_runs` marks it 'stopped' (resumable from its last checkpoint) with
the reason, e.g. "process 1234 is gone (last heartbeat 3 min ago)", so `runs list`, `runs show`
and the app never show a dead run as running.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from vlsim.store import RunInfo, Store

HEARTBEAT_S = 5.0
"""A process running runs writes their heartbeat at least this often."""

START_GRACE_S = 60.0
"""A claimed run whose process has not reported its pid after this long is not running."""

STALE_S = 600.0
"""A run whose heartbeat is older than this is not running, even if a process has its pid
(process ids are reused); the heartbeat thread beats every HEARTBEAT_S seconds."""


def process_alive(pid: int | None) -> bool:
    """True if a process with this id exists on this machine and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS) or no access: trust the signal check
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]  # an exited child nobody reaped


def ago(seconds: float) -> str:
    """'12 s', '3 min', '2.5 h' (how long ago)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def dead_reason(info: RunInfo, now: float | None = None) -> str | None:
    """Why a run marked 'running' is not running after all; None if it is (or is not 'running')."""
    if info.status != "running":
        return None
    now = time.time() if now is None else now
    beat = info.heartbeat or info.started or info.created
    if info.pid is None:
        if now - beat > START_GRACE_S:
            return f"its process never reported (no process id after {ago(now - beat)})"
        return None
    if not process_alive(info.pid):
        return f"process {info.pid} is gone (last heartbeat {ago(now - beat)} ago)"
    if now - beat > STALE_S:
        return f"no heartbeat from process {info.pid} for {ago(now - beat)}"
    return None


def check_runs(store: Store, runs: Iterable[RunInfo]) -> list[RunInfo]:
    """The runs with their live status: a dead 'running' run becomes 'stopped' with the reason."""
    out = []
    now = time.time()
    for info in runs:
        reason = dead_reason(info, now)
        if reason is not None and store.transition(info.id, ["running"], "stopped", reason):
            info = store.get_run(info.id)
        out.append(info)
    return out


def checked_runs(store: Store, **filters) -> list[RunInfo]:
    """store.list_runs(**filters) after the liveness check (newest first)."""
    runs = check_runs(store, store.list_runs())
    wanted = {k: v for k, v in filters.items() if v is not None}
    return [r for r in runs if all(getattr(r, k) == v for k, v in wanted.items())]


def checked_run(store: Store, run_id: int) -> RunInfo:
    """store.get_run(run_id) after the liveness check (KeyError if there is no such run)."""
    return check_runs(store, [store.get_run(run_id)])[0]


def status_text(info: RunInfo) -> str:
    """'running', 'finished', or 'stopped: process 1234 is gone (last heartbeat 3 min ago)'."""
    if info.status in ("stopped", "failed") and info.error:
        return f"{info.status}: {info.error.strip().splitlines()[0]}"
    return info.status


class Heartbeat:
    """A daemon thread that beats the heart of some runs (with this pid) until stopped."""

    def __init__(self, store: Store, run_ids: Callable[[], Iterable[int]] | Iterable[int]):
        self.store = store
        self.run_ids = run_ids if callable(run_ids) else (lambda ids=list(run_ids): ids)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vlsim-heartbeat", daemon=True)

    def beat(self) -> None:
        """Beat once, now (and record this process's pid)."""
        ids = list(self.run_ids())
        if ids:
            self.store.heartbeat_many(ids, pid=os.getpid())

    def _loop(self) -> None:
        while not self._done.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a locked or deleted store: try again later
                self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(1.0)
