"""The training pages (Training Arena, Runs, Probes) through Streamlit's AppTest.

No worker process is started: JobManager's launch and polling thread are replaced, so
submitted runs stay queued/claimed. Stores are filled directly with hand-made records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from vlsim.config import preset_config
from vlsim.jobs import JobManager
from vlsim.store import Store

ROOT = Path(__file__).resolve().parents[1]
ARENA = str(ROOT / "pages" / "training_arena.py")
RUNS = str(ROOT / "pages" / "runs.py")
PROBES = str(ROOT / "pages" / "probes.py")


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh store for the pages, and a JobManager that never starts processes."""
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(JobManager, "_launch", lambda self, job_id, run_ids: None)
    monkeypatch.setattr(JobManager, "start", lambda self: self)
    monkeypatch.chdir(ROOT)
    return tmp_path


def app(path: str, **params: str) -> AppTest:
    at = AppTest.from_file(path, default_timeout=30)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def by_key(elements, key: str):
    return next(e for e in elements if e.key == key)


def probe_record(step: int) -> dict:
    """A hand-made probe record shaped like vlsim.probes.probe_policy's."""
    aggs = {
        name: {"scale": 1.0, "variance": v, "cv": v**0.5, "cosine": c, "relative_variance": v / 4}
        for name, v, c in (
            ("grpo", 2.0, 0.97),
            ("dapo", 3.0, 0.98),
            ("dr_grpo", 4.0, 0.99),
            ("vl_norm", 1.5, 0.99),
        )
    }
    return {
        "meta": {"block": "last_attention", "params": 1000, "prompts": 2, "rollouts": 8,
                 "group_size": 4, "resamples": 64, "max_len": 40, "alpha": 1.0, "scope": "group"},
        "aggregators": aggs,
        "length_noise": {
            "slope": 1.1, "ci_low": 0.8, "ci_high": 1.4, "n": 6,
            "points": {"length": [5, 10, 20, 6, 12, 24], "deviation": [1.0, 2.1, 3.9, 1.2, 2.5, 5.0],
                       "prompt": [0, 0, 0, 1, 1, 1]},
        },
        "tokens": {"n": 80, "entropy_mean": 0.5, "score_mean": 0.3,
                   "bins": {"edges": [0.0, 1.0, 2.0], "count": [70, 10], "score_mean": [0.2, 0.9],
                            "contribution_share": [0.4, 0.6], "entropy_mean": [0.3, 1.4],
                            "contribution_mean": [0.1, 0.5]}},
    }  # fmt: skip


def populate(data_dir: Path, group: str = "demo") -> dict[str, int]:
    """Three finished runs of one group with metrics (eval every 10 steps), samples and probes."""
    store = Store(data_dir)
    ids = {}
    speeds = {"grpo": 0.01, "dr_grpo": 0.015, "vl_norm": 0.03}
    for agg, speed in speeds.items():
        cfg = preset_config("quick", aggregator=agg, steps=40, probe={"every": 10})
        run_id = store.create_run(cfg.run_name(), "train", cfg.model_dump(mode="json"), seed=0,
                                  group_name=group, total_steps=40, status="running")  # fmt: skip
        store.log_metrics(run_id, -1, {"eval/mean_at_k": 0.1, "eval/accuracy_greedy": 0.1,
                                       "time/elapsed": 0.0})  # fmt: skip
        for step in range(40):
            record = {
                "charts/reward_mean": min(1.0, 0.1 + speed * step),
                "charts/response_length_mean": 20 - step * 0.1,
                "charts/response_length_p10": 10.0,
                "charts/response_length_p90": 30.0,
                "grad/norm": 0.5,
                "time/elapsed": (step + 1) * 0.5,
                "dist/response_lengths": [10 + step % 5, 20, 30],
            }
            if step % 10 == 9:
                record["eval/mean_at_k"] = min(1.0, 0.1 + speed * (step + 1))
                record["eval/accuracy_greedy"] = record["eval/mean_at_k"]
            store.log_metrics(run_id, step, record)
        for step in (0, 10, 20):
            store.log_probe(run_id, step, probe_record(step))
        store.log_samples(run_id, 39, [
            {"numbers": [3, 4, 5], "target": 17, "trace": "3*4=12,12+5=17", "answer": "3*4+5",
             "reward": 1.0, "length": 22, "truncated": False},
        ])  # fmt: skip
        store.set_status(run_id, "finished")
        ids[agg] = run_id
    store.close()
    return ids


# ----------------------------------------------------------------------------- arena


