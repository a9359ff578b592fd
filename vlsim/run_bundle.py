"""A stored run as one self-contained value: its row, every record, and a content fingerprint.

Run archives carry these (vlsim.run_archive) and `Store.import_runs` writes them. The
fingerprint (sha256 of the name, kind, config, creation time and metrics) tells a run the store
already holds from a new one, whatever ids the two stores gave it. A run that had not ended
(new, queued, running) travels as 'stopped', with a note in its error field: no process runs it
in the other store, and its checkpoint stays behind.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlsim.record_json import canonical

UNFINISHED = ("new", "queued", "running")
"""Statuses of a run that has not ended; an archived run with one of them reads 'stopped'."""


class RunRow(BaseModel):
    """A run's row as an archive carries it (its id, process, heartbeat and job stay behind)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Human-readable run name.")
    kind: str = Field(description="What sort of run: 'train', 'lab', 'sweep', ...")
    config: dict[str, Any] = Field(description="The run's configuration.")
    status: str = Field(description="finished, failed or stopped (unfinished runs: stopped).")
    seed: int | None = Field(default=None, description="Random seed of the run, if any.")
    created: float = Field(description="Unix time the run was created.")
    started: float | None = Field(default=None, description="Unix time it first started.")
    finished: float | None = Field(default=None, description="Unix time it ended.")
    error: str | None = Field(default=None, description="Error message, or why it stopped.")
    group_name: str | None = Field(default=None, description="Ties runs started together.")
    total_steps: int | None = Field(default=None, description="Planned number of steps.")

    @field_validator("created")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite Unix time")
        return value


class RunBundle(BaseModel):
    """One run with all its records; each record carries its 'step' (metrics also 'time')."""

    run: RunRow
    metrics: list[dict[str, Any]] = Field(default_factory=list, description="One per step.")
    probes: list[dict[str, Any]] = Field(default_factory=list, description="One per step.")
    samples: list[dict[str, Any]] = Field(default_factory=list, description="Several per step.")
    fingerprint: str = Field("", description="sha256 of name, kind, config, created, metrics.")

    @model_validator(mode="after")
    def _check(self) -> RunBundle:
        for name in ("metrics", "probes", "samples"):
            _check_steps(name, getattr(self, name), unique=name != "samples")
        for record in self.metrics:
            record.setdefault("time", self.run.created)
            if not isinstance(record["time"], (int, float)) or isinstance(record["time"], bool):
                raise ValueError(f"metrics: the time of step {record['step']} is not a number")
        if self.run.status in UNFINISHED:
            note = f"was {self.run.status} when exported: not finished (no checkpoint travels)"
            error = f"{self.run.error}\n{note}" if self.run.error else note
            self.run = self.run.model_copy(update={"status": "stopped", "error": error})
        content = fingerprint(self.run, self.metrics)
        if self.fingerprint and self.fingerprint != content:
            raise ValueError(
                "its fingerprint does not match its content: the file was changed after export "
                "or is damaged"
            )
        self.fingerprint = content
        return self


def _check_steps(name: str, records: Sequence[dict[str, Any]], unique: bool) -> None:
    """Every record has a whole-number 'step'; metrics and probes have each step once."""
    seen: set[int] = set()
    for i, record in enumerate(records):
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise ValueError(f"{name}: record {i + 1} has no whole-number 'step'")
        if unique and step in seen:
            raise ValueError(f"{name}: step {step} appears twice")
        seen.add(step)


def fingerprint(run: RunRow, metrics: Sequence[dict[str, Any]]) -> str:
    """sha256 (hex) of the run's name, kind, config, creation time and metric records."""
    content = {
        "name": run.name,
        "kind": run.kind,
        "config": run.config,
        "created": run.created,
        "metrics": list(metrics),
    }
    return hashlib.sha256(canonical(content).encode()).hexdigest()


@dataclass
class ImportResult:
    """What an import added: new run ids, duplicates skipped, and sweeps recorded by name."""

    skipped_duplicates: int = 0
    run_ids: list[int] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    written: str | None = None  # when the archive was written (its header's "created"), if known

    @property
    def imported(self) -> int:
        """How many runs were added."""
        return len(self.run_ids)

    def summary(self) -> str:
        """'imported 3 runs, skipped 1 duplicate' (and the sweeps and the archive's date, if any)."""
        text = (
            f"imported {_count(self.imported, 'run')}, "
            f"skipped {_count(self.skipped_duplicates, 'duplicate')}"
        )
        if self.sweeps:
            text += f", and {_count(len(self.sweeps), 'sweep')} ({', '.join(self.sweeps)})"
        if self.written:
            text += f" (archive written {self.written})"
        return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
