"""A sweep's state in the store: its spec and what its last driver did."""

from __future__ import annotations

from dataclasses import dataclass

from vlsim.liveness import process_alive
from vlsim.store import Store
from vlsim.sweeps.spec import GROUP_PREFIX, SweepSpec


@dataclass
class SweepRecord:
    """A sweep as stored: its spec and the state of its last driver."""

    name: str
    spec: SweepSpec
    created: float
    updated: float
    status: str
    pid: int | None
    executor: str | None
    message: str | None

    @property
    def active(self) -> bool:
        """True while a driver process of this sweep is alive."""
        return self.status in ("starting", "running") and process_alive(self.pid)


def save_sweep(store: Store, spec: SweepSpec) -> None:
    """Record (or update) a sweep's spec in the store."""
    store.save_sweep(spec.name, spec.model_dump_json())


def _record(row: dict) -> SweepRecord:
    return SweepRecord(
        name=row["name"],
        spec=SweepSpec.model_validate_json(row["spec"]),
        created=row["created"],
        updated=row["updated"],
        status=row["status"],
        pid=row["pid"],
        executor=row["executor"],
        message=row["message"],
    )


def get_sweep(store: Store, name: str) -> SweepRecord | None:
    """The stored sweep of this name (or group name 'sweep/NAME'), or None."""
    row = store.get_sweep(name.removeprefix(GROUP_PREFIX))
    return _record(row) if row is not None else None


def list_sweeps(store: Store) -> list[SweepRecord]:
    """Every stored sweep, most recently updated first."""
    return [_record(row) for row in store.list_sweeps()]
