"""The lessons and the Step Inspector under AppTest: they render, their widgets change their
charts, questions reveal their answers, links set the widgets, and charts export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import plotly.graph_objects as go
import pytest
import tomllib
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the pages import `pages.common` and `vlsim`
    sys.path.insert(0, str(ROOT))

from pages.export import chart_config, figures_html  # noqa: E402

LESSON1 = "pages/lesson_1_why_length.py"
LESSON2 = "pages/lesson_2_bias_variance.py"
LESSON3 = "pages/lesson_3_deriving_vl_norm.py"
INSPECTOR = "pages/step_inspector.py"
TIMEOUT = 60


def open_page(page: str, params: dict[str, str] | None = None) -> AppTest:
    """Run app.py, then switch to a page with the given URL parameters."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    at.query_params.update(params or {})
    at.switch_page(page).run()
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figure specs on the page, by the chart's key."""
    return {e.proto.id.rsplit("-", 1)[-1]: json.loads(e.proto.spec) for e in at.get("plotly_chart")}


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# ----------------------------------------------------------------------------- navigation


def test_lessons_come_first_in_the_navigation():
    source = (ROOT / "app.py").read_text()
    assert source.index('"Lessons"') < source.index('"Explore"')
    for page in (LESSON1, LESSON2, LESSON3, INSPECTOR, "pages/definitions.py"):
        assert f'"{page}"' in source, page


def test_home_starts_with_a_link_to_lesson_1():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    links = [e.proto.page for e in at.get("page_link")]
    assert links and "lesson_1_why_length" in links[0], links


# ----------------------------------------------------------------------------- lesson 1


def test_lesson1_renders_with_charts_questions_and_a_scenario():
    at = open_page(LESSON1)
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    assert {"l1.loss", "l1.weights", "l1.push", "l1.steps"} <= set(charts(at))
    assert sum("What to notice" in str(i.value) for i in at.info) >= 4
    assert [b.label for b in at.button].count("Show the answer") == 3
    assert any("lesson_1_why_length" in e.proto.page for e in at.get("page_link"))


def test_lesson1_stretch_moves_the_charts():
    at = open_page(LESSON1)
    before = charts(at)
    at.slider(key="l1.stretch").set_value(4.0).run()
    assert not at.exception, at.exception
    after = charts(at)
    assert after["l1.push"] != before["l1.push"]  # longer strips
    assert after["l1.steps"] != before["l1.steps"]  # the 'now' marker moved
    assert at.query_params["stretch"] == "4"


def test_lesson1_question_reveals_its_answer():
    at = open_page(LESSON1)
    assert "GRPO's step M·mean(1/L) halves" not in texts(at.success)
    at.button(key="reveal.l1.q1").click().run()
    assert "GRPO's step M·mean(1/L) halves" in texts(at.success)
    assert [b.label for b in at.button].count("Show the answer") == 2


def test_lesson1_link_sets_the_widgets_and_rejects_bad_values():
    at = open_page(LESSON1, {"stretch": "3", "correct": "long", "alpha": "9"})
    assert not at.exception, at.exception
    assert at.slider(key="l1.stretch").value == 3.0
    assert at.radio(key="l1.correct").value == "long"
    assert at.slider(key="l1.alpha").value == 1.0  # out of range: the default stands
    assert "alpha" in texts(at.warning)


# ----------------------------------------------------------------------------- lesson 2


def test_lesson2_renders_and_kappa_moves_the_tilt_marker():
    at = open_page(LESSON2)
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    before = charts(at)
    assert {"l2.drift", "l2.noise", "l2.tilt"} <= set(before)
    assert [b.label for b in at.button].count("Show the answer") == 3
    at.slider(key="l2.kappa").set_value(1.0).run()
    assert not at.exception, at.exception
    after = charts(at)
    assert after["l2.tilt"] != before["l2.tilt"]
    assert at.query_params["kappa"] == "1"


