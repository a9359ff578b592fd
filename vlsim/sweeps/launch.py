"""Start a sweep in the background (the app): `python -m vlsim sweep SPEC` in its own session."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Literal

from vlsim.store import Store
from vlsim.sweeps.plan import expand
from vlsim.sweeps.spec import SweepSpec
from vlsim.sweeps.state import get_sweep, save_sweep, set_sweep_state

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
    log = log_path(store, spec.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python or sys.executable, "-m", "vlsim", "sweep", str(path), "--data-dir",
           str(store.data_dir), "--executor", executor, "--quiet"]  # fmt: skip
    if workers:
        cmd += ["--workers", str(int(workers))]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
    _LAUNCHED[spec.name] = proc
    set_sweep_state(store, spec.name, "starting", pid=proc.pid, executor=executor)
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
