"""Runs, metrics, probes and samples in one SQLite file, written so that nothing is lost.

Every write is its own short transaction and commits at once, so a crash (even kill -9) loses
at most the record being written. WAL journal mode lets readers (the app) and writers (training
processes) work at the same time; a busy timeout makes concurrent writers wait instead of fail.
Each thread gets its own connection, so one Store may be shared by threads; each process opens
its own connections (a forked child reconnects), so several processes may share one database.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from vlsim.record_json import dumps, loads
from vlsim.run_bundle import ImportResult, RunBundle, fingerprint
from vlsim.store_import import insert_bundle
from vlsim.store_sweeps import SweepRows

STATUSES = ("new", "queued", "running", "finished", "failed", "stopped")
"""'new': recorded, not yet queued (a job's runs join the queue together)."""
DB_NAME = "vlsim.db"
BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL,
    seed INTEGER,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    heartbeat REAL,
    pid INTEGER,
    group_name TEXT,
    total_steps INTEGER,
    job_id INTEGER
);
CREATE INDEX IF NOT EXISTS runs_group ON runs(group_name);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS probes (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    executor TEXT,
    message TEXT
);
"""


def default_data_dir() -> Path:
    """Where runs live: $VLSIM_DATA_DIR if set, else ./vlsim-data."""
    return Path(os.environ.get("VLSIM_DATA_DIR") or "vlsim-data")


class RunInfo(BaseModel):
    """One row of the runs table, with its config parsed."""

    id: int = Field(description="Run id (primary key).")
    name: str = Field(description="Human-readable run name.")
    kind: str = Field(description="What sort of run: 'train', 'lab', 'sweep', ...")
    config: dict = Field(description="The run's configuration, as given to create_run.")
    status: str = Field(description="One of queued, running, finished, failed, stopped.")
    seed: int | None = Field(default=None, description="Random seed of the run, if any.")
    created: float = Field(description="Unix time the run was created.")
    started: float | None = Field(default=None, description="Unix time it first started running.")
    finished: float | None = Field(default=None, description="Unix time it ended (any end state).")
    error: str | None = Field(default=None, description="Error message of a failed run.")
    heartbeat: float | None = Field(default=None, description="Last time the worker wrote.")
    pid: int | None = Field(default=None, description="Process id of the worker, if known.")
    group_name: str | None = Field(default=None, description="Ties runs started together.")
    total_steps: int | None = Field(default=None, description="Planned number of steps.")
    job_id: int | None = Field(
        default=None, description="The job (a batch of runs executed together) it belongs to."
    )


class Store(SweepRows):
    """Runs and their records in data_dir/vlsim.db; safe across threads and processes."""

    def __init__(self, data_dir: str | Path | None = None):
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_NAME
        self._local = threading.local()
        self._all: list[tuple[int, sqlite3.Connection]] = []  # (pid that opened it, connection)
        self._all_lock = threading.Lock()
        with self._transaction() as conn:  # BEGIN IMMEDIATE serialises concurrent creators
            columns = {r["name"] for r in conn.execute("PRAGMA table_info(runs)").fetchall()}
            if columns and "job_id" not in columns:  # a store written before jobs existed
                conn.execute("ALTER TABLE runs ADD COLUMN job_id INTEGER")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, and again after a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across process crashes
            conn.execute("PRAGMA foreign_keys = ON")
            conn.row_factory = sqlite3.Row
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._all_lock:
                self._all.append((os.getpid(), conn))
        return conn

    @contextmanager
    def _transaction(self):
        """A short write transaction that commits on success and rolls back on error."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connections this process opened (a forked child leaves its parent's alone)."""
        with self._all_lock:
            for pid, conn in self._all:
                if pid == os.getpid():
                    with suppress(sqlite3.Error):
                        conn.close()
            self._all.clear()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        name: str,
        kind: str,
        config: dict,
        seed: int | None = None,
        group_name: str | None = None,
        total_steps: int | None = None,
        status: str = "queued",
        job_id: int | None = None,
    ) -> int:
        """Insert a new run (of job job_id, if given) and return its id."""
        _check_status(status)
        now = time.time()
        started = now if status == "running" else None
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO runs (name, kind, config_json, status, seed, created, started,"
                " heartbeat, group_name, total_steps, job_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    kind,
                    dumps(config),
                    status,
                    seed,
                    now,
                    started,
                    started,
                    group_name,
                    total_steps,
                    job_id,
                ),
            )
            return int(cur.lastrowid)

    def transition(
        self, run_id: int, old: Sequence[str], new: str, error: str | None = None
    ) -> bool:
        """Set status `new` only if the run's status is one of `old` (atomic); True if it did."""
        _check_status(new)
        old = tuple(old)
        marks = ",".join("?" * len(old))
        finished = None if new in ("queued", "running") else time.time()
        with self._transaction() as conn:
            cur = conn.execute(
                f"UPDATE runs SET status = ?, error = ?, finished = ? WHERE id = ?"
                f" AND status IN ({marks})",
                (new, error, finished, run_id, *old),
            )
            return cur.rowcount == 1

    # -- jobs: a job is a batch of runs executed together --------------------------------

    def create_job(self, label: str = "") -> int:
        """A new, empty job; returns its id (runs join it through create_run or queue_job)."""
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO jobs (label, created) VALUES (?, ?)", (label, time.time())
            )
            return int(cur.lastrowid)

    def queue_job(self, job_id: int, run_ids: Sequence[int], status: str = "queued") -> list[int]:
        """Put these runs (none running or finished) in job job_id, all in one transaction.

        status 'queued' offers the job to every executor; 'running' hands it to the caller,
        which executes it at once (a Ray driver). Returns the ids of the runs moved.
        """
        if status not in ("queued", "running"):
            raise ValueError(f"a job's runs are queued or running, not {status!r}")
        moved = []
        now = time.time()
        with self._transaction() as conn:
            for run_id in run_ids:
                cur = conn.execute(
                    "UPDATE runs SET job_id = ?, status = ?, error = NULL, finished = NULL,"
                    " pid = NULL, heartbeat = ?, started = CASE WHEN ? = 'running'"
                    " THEN COALESCE(started, ?) ELSE started END"
                    " WHERE id = ? AND status NOT IN ('running', 'finished')",
                    (job_id, status, now, status, now, run_id),
                )
                if cur.rowcount == 1:
                    moved.append(run_id)
        return moved

    def job_label(self, job_id: int) -> str | None:
        """The label a job was created with, or None if there is no such job."""
        row = self._conn().execute("SELECT label FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def job_runs(self, job_id: int) -> list[RunInfo]:
        """The runs of a job, in the order they were created."""
        rows = (
            self._conn()
            .execute("SELECT * FROM runs WHERE job_id = ? ORDER BY id", (job_id,))
            .fetchall()
        )
        return [_run_info(row) for row in rows]

    def running_jobs(self) -> int:
        """How many jobs run now (a running run outside any job counts as a job of its own)."""
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(DISTINCT COALESCE(job_id, -id)) FROM runs WHERE status = 'running'"
            )
            .fetchone()
        )
        return int(row[0])

    def claim_next_job(
        self, max_running: int, job_ids: Sequence[int] | None = None
    ) -> tuple[int, list[int]] | None:
        """Atomically start the oldest queued job if fewer than max_running jobs run.

        One IMMEDIATE transaction counts the running jobs (whoever started them) and moves every
        queued run of the oldest queued job (of job_ids, if given) to 'running' with pid NULL and
        a fresh heartbeat, so concurrent claimers can neither start a run twice nor exceed the
        limit together. Returns (job id, run ids), or None. A queued run outside any job becomes a
        job of its own.
        """
        now = time.time()
        with self._transaction() as conn:
            running = conn.execute(
                "SELECT COUNT(DISTINCT COALESCE(job_id, -id)) FROM runs WHERE status = 'running'"
            ).fetchone()[0]
            if running >= max_running:
                return None
            sql = "SELECT id, job_id FROM runs WHERE status = 'queued'"
            args: list[Any] = []
            if job_ids is not None:
                if not job_ids:
                    return None
                sql += f" AND job_id IN ({','.join('?' * len(job_ids))})"
                args += [int(j) for j in job_ids]
            row = conn.execute(sql + " ORDER BY created, id LIMIT 1", args).fetchone()
            if row is None:
                return None
            job_id = row["job_id"]
            if job_id is None:  # queued before it had a job: it becomes a job of its own
                job_id = int(
                    conn.execute(
                        "INSERT INTO jobs (label, created) VALUES ('', ?)", (now,)
                    ).lastrowid
                )
                conn.execute("UPDATE runs SET job_id = ? WHERE id = ?", (job_id, row["id"]))
                ids = [int(row["id"])]
            else:
                ids = [
                    int(r[0])
                    for r in conn.execute(
                        "SELECT id FROM runs WHERE job_id = ? AND status = 'queued' ORDER BY id",
                        (job_id,),
                    ).fetchall()
                ]
            marks = ",".join("?" * len(ids))
            conn.execute(
                "UPDATE runs SET status = 'running', pid = NULL, heartbeat = ?, error = NULL,"
                f" finished = NULL, started = COALESCE(started, ?) WHERE id IN ({marks})",
                (now, now, *ids),
            )
            return job_id, ids

    def set_status(self, run_id: int, status: str, error: str | None = None) -> None:
        """Change a run's status; 'running' stamps started (once), end states stamp finished."""
        _check_status(status)
        now = time.time()
        if status == "running":
            sql = (
                "UPDATE runs SET status = ?, error = ?, started = COALESCE(started, ?),"
                " finished = NULL, heartbeat = ? WHERE id = ?"
            )
            args = (status, error, now, now, run_id)
        elif status == "queued":
            sql = "UPDATE runs SET status = ?, error = ?, finished = NULL WHERE id = ?"
            args = (status, error, run_id)
        else:
            sql = "UPDATE runs SET status = ?, error = ?, finished = ? WHERE id = ?"
            args = (status, error, now, run_id)
        with self._transaction() as conn:
            if conn.execute(sql, args).rowcount == 0:
                raise _missing(run_id)

    def heartbeat_many(self, run_ids: Sequence[int], pid: int | None = None) -> None:
        """Record that the process running these runs is alive (one transaction)."""
        now = time.time()
        with self._transaction() as conn:
            for run_id in run_ids:
                conn.execute(
                    "UPDATE runs SET heartbeat = ?, pid = COALESCE(?, pid) WHERE id = ?",
                    (now, pid, run_id),
                )

    def heartbeat(self, run_id: int, pid: int | None = None) -> None:
        """Record that the worker is alive (and its process id, if given)."""
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET heartbeat = ?, pid = COALESCE(?, pid) WHERE id = ?",
                (time.time(), pid, run_id),
            )
            if cur.rowcount == 0:
                raise _missing(run_id)

    def get_run(self, run_id: int) -> RunInfo:
        """The run with this id; KeyError if there is none."""
        row = self._conn().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise _missing(run_id)
        return _run_info(row)

    def list_runs(
        self, kind: str | None = None, status: str | None = None, group_name: str | None = None
    ) -> list[RunInfo]:
        """Runs matching every filter given, newest first."""
        where, args = [], []
        for column, value in (("kind", kind), ("status", status), ("group_name", group_name)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn().execute(sql + " ORDER BY created DESC, id DESC", args).fetchall()
        return [_run_info(row) for row in rows]

    def update_config(self, run_id: int, config: dict, total_steps: int | None = None) -> None:
        """Replace a stopped run's config (e.g. more steps before `resume`); total_steps too."""
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET config_json = ?, total_steps = COALESCE(?, total_steps)"
                " WHERE id = ?",
                (dumps(config), total_steps, run_id),
            )
            if cur.rowcount == 0:
                raise _missing(run_id)

    def probe_counts(self) -> dict[int, int]:
        """{run id: number of probe records} for every run that has any (one query)."""
        rows = self._conn().execute("SELECT run_id, COUNT(*) FROM probes GROUP BY run_id")
        return {int(r[0]): int(r[1]) for r in rows.fetchall()}

    def delete_run(self, run_id: int) -> None:
        """Delete a run, its metrics, probes and samples, and its checkpoint directory."""
        with self._transaction() as conn:
            if conn.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount == 0:
                raise _missing(run_id)
        shutil.rmtree(self.data_dir / "checkpoints" / str(run_id), ignore_errors=True)

    def checkpoint_dir(self, run_id: int) -> Path:
        """data_dir/checkpoints/<run_id>, created if needed."""
        path = self.data_dir / "checkpoints" / str(int(run_id))
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- records -------------------------------------------------------------------------

    def log_metrics(self, run_id: int, step: int, record: dict) -> None:
        """Store one step's metrics (replacing that step if it exists) and beat the heart."""
        now = time.time()
        data = dumps(record)
        with self._transaction() as conn:
            self._insert(
                conn,
                "INSERT OR REPLACE INTO metrics (run_id, step, time, data) VALUES (?, ?, ?, ?)",
                (run_id, int(step), now, data),
                run_id,
            )
            conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id))

    def log_probe(self, run_id: int, step: int, record: dict) -> None:
        """Store one step's gradient-probe statistics."""
        with self._transaction() as conn:
            self._insert(
                conn,
                "INSERT OR REPLACE INTO probes (run_id, step, data) VALUES (?, ?, ?)",
                (run_id, int(step), dumps(record)),
                run_id,
            )

    def log_samples(self, run_id: int, step: int, samples: list[dict]) -> None:
        """Store example answers from one step."""
        with self._transaction() as conn:
            self._insert(
                conn,
                "INSERT OR REPLACE INTO samples (run_id, step, data) VALUES (?, ?, ?)",
                (run_id, int(step), dumps(list(samples))),
                run_id,
            )

    @staticmethod
    def _insert(conn: sqlite3.Connection, sql: str, args: tuple, run_id: int) -> None:
        try:
            conn.execute(sql, args)
        except sqlite3.IntegrityError as e:
            raise _missing(run_id) from e

    def metrics(self, run_id: int) -> pd.DataFrame:
        """All metrics of a run, one row per step (columns step, time and every record key)."""
        rows = (
            self._conn()
            .execute(
                "SELECT step, time, data FROM metrics WHERE run_id = ? ORDER BY step", (run_id,)
            )
            .fetchall()
        )
        if not rows:
            return pd.DataFrame({"step": pd.Series([], dtype="int64")})
        return pd.DataFrame([_metric_record(row) for row in rows])

    def has_runs(self) -> bool:
        """Whether the store holds any run (one indexed row read, for the empty-store offer)."""
        return self._conn().execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None

    def metrics_since(self, run_id: int, after_step: int = -(2**62)) -> list[dict]:
        """Metric records with step > after_step (default: all), in step order (live polling)."""
        rows = (
            self._conn()
            .execute(
                "SELECT step, time, data FROM metrics WHERE run_id = ? AND step > ? ORDER BY step",
                (run_id, int(after_step)),
            )
            .fetchall()
        )
        return [_metric_record(row) for row in rows]

    def probes(self, run_id: int) -> list[dict]:
        """All probe records of a run in step order, each with its 'step'."""
        rows = (
            self._conn()
            .execute("SELECT step, data FROM probes WHERE run_id = ? ORDER BY step", (run_id,))
            .fetchall()
        )
        return [{**loads(row["data"]), "step": row["step"]} for row in rows]

    def samples(self, run_id: int, limit_steps: int | None = 1) -> list[dict]:
        """Samples of the latest limit_steps steps (None: all), oldest first, each with 'step'."""
        sql = "SELECT step, data FROM samples WHERE run_id = ? ORDER BY step DESC"
        args: tuple = (run_id,)
        if limit_steps is not None:
            sql += " LIMIT ?"
            args = (run_id, int(limit_steps))
        rows = self._conn().execute(sql, args).fetchall()
        return [{**s, "step": row["step"]} for row in reversed(rows) for s in loads(row["data"])]

    def last_step(self, run_id: int) -> int | None:
        """Highest step with metrics, or None if the run has none yet."""
        row = (
            self._conn()
            .execute("SELECT MAX(step) FROM metrics WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return row[0]

    def import_runs(
        self, bundles: Sequence[RunBundle], sweeps: Sequence[dict[str, Any]] = ()
    ) -> ImportResult:
        """Add runs with all their records (and sweep rows) in ONE transaction: all or none.

        A run whose fingerprint the store already holds, or that came earlier in `bundles`, is
        skipped and counted. Runs get new ids (no job, no process); a sweep whose name is taken
        keeps its stored row. Any error rolls everything back.
        """
        result, seen = ImportResult(), set()
        with self._transaction() as conn:
            for bundle in bundles:
                if bundle.fingerprint in seen or self._holds(conn, bundle):
                    result.skipped_duplicates += 1
                    continue
                seen.add(bundle.fingerprint)
                result.run_ids.append(insert_bundle(conn, bundle))
            result.sweeps = self._import_sweeps(conn, sweeps)
        return result

    def _holds(self, conn: sqlite3.Connection, bundle: RunBundle) -> bool:
        """True if a stored run has the bundle's fingerprint (only same name and time can)."""
        rows = conn.execute(
            "SELECT id, kind, config_json FROM runs WHERE name = ? AND created = ?",
            (bundle.run.name, bundle.run.created),
        ).fetchall()
        for row in rows:
            run = bundle.run.model_copy(update={"kind": row[1], "config": loads(row[2])})
            if fingerprint(run, self.metrics_since(row[0])) == bundle.fingerprint:
                return True
        return False

    def export(self, run_id: int, fmt: Literal["csv", "json"] = "json") -> str:
        """A run as text: 'json' gives run info, metrics and probes; 'csv' the metrics table."""
        if fmt == "csv":
            self.get_run(run_id)  # clear error for a missing run
            buffer = io.StringIO()
            self.metrics(run_id).to_csv(buffer, index=False)
            return buffer.getvalue()
        if fmt == "json":
            run = self.get_run(run_id).model_dump()
            metrics = self.metrics_since(run_id)
            return dumps({"run": run, "metrics": metrics, "probes": self.probes(run_id)})
        raise ValueError(f"unknown export format {fmt!r}; choose 'csv' or 'json'")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; choose one of {', '.join(STATUSES)}")


def _missing(run_id: int) -> KeyError:
    return KeyError(f"no run with id {run_id} in the store")


def _run_info(row: sqlite3.Row) -> RunInfo:
    fields = dict(row)
    return RunInfo(config=loads(fields.pop("config_json")), **fields)


def _metric_record(row: sqlite3.Row) -> dict:
    """A metrics row as one dict: the record plus step (and time, unless the record has one)."""
    record = {"step": row["step"], "time": row["time"]}
    record.update(loads(row["data"]))
    record["step"] = row["step"]
    return record