def test_lesson2_stretch_changes_the_drift_chart():
    at = open_page(LESSON2)
    before = charts(at)["l2.drift"]
    at.slider(key="l2.stretch").set_value(4.0).run()
    after = charts(at)["l2.drift"]
    assert after != before
    assert "×4" in after["layout"]["title"]["text"]


def test_lesson2_question_reveals_its_answer():
    at = open_page(LESSON2)
    at.button(key="reveal.l2.q1").click().run()
    assert "Only Dr. GRPO and the sequence sum keep the direction" in texts(at.success)


# ----------------------------------------------------------------------------- lesson 3


@pytest.fixture
def store_with_probes(tmp_path, monkeypatch):
    """A data directory with one run whose probes measured a length-noise slope of 1.37."""
    from vlsim.store import Store

    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    store = Store(tmp_path)
    run_id = store.create_run("probed", "train", {"aggregator": "vl_norm"})
    store.log_probe(run_id, 10, {"length_noise": {"slope": 1.37, "ci_low": 1.1, "ci_high": 1.6}})
    return store


def test_lesson3_renders_and_beta_moves_both_charts(store_with_probes):
    at = open_page(LESSON3)
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    before = charts(at)
    assert {"l3.fig_check", "l3.fig_alpha"} <= set(before)
    assert "They match" in texts(at.caption)
    at.slider(key="l3.beta").set_value(1.5).run()
    after = charts(at)
    assert after["l3.fig_check"] != before["l3.fig_check"]
    assert after["l3.fig_alpha"] != before["l3.fig_alpha"]
    assert "They match" in texts(at.caption)


def test_lesson3_measured_slope_becomes_alpha_with_one_click(store_with_probes):
    at = open_page(LESSON3)
    assert "stored runs" in texts(at.caption)
    assert "slope 1.37" in at.selectbox(key="l3.slope").format_func(
        at.selectbox(key="l3.slope").value
    )
    at.button(key="l3.use_slope").click().run()
    assert not at.exception, at.exception
    assert at.slider(key="l3.alpha").value == pytest.approx(1.35)
    assert at.slider(key="l3.beta").value == pytest.approx(1.35)


