"""Tests for the SQLite run store: round trips, status bookkeeping, concurrency and durability."""

import json
import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vlsim.store import Store, default_data_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data") as s:
        yield s


def test_creates_database_with_wal(tmp_path):
    s = Store(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir" / "vlsim.db").exists()
    conn = s._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
    s.close()


def test_run_round_trip(store):
    config = {"aggregator": "vl_norm", "alpha": 0.5, "nested": {"lengths": [1, 2, 3]}}
    run_id = store.create_run("r1", "train", config, seed=7, group_name="g", total_steps=100)
    run = store.get_run(run_id)
    assert (run.id, run.name, run.kind, run.seed) == (run_id, "r1", "train", 7)
    assert run.config == config
    assert (run.status, run.group_name, run.total_steps) == ("queued", "g", 100)
    assert run.started is None and run.finished is None and run.created > 0


def test_get_missing_run_is_clear(store):
    with pytest.raises(KeyError, match="no run with id 42"):
        store.get_run(42)
    with pytest.raises(KeyError, match="42"):
        store.log_metrics(42, 0, {"loss": 1.0})
    with pytest.raises(KeyError, match="42"):
        store.set_status(42, "running")


def test_metrics_probes_samples_round_trip(store):
    run_id = store.create_run("r", "train", {})
    assert store.metrics(run_id).columns.tolist() == ["step"]
    assert store.last_step(run_id) is None
    for step in [2, 0, 1]:
        store.log_metrics(run_id, step, {"loss": 0.1 * step, "reward": 1 / 3, "agg": "grpo"})
    store.log_metrics(run_id, 1, {"loss": 9.0, "reward": 0.5, "agg": "dapo"})  # resumed: replaces
    df = store.metrics(run_id)
    assert df["step"].tolist() == [0, 1, 2]
    assert {"step", "time", "loss", "reward", "agg"} <= set(df.columns)
    assert df["loss"].tolist() == [0.0, 9.0, 0.2]  # floats round-trip exactly
    assert df["reward"].iloc[0] == 1 / 3
    assert [r["step"] for r in store.metrics_since(run_id, 0)] == [1, 2]
    assert store.last_step(run_id) == 2

    store.log_probe(run_id, 5, {"var": {"grpo": 1.5}})
    store.log_probe(run_id, 3, {"var": {"grpo": 2.5}})
    assert store.probes(run_id) == [
        {"var": {"grpo": 2.5}, "step": 3},
        {"var": {"grpo": 1.5}, "step": 5},
    ]

    store.log_samples(run_id, 0, [{"text": "a"}, {"text": "b"}])
    store.log_samples(run_id, 10, [{"text": "c"}])
    assert store.samples(run_id) == [{"text": "c", "step": 10}]
    assert [s["text"] for s in store.samples(run_id, limit_steps=None)] == ["a", "b", "c"]


def test_numpy_and_nonfinite_values(store):
    run_id = store.create_run("r", "lab", {"lengths": np.arange(3), "alpha": np.float32(0.5)})
    assert store.get_run(run_id).config == {"lengths": [0, 1, 2], "alpha": 0.5}
    record = {
        "a": np.float64(0.1),
        "b": np.int64(3),
        "c": np.array([[1.5, 2.5]]),
        "d": np.bool_(True),
        "nan": float("nan"),
        "inf": np.float32("inf"),
        "ninf": -math.inf,
        "list": [np.nan, 1.0],
    }
    store.log_metrics(run_id, 0, record)
    (rec,) = store.metrics_since(run_id, -1)
    assert rec["a"] == 0.1 and rec["b"] == 3 and rec["c"] == [[1.5, 2.5]] and rec["d"] is True
    assert math.isnan(rec["nan"]) and rec["inf"] == math.inf and rec["ninf"] == -math.inf
    assert math.isnan(rec["list"][0])
    raw = store._conn().execute("SELECT data FROM metrics").fetchone()[0]
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    with pytest.raises(TypeError, match="cannot store"):
        store.log_metrics(run_id, 1, {"bad": object()})


def test_status_transitions_and_timestamps(store):
    run_id = store.create_run("r", "train", {})
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        store.set_status(run_id, "done")
    store.set_status(run_id, "running")
    run = store.get_run(run_id)
    assert run.status == "running" and run.started is not None and run.finished is None
    started = run.started
    store.heartbeat(run_id, pid=1234)
    assert store.get_run(run_id).pid == 1234
    store.set_status(run_id, "stopped")
    run = store.get_run(run_id)
    assert run.status == "stopped" and run.finished >= started
    store.set_status(run_id, "running")  # resume keeps the first start, clears finished
    run = store.get_run(run_id)
    assert run.started == started and run.finished is None
    store.set_status(run_id, "failed", error="boom")
    run = store.get_run(run_id)
    assert run.status == "failed" and run.error == "boom" and run.finished is not None
    beat = run.heartbeat
    time.sleep(0.01)
    store.log_metrics(run_id, 0, {"x": 1})
    assert store.get_run(run_id).heartbeat > beat


def test_list_runs_filters_newest_first(store):
    a = store.create_run("a", "train", {}, group_name="g1")
    b = store.create_run("b", "lab", {})
    c = store.create_run("c", "train", {}, group_name="g1", status="running")
    assert [r.id for r in store.list_runs()] == [c, b, a]
    assert [r.id for r in store.list_runs(kind="train")] == [c, a]
    assert [r.id for r in store.list_runs(status="running")] == [c]
    assert [r.id for r in store.list_runs(kind="train", group_name="g1", status="queued")] == [a]
    assert store.list_runs(kind="sweep") == []


def test_delete_cascades_and_removes_checkpoints(store):
    run_id = store.create_run("r", "train", {})
    keep = store.create_run("k", "train", {})
    for rid in (run_id, keep):
        store.log_metrics(rid, 0, {"x": 1})
        store.log_probe(rid, 0, {"y": 2})
        store.log_samples(rid, 0, [{"z": 3}])
    ckpt = store.checkpoint_dir(run_id)
    assert ckpt == store.data_dir / "checkpoints" / str(run_id) and ckpt.is_dir()
    (ckpt / "model.pt").write_bytes(b"weights")
    store.delete_run(run_id)
    assert not ckpt.exists()
    with pytest.raises(KeyError):
        store.get_run(run_id)
    conn = store._conn()
    for table in ("metrics", "probes", "samples"):
        assert (
            conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0]
            == 0
        )
        assert (
            conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (keep,)).fetchone()[0]
            == 1
        )


