"""Background runs: the queue in the store, worker processes, limits, kills, stop and resume."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vlsim.config import preset_config
from vlsim.jobs import JobManager, describe_exit
from vlsim.store import Store

END = ("finished", "failed", "stopped")


def tiny(steps: int, **overrides):
    """A run of a few seconds: 10 warm-start steps, no evaluation."""
    return preset_config(
        "quick",
        sft_steps=10,
        steps=steps,
        eval_every=0,
        task={"n_train": 100, "n_test": 8},
        **overrides,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One data dir for the module, so the cached warm start is shared by its tests."""
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture
def managers(data_dir):
    """Managers made by a test; afterwards every worker they started is stopped."""
    made: list[JobManager] = []

    def make(**kwargs) -> JobManager:
        m = JobManager(data_dir, **kwargs)
        made.append(m)
        return m

    yield make
    for m in made:
        m.shutdown()
    store = Store(data_dir)
    for info in store.list_runs(status="running"):
        if info.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
    for m in made:
        for proc in list(m._procs.values()):
            proc.kill()
            proc.wait()


def wait_for(predicate, timeout: float, poll=None, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if poll is not None:
            poll()
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.mark.slow
def test_two_managers_respect_the_limit_and_lose_nothing(managers) -> None:
    """Two jobs of two runs and one job of one run; at most two jobs run at once."""
    limit, steps = 2, 4
    a, b = managers(max_concurrent=limit), managers(max_concurrent=limit)
    ids: list[int] = []
    lock = threading.Lock()

    def submit(manager: JobManager, aggs: list[str]) -> None:
        got = manager.submit_many([tiny(steps, aggregator=n) for n in aggs], "limit")
        with lock:
            ids.extend(got)

    threads = [
        threading.Thread(target=submit, args=(a, ["grpo", "dapo"])),
        threading.Thread(target=submit, args=(b, ["dr_grpo"])),
        threading.Thread(target=submit, args=(b, ["seq_sum", "vl_norm"])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 5
    assert len({store_job(a, i) for i in ids}) == 3  # one job per submit_many
    a.start(), b.start()  # both poll every second, from two threads
    store = Store(a.data_dir)
    seen: list[int] = []

    def all_done() -> bool:
        seen.append(store.running_jobs())
        return all(store.get_run(i).status in END for i in ids)

    wait_for(all_done, timeout=240, every=0.1)
    assert max(seen) <= limit, f"more than {limit} jobs were running at once: {max(seen)}"
    assert max(seen) == limit  # and the limit was used
    for run_id in ids:
        info = store.get_run(run_id)
        assert info.status == "finished", (info.status, info.error)
        assert list(store.metrics(run_id)["step"]) == list(range(steps))


def store_job(manager: JobManager, run_id: int) -> int | None:
    return manager.store.get_run(run_id).job_id


def claim_next(store: Store, limit: int) -> int | None:
    """Claim the next queued job; its single run's id (each of these runs is a job of its own)."""
    claimed = store.claim_next_job(limit)
    if claimed is None:
        return None
    _, (run_id,) = claimed
    return run_id


def test_claims_are_atomic_across_connections(tmp_path) -> None:
    store = Store(tmp_path)
    queued = [store.create_run(f"r{i}", "train", {}) for i in range(30)]
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(limit: int) -> None:
        own = Store(tmp_path)  # its own connections, as another process would have
        while (run_id := claim_next(own, limit)) is not None:
            with lock:
                claimed.append(run_id)

    threads = [threading.Thread(target=worker, args=(100,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == queued  # every run once, none twice

    more = [store.create_run(f"s{i}", "train", {}) for i in range(10)]
    for run_id in claimed:
        store.set_status(run_id, "finished")
    claimed.clear()
    threads = [threading.Thread(target=worker, args=(3,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == more[:3]  # oldest first, never more than the limit


@pytest.mark.slow
def test_killed_worker_is_failed_and_keeps_its_metrics(managers) -> None:
    m = managers(max_concurrent=2)
    run_id = m.submit(tiny(5000), "kill")
    wait_for(lambda: (m.store.last_step(run_id) or -1) >= 2, timeout=120, poll=m.poll)
    pid = m.store.get_run(run_id).pid
    assert pid
    os.kill(pid, signal.SIGKILL)
    info = wait_for(
        lambda: (i := m.store.get_run(run_id)).status == "failed" and i, timeout=60, poll=m.poll
    )
    assert "killed by signal 9" in info.error and "SIGKILL" in info.error
    assert m.store.last_step(run_id) >= 2
    assert len(m.store.metrics(run_id)) >= 3


def test_dead_worker_of_another_process_is_stopped_with_the_reason(managers, data_dir) -> None:
    m = managers()
    store = m.store
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_id = store.create_run("orphan", "train", {}, status="running")
    store.heartbeat(run_id, pid=gone.pid)
    store.log_metrics(run_id, 0, {"charts/reward_mean": 0.5})
    m.poll_reap_only()
    info = store.get_run(run_id)
    assert info.status == "stopped", info
    assert f"process {gone.pid} is gone (last heartbeat" in info.error
    assert store.last_step(run_id) == 0
    assert describe_exit(3) == "worker process exited with code 3"
    assert describe_exit(-15) == "worker process was killed by signal 15 (SIGTERM)"
    store.delete_run(run_id)


@pytest.mark.slow
def test_stop_then_resume_finishes(managers) -> None:
    m = managers(max_concurrent=1)
    steps = 12
    run_id, mate = m.submit_many(
        [tiny(steps, checkpoint_every=2), tiny(steps, checkpoint_every=2, aggregator="dapo")],
        "stop",
    )  # one job of two runs
    # a second job waits in the queue; stopping it un-queues it
    waiting = m.submit(tiny(steps), "stop")
    assert m.queue_position(waiting) == 1 and m.queue_position(run_id) is None
    assert m.stop(waiting) == "unqueued"
    assert m.store.get_run(waiting).status == "stopped"

    wait_for(lambda: (m.store.last_step(run_id) or -1) >= 3, timeout=120, poll=m.poll)
    assert m.stop(run_id) == "stopping"  # stops its job: both runs
    wait_for(
        lambda: {m.store.get_run(i).status for i in (run_id, mate)} == {"stopped"},
        timeout=60, poll=m.poll,
    )  # fmt: skip
    stopped_at = m.store.last_step(run_id)
    assert stopped_at < steps - 1
    assert m.resume(run_id)  # continues every run of the job
    assert {m.store.get_run(i).status for i in (run_id, mate)} <= {"queued", "running"}
    wait_for(
        lambda: all(m.store.get_run(i).status in END for i in (run_id, mate)),
        timeout=240, poll=m.poll,
    )  # fmt: skip
    for i in (run_id, mate):
        info = m.store.get_run(i)
        assert info.status == "finished", info.error
        assert list(m.store.metrics(i)["step"]) == list(range(steps))  # nothing lost or redone
    assert not m.resume(run_id)  # a finished run is not resumable

    m.delete(waiting)
    with pytest.raises(KeyError):
        m.store.get_run(waiting)


def test_stop_right_after_launch_ends_stopped_not_failed(managers) -> None:
    m = managers(max_concurrent=2)
    run_id = m.submit(tiny(50), "early")
    assert m.store.get_run(run_id).status == "running"  # launched by submit's poll
    assert m.stop(run_id) == "stopping"  # the worker is still importing torch
    info = wait_for(
        lambda: (i := m.store.get_run(run_id)).status in END and i, timeout=120, poll=m.poll
    )
    assert info.status == "stopped", info.error
    assert m.resume(run_id) and m.store.get_run(run_id).status in ("queued", "running")
    m.delete(run_id)  # kills the relaunched worker, then forgets the run
    with pytest.raises(KeyError):
        m.store.get_run(run_id)


# ----------------------------------------------------------------------------- the CLI's jobs

ROOT = Path(__file__).resolve().parents[1]
TINY_CLI = ["--preset", "quick", "--sft-steps", "10", "--eval-every", "0", "--task-n-train", "100",
            "--task-n-test", "8", "--quiet"]  # fmt: skip


def test_cli_list_values_that_do_not_validate_name_the_run(tmp_path, capsys) -> None:
    from vlsim.cli import main as cli_main

    args = ["train", *TINY_CLI, "--data-dir", str(tmp_path), "--aggregator", "grpo,nope"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "aggregator=nope" in err and "unknown aggregator 'nope'" in err
    assert Store(tmp_path).list_runs() == []  # nothing half-made


@pytest.mark.slow
def test_cli_train_makes_one_run_per_combination_in_one_job(tmp_path, capsys) -> None:
    from vlsim.cli import main as cli_main

    args = ["train", *TINY_CLI, "--steps", "2", "--data-dir", str(tmp_path),
            "--aggregator", "grpo,vl_norm", "--seed", "0,1"]  # fmt: skip
    assert cli_main(args) == 0
    runs = Store(tmp_path).list_runs()
    assert sorted((r.config["aggregator"], r.seed) for r in runs) == [
        ("grpo", 0),
        ("grpo", 1),
        ("vl_norm", 0),
        ("vl_norm", 1),
    ]
    assert len({r.job_id for r in runs}) == 1 and runs[0].job_id is not None
    assert {r.status for r in runs} == {"finished"}
    capsys.readouterr()
    assert cli_main(["runs", "list", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("finished") == 4


def start_cli_run(data_dir: Path) -> tuple[subprocess.Popen, int]:
    """A long CLI training run in a subprocess, once it has logged two RL steps."""
    cmd = [sys.executable, "-m", "vlsim", "train", *TINY_CLI, "--steps", "5000",
           "--data-dir", str(data_dir)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    store = Store(data_dir)
    try:
        run_id = wait_for(lambda: [r.id for r in store.list_runs()], timeout=60)[0]
        wait_for(lambda: (store.last_step(run_id) or -1) >= 1, timeout=90)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, run_id


@pytest.mark.slow
def test_sigterm_stops_a_cli_run_as_ctrl_c_does(tmp_path) -> None:
    proc, run_id = start_cli_run(tmp_path)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"runs resume {run_id}" in err
    info = Store(tmp_path).get_run(run_id)
    assert info.status == "stopped", info
    assert Store(tmp_path).last_step(run_id) >= 1  # the metrics are kept


@pytest.mark.slow
def test_a_killed_cli_run_is_listed_stopped_with_the_reason(tmp_path, capsys) -> None:
    from vlsim.cli import main as cli_main

    proc, run_id = start_cli_run(tmp_path)
    proc.kill()  # SIGKILL: nothing can be recorded
    proc.wait()
    assert Store(tmp_path).get_run(run_id).status == "running"  # what the store was left with
    assert cli_main(["runs", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"stopped: process {proc.pid} is gone (last heartbeat" in out
    assert cli_main(["runs", "show", str(run_id), "--data-dir", str(tmp_path)]) == 0
    assert f"reason: process {proc.pid} is gone" in capsys.readouterr().out
    assert Store(tmp_path).get_run(run_id).status == "stopped"  # resumable


# ----------------------------------------------------------------------------- liveness


def test_liveness_reasons(tmp_path) -> None:
    from vlsim.liveness import STALE_S, START_GRACE_S, check_runs, dead_reason, status_text

    store = Store(tmp_path)
    now = time.time()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    info = store.get_run(store.create_run("r", "train", {}, status="running"))
    assert dead_reason(info, now) is None  # just claimed: its process may still be starting
    assert "never reported" in dead_reason(info, now + START_GRACE_S + 1)
    alive = info.model_copy(update={"pid": os.getpid(), "heartbeat": now})
    assert dead_reason(alive, now + 1) is None
    assert "no heartbeat from process" in dead_reason(alive, now + STALE_S + 1)
    dead = alive.model_copy(update={"pid": gone.pid, "heartbeat": now - 180})
    assert dead_reason(dead, now) == f"process {gone.pid} is gone (last heartbeat 3 min ago)"
    store.heartbeat(info.id, pid=gone.pid)
    (checked,) = check_runs(store, [store.get_run(info.id)])
    assert checked.status == "stopped"
    assert status_text(checked).startswith(f"stopped: process {gone.pid} is gone")
    assert dead_reason(checked) is None  # not 'running' any more


def test_one_stop_flag_for_signals_stop_files_and_callers(tmp_path) -> None:
    from vlsim.stopping import StopFlag, clear_stop, request_stop, stop_file

    asked = [False]
    flag = StopFlag([stop_file(tmp_path, 7)], also=lambda: asked[0])
    assert not flag()
    request_stop(tmp_path, 7)
    assert flag() and StopFlag([stop_file(tmp_path, 7)])()  # seen by any process
    clear_stop(tmp_path, 7)
    assert not StopFlag([stop_file(tmp_path, 7)])()
    asked[0] = True
    assert StopFlag(also=lambda: asked[0])()
    by_signal = StopFlag()
    by_signal.handle(signal.SIGTERM, None)  # first signal: stop after the step
    assert by_signal()
    with pytest.raises(KeyboardInterrupt):  # second: at once
        by_signal.handle(signal.SIGTERM, None)
