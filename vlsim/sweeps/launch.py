"""Start a sweep in the background (the app): `python -m vlsim sweep SPEC` in its own session.

The driver submits the sweep's jobs to the store's queue and starts their workers in its own
process group; `stop` sends it SIGTERM, which it handles as a graceful stop of every job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Literal

from vlsim.jobs import spawn
from vlsim.store import Store
from vlsim.sweeps.plan import expand
from vlsim.sweeps.spec import SweepSpec
from vlsim.sweeps.state import get_sweep, save_sweep

_LAUNCHED: dict[str, subprocess.Popen] = {}


def spec_path(store: Store, name: str) -> Path:
    """Where a launched sweep's spec file is written: data_dir/sweeps/NAME.json."""
    return store.data_dir / "sweeps" / f"{name}.json"


def log_path(store: Store, name: str) -> Path:
    """The output of a background sweep driver."""
    return store.data_dir / "logs" / f"sweep-{name}.log"


def launch(
    spec: SweepSpec,
    store: Store,
    executor: Literal["local", "ray"] = "local",
    workers: int | None = None,
    python: str | None = None,
) -> int:
    """Start `python -m vlsim sweep SPEC` in the background (own session); returns its pid."""
    expand(spec)  # refuse a bad spec here, not in a log file
    save_sweep(store, spec)
    path = spec_path(store, spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(spec.model_dump_json(indent=2))
    tmp.replace(path)
    args = ["vlsim", "sweep", path, "--data-dir", store.data_dir, "--executor", executor,
            "--quiet"]  # fmt: skip
    if workers:
        args += ["--workers", int(workers)]
    proc = spawn(args, log_path(store, spec.name), new_session=True, python=python)
    _LAUNCHED[spec.name] = proc
    store.set_sweep_state(spec.name, "starting", pid=proc.pid, executor=executor)
    return proc.pid


def reap() -> None:
    """Collect background drivers that ended (so they leave no zombie processes)."""
    for name, proc in list(_LAUNCHED.items()):
        if proc.poll() is not None:
            del _LAUNCHED[name]


def stop(store: Store, name: str) -> bool:
    """Ask a sweep's driver to stop (its running runs end 'stopped'); False if none runs."""
    reap()
    record = get_sweep(store, name)
    if record is None or not record.active or not record.pid:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(record.pid, signal.SIGTERM)
    return True