def test_export(store):
    run_id = store.create_run("r", "train", {"a": 1})
    store.log_metrics(run_id, 0, {"loss": 1.5})
    store.log_metrics(run_id, 1, {"loss": float("nan")})
    store.log_probe(run_id, 1, {"var": 2.0})
    data = json.loads(store.export(run_id, "json"))
    assert data["run"]["config"] == {"a": 1}
    assert [m["loss"] for m in data["metrics"]] == [1.5, "NaN"]
    assert data["probes"] == [{"var": 2.0, "step": 1}]
    csv = store.export(run_id, "csv")
    assert csv.splitlines()[0].split(",")[:3] == ["step", "time", "loss"]
    assert len(csv.splitlines()) == 3
    with pytest.raises(ValueError, match="csv"):
        store.export(run_id, "xml")


def test_data_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    with Store() as s:
        assert s.data_dir == tmp_path / "env" and (tmp_path / "env" / "vlsim.db").exists()
    monkeypatch.delenv("VLSIM_DATA_DIR")
    assert default_data_dir() == Path("vlsim-data")


def test_threads_write_concurrently(store):
    shared = store.create_run("shared", "train", {})
    own = [store.create_run(f"t{i}", "train", {}) for i in range(2)]

    def worker(i: int) -> None:
        for step in range(100):
            store.log_metrics(shared, 1000 * i + step, {"i": i})
            store.log_metrics(own[i], step, {"i": i})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.metrics(shared)) == 200
    assert all(len(store.metrics(r)) == 100 for r in own)


WRITER = """
import sys, time
from pathlib import Path
from vlsim.store import Store
data_dir, shared, own, offset, n, go = sys.argv[1:]
with Store(data_dir) as s:
    deadline = time.time() + 60
    while not Path(go).exists() and time.time() < deadline:  # start together: real overlap
        time.sleep(0.01)
    for step in range(int(n)):  # each row is its own commit
        s.log_metrics(int(shared), int(offset) + step, {"offset": int(offset)})
        s.log_metrics(int(own), step, {"offset": int(offset)})
"""


