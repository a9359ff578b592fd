"""Training runs of tiny policies on CountDown: the loop, its sinks, and the one-run Trainer.

One RL step (see `vlsim.batch_trainer`): B prompts x G sampled answers -> verifier rewards ->
group advantages -> PPO-clipped token losses -> ONE scalar through
`vlsim.aggregators.aggregate` (the aggregator under study) -> AdamW. `run_batch` drives K runs
trained as one batched computation; `Trainer` and `run_training` are its K = 1 case. Records
use CleanRL-style names (`charts/...`, `losses/...`, `eval/...`, `time/...`) and go to a
`Sink` (the SQLite store, a list in tests, the CLI's progress bar). Gradient probes are passed
in as `probe_fn` (e.g. `vlsim.probes.probe_policy`); this module never imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from vlsim.batch_trainer import BatchTrainer, check_batchable, policy_loss
from vlsim.config import TrainConfig
from vlsim.countdown import CharTokenizer, Problem
from vlsim.model import TinyGPT
from vlsim.rollout import Rollouts, StackedRollouts, rollout, rollout_stacked, score
from vlsim.warmstart import WARMSTART_VERSION, build_model, sft_loss, warm_start, warmstart_key

__all__ = [
    "WARMSTART_VERSION", "BatchTrainer", "MemorySink", "ProbeFn", "Rollouts", "RunView", "Sink",
    "StackedRollouts", "Trainer", "build_model", "check_batchable", "policy_loss", "rollout",
    "rollout_stacked", "run_batch", "run_training", "score", "sft_loss", "warm_start",
    "warmstart_key",
]  # fmt: skip


class Sink(Protocol):
    """Where a run's records go; every method must persist before returning."""

    def log_metrics(self, step: int, record: dict[str, Any]) -> None: ...

    def log_probe(self, step: int, record: dict[str, Any]) -> None: ...

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None: ...


