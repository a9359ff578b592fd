"""Run one stored training run in this process: `python -m vlsim.worker RUN_ID --data-dir DIR`.

The app never trains inside a Streamlit script run; `vlsim.jobs.JobManager` starts one of these
per run. The worker calls `vlsim.runner.execute_run`, which writes every record to the store as
it is produced. SIGTERM or SIGINT (or a stop file, see `stop_file`) asks for a clean stop
between steps (the run ends 'stopped' and can be resumed); a second signal interrupts at once
(also 'stopped'). Exit status: 0 when the run finished or stopped, 1 when it failed, 2 when the
run does not exist.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

THREADS_ENV = "VLSIM_WORKER_THREADS"
"""Environment variable with the number of torch CPU threads of a worker (default 1)."""

HEARTBEAT_S = 5.0
"""A worker writes a heartbeat at least this often while it is alive."""


def stop_file(data_dir: str | Path, run_id: int) -> Path:
    """A file whose existence asks the run's worker to stop (works before its pid is known)."""
    return Path(data_dir) / "stop" / str(int(run_id))


class StopFlag:
    """Set by signals or by the stop file; polled by the training loop between steps."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self.requested = False
        self.signals = 0

    def __call__(self) -> bool:
        if not self.requested and self.path is not None and self.path.exists():
            self.requested = True
        return self.requested

    def handle(self, signum: int, frame) -> None:
        """First signal: stop after the current step. Second: stop now."""
        self.signals += 1
        self.requested = True
        if self.signals > 1:
            raise KeyboardInterrupt(f"signal {signum}")


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran
        torch.set_num_interop_threads(1)


class WarmstartLock:
    """An exclusive file lock per warm-start key, so concurrent runs train a warm start once.

    Runs that differ only in their aggregator share the warm start. The first worker holds the
    lock while it trains and caches it; the others wait, then load the cached weights. The lock
    is released at the first RL step (the cache is written by then) or when the worker ends.
    Waiting polls, so a stop request is honoured while waiting. Without fcntl (Windows) every
    worker trains its own warm start, as before.
    """

    def __init__(self, path: Path):
        self.path = path
        self.file = None

    def acquire(self, should_stop, on_wait=None) -> bool:
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


def _heartbeat_loop(store, run_id: int, done: threading.Event) -> None:
    """Beat the heart every few seconds (warm starts and slow steps log nothing for a while)."""
    while not done.wait(HEARTBEAT_S):
        try:
            store.heartbeat(run_id)
        except Exception:  # noqa: BLE001 - the run may have been deleted; the main loop will see it
            return


def _warmstart_lock(store, run_id: int) -> WarmstartLock:
    """The lock of this run's warm-start key (a dummy path if the config cannot be read)."""
    from vlsim.config import TrainConfig
    from vlsim.runner import warmstart_cache_dir
    from vlsim.train import warmstart_key

    try:
        key = warmstart_key(TrainConfig.model_validate(store.get_run(run_id).config))
    except Exception:  # noqa: BLE001 - execute_run reports a bad config properly
        key = f"run-{run_id}"
    return WarmstartLock(warmstart_cache_dir(store) / f"lock-{key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlsim.worker", description="Run one stored vlsim training run."
    )
    parser.add_argument("run_id", type=int, help="Id of the stored run to train or resume.")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="Store directory (default: $VLSIM_DATA_DIR or ./vlsim-data).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads (default: ${THREADS_ENV} or 1).",
    )
    args = parser.parse_args(argv)

    flag = StopFlag()
    signal.signal(signal.SIGTERM, flag.handle)  # before the slow imports: no stop is lost
    signal.signal(signal.SIGINT, flag.handle)
    from vlsim.store import Store, default_data_dir

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    flag.path = stop_file(data_dir, args.run_id)

    threads = args.threads
    if threads is None:
        try:
            threads = int(os.environ.get(THREADS_ENV, "1"))
        except ValueError:
            threads = 1
    _set_threads(threads)

    from vlsim.runner import execute_run

    store = Store(data_dir)
    try:
        store.get_run(args.run_id)
    except KeyError as err:
        print(f"vlsim.worker: {err.args[0]}", file=sys.stderr)
        return 2

    lock = _warmstart_lock(store, args.run_id)

    last_print = [0.0]

    def on_warmstart(step: int, total: int, loss: float) -> None:
        if flag():  # a stop during the warm start: leave at once (the run ends 'stopped')
            raise KeyboardInterrupt("stop requested during the warm start")
        now = time.monotonic()
        if now - last_print[0] > 5 or step == total:
            last_print[0] = now
            print(f"warm start {step}/{total} loss {loss:.3f}", flush=True)

    def on_step(step: int, record: dict) -> None:
        lock.release()  # the warm start is cached by now
        keys = ("charts/reward_mean", "charts/response_length_mean", "eval/mean_at_k")
        shown = " ".join(f"{k.split('/')[-1]}={record[k]:.3g}" for k in keys if k in record)
        print(f"step {step} {shown}", flush=True)

    done = threading.Event()
    beat = threading.Thread(target=_heartbeat_loop, args=(store, args.run_id, done), daemon=True)
    beat.start()
    print(f"worker pid {os.getpid()} run {args.run_id} threads {threads}", flush=True)
    try:
        lock.acquire(flag, lambda: print("waiting for a shared warm start", flush=True))
        if flag():  # asked to stop before anything ran
            store.set_status(args.run_id, "stopped")
            print("stopped", flush=True)
            return 0
        status = execute_run(
            store, args.run_id, should_stop=flag, on_step=on_step, on_warmstart=on_warmstart
        )
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return 0  # execute_run marked the run 'stopped'
    except Exception as err:  # noqa: BLE001 - execute_run marked it 'failed' with the traceback
        print(f"failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        lock.release()
        done.set()
        flag.path = None
        with contextlib.suppress(OSError):
            stop_file(data_dir, args.run_id).unlink(missing_ok=True)
        store.close()
    print(status, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
