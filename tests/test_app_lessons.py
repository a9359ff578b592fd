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
    return {
        e.proto.id.rsplit("-", 1)[-1]: json.loads(e.proto.spec) for e in at.get("plotly_chart")
    }


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
    assert "slope 1.37" in at.selectbox(key="l3.slope").format_func(at.selectbox(key="l3.slope").value)
    at.button(key="l3.use_slope").click().run()
    assert not at.exception, at.exception
    assert at.slider(key="l3.alpha").value == pytest.approx(1.35)
    assert at.slider(key="l3.beta").value == pytest.approx(1.35)


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