@dataclass
class MemorySink:
    """Keeps records in lists (tests, notebooks)."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def log_metrics(self, step: int, record: dict[str, Any]) -> None:
        self.metrics.append({"step": step, **record})

    def log_probe(self, step: int, record: dict[str, Any]) -> None:
        self.probes.append({"step": step, **record})

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        self.samples.extend({"step": step, **s} for s in samples)


@dataclass
class RunView:
    """What a probe sees of one run of a batch: its config and a plain model of its weights."""

    cfg: TrainConfig
    model: TinyGPT  # run k's current weights (shares storage with the stacked policy)
    tokenizer: CharTokenizer
    step_index: int
    train_problems: list[Problem]
    test_problems: list[Problem]
    device: torch.device


ProbeFn = Callable[[Any], dict[str, Any]]
"""A gradient probe: takes a RunView (or a Trainer) and returns a JSON-safe record."""


class Trainer:
    """One run: the K = 1 case of `BatchTrainer`, with the single-run attribute names."""

    def __init__(
        self,
        cfg: TrainConfig,
        cache_dir: Path | None = None,
        warmstart_progress: Callable[[int, int, float], None] | None = None,
    ):
        self.batch = BatchTrainer([cfg], cache_dir, warmstart_progress)
        self.cfg = cfg
        self.device = self.batch.device
        self.tokenizer = self.batch.tokenizer
        self.train_problems, self.test_problems = (
            self.batch.train_problems,
            self.batch.test_problems,
        )
        self.warmstart_info = self.batch.warmstart_info[0]
        self.generator = self.batch.generators[0]
        self.rng = self.batch.rngs[0]

    @property
    def model(self) -> TinyGPT:
        """The policy as a plain TinyGPT (shares the trained weights)."""
        return self.batch.model(0)

    @property
    def step_index(self) -> int:
        return self.batch.step_index[0]

    def step(self) -> dict[str, Any]:
        """One RL step; returns its metric record (it runs even past cfg.steps)."""
        if not self.batch.active()[0]:  # stepping on past the configured end
            self.batch.cfgs[0] = self.cfg.model_copy(update={"steps": self.step_index + 1})
        record = self.batch.step()[0]
        assert record is not None
        return record

    def evaluate(self) -> dict[str, float]:
        return self.batch.evaluate()[0]

    def sample_records(self) -> list[dict[str, Any]]:
        return self.batch.sample_records(0)

    def elapsed(self) -> float:
        return self.batch.elapsed(0)

    def state_dict(self) -> dict[str, Any]:
        return self.batch.state_dict(0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch.load_state_dict(0, state)

    def save_checkpoint(self, path: Path) -> None:
        self.batch.save_checkpoint(0, path)

    def load_checkpoint(self, path: Path) -> None:
        self.batch.load_checkpoint(0, path)


def _due(step: int, every: int, last: bool) -> bool:
    return bool(every) and (step % every == 0 or last)


def run_batch(
    trainer: BatchTrainer,
    sinks: Sequence[Sink],
    checkpoint_paths: Sequence[Path | None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, int, dict[str, Any]], None] | None = None,
    probe_fn: ProbeFn | None = None,
) -> list[int]:
    """Run every run's remaining RL steps, logging each record as soon as it exists.

    Per run k: evaluates at step 0 and every `eval_every` steps (and at its end), probes every
    `probe.every` steps through probe_fn, logs samples every `sample_log_every` steps,
    checkpoints every `checkpoint_every` steps. on_step(k, step, record). A stop request is
    honoured between steps. Returns the steps completed by each run.
    """
    cfgs, K = trainer.cfgs, trainer.K
    paths = list(checkpoint_paths) if checkpoint_paths is not None else [None] * K
    starting = [k for k in range(K) if trainer.step_index[k] == 0 and cfgs[k].eval_every]
    if starting:
        evals = trainer.evaluate()
        for k in starting:
            record = {**evals[k], "time/elapsed": 0.0}
            sinks[k].log_metrics(-1, record)  # step -1: the warm-started policy before any RL
            if on_step:
                on_step(k, -1, record)
    while any(trainer.active()) and not should_stop():
        steps = list(trainer.step_index)
        records = trainer.step()
        done = [r is not None for r in records]
        last = [done[k] and trainer.step_index[k] == cfgs[k].steps for k in range(K)]
        evaluate = [
            done[k]
            and bool(cfgs[k].eval_every)
            and ((steps[k] + 1) % cfgs[k].eval_every == 0 or last[k])
            for k in range(K)
        ]
        evals = trainer.evaluate() if any(evaluate) else None
        for k in range(K):
            record = records[k]
            if record is None:
                continue
            step, cfg = steps[k], cfgs[k]
            if evals is not None and evaluate[k]:
                record.update(evals[k])
            if probe_fn is not None and _due(step, cfg.probe.every, last[k]):
                sinks[k].log_probe(step, probe_fn(view_of(trainer, k)))
            sinks[k].log_metrics(step, record)
            if _due(step, cfg.sample_log_every, last[k]):
                sinks[k].log_samples(step, trainer.sample_records(k))
            if (
                paths[k] is not None
                and cfg.checkpoint_every
                and ((step + 1) % cfg.checkpoint_every == 0 or last[k])
            ):
                trainer.save_checkpoint(k, paths[k])
            if on_step:
                on_step(k, step, record)
    return list(trainer.step_index)


def view_of(trainer: BatchTrainer, k: int) -> RunView:
    """Run k of a batch as a probe sees it."""
    return RunView(
        trainer.cfgs[k], trainer.model(k), trainer.tokenizer, trainer.step_index[k],
        trainer.train_problems, trainer.test_problems, trainer.device,
    )  # fmt: skip


def run_training(
    trainer: Trainer,
    sink: Sink,
    checkpoint_path: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    probe_fn: ProbeFn | None = None,
) -> int:
    """One run's remaining RL steps (`run_batch` with K = 1); returns the steps completed."""
    done = run_batch(
        trainer.batch, [sink], [checkpoint_path], should_stop,
        (lambda k, step, record: on_step(step, record)) if on_step else None, probe_fn,
    )  # fmt: skip
    return done[0]
