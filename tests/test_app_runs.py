"""Runs page (AppTest): default selection, a threshold the runs reach, honest step counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_app_training import ARENA, ROOT, RUNS, app, by_key, no_exceptions, populate

from vlsim.config import preset_config
from vlsim.jobs import JobManager
from vlsim.run_archive import read_archive, reference_archive
from vlsim.store import Store


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh store for the page, and a JobManager that never starts processes."""
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(JobManager, "_launch", lambda self, run_id: None)
    monkeypatch.setattr(JobManager, "start", lambda self: self)
    monkeypatch.chdir(ROOT)
    return tmp_path


def add_stopped_before_rl(data_dir) -> int:
    """A run stopped after its evaluation before RL, before any update."""
    store = Store(data_dir)
    cfg = preset_config("quick", aggregator="dapo", steps=40)
    run_id = store.create_run("stopped", "train", cfg.model_dump(mode="json"), seed=0,
                              group_name="later", total_steps=40, status="running")  # fmt: skip
    store.log_metrics(run_id, -1, {"eval/mean_at_k": 0.1, "time/elapsed": 0.0})
    store.set_status(run_id, "stopped")
    store.close()
    return run_id


def test_default_selection_skips_runs_stopped_before_rl(data_dir) -> None:
    ids = populate(data_dir)
    stopped = add_stopped_before_rl(data_dir)  # the newest group: would be picked first
    at = app(RUNS)
    no_exceptions(at)
    assert sorted(by_key(at.multiselect, "runs.runs").value) == sorted(ids.values())
    runs = at.dataframe[0].value.set_index("id")
    assert runs.loc[stopped, "steps"] == "stopped before RL"
    assert runs.loc[ids["grpo"], "steps"] == "40/40"


def test_default_threshold_is_reached_by_every_selected_run(data_dir) -> None:
    populate(data_dir)  # held-out accuracy from 0.1 to 0.5 (GRPO), 0.7 (Dr. GRPO), 1.0 (VL Norm)
    at = app(RUNS)
    no_exceptions(at)
    threshold = by_key(at.number_input, "runs.threshold").value
    assert 0.1 < threshold <= 0.5  # above every start, reached by the slowest run
    table = at.dataframe[1].value.set_index("run")
    assert not any(v.startswith("not reached") for v in table["RL steps"])
    caption = " ".join(c.value for c in at.caption)
    assert "held-out accuracy (sampled mean@k)" in caption and "eval/mean_at_k" not in caption
    assert "every run reaches it" in caption
    # changed by hand, it stays: the page does not overwrite a chosen threshold
    by_key(at.number_input, "runs.threshold").set_value(0.9).run()
    assert by_key(at.number_input, "runs.threshold").value == 0.9
    assert any(v.startswith("not reached") for v in at.dataframe[1].value["RL steps"])


def test_threshold_from_a_link_is_kept(data_dir) -> None:
    ids = populate(data_dir)
    at = app(RUNS, runs=f"{ids['grpo']},{ids['vl_norm']}", threshold="0.45")
    no_exceptions(at)
    assert by_key(at.number_input, "runs.threshold").value == 0.45


def test_runs_chart_exports_for_slides_and_all_at_once(data_dir) -> None:
    populate(data_dir)
    at = app(RUNS)
    no_exceptions(at)
    configs = [json.loads(c.proto.config) for c in at.get("plotly_chart")]
    assert configs and all(c["toImageButtonOptions"]["scale"] == 3 for c in configs)
    labels = [b.proto.label for b in at.get("download_button") if "Export all" in b.proto.label]
    assert labels == [f"Export all {len(configs)} charts"]


def test_arena_live_charts_export_in_the_picked_format(data_dir) -> None:
    """The Arena's live view (a fragment) gives every chart the slide export config."""
    ids = populate(data_dir)
    at = app(ARENA, group="demo", run=str(ids["vl_norm"]))
    no_exceptions(at)

    def options() -> list[dict]:
        return [json.loads(c.proto.config)["toImageButtonOptions"] for c in at.get("plotly_chart")]

    assert len(options()) >= 5 and all(o["scale"] == 3 and o["format"] == "png" for o in options())
    at.radio(key="arena.export_format").set_value("svg").run()
    no_exceptions(at)
    assert {o["format"] for o in options()} == {"svg"}


# ----------------------------------------------------------------------------- reference runs

HOME = str(ROOT / "app.py")  # Home is the app's default page (its page links need the app)


@pytest.mark.parametrize("page", [RUNS, HOME], ids=["runs", "home"])
def test_an_empty_store_loads_the_reference_runs_with_one_button(data_dir, page) -> None:
    shipped = read_archive(reference_archive())  # whatever runs the shipped file holds
    at = app(page)
    assert at.title[0].value == ("Runs" if page == RUNS else "vlsim: loss aggregation in RLVR")
    no_exceptions(at)
    key = "_runs.load_reference" if page == RUNS else "home.load_reference"
    button = by_key(at.button, key)
    assert button.label == "Load the reference runs"
    assert any("docs/reference_runs/" in m.value for m in at.markdown)
    button.click().run()
    no_exceptions(at)
    n = len(shipped.runs)
    day = (shipped.created or "")[:10]  # the archive says when it was written
    loaded = f"Loaded {n} reference run{'' if n == 1 else 's'}" + (
        f", recorded {day}" if day else ""
    )
    assert [s.value for s in at.success] == [f"{loaded}."]
    assert not [b for b in at.button if b.key == key]  # the store is not empty any more
    runs = Store(data_dir).list_runs()
    assert sorted(r.name for r in runs) == sorted(b.run.name for b in shipped.runs)
    if page == RUNS:  # the table lists them and the overlay draws them
        assert sorted(at.dataframe[0].value["name"]) == sorted(r.name for r in runs)
        assert by_key(at.multiselect, "runs.runs").value
    else:
        links = {link.proto.label: link.proto.page for link in at.get("page_link")}
        assert links["See them on the Runs page"] == "runs"
    at.run()  # the message shows once
    assert not at.success