def test_arena_renders_defaults(data_dir) -> None:
    at = app(ARENA)
    no_exceptions(at)
    assert at.title[0].value == "Training Arena"
    assert not at.warning and not at.error
    start = next(b for b in at.button if b.label == "Start training")
    assert not start.disabled
    aggs = by_key(at.multiselect, "arena.aggregators")
    assert aggs.value == ["grpo", "dapo", "dr_grpo", "vl_norm"]
    assert dict(at.query_params) == {}  # defaults: a clean URL


def test_arena_controls_write_the_url(data_dir) -> None:
    at = app(ARENA)
    by_key(at.number_input, "arena.task.n_numbers").set_value(3)
    by_key(at.multiselect, "arena.aggregators").set_value(["grpo", "vl_norm"])
    by_key(at.slider, "arena.alpha").set_value(0.5)
    at.run()
    no_exceptions(at)
    params = {k: at.query_params[k] for k in at.query_params}
    assert params["task.n_numbers"] in ("3", ["3"])
    assert "grpo,vl_norm" in str(params["aggregators"])
    assert "0.5" in str(params["alpha"])
    assert any(c.value.startswith("2 run(s)") for c in at.caption)  # two aggregators chosen


def test_arena_preset_resets_the_controls(data_dir) -> None:
    at = app(ARENA)
    assert by_key(at.number_input, "arena.max_new_tokens").value == 48  # quick
    by_key(at.selectbox, "arena.preset").set_value("long").run()
    no_exceptions(at)
    assert by_key(at.number_input, "arena.max_new_tokens").value == 192  # long's answer budget
    assert by_key(at.selectbox, "arena.model_size").value == "small"
    assert "long" in str(at.query_params["preset"])
    reloaded = app(ARENA, **{k: at.query_params[k] for k in at.query_params})
    no_exceptions(reloaded)
    assert by_key(reloaded.selectbox, "arena.preset").value == "long"
    assert by_key(reloaded.number_input, "arena.max_new_tokens").value == 192
    assert by_key(reloaded.number_input, "arena.kl_coef").value == 0.0
    by_key(reloaded.selectbox, "arena.preset").set_value("wide").run()
    assert by_key(reloaded.number_input, "arena.kl_coef").value == 0.1  # wide's KL term


def test_arena_bad_url_falls_back_with_a_warning(data_dir) -> None:
    at = app(ARENA, **{"task.n_numbers": "99", "aggregators": "grpo,nope", "bogus": "1",
                       "preset": "huge"})  # fmt: skip
    no_exceptions(at)
    assert at.warning, "tampered parameters must be reported"
    text = " ".join(w.value for w in at.warning)
    assert "n_numbers" in text and "bogus" in text and "preset" in text
    assert by_key(at.number_input, "arena.task.n_numbers").value == 2  # the arena default
    assert by_key(at.multiselect, "arena.aggregators").value == [
        "grpo",
        "dapo",
        "dr_grpo",
        "vl_norm",
    ]


def test_arena_invalid_settings_show_a_validation_message(data_dir) -> None:
    at = app(ARENA)
    # more training problems than two-number problems exist
    by_key(at.number_input, "arena.task.n_train").set_value(100_000)
    at.run()
    no_exceptions(at)
    assert at.error and "n_train" in at.error[0].value
    assert next(b for b in at.button if b.label == "Start training").disabled


def test_arena_start_queues_one_run_per_aggregator(data_dir) -> None:
    at = app(ARENA)
    by_key(at.multiselect, "arena.aggregators").set_value(["grpo", "vl_norm"])
    at.run()
    next(b for b in at.button if b.label == "Start training").click().run()
    no_exceptions(at)
    store = Store(data_dir)
    runs = store.list_runs()
    assert len(runs) == 2 and len({r.group_name for r in runs}) == 1
    assert {r.config["aggregator"] for r in runs} == {"grpo", "vl_norm"}
    assert {r.seed for r in runs} == {0}
    group = runs[0].group_name
    assert group in str(at.query_params["group"])
    assert len(at.get("progress")) == 2  # one bar per run


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("arena.group_size", 1, "greater than or equal to 2"),
        ("arena.lr", 1000.0, "less than or equal to 1"),
        ("arena.prompts_per_step", 0, "greater than or equal to 1"),
        ("arena.steps", 0, "at least 1 RL step"),
    ],
)
def test_arena_out_of_range_numbers_block_start_and_say_what_is_allowed(
    data_dir, key: str, value, allowed: str
) -> None:
    at = app(ARENA)
    by_key(at.number_input, key).set_value(value)
    at.run()
    no_exceptions(at)
    assert at.error and allowed in at.error[0].value, [e.value for e in at.error]
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert "Allowed:" in by_key(at.number_input, key).help


