"""The store's sweeps table (each sweep's spec and what its last driver did), as a Store mixin.

`Store` inherits these methods; they use its connections and short transactions. A sweep finds
its runs through their group name ('sweep/<name>'), never through run ids.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any


class SweepRows:
    """save_sweep, set_sweep_state, get_sweep and list_sweeps of the Store."""

    if TYPE_CHECKING:

        def _conn(self) -> sqlite3.Connection: ...

        def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def save_sweep(self, name: str, spec_json: str) -> None:
        """Record (or update) a sweep's spec (JSON text); a new sweep starts with status 'new'."""
        now = time.time()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO sweeps (name, spec, created, updated, status) VALUES (?, ?, ?, ?, 'new')"
                " ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated = excluded.updated",
                (name, spec_json, now, now),
            )

    def set_sweep_state(
        self,
        name: str,
        status: str,
        pid: int | None = None,
        executor: str | None = None,
        message: str | None = None,
    ) -> None:
        """Record what a sweep's driver is doing (pid and executor are kept when not given)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE sweeps SET status = ?, pid = COALESCE(?, pid),"
                " executor = COALESCE(?, executor), message = ?, updated = ? WHERE name = ?",
                (status, pid, executor, message, time.time(), name),
            )

    def get_sweep(self, name: str) -> dict | None:
        """The stored sweep row of this name as a dict (spec as JSON text), or None."""
        row = self._conn().execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
        return dict(row) if row is not None else None

    def list_sweeps(self) -> list[dict]:
        """Every stored sweep row, most recently updated first."""
        rows = self._conn().execute("SELECT * FROM sweeps ORDER BY updated DESC").fetchall()
        return [dict(row) for row in rows]

    @staticmethod
    def _import_sweeps(conn: sqlite3.Connection, sweeps: Sequence[Mapping[str, Any]]) -> list[str]:
        """Insert these sweep rows (in the caller's transaction); a taken name keeps its sweep.

        Each row has name, spec (JSON text), created, updated, status, executor and message.
        Returns the names inserted.
        """
        added = []
        for s in sweeps:
            cur = conn.execute(
                "INSERT INTO sweeps (name, spec, created, updated, status, executor, message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
                (s["name"], s["spec"], s["created"], s["updated"], s["status"],
                 s.get("executor"), s.get("message")),
            )  # fmt: skip
            if cur.rowcount == 1:
                added.append(str(s["name"]))
        return added