@pytest.mark.slow
def test_processes_write_concurrently(tmp_path):
    """Two OS processes commit rows into the same run and their own at once; none is lost."""
    with Store(tmp_path) as s:
        shared = s.create_run("shared", "train", {})
        own = [s.create_run(f"p{i}", "train", {}) for i in range(2)]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(tmp_path),
                str(shared),
                str(own[i]),
                str(1000 * i),
                "300",
                str(go),
            ],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Store(tmp_path) as s:
        assert len(s.metrics(shared)) == 600
        assert all(len(s.metrics(r)) == 300 for r in own)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_forked_child_reconnects(store):
    run_id = store.create_run("r", "train", {})
    store.log_metrics(run_id, 0, {"who": "parent"})  # the parent has an open connection

    def child() -> None:
        store.log_metrics(run_id, 1, {"who": "child"})
        store.close()

    proc = mp.get_context("fork").Process(target=child)
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    store.log_metrics(run_id, 2, {"who": "parent"})  # the parent's connection still works
    assert store.metrics(run_id)["who"].tolist() == ["parent", "child", "parent"]


KILLED_WRITER = """
import sys, time
from vlsim.store import Store
s = Store(sys.argv[1])
run_id = int(sys.argv[2])
for step in range(10_000):
    s.log_metrics(run_id, step, {"value": step * 0.5})
    print(step, flush=True)
    time.sleep(0.002)
"""


@pytest.mark.slow
def test_committed_steps_survive_sigkill(tmp_path):
    with Store(tmp_path) as s:
        run_id = s.create_run("crash", "train", {})
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(run_id)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    last = -1
    try:
        while last < 50:
            line = proc.stdout.readline()
            assert line, "the writer process ended before writing 50 steps"
            last = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    with Store(tmp_path) as s:
        df = s.metrics(run_id)
    steps = df["step"].tolist()
    assert steps[: last + 1] == list(range(last + 1))  # every acknowledged step is there
    assert steps == list(range(len(steps)))  # and nothing is half-written
    assert df["value"].tolist() == [0.5 * k for k in steps]
    assert isinstance(df, pd.DataFrame)


def test_update_config_and_probe_counts(store):
    run_id = store.create_run("r", "train", {"steps": 5}, total_steps=5)
    store.update_config(run_id, {"steps": 9}, total_steps=9)
    info = store.get_run(run_id)
    assert info.config == {"steps": 9} and info.total_steps == 9
    store.update_config(run_id, {"steps": 10})  # total_steps unchanged when not given
    assert store.get_run(run_id).total_steps == 9
    with pytest.raises(KeyError):
        store.update_config(run_id + 100, {})
    assert store.probe_counts() == {}
    store.log_probe(run_id, 0, {"a": 1})
    store.log_probe(run_id, 5, {"a": 2})
    assert store.probe_counts() == {run_id: 2}


def test_a_job_joins_the_queue_at_once_and_is_claimed_whole(store):
    job = store.create_job("demo")
    ids = [store.create_run(f"r{i}", "train", {}, status="new") for i in range(3)]
    assert store.claim_next_job(5) is None  # 'new' runs are not in the queue yet
    assert store.queue_job(job, ids) == ids
    assert {r.status for r in store.job_runs(job)} == {"queued"}
    assert store.claim_next_job(5) == (job, ids)  # every run of the job, together
    assert store.running_jobs() == 1
    assert store.queue_job(job, ids) == []  # running runs are not moved
    other = store.create_run("solo", "train", {})  # queued outside any job
    assert store.claim_next_job(1) is None  # one job runs: the limit counts jobs, not runs
    solo_job, solo_ids = store.claim_next_job(2)
    assert solo_ids == [other] and store.get_run(other).job_id == solo_job != job
    assert store.running_jobs() == 2
    assert store.job_label(job) == "demo" and store.job_label(999) is None


def test_transition_changes_only_from_the_given_statuses(store):
    run_id = store.create_run("r", "train", {})
    assert not store.transition(run_id, ["running"], "stopped")
    assert store.transition(run_id, ["queued"], "stopped", "why")
    info = store.get_run(run_id)
    assert info.status == "stopped" and info.error == "why" and info.finished is not None


def test_a_store_written_before_jobs_gains_the_column(tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "vlsim.db")
    conn.execute(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,"
        " config_json TEXT NOT NULL, status TEXT NOT NULL, seed INTEGER, created REAL NOT NULL,"
        " started REAL, finished REAL, error TEXT, heartbeat REAL, pid INTEGER, group_name TEXT,"
        " total_steps INTEGER)"
    )
    conn.execute(
        "INSERT INTO runs (name, kind, config_json, status, created) VALUES ('old', 'train', '{}',"
        " 'finished', 1.0)"
    )
    conn.commit()
    conn.close()
    store = Store(tmp_path)
    (info,) = store.list_runs()
    assert info.name == "old" and info.job_id is None
    store.close()
