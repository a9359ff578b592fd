"""Sweeps: spec validation, deterministic expansion, resumable executors (local and Ray), reports."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vlsim.cli import main as cli_main
from vlsim.cli_sweep import format_report
from vlsim.liveness import process_alive
from vlsim.store import Store
from vlsim.sweeps import (
    SweepError,
    SweepOutcome,
    build_report,
    condition_display,
    conditions,
    config_key,
    expand,
    get_sweep,
    load_spec,
    parse_spec,
    run_sweep,
    slope_sentences,
    stored_runs,
)
from vlsim.sweeps.execute import MAX_BATCH, batch_size, pack

ROOT = Path(__file__).resolve().parents[1]

TINY_BASE = {
    "sft_steps": 10,
    "steps": 4,
    "prompts_per_step": 8,
    "eval_every": 2,
    "checkpoint_every": 2,
    "sample_log_every": 2,
    "task": {"n_train": 100, "n_test": 8},
}


def tiny_spec(name: str = "tiny", **extra) -> dict:
    """A 2 x 2 sweep of seconds-long quick runs: two aggregators, two seeds."""
    return {
        "name": name,
        "preset": "quick",
        "base": TINY_BASE,
        "grid": {"aggregator": ["dapo", "vl_norm"]},
        "seeds": [0, 1],
        "analysis": {"threshold": 0.05},
        **extra,
    }


# ----------------------------------------------------------------------------- specs


def test_expansion_is_deterministic_seed_by_seed() -> None:
    spec = parse_spec(
        {"name": "g", "base": TINY_BASE, "grid": {"aggregator": ["grpo", "vl_norm"], "lr": [1e-3, 2e-3]},
         "seeds": [3, 1]}
    )  # fmt: skip
    plan = expand(spec)
    assert len(plan) == 8
    assert [(p.condition, p.seed) for p in plan[:4]] == [
        ("grpo · lr=0.001", 3), ("grpo · lr=0.002", 3), ("vl_norm · lr=0.001", 3),
        ("vl_norm · lr=0.002", 3),
    ]  # fmt: skip
    assert [p.seed for p in plan[4:]] == [1, 1, 1, 1]
    assert [p.key for p in plan] == [p.key for p in expand(spec)]
    assert len({p.key for p in plan}) == 8
    assert plan[0].config["steps"] == 4 and plan[0].config["model_size"] == "tiny"  # base on quick
    assert plan[0].config["name"] == "g: grpo · lr=0.001 · seed 3"
    # the key ignores the name and the thread count, not the seed or the aggregator
    cfg = dict(plan[0].config)
    assert config_key("train", {**cfg, "name": "x", "threads": 4}) == plan[0].key
    assert config_key("train", {**cfg, "seed": 9}) != plan[0].key


def test_variants_labels_and_length_specs_replace_whole() -> None:
    spec = parse_spec(
        {
            "name": "v",
            "base": TINY_BASE,
            "variants": [{"aggregator": "dapo"}, {"aggregator": "vl_norm", "alpha": 0.5}],
            "grid": {"trace.length": [{"kind": "pareto", "minimum": 4, "shape": 1.2},
                                      {"kind": "lognormal", "median": 8, "sigma": 0.5}]},
        }
    )  # fmt: skip
    labels = [label for label, _ in conditions(spec)]
    assert labels == [
        "dapo · length=pareto(minimum=4,shape=1.2)",
        "dapo · length=lognormal(median=8,sigma=0.5)",
        "vl_norm · alpha=0.5 · length=pareto(minimum=4,shape=1.2)",
        "vl_norm · alpha=0.5 · length=lognormal(median=8,sigma=0.5)",
    ]
    plan = expand(spec)
    assert plan[0].config["trace"]["length"]["kind"] == "pareto"  # not merged with lognormal keys
    assert "median" not in plan[0].config["trace"]["length"]
    assert plan[0].config["trace"]["mode"] == "search"  # the rest of trace is kept


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"grid": {"lrr": [0.1]}}, "did you mean 'lr'"),
        (
            {"grid": {"alpha": [0.5, 99.0]}},
            "condition 'alpha=99' is not a valid TrainConfig:\nalpha: alpha must be between",
        ),
        ({"grid": {"seed": [0, 1]}}, "put seeds in 'seeds'"),
        ({"seeds": [1, 1]}, "seeds: seeds must not repeat"),
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"name": "no spaces"}, "name: name may hold"),
        (
            {"variants": [{"aggregator": "dapo"}, {"aggregator": "dapo"}]},
            "several conditions are called 'base'",
        ),
        (
            {"grid": {"aggregator": ["dapo"]}, "analysis": {"baseline": "grpo"}},
            "its conditions are: 'base'",
        ),
        ({"grid": {"aggregator": ["dapo"]}, "bogus": 1}, "bogus: Extra inputs are not permitted"),
    ],
)
def test_bad_specs_say_what_is_wrong(data: dict, message: str) -> None:
    with pytest.raises(SweepError) as info:
        expand(parse_spec({"name": "bad", "base": TINY_BASE, **data}))
    assert message in str(info.value)


def test_example_specs_load_and_expand() -> None:
    train = load_spec(ROOT / "examples" / "sweep_vl_norm_vs_dapo.yaml")
    plan = expand(train)
    assert train.name == "vl-norm-vs-dapo" and len(plan) == 10
    assert {p.condition for p in plan} == {"dapo", "vl_norm · alpha=1"}
    lab = load_spec(ROOT / "examples" / "sweep_lab_alpha.yaml")
    assert lab.kind == "lab" and len(expand(lab)) == 16
    recipes = load_spec(ROOT / "examples" / "sweep_dapo_recipe.yaml")
    assert len(expand(recipes)) == 16


def test_a_condition_naming_a_recipe_gets_its_fields_over_the_presets() -> None:
    """recipe=dapo on the quick preset (aggregator grpo) trains DAPO as published."""
    spec = parse_spec(
        {"name": "r", "preset": "quick", "base": TINY_BASE, "seeds": [0],
         "grid": {"recipe": ["dapo", "dapo_vl_norm"]}, "analysis": {"baseline": "dapo"}}
    )  # fmt: skip
    plan = {p.condition: p.config for p in expand(spec)}
    assert set(plan) == {"dapo", "dapo_vl_norm"}
    dapo, vl = plan["dapo"], plan["dapo_vl_norm"]
    assert (dapo["aggregator"], vl["aggregator"]) == ("dapo", "vl_norm")
    assert dapo["dynamic_sampling"] and vl["dynamic_sampling"]
    assert (dapo["clip_low"], dapo["clip_high"]) == (0.2, 0.28)
    assert dapo["kl_coef"] == 0.0 and dapo["lr"] == 5e-4  # the preset's other fields stay
    assert condition_display("dapo_vl_norm · lr=0.001") == "DAPO + VL Norm · lr=0.001"


def test_a_recipe_contradicted_by_the_spec_is_refused_naming_the_field() -> None:
    spec = parse_spec(
        {"name": "r", "preset": "quick", "base": {**TINY_BASE, "aggregator": "grpo"},
         "seeds": [0], "variants": [{"recipe": "dapo"}]}
    )  # fmt: skip
    with pytest.raises(SweepError, match="aggregator='grpo'"):
        expand(spec)


def test_spec_name_defaults_to_the_file_name(tmp_path) -> None:
    path = tmp_path / "my sweep.yaml"
    path.write_text(yaml.safe_dump({"grid": {"aggregator": ["dapo", "grpo"]}, "seeds": [0]}))
    assert load_spec(path).name == "my-sweep"
    path.write_text("grid: [unclosed")
    with pytest.raises(SweepError, match="cannot parse"):
        load_spec(path)


# ----------------------------------------------------------------------------- Length Lab sweeps


@pytest.mark.slow
def test_lab_sweep_runs_as_jobs_and_reports(tmp_path) -> None:
    spec = parse_spec(
        {"name": "lab", "kind": "lab", "base": {"n_batches": 200, "token_noise": 1.0,
                                                 "lengths": {"kind": "uniform", "low": 10, "high": 400}},
         "grid": {"alpha": [0.0, 1.0]}, "seeds": [0, 1, 2], "analysis": {"baseline": "alpha=0"}}
    )  # fmt: skip
    store = Store(tmp_path)
    events = []
    outcome = run_sweep(spec, store, workers=1, on_event=lambda *e: events.append(e[0]))
    assert outcome.count("finished") == 6 and events.count("end") == 6
    assert len({r.job_id for r in store.list_runs()} - {None}) == 1  # one worker: one job of 6
    assert get_sweep(store, "lab").status == "done"
    report = build_report(store, spec)
    (verdict,) = report.verdicts
    assert verdict.paired and verdict.final_conclusive  # token noise dominates: 1/L weights win
    assert verdict.final.value < 0 and "has a lower lab/vl_norm/cv" in verdict.text
    cv = report.probes.set_index(["condition", "aggregator", "stat"])
    assert cv.loc[("alpha=1", "vl_norm", "cv"), "n"] == 3
    assert "variance and CV per aggregator" in format_report(report)
    again = run_sweep(spec, store, workers=2)
    assert again.skipped == 6 and not again.statuses  # resumable: nothing to redo


def test_ray_missing_gives_a_clear_message(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    spec = parse_spec({"name": "r", "kind": "lab", "base": {"n_batches": 100}, "seeds": [0]})
    with pytest.raises(SweepError, match="pip install"):
        run_sweep(spec, Store(tmp_path), executor="ray")


# ----------------------------------------------------------------------------- training sweeps


def comparable(store: Store) -> dict[tuple[str, int], list[dict]]:
    """Each run's metric records without wall-clock timings, keyed by (aggregator, seed)."""
    out = {}
    for info in store.list_runs():
        df = store.metrics(info.id)
        keep = [
            c for c in df.columns if not c.startswith("time") and c != "charts/tokens_per_second"
        ]
        out[(info.config["aggregator"], info.seed)] = json.loads(
            df[keep].to_json(orient="records", double_precision=15)
        )
    return out