def test_arena_stop_all_stops_every_run_of_the_job_and_says_what_it_stopped(
    data_dir, monkeypatch
) -> None:
    from vlsim.stopping import stop_file

    monkeypatch.setenv("VLSIM_MAX_CONCURRENT", "1")
    at = app(ARENA)
    by_key(at.multiselect, "arena.aggregators").set_value(["grpo", "vl_norm"])
    at.run()
    start = next(b for b in at.button if b.label == "Start training")
    start.click().run()  # job 1: claimed (its worker is not started here)
    next(b for b in at.button if b.label == "Start training").click().run()  # job 2: queued
    store = Store(data_dir)
    runs = sorted(store.list_runs(), key=lambda r: r.id)
    assert [r.status for r in runs] == ["running", "running", "queued", "queued"]
    assert runs[0].job_id == runs[1].job_id != runs[2].job_id == runs[3].job_id  # one job each
    at.button(key="arena.stop_all").click().run()  # the watched group: job 2, queued
    no_exceptions(at)
    assert [store.get_run(r.id).status for r in runs[2:]] == ["stopped", "stopped"]
    text = at.success[0].value
    assert "Stopping 2 run(s)" in text and "GRPO" in text and "VL Norm" in text
    assert "taken out of the queue" in text
    at.selectbox(key="arena.group").set_value(runs[0].group_name).run()
    at.button(key="arena.stop_all").click().run()  # job 1, running
    assert "stops after its current step" in at.success[0].value
    assert stop_file(data_dir, runs[0].job_id).exists()  # its worker sees it at the next step


def test_arena_recipe_both_trains_dapo_and_dapo_vl_norm_on_one_seed(data_dir) -> None:
    at = app(ARENA)
    by_key(at.selectbox, "arena.recipe").set_value("both").run()
    no_exceptions(at)
    assert not any(m.key == "arena.aggregators" for m in at.multiselect)  # the recipe's runs
    assert any("clip-higher" in c.value for c in at.caption)
    assert any(c.value.startswith("2 run(s)") for c in at.caption)
    assert by_key(at.number_input, "arena.clip_high").disabled
    assert by_key(at.number_input, "arena.kl_coef").disabled
    assert at.query_params["recipe"] == "both"
    next(b for b in at.button if b.label == "Start training").click().run()
    no_exceptions(at)
    runs = sorted(Store(data_dir).list_runs(), key=lambda r: r.id)
    assert [(r.config["recipe"], r.config["aggregator"]) for r in runs] == [
        ("dapo", "dapo"),
        ("dapo_vl_norm", "vl_norm"),
    ]
    assert all(r.config["dynamic_sampling"] and r.config["clip_high"] == 0.28 for r in runs)
    assert all(r.config["kl_coef"] == 0.0 for r in runs)
    assert {r.seed for r in runs} == {0} and len({r.job_id for r in runs}) == 1
    labels = " ".join(m.value for m in at.markdown)
    assert "DAPO recipe" in labels and "DAPO + VL Norm recipe (α=1)" in labels


def test_arena_recipe_link_restores_it_and_a_bad_one_is_reported(data_dir) -> None:
    at = app(ARENA, recipe="dapo_vl_norm", alpha="0.5")
    no_exceptions(at)
    assert not at.warning
    assert by_key(at.selectbox, "arena.recipe").value == "dapo_vl_norm"
    assert any(c.value.startswith("1 run(s)") for c in at.caption)
    assert dict(at.query_params) == {"recipe": "dapo_vl_norm", "alpha": "0.5"}
    at = app(ARENA, recipe="grpo_plus")
    no_exceptions(at)
    assert "recipe" in " ".join(w.value for w in at.warning)
    assert by_key(at.selectbox, "arena.recipe").value == "none"


def test_arena_reattaches_to_a_group_by_url(data_dir) -> None:
    ids = populate(data_dir)
    at = app(ARENA, group="demo", run=str(ids["vl_norm"]))
    no_exceptions(at)
    assert len(at.get("progress")) == 3
    figs = figures(at)
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert any("held-out accuracy" in t for t in titles)
    acc = next(f for f in figs if "held-out accuracy" in f["layout"]["title"]["text"])
    assert len([t for t in acc["data"] if t.get("showlegend", True)]) == 3  # one line per run
    assert any("deviation" in t for t in titles)  # the Figure-4 scatter of the chosen run
    assert any(df.value.shape[0] >= 1 and "answer" in df.value.columns for df in at.dataframe)


def test_arena_unknown_group_warns(data_dir) -> None:
    at = app(ARENA, group="nobody-has-this")
    no_exceptions(at)
    assert any("nobody-has-this" in w.value for w in at.warning)


