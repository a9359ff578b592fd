"""The Hypotheses page through Streamlit's AppTest: templates, URL round trip, launch, results.

No sweep process is started: `vlsim.sweeps.launch` is replaced by a stand-in that only records
the sweep, and stored results are hand-made runs with known curves.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import vlsim.sweeps as sw
from vlsim.store import Store

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "hypotheses.py")


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh store for the page; launching a sweep only records it."""
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(ROOT)
    launched: list[sw.SweepSpec] = []

    def fake_launch(spec, store, executor="local", workers=None, python=None) -> int:
        sw.expand(spec)
        sw.save_sweep(store, spec)
        launched.append(spec)
        return 0

    monkeypatch.setattr(sw, "launch", fake_launch)
    monkeypatch.launched = launched  # type: ignore[attr-defined]
    return tmp_path


def app(**params: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def by_key(elements, key: str):
    return next(e for e in elements if e.key == key)


def launch_button(at: AppTest):
    return next(b for b in at.button if b.label == "Launch sweep")


def params(at: AppTest) -> dict[str, str]:
    return {k: at.query_params[k] for k in at.query_params}


def test_defaults_show_the_plan_and_a_clean_url(data_dir) -> None:
    at = app()
    no_exceptions(at)
    assert at.title[0].value == "Hypotheses"
    assert not at.error and not at.warning
    plan = next(c.value for c in at.caption if "runs of" in c.value)
    assert "Does VL Norm reach" in plan and "DAPO" in plan
    assert "2 conditions × 5 seeds = 10 runs of 200 RL steps" in plan
    assert not launch_button(at).disabled
    assert params(at) == {}


def test_alpha_template_writes_the_url_and_a_link_restores_it(data_dir) -> None:
    at = app()
    by_key(at.radio, "hyp.template").set_value("alpha").run()
    by_key(at.multiselect, "hyp.alphas").set_value([0.5, 1.0])
    by_key(at.number_input, "hyp.seeds").set_value(4)
    at.run()
    no_exceptions(at)
    assert any("3 conditions × 4 seeds = 12 runs" in c.value for c in at.caption)
    url = params(at)
    assert "alpha" in str(url["template"]) and "0.5" in str(url["alphas"])
    again = app(**url)
    no_exceptions(again)
    assert by_key(again.radio, "hyp.template").value == "alpha"
    assert by_key(again.multiselect, "hyp.alphas").value == [0.5, 1.0]
    assert by_key(again.number_input, "hyp.seeds").value == 4


def test_same_aggregator_twice_is_refused(data_dir) -> None:
    at = app()
    by_key(at.selectbox, "hyp.b").set_value("dapo").run()
    no_exceptions(at)
    assert at.error and "two different aggregators" in at.error[0].value
    assert launch_button(at).disabled


def test_grid_template_reports_a_mistyped_field(data_dir) -> None:
    at = app()
    by_key(at.radio, "hyp.template").set_value("grid").run()
    by_key(at.text_area, "hyp.grid").set_value("grid:\n  lrr: [0.001, 0.002]\n").run()
    no_exceptions(at)
    assert at.error and "did you mean 'lr'" in at.error[0].value
    assert launch_button(at).disabled
    by_key(at.text_area, "hyp.grid").set_value("grid:\n  lr: [0.001, 0.002]\n").run()
    assert not at.error
    assert any("2 conditions × 5 seeds" in c.value for c in at.caption)


def test_launch_records_the_sweep_and_watches_it(data_dir, monkeypatch) -> None:
    at = app()
    launch_button(at).click().run()
    no_exceptions(at)
    (spec,) = monkeypatch.launched
    assert spec.name.startswith("hyp-ab-") and spec.seeds == [0, 1, 2, 3, 4]
    assert [p.condition for p in sw.expand(spec)][:2] == ["dapo", "vl_norm"]
    assert spec.name in str(at.query_params["sweep"])
    assert sw.get_sweep(Store(data_dir), spec.name) is not None
    progress = at.get("progress")
    assert progress and "0/10 runs finished" in progress[0].proto.text


def record_runs(data_dir: Path, spec: sw.SweepSpec, steps: int = 40) -> None:
    """Finished runs of a sweep: vl_norm reaches 0.3 after 10 updates, the rest far later."""
    store = Store(data_dir)
    sw.save_sweep(store, spec)
    for p in sw.expand(spec):
        run_id = store.create_run(p.name, "train", p.config, seed=p.seed, group_name=spec.group(),
                                  total_steps=steps, status="running")  # fmt: skip
        speed = 0.02 if p.config["aggregator"] == "vl_norm" else 0.004
        store.log_metrics(run_id, -1, {"eval/mean_at_k": 0.1})
        for step in range(9, steps, 10):
            acc = min(1.0, 0.1 + speed * (step + 1) + 0.005 * p.seed)
            store.log_metrics(run_id, step, {"eval/mean_at_k": acc})
        store.log_probe(run_id, 9, {"aggregators": {"grpo": {"variance": 2.0 + p.seed, "cv": 1.0}},
                                    "length_noise": {"slope": 1.0 + 0.1 * p.seed}})  # fmt: skip
        store.set_status(run_id, "finished")
    store.set_sweep_state(spec.name, "done")
    store.close()


def populate(data_dir: Path) -> sw.SweepSpec:
    """A stored 2 x 3 sweep: vl_norm reaches 0.3 after 10 updates, dapo never in 40."""
    spec = sw.parse_spec(
        {"name": "demo", "question": "Is VL Norm faster than DAPO?", "base": {"steps": 40},
         "variants": [{"aggregator": "dapo"}, {"aggregator": "vl_norm"}], "seeds": [0, 1, 2],
         "analysis": {"threshold": 0.3}}
    )  # fmt: skip
    record_runs(data_dir, spec)
    return spec


def test_results_show_bands_table_and_verdict(data_dir) -> None:
    populate(data_dir)
    at = app(sweep="demo")
    no_exceptions(at)
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (bands,) = figs
    named = [t["name"] for t in bands["data"] if t.get("showlegend", True)]
    assert named == ["DAPO", "VL Norm"]
    assert len(bands["data"]) == 4  # a band and a mean line per condition
    table = next(
        d.value
        for d in at.dataframe
        if "condition" in d.value.columns and "finished" in d.value.columns
    )
    row = table.set_index("condition").loc["VL Norm"]
    assert row["reached 0.3"] == "3/3" and row["speed-up vs DAPO"].startswith("4.00x")
    assert "final held-out accuracy (sampled mean@k)" in table.columns
    (verdict,) = at.success
    assert "VL Norm reaches" in verdict.value and "faster than DAPO" in verdict.value
    assert "reaches held-out accuracy (sampled mean@k) 0.3" in verdict.value
    assert any("Length-variance slope" in c.value for c in at.caption)
    assert "3/3" in table.set_index("condition").loc["DAPO", "finished"]
    assert "6/6 runs finished" in at.get("progress")[0].proto.text


def test_first_visit_shows_the_newest_stored_sweep_and_none_stays_chosen(data_dir) -> None:
    populate(data_dir)  # e.g. the reference runs' sweeps, loaded on an empty store
    at = app()
    no_exceptions(at)
    assert by_key(at.selectbox, "hyp.sweep").value == "demo"
    assert len(at.get("plotly_chart")) == 1
    by_key(at.selectbox, "hyp.sweep").set_value("").run()  # the user picks none: it stays so
    no_exceptions(at)
    assert by_key(at.selectbox, "hyp.sweep").value == ""
    assert not at.get("plotly_chart")


def test_bad_url_falls_back_with_notices(data_dir) -> None:
    at = app(template="nope", seeds="99", sweep="missing", bogus="1")
    no_exceptions(at)
    text = " ".join(w.value for w in at.warning)
    assert "template" in text and "seeds" in text and "missing" in text and "bogus" in text
    assert by_key(at.radio, "hyp.template").value == "ab"
    assert by_key(at.number_input, "hyp.seeds").value == 5


INTERNAL = re.compile(r"\b(grpo|dapo|dr_grpo|seq_sum|vl_norm)\b|eval/|charts/|grad/|losses/")


def test_default_question_reads_with_display_names(data_dir, monkeypatch) -> None:
    """The default question's verdicts, tables and legend name no internal aggregator or metric."""
    launch_button(app()).click().run()
    (spec,) = monkeypatch.launched
    record_runs(data_dir, spec, steps=int(spec.base["steps"]))
    at = app(sweep=spec.name)
    no_exceptions(at)
    verdicts = [v.value for v in at.success] + [v.value for v in at.info]
    assert any("faster" in v for v in verdicts), verdicts
    tables = [d.value for d in at.dataframe if "condition" in d.value.columns]
    texts = (
        verdicts
        + [c.value for c in at.caption]
        + [str(x) for t in tables for x in [*t.columns, *t["condition"], *t.get("aggregator", [])]]
    )
    (bands,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    texts += [t["name"] for t in bands["data"]] + [bands["layout"]["title"]["text"]]
    leaks = [t for t in texts if INTERNAL.search(t)]
    assert not leaks, leaks


def test_bands_chart_exports_for_slides_in_the_picked_format(data_dir) -> None:
    populate(data_dir)
    at = app(sweep="demo")
    options = json.loads(at.get("plotly_chart")[0].proto.config)["toImageButtonOptions"]
    assert options["scale"] == 3 and options["format"] == "png"
    at.radio(key="hypotheses.export_format").set_value("svg").run()
    options = json.loads(at.get("plotly_chart")[0].proto.config)["toImageButtonOptions"]
    assert options["format"] == "svg" and options["filename"].startswith("demo")
