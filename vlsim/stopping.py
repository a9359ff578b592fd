"""The one stop path: a stop file per job, and SIGTERM/SIGINT handled as a graceful stop.

The CLI, worker processes and sweep drivers all poll a `StopFlag` between steps. It is set by
the job's stop file (`request_stop`, which works before a worker's pid is known) or by a first
SIGTERM or SIGINT (Ctrl-C, `timeout`, a batch scheduler, a container stop): the runs end
'stopped' after their current step and can be resumed. A second signal interrupts at once
(KeyboardInterrupt; the runs still end 'stopped').
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path


def stop_file(data_dir: str | Path, job_id: int) -> Path:
    """The file whose existence asks job job_id to stop."""
    return Path(data_dir) / "stop" / f"job-{int(job_id)}"


def request_stop(data_dir: str | Path, job_id: int) -> None:
    """Ask a job to stop after its current step (seen by its worker even before it reports)."""
    path = stop_file(data_dir, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def clear_stop(data_dir: str | Path, job_id: int) -> None:
    """Forget a stop request (before a job runs again)."""
    stop_file(data_dir, job_id).unlink(missing_ok=True)


class StopFlag:
    """True once a stop was asked for: by a signal, a stop file or another flag."""

    def __init__(self, paths: Iterable[Path] = (), also: Callable[[], bool] | None = None):
        self.paths = list(paths)
        self.also = also
        self.requested = False
        self.signals = 0
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        if not self.requested and (
            any(p.exists() for p in self.paths) or (self.also is not None and self.also())
        ):
            self.requested = True
        return self.requested

    def request(self) -> None:
        """Ask for a stop from inside the process."""
        self.requested = True

    def handle(self, signum: int, frame: object) -> None:
        """First signal: stop after the current step. Second: stop now."""
        self.signals += 1
        self.requested = True
        if self.signals > 1:
            raise KeyboardInterrupt(f"signal {signum}")

    def install(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> StopFlag:
        """Handle these signals with this flag (in the main thread; elsewhere no-op); self."""
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self.handle)
        return self

    def restore(self) -> None:
        """Give the signals back to the handlers they had before `install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