def test_lesson3_uses_the_reference_runs_when_no_run_has_probes(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    at = open_page(LESSON3)
    assert not at.exception, at.exception
    assert "reference runs that ship with vlsim" in texts(at.caption)
    assert "reference: quick-vl_norm" in at.selectbox(key="l3.slope").format_func(0)


def test_lesson3_bad_lengths_say_what_is_allowed(store_with_probes):
    at = open_page(LESSON3, {"lengths": "10 abc"})
    assert "lengths" in texts(at.warning)
    at.text_input(key="l3.lengths").input("7").run()
    assert "between 2 and 32 lengths" in texts(at.error)
    assert not at.exception


def test_lesson3_question_reveals_its_answer(store_with_probes):
    at = open_page(LESSON3)
    at.button(key="reveal.l3.q2").click().run()
    assert "α = 1.5" in texts(at.success)


# ----------------------------------------------------------------------------- inspector


def full_group_records(step: int) -> list[dict]:
    """Two groups of four answers in the layout of full groups (group, index, token_ids)."""
    from vlsim.countdown import CharTokenizer

    tok = CharTokenizer()
    texts = ["1+2<ans>1+2<eos>", "3<ans>3<eos>", "2*1=2;2+1=3<ans>2+1<eos>", "x<eos>"]
    out = []
    for g in range(2):
        for i, text in enumerate(texts):
            ids = tok.encode(text)
            out.append(
                {
                    "numbers": [1, 2],
                    "target": 3,
                    "trace": "",
                    "answer": "",
                    "reward": float(i < 2 - g),
                    "length": len(ids),
                    "truncated": False,
                    "group": g,
                    "index": i,
                    "token_ids": ids,
                }
            )
    return out


@pytest.fixture
def inspector_store(tmp_path, monkeypatch):
    """A data directory with a run that stored full groups (run 1) and an older one (run 2)."""
    from vlsim.store import Store

    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    store = Store(tmp_path)
    config = {"max_new_tokens": 48, "alpha": 1.0, "scope": "group", "std_normalize": True}
    new = store.create_run("with-groups", "train", config)
    store.log_samples(new, 0, full_group_records(0))
    store.log_samples(new, 10, full_group_records(10))
    old = store.create_run("before-groups", "train", config)
    store.log_samples(
        old,
        0,
        [
            {
                "numbers": [1, 2],
                "target": 3,
                "trace": "",
                "answer": "1+2",
                "reward": 1.0,
                "length": 4,
                "truncated": False,
            }
        ],
    )
    return store, new, old


def test_inspector_without_runs_points_to_the_arena(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    at = open_page(INSPECTOR)
    assert not at.exception, at.exception
    assert "No stored training runs yet" in texts(at.info)


def test_inspector_draws_a_group_and_alpha_changes_the_colours(inspector_store):
    _, new, _ = inspector_store
    at = open_page(INSPECTOR, {"run": str(new), "step": "0"})
    assert not at.exception, at.exception
    assert not at.error and not at.warning, texts(at.error) + texts(at.warning)
    assert at.selectbox(key="insp.step").value == 0
    before = charts(at)
    assert {"insp.strips", "insp.totals"} <= set(before)
    heat = [t for t in before["insp.strips"]["data"] if t["type"] == "heatmap"]
    assert len(heat) == 4  # GRPO, DAPO, Dr. GRPO, VL Norm
    assert "<ans>" in json.dumps(heat[0]["text"])  # the tokens' text on their cells
    assert "recomputed from the rewards" in texts(at.caption)
    at.slider(key="insp.alpha").set_value(0.0).run()
    after = charts(at)
    assert after["insp.strips"] != before["insp.strips"]
    at.multiselect(key="insp.names").set_value(["dr_grpo"]).run()
    assert len([t for t in charts(at)["insp.strips"]["data"] if t["type"] == "heatmap"]) == 1


def test_inspector_says_when_a_run_predates_full_groups(inspector_store):
    _, _, old = inspector_store
    at = open_page(INSPECTOR, {"run": str(old)})
    assert not at.exception, at.exception
    assert "recorded before full groups were stored" in texts(at.warning)
    assert not charts(at)


# ----------------------------------------------------------------------------- export


def test_chart_config_exports_at_slide_resolution():
    cfg = chart_config("Step size as answers grow", "svg")
    assert cfg["toImageButtonOptions"] == {
        "format": "svg",
        "filename": "step-size-as-answers-grow",
        "scale": 3,
        "height": None,
        "width": None,
    }
    with pytest.raises(ValueError, match="png, svg"):
        chart_config("x", "jpeg")


def test_format_picker_switches_every_camera_button_to_svg():
    at = open_page(LESSON1)

    def formats() -> set[str]:
        return {
            json.loads(e.proto.config)["toImageButtonOptions"]["format"]
            for e in at.get("plotly_chart")
        }

    assert formats() == {"png"}
    at.radio(key="lesson1.export_format").set_value("svg").run()
    assert formats() == {"svg"}
    assert at.get("download_button")  # the export-all button


def test_export_all_writes_a_self_contained_file(tmp_path):
    figs = [
        ("First chart", go.Figure(go.Bar(x=[1, 2], y=[3, 4]))),
        ("Second chart", go.Figure(go.Scatter(x=[1, 2], y=[5, 6]))),
    ]
    path = tmp_path / "charts.html"
    path.write_text(figures_html("Lesson X", figs))
    text = path.read_text()
    assert path.stat().st_size > 1_000_000  # plotly.js is inside: the file works offline
    assert text.count("<section>") == 2 and 'id="fig-0"' in text and 'id="fig-1"' in text
    assert '"first-chart", "second-chart"' in text and "Plotly.downloadImage" in text


# ----------------------------------------------------------------------------- settings


def test_server_does_not_watch_files():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert config["server"]["runOnSave"] is False


def test_design_notes_live_in_the_repository():
    assert (ROOT / "docs" / "design.md").exists()
    assert "docs/design.md" in (ROOT / "README.md").read_text()
    outside = "../" + "shared"
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        assert outside not in path.read_text(), path