@dataclass
class LocalSweep:
    """The module's local 2 x 2 sweep: where it is, what the crash left, what the resume did."""

    data_dir: Path
    spec_file: Path
    finished_before: set[int]
    outcome: SweepOutcome


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> LocalSweep:
    """The 2 x 2 sweep with the local executor, killed after its first run and resumed."""
    data_dir = tmp_path_factory.mktemp("sweep-local")
    spec_file = data_dir / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(tiny_spec()))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "vlsim", "sweep", str(spec_file), "--data-dir", str(data_dir),
           "--workers", "1", "--threads", "1", "--quiet", "--no-report"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    store = Store(data_dir)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if store.list_runs(status="finished"):
                break
            time.sleep(0.2)
        assert store.list_runs(status="finished"), "no run finished before the kill"
    finally:  # a crash of the driver and its pool, mid-sweep
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30  # the pool's processes die a moment after the driver
    while time.monotonic() < deadline and any(
        process_alive(r.pid) for r in store.list_runs(status="running")
    ):
        time.sleep(0.1)
    finished_before = {r.id for r in store.list_runs(status="finished")}
    outcome = run_sweep(load_spec(spec_file), store, workers=2)  # the same sweep, again
    return LocalSweep(data_dir, spec_file, finished_before, outcome)