# ----------------------------------------------------------------------------- runs


def test_runs_page_empty_store(data_dir) -> None:
    at = app(RUNS)
    no_exceptions(at)
    assert "No runs yet" in at.info[0].value


def test_runs_page_overlay_and_speedup(data_dir) -> None:
    ids = populate(data_dir)
    at = app(RUNS)
    no_exceptions(at)
    assert at.dataframe[0].value.shape[0] == 3  # the table of runs
    pick = by_key(at.multiselect, "runs.runs")
    pick.set_value([ids["grpo"], ids["vl_norm"]]).run()
    overlay = figures(at)[0]
    assert len(overlay["data"]) == 2  # one trace per selected run
    by_key(at.number_input, "runs.threshold").set_value(0.55)
    by_key(at.selectbox, "runs.baseline").set_value(ids["grpo"])
    at.run()
    no_exceptions(at)
    table = at.dataframe[1].value.set_index("run")  # runs table, then the speed-up table
    assert len(table) == 2
    vl = next(i for i in table.index if i.startswith(f"#{ids['vl_norm']} "))
    gr = next(i for i in table.index if i.startswith(f"#{ids['grpo']} "))
    assert table.loc[vl, "RL steps"] == "20"  # 0.1 + 0.03 * 20 >= 0.55
    assert table.loc[gr, "RL steps"] == "not reached in 40"
    assert table.loc[gr, "seconds"] == "—"  # no value: a dash, not "None"
    assert table.loc[vl, "× faster (steps)"] == "≥ 2.00×"  # grpo needs more than 40 steps
    assert "runs" in at.query_params and "threshold" in at.query_params


def test_runs_page_bad_url_and_lengths_to_lab(data_dir) -> None:
    ids = populate(data_dir)
    at = app(RUNS, runs=f"{ids['grpo']},999", smoothing="7", status="weird")
    no_exceptions(at)
    text = " ".join(w.value for w in at.warning)
    assert "999" in text and "smoothing" in text and "status" in text
    assert by_key(at.multiselect, "runs.runs").value == [ids["grpo"]]
    by_key(at.number_input, "runs.lab_steps").set_value(2)
    next(b for b in at.button if b.label == "Use in the Length Lab").click().run()
    assert at.session_state["empirical_lengths"] == [13, 20, 30, 14, 20, 30]
    assert str(ids["grpo"]) in at.session_state["empirical_source"]


def test_runs_page_delete_needs_confirmation(data_dir) -> None:
    ids = populate(data_dir)
    at = app(RUNS)
    by_key(at.selectbox, "runs.action_run").set_value(ids["dr_grpo"]).run()
    delete = next(b for b in at.button if b.label == "Delete")
    assert delete.disabled
    next(c for c in at.checkbox if c.key == f"_runs.confirm.{ids['dr_grpo']}").check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    no_exceptions(at)
    assert ids["dr_grpo"] not in [r.id for r in Store(data_dir).list_runs()]


# ----------------------------------------------------------------------------- probes


def test_probes_page_empty_store(data_dir) -> None:
    at = app(PROBES)
    no_exceptions(at)
    assert "No run has probe records" in at.info[0].value


def test_probes_page_draws_a_stored_record(data_dir) -> None:
    ids = populate(data_dir)
    at = app(PROBES, run=str(ids["grpo"]), step="10")
    no_exceptions(at)
    figs = {f["layout"]["title"]["text"]: f for f in figures(at)}
    variance = next(f for t, f in figs.items() if t.startswith("variance"))
    assert len(variance["data"]) == 4  # one line per aggregator
    scatter = next(f for t, f in figs.items() if t.startswith("deviation"))
    names = [t["name"] for t in scatter["data"]]
    assert names[:2] == ["prompt 0", "prompt 1"] and "slope 1.10" in names[-1]
    assert scatter["layout"]["xaxis"]["type"] == "log"
    assert any("1.10" in m.value and "0.80" in m.value for m in at.markdown)
    assert any(t.startswith("where the gradient") for t in figs)


def test_probes_page_survives_records_with_missing_keys(data_dir) -> None:
    store = Store(data_dir)
    run_id = store.create_run("bare", "train", {"aggregator": "grpo"}, status="finished")
    store.log_probe(run_id, 0, {"reward_mean": 0.2})  # nothing the charts need
    store.close()
    at = app(PROBES, run="12345")  # an unknown run: a notice, then the newest
    no_exceptions(at)
    assert any("12345" in w.value for w in at.warning)
    assert any("no per-aggregator statistics" in c.value for c in at.caption)
