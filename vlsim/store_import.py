"""The SQL that writes one archived run (row, metrics, probes, samples) into the store.

`Store.import_runs` calls `insert_bundle` inside its single transaction, so an import adds
every run or none.
"""

from __future__ import annotations

import sqlite3

from vlsim.record_json import dumps
from vlsim.run_bundle import RunBundle


def insert_bundle(conn: sqlite3.Connection, bundle: RunBundle) -> int:
    """Insert the run and all its records under a new id (in the caller's transaction)."""
    r = bundle.run
    run_id = int(
        conn.execute(
            "INSERT INTO runs (name, kind, config_json, status, seed, created, started,"
            " finished, error, group_name, total_steps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.name, r.kind, dumps(r.config), r.status, r.seed, r.created, r.started,
             r.finished, r.error, r.group_name, r.total_steps),
        ).lastrowid
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO metrics (run_id, step, time, data) VALUES (?, ?, ?, ?)",
        [(run_id, m["step"], m["time"], dumps(_without(m, "step", "time")))
         for m in bundle.metrics],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO probes (run_id, step, data) VALUES (?, ?, ?)",
        [(run_id, p["step"], dumps(_without(p, "step"))) for p in bundle.probes],
    )
    by_step: dict[int, list[dict]] = {}  # samples are stored as one list per step
    for sample in bundle.samples:
        by_step.setdefault(sample["step"], []).append(_without(sample, "step"))
    conn.executemany(
        "INSERT INTO samples (run_id, step, data) VALUES (?, ?, ?)",
        [(run_id, step, dumps(items)) for step, items in by_step.items()],
    )
    return run_id


def _without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}