@pytest.mark.slow
def test_crash_mid_sweep_keeps_finished_runs_and_resume_skips_them(local_sweep) -> None:
    data_dir, spec_file = local_sweep.data_dir, local_sweep.spec_file
    finished_before, outcome = local_sweep.finished_before, local_sweep.outcome
    store = Store(data_dir)
    assert finished_before
    spec = load_spec(spec_file)
    assert outcome.skipped == len(finished_before)
    assert set(outcome.statuses.values()) == {"finished"}
    runs = stored_runs(store, spec)
    assert len(runs) == 4 and {r.status for r in runs.values()} == {"finished"}
    assert {r.id for r in store.list_runs()} >= finished_before  # nothing was redone
    assert len(store.list_runs()) == 4
    for info in runs.values():
        df = store.metrics(info.id)
        assert sorted(df["step"]) == [-1, 0, 1, 2, 3]


def kill_one_ray_task(killed: list[int], timeout: float = 60.0) -> None:
    """SIGKILL the first Ray worker seen running a sweep task (a lost worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::run_batch_in_memory"):
                time.sleep(1.0)  # into the run: its warm start is under way
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed.append(int(proc.name))
                return
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_retries_a_lost_worker_and_gives_the_same_records(
    local_sweep, tmp_path
) -> None:
    ray = pytest.importorskip("ray")
    local_dir, spec_file = local_sweep.data_dir, local_sweep.spec_file
    spec = load_spec(spec_file)
    store = Store(tmp_path)
    killed: list[int] = []
    killer = threading.Thread(target=kill_one_ray_task, args=(killed,), daemon=True)

    def on_event(what: str, *rest) -> None:
        if what == "start" and killer.ident is None:  # once, when the first run starts
            killer.start()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        outcome = run_sweep(spec, store, executor="ray", workers=2, retries=1, on_event=on_event)
    finally:
        ray.shutdown()
    killer.join(1)
    assert killed, "no Ray task was seen running"
    assert outcome.count("finished") == 4  # the lost run was retried
    assert get_sweep(store, spec.name).executor == "ray"
    mine, theirs = comparable(store), comparable(Store(local_dir))
    assert (
        mine.keys() == theirs.keys() == {("dapo", 0), ("dapo", 1), ("vl_norm", 0), ("vl_norm", 1)}
    )
    for key in mine:
        assert mine[key] == theirs[key], key
    # samples and statuses made it back to the driver's store too
    some = store.list_runs()[0]
    assert store.samples(some.id) and some.status == "finished"


@pytest.mark.slow
def test_report_command_prints_table_verdicts_and_json(local_sweep, capsys) -> None:
    data_dir, spec_file = local_sweep.data_dir, local_sweep.spec_file
    assert cli_main(["sweep", "report", "tiny", "--data-dir", str(data_dir)]) == 0
    text = capsys.readouterr().out
    assert "4/4 runs finished" in text and "Verdicts:" in text and "VL Norm vs DAPO" in text
    assert cli_main(["sweep", "report", str(spec_file), "--data-dir", str(data_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["condition"] for c in data["conditions"]] == ["dapo", "vl_norm"]
    (verdict,) = data["verdicts"]
    assert verdict["paired"] is True and verdict["n_pairs"] == 2
    assert "inconclusive" in verdict["text"] or verdict["conclusive"]
    assert cli_main(["sweep", "list", "--data-dir", str(data_dir)]) == 0
    assert "tiny" in capsys.readouterr().out
    assert cli_main(["sweep", "report", "nope", "--data-dir", str(data_dir)]) == 2
    assert "no sweep called 'nope'" in capsys.readouterr().err


def test_dry_run_shows_the_plan_and_runs_nothing(tmp_path, capsys) -> None:
    spec_file = tmp_path / "plan.json"
    spec_file.write_text(json.dumps(tiny_spec("plan")))
    assert cli_main(["sweep", str(spec_file), "--data-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 runs = 2 conditions x 2 seeds" in out and out.count("       to run") == 4
    assert Store(tmp_path).list_runs() == []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"grid": {"aggregator": ["nope"]}}))
    assert cli_main(["sweep", str(bad), "--data-dir", str(tmp_path)]) == 2
    assert "unknown aggregator 'nope'" in capsys.readouterr().err


def test_a_run_stored_before_a_field_existed_still_matches_its_plan(tmp_path) -> None:
    """Fields are added with defaults that keep the old behaviour; old runs are not redone."""
    spec = parse_spec(tiny_spec("old"))
    store = Store(tmp_path)
    plan = expand(spec)
    for p in plan:
        old = {k: v for k, v in p.config.items() if k != "max_grad_norm"}  # stored before it
        run_id = store.create_run(p.name, "train", old, seed=p.seed, group_name=spec.group(),
                                  total_steps=4, status="running")  # fmt: skip
        store.set_status(run_id, "finished")
    stored = stored_runs(store, spec)
    assert set(stored) == {p.key for p in plan}
    changed = parse_spec(tiny_spec("old", base={**TINY_BASE, "max_grad_norm": 0.5}))
    assert not set(stored_runs(store, changed)) & {p.key for p in expand(changed)}  # not these


def test_report_of_hand_made_runs_pairs_only_shared_data(tmp_path) -> None:
    """Same seed, different trace lengths: different warm starts, so the comparison is unpaired."""
    spec = parse_spec(
        {"name": "h", "base": TINY_BASE, "grid": {"trace.length": [
            {"kind": "fixed", "length": 4}, {"kind": "fixed", "length": 12}]}, "seeds": [0, 1, 2],
         "analysis": {"threshold": 0.3, "baseline": "length=fixed(length=12)"}}
    )  # fmt: skip
    store = Store(tmp_path)
    for p in expand(spec):
        run_id = store.create_run(p.name, "train", p.config, seed=p.seed, group_name=spec.group(),
                                  total_steps=4, status="running")  # fmt: skip
        fast = "length=4" in p.condition
        for step, acc in ((-1, 0.0), (1, 0.4 if fast else 0.0), (3, 0.5 if fast else 0.1)):
            store.log_metrics(run_id, step, {"eval/mean_at_k": acc + 0.01 * p.seed})
        store.set_status(run_id, "finished")
    report = build_report(store, spec)
    (verdict,) = report.verdicts
    assert not verdict.paired and verdict.speedup.value == pytest.approx(2.0)  # 2 vs 4 updates
    summary = report.summary.set_index("condition")
    assert summary.loc["length=fixed(length=12)", "reached"] == "0/3"
    assert math.isinf(summary.loc["length=fixed(length=12)", "median_steps"])
    bands = report.bands()
    assert list(bands["length=fixed(length=4)"]["step"]) == [-1, 1, 3]


def test_runs_are_packed_by_warm_start_into_one_batch_per_worker() -> None:
    plan = expand(parse_spec(tiny_spec()))  # (dapo, 0), (vl_norm, 0), (dapo, 1), (vl_norm, 1)
    configs = {k: p.config for k, p in enumerate(plan)}
    assert batch_size(4, 2) == 2 and batch_size(4, 1) == 4 and batch_size(100, 2) == MAX_BATCH
    assert pack("train", configs, workers=2) == [[0, 1], [2, 3]]  # one seed (warm start) each
    assert pack("train", configs, workers=1) == [[0, 1, 2, 3]]
    assert pack("train", configs, workers=4) == [[0], [1], [2], [3]]
    other = {**configs, 4: {**plan[0].config, "model_size": "small"}}
    assert [4] in pack("train", other, workers=1)  # another model shape: its own batch
    assert pack("lab", {1: {}, 2: {}, 3: {}}, workers=2) == [[1, 2], [3]]
    assert pack("train", configs, workers=1, max_batch=1) == [[0], [1], [2], [3]]  # a job each
    assert pack("train", configs, workers=1, max_batch=3) == [[0, 1, 2], [3]]


def test_slope_sentences_one_per_condition():
    probes = pd.DataFrame(
        [
            {"stat": "length_variance_slope", "condition": "vl_norm", "mean": 1.1, "low": 0.9,
             "high": 1.3, "n": 3},
            {"stat": "cv", "condition": "vl_norm", "mean": 2.0, "low": 1.0, "high": 3.0, "n": 3},
        ]
    )  # fmt: skip
    assert slope_sentences(probes) == [
        "length-variance slope (VL Norm): 1.1 [0.9, 1.3] over 3 seeds (1 = Var(g) grows like L)"
    ]
