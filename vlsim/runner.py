"""Run one stored config end to end: status, metrics, checkpoints and resume in the store.

Every job executor (`vlsim.jobs.execute_job`, through `vlsim.batch_runner`) ends here, so a run
behaves the same wherever it was started: every record is committed as it is produced, a stop
request or a Ctrl-C leaves the run 'stopped' (resumable), and a crash leaves it 'failed' with
its error. Length Lab runs (`execute_lab`) are one evaluation, recorded as step 0.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vlsim.config import LabConfig, TrainConfig
from vlsim.probes import probe_policy
from vlsim.store import Store
from vlsim.train import Trainer, run_training

CHECKPOINT_NAME = "latest.pt"


class StoreSink:
    """Writes a run's records to the store (each write commits before returning)."""

    def __init__(self, store: Store, run_id: int):
        self.store, self.run_id = store, run_id

    def log_metrics(self, step: int, record: dict[str, Any]) -> None:
        self.store.log_metrics(self.run_id, step, record)

    def log_probe(self, step: int, record: dict[str, Any]) -> None:
        self.store.log_probe(self.run_id, step, record)

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        self.store.log_samples(self.run_id, step, samples)


def create_training_run(
    store: Store,
    cfg: TrainConfig,
    group_name: str | None = None,
    job_id: int | None = None,
    status: str = "queued",
) -> int:
    """Record a training run ('queued' of job job_id, or 'new': not yet queued); returns its id."""
    return store.create_run(
        name=cfg.run_name(),
        kind="train",
        config=cfg.model_dump(mode="json"),
        seed=cfg.seed,
        group_name=group_name,
        total_steps=cfg.steps,
        job_id=job_id,
        status=status,
    )


def checkpoint_path(store: Store, run_id: int) -> Path:
    """Where a run's latest checkpoint lives."""
    return store.checkpoint_dir(run_id) / CHECKPOINT_NAME


def warmstart_cache_dir(store: Store) -> Path:
    """Warm-start weights are shared by every run of the store (keyed by their config)."""
    return store.data_dir / "warmstart"


def execute_run(
    store: Store,
    run_id: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    on_warmstart: Callable[[int, int, float], None] | None = None,
) -> str:
    """Train (or resume) a stored run to its end or until asked to stop; returns its final status."""
    info = store.get_run(run_id)
    cfg = TrainConfig.model_validate(info.config)
    store.set_status(run_id, "running")
    store.heartbeat(run_id, pid=os.getpid())
    try:
        trainer = Trainer(
            cfg, cache_dir=warmstart_cache_dir(store), warmstart_progress=on_warmstart
        )
        ckpt = checkpoint_path(store, run_id)
        if ckpt.exists():
            trainer.load_checkpoint(ckpt)
        done = run_training(
            trainer, StoreSink(store, run_id), ckpt, should_stop, on_step, probe_fn=probe_policy
        )
    except KeyboardInterrupt:
        store.set_status(run_id, "stopped", error="interrupted")
        raise
    except Exception as err:  # the run fails; everything logged so far stays
        store.set_status(
            run_id, "failed", error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
        )
        raise
    status = "finished" if done >= cfg.steps else "stopped"
    store.set_status(run_id, status)
    return status


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


def execute_lab(store: Store, run_id: int) -> str:
    """A stored Length Lab run: evaluate and record it; returns its final status."""
    info = store.get_run(run_id)
    store.set_status(run_id, "running")
    store.heartbeat(run_id, pid=os.getpid())
    try:
        metrics, probe = lab_records(info.config)
    except Exception as err:  # noqa: BLE001 - the run fails with its error; the job goes on
        store.set_status(run_id, "failed", error=f"{type(err).__name__}: {err}")
        return "failed"
    store.log_metrics(run_id, 0, metrics)
    store.log_probe(run_id, 0, probe)
    store.set_status(run_id, "finished")
    return "finished"
