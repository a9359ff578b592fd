"""Execute a batch of stored training runs: `execute_batch`, the one entry point of a job.

This version trains the runs one after another through `vlsim.runner.execute_run`; a batched
engine (K policies in one pass) provides the same function with the same signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlsim.runner import execute_run
from vlsim.store import Store


def execute_batch(
    store: Store,
    run_ids: list[int],
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, int, dict[str, Any]], None] | None = None,
    on_warmstart: Callable[[int, int, float], None] | None = None,
) -> dict[int, str]:
    """Train (or resume) stored runs until each ends or a stop is asked; {run id: final status}.

    on_step(run_id, step, record) follows every logged step. A failed run is recorded 'failed'
    and the others go on; a KeyboardInterrupt leaves the current run 'stopped' and propagates.
    """
    statuses: dict[int, str] = {}
    for run_id in run_ids:
        if should_stop():
            store.set_status(run_id, "stopped")
            statuses[run_id] = "stopped"
            continue
        step = None if on_step is None else (lambda s, r, run_id=run_id: on_step(run_id, s, r))
        try:
            statuses[run_id] = execute_run(store, run_id, should_stop, step, on_warmstart)
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - execute_run recorded the error; the batch goes on
            statuses[run_id] = "failed"
    return statuses
