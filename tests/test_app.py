"""The Streamlit app, driven headless with AppTest: every page renders, controls work, links restore.

Pages are reached through app.py's navigation (at.switch_page). The Length Lab runs with few
Monte Carlo batches (set through the URL) to keep the file fast.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the pages import `pages.common` and `vlsim`
    sys.path.insert(0, str(ROOT))

from vlsim.aggregators import AGGREGATORS  # noqa: E402
from vlsim.montecarlo import OPTIMAL  # noqa: E402

LAB = "pages/length_lab.py"
AGG = "pages/aggregators.py"
FAST_LAB = {"n_batches": "400", "sweep.n_batches": "200", "sweep.points": "3"}
TIMEOUT = 30


@pytest.fixture(autouse=True)
def empty_store(tmp_path, monkeypatch):
    """Home reads the run store: each test gets an empty one of its own."""
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path / "data"))


def open_page(page: str | None, params: dict[str, str] | None = None) -> AppTest:
    """Run app.py (Home), then switch to a page, with the given URL parameters."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(params or {})
    at.run()
    assert not at.exception, at.exception
    if page is not None:
        at.switch_page(page).run()
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figure specs on the page, by the chart's key."""
    out = {}
    for element in at.get("plotly_chart"):
        key = element.proto.id.rsplit("-", 1)[-1]
        out[key] = json.loads(element.proto.spec)
    return out


def values(data) -> list:
    """A plotly data array: a plain list, or plotly's typed-array encoding of a numpy array."""
    if isinstance(data, dict) and "bdata" in data:
        raw = np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
        return raw.tolist()
    return list(data)


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# ----------------------------------------------------------------------------- every page


def test_home_renders_with_links():
    at = open_page(None)
    assert not at.exception
    assert "loss aggregation" in at.title[0].value
    links = [e.proto.page for e in at.get("page_link")]
    assert len(links) == 9, links  # "Start here" (lesson 1), then one per page but Home
    assert at.get("latex")  # the key formula
    text = texts(at.markdown)
    assert "least variance possible" not in text and "unbiased" not in text
    assert "token-noise" in text and "Dr. GRPO" in text  # the condition of 'least variance'


def test_definitions_page_renders_every_anchor():
    at = open_page("pages/definitions.py")
    assert not at.exception, at.exception
    anchors = [h.proto.anchor for h in at.header]
    assert anchors == [
        "scale",
        "drift",
        "direction-bias",
        "variance",
        "cv",
        "efficiency",
        "slope",
        "interval",
        "verdict",
        "speed-up",
        "length-spread",
        "step-size-spread",
        "variance-ratio",
        "reproduction-verdict",
    ]
    assert "$" in texts(at.markdown)  # formulas, rendered by st.markdown


@pytest.mark.parametrize("page", [AGG, LAB])
def test_page_renders_on_defaults(page):
    at = open_page(page, FAST_LAB if page == LAB else None)
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    assert not at.warning, texts(at.warning)
    assert charts(at)


# ----------------------------------------------------------------------------- Length Lab


def test_length_lab_charts_show_every_aggregator_and_closed_forms():
    at = open_page(LAB, FAST_LAB)
    figs = charts(at)
    assert {
        "scale_chart",
        "variance_chart",
        "cv_chart",
        "efficiency_chart",
        "direction_chart",
        "alpha_chart",
        "length_hist",
        "sweep_chart",
    } <= set(figs)
    names = [*AGGREGATORS, OPTIMAL]
    scale = figs["scale_chart"]
    bars = [t for t in scale["data"] if t["type"] == "bar"]
    assert len(bars) == 1 and sorted(bars[0]["customdata"]) == sorted(names)
    ratio = dict(zip(bars[0]["customdata"], values(bars[0]["y"]), strict=True))
    # The step relative to the reference lengths: GRPO's shrank, the length-free ones did not.
    assert ratio["grpo"] < 0.5 and ratio["dapo"] < 0.5
    assert ratio["dr_grpo"] == pytest.approx(1) and ratio["vl_norm"] == pytest.approx(1)
    assert bars[0]["error_y"]["array"]  # Monte Carlo error bars
    theory = [t for t in scale["data"] if t["type"] == "scatter" and t.get("marker")]
    assert theory and theory[0]["marker"]["symbol"] == "diamond"
    # Closed-form markers: the variance's token-noise part and the efficiency.
    markers = [t for t in figs["variance_chart"]["data"] if t["type"] == "scatter"]
    assert markers and len(values(markers[0]["y"])) == len(names)
    # Efficiency only for the length-free steps (GRPO and DAPO are outside the oracle's class).
    eff = [t for t in figs["efficiency_chart"]["data"] if t["type"] == "bar"][0]
    assert sorted(eff["customdata"]) == sorted(["dr_grpo", "seq_sum", "vl_norm", OPTIMAL])
    assert all(v <= 1.2 for v in values(eff["y"]))
    # Variance is stacked: token noise + reward sampling.
    variance_bars = [t for t in figs["variance_chart"]["data"] if t["type"] == "bar"]
    assert [t["name"] for t in variance_bars] == ["token noise", "reward sampling"]
    # One direction panel, with few enough ticks not to run together.
    direction = figs["direction_chart"]
    assert len([t for t in direction["data"] if t["type"] == "bar"]) == 1
    assert direction["layout"]["xaxis"]["nticks"] <= 7
    # The sweep: step ratio and CV of every aggregator, efficiency of the length-free ones.
    sweep = figs["sweep_chart"]["data"]
    assert sorted({t["customdata"][0] for t in sweep}) == sorted(names)
    assert len(sweep) == 3 * len(names) - 2
    assert all(len(values(t["x"])) == 3 for t in sweep)
    # Lines that coincide (Dr. GRPO and VL Norm at ratio 1) differ in dash and width.
    styles = {t["customdata"][0]: t["line"] for t in sweep}
    assert styles["dr_grpo"]["dash"] != styles["vl_norm"]["dash"]
    assert styles["dr_grpo"]["width"] > styles["vl_norm"]["width"]
    # Legends sit below the axis titles, with the bottom margin grown for them.
    for fig in figs.values():
        legend = fig["layout"].get("legend", {})
        if legend:
            assert legend["yref"] == "container" and legend["y"] == 0
    # Total variance against alpha: three parts and the two minima marked.
    alpha = figs["alpha_chart"]["data"]
    assert {t.get("name") for t in alpha} >= {"total", "token-noise part", "reward-sampling part"}


def test_length_lab_headline_is_computed_from_the_result():
    at = open_page(LAB, FAST_LAB)
    headline = at.info[0].value
    assert "GRPO" in headline and "Dr. GRPO" in headline and "VL Norm" in headline
    assert "×0.2" in headline  # GRPO's step shrank to about a quarter
    assert "keep the direction" in headline and "token-noise variance" in headline
    assert "unbiased" not in texts(at.markdown) + headline


def test_default_lab_says_vl_norm_tilts_like_grpo():
    at = open_page(LAB, FAST_LAB)
    text = texts(at.markdown)
    assert "VL Norm tilts nearly as much as GRPO" in text
    assert "/definitions#direction-bias" in text and "/definitions#drift" in text


def test_kappa_zero_removes_the_tilt_and_says_so():
    at = open_page(LAB, {**FAST_LAB, "length_slope": "0.0"})
    assert not at.exception, at.exception
    assert "κ = 0" in at.info[0].value
    assert "every aggregator points the right way" in texts(at.markdown)


def test_group_size_one_blocks_the_run_and_says_what_is_allowed():
    at = open_page(LAB, FAST_LAB)
    at.number_input(key="lab.group_size").set_value(1).run()
    assert not at.exception, at.exception
    error = texts(at.error)
    assert "Nothing was run" in error and "G (answers)" in error
    assert "greater than or equal to 2" in error
    assert not charts(at)  # blocked: no stale results stay on screen
    assert "2 to 1024" in (at.number_input(key="lab.group_size").help or "")


def test_overflowing_sweep_is_a_message_not_a_traceback():
    at = open_page(LAB, {**FAST_LAB, "lengths.kind": "lognormal", "lengths.median": "500000000.0"})
    at.number_input(key="lab.sweep.stop").set_value(100.0).run()
    assert not at.exception, at.exception
    error = texts(at.error)
    assert "The sweep stopped at point" in error and "length_scale" in error
    assert "Traceback" not in error and "pydantic" not in error
    at.number_input(key="lab.lognormal.median").set_value(1e308).run()
    assert not at.exception, at.exception
    assert "less than or equal to" in texts(at.error)


def test_huge_numbers_in_a_link_are_reported_in_a_few_digits():
    at = open_page(LAB, {**FAST_LAB, "seed": "1e200"})
    assert not at.exception, at.exception
    warning = texts(at.warning)
    assert "seed" in warning and "1e+200" in warning
    assert "0" * 30 not in warning


def test_length_family_switch_to_pareto():
    at = open_page(LAB, FAST_LAB)
    at.selectbox(key="lab.kind").set_value("pareto").run()
    assert not at.exception, at.exception
    assert at.number_input(key="lab.pareto.shape").value == 1.2
    assert at.query_params["lengths.kind"] == "pareto"
    assert "Pareto" in texts(at.caption)
    at.number_input(key="lab.pareto.shape").set_value(1.5).run()
    assert not at.exception
    assert at.query_params["lengths.shape"] == "1.5"


def test_alpha_slider_updates_results_and_url():
    at = open_page(LAB, FAST_LAB)
    at.slider(key="lab.alpha").set_value(0.5).run()
    assert not at.exception, at.exception
    assert at.query_params["alpha"] == "0.5"
    assert "α=0.5" in at.info[0].value


def test_invalid_combination_shows_the_validation_error():
    at = open_page(LAB, {**FAST_LAB, "lengths.kind": "uniform"})
    at.number_input(key="lab.uniform.low").set_value(5000).run()
    assert not at.exception, at.exception
    assert "high" in texts(at.error) and "low" in texts(at.error)


def test_too_much_work_is_refused_with_a_message():
    at = open_page(LAB, FAST_LAB)
    at.number_input(key="lab.group_size").set_value(1024)
    at.number_input(key="lab.n_batches").set_value(1_000_000).run()
    assert not at.exception, at.exception
    assert "fit in memory" in texts(at.error) and "n_batches" in texts(at.error)


def test_empirical_family_appears_when_lengths_are_supplied():
    at = open_page(None, FAST_LAB)
    shown = "Empirical (your lengths)"
    assert shown not in at.switch_page(LAB).run().selectbox(key="lab.kind").options
    at.session_state["empirical_lengths"] = [12, 40, 40, 300, 900]
    at.run()
    assert shown in at.selectbox(key="lab.kind").options
    at.selectbox(key="lab.kind").set_value("empirical").run()
    assert not at.exception, at.exception
    assert at.query_params["lengths.lengths"] == "12,40,40,300,900"


def test_url_restores_settings():
    at = open_page(
        LAB, {**FAST_LAB, "alpha": "0.25", "lengths.kind": "lognormal", "lengths.sigma": "1.2"}
    )
    assert not at.warning, texts(at.warning)
    assert at.slider(key="lab.alpha").value == 0.25
    assert at.selectbox(key="lab.kind").value == "lognormal"
    assert at.number_input(key="lab.lognormal.sigma").value == 1.2
    assert at.number_input(key="lab.n_batches").value == 400


def test_tampered_url_shows_a_warning_and_uses_defaults():
    at = open_page(
        LAB, {**FAST_LAB, "alpha": "9", "lengths.kind": "zipf", "bogus": "1", "seed": "1e30"}
    )
    assert not at.exception, at.exception
    warning = texts(at.warning)
    assert "alpha" in warning and "zipf" in warning and "bogus" in warning
    assert "seed" in warning  # valid for the engine, too large for a browser widget
    assert at.number_input(key="lab.seed").value == 0
    assert at.slider(key="lab.alpha").value == 1.0
    assert at.selectbox(key="lab.kind").value == "lognormal"
    assert charts(at)  # the page still works


def test_sweep_over_alpha():
    at = open_page(LAB, FAST_LAB)
    at.selectbox(key="lab.sweep.param").set_value("alpha").run()
    assert not at.exception, at.exception
    assert at.number_input(key="lab.sweep.stop").value == 2.0
    sweep = charts(at)["sweep_chart"]["data"]
    assert values(sweep[0]["x"]) == [0.0, 1.0, 2.0]
    assert at.query_params["sweep.param"] == "alpha"


# ----------------------------------------------------------------------------- Aggregators


def test_aggregators_page_shows_formulas_and_calculator():
    at = open_page(AGG)
    latex = texts(at.get("latex"))
    for info in AGGREGATORS.values():
        assert info.latex in latex
    assert "weights_chart" in charts(at)
    tables = [d for d in at.dataframe if d.key is None]  # the other one is the table editor
    assert len(tables) == 1
    assert len(tables[0].value) == len(AGGREGATORS) + 1  # and the oracle
    editors = [d for d in at.dataframe if d.key is not None]
    assert len(editors) == 1 and editors[0].value.shape == (2, 4)  # the Table tab


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10 20 30\n40 50", "rectangular"),
        ("10 20 x", "not a number"),
        ("0 20\n30 40", "at least 1"),
        ("-5 20", "at least 1"),
        ("10 99999", "exceeds max_len"),
        ("10.5 20", "whole numbers"),
        ("", "no lengths"),
    ],
)
def test_calculator_bad_input_shows_an_error_not_a_traceback(text, message):
    at = open_page(AGG)
    at.text_area(key="agg.lengths").set_value(text).run()
    assert not at.exception, at.exception
    assert message in texts(at.error)


def test_calculator_url_and_controls():
    at = open_page(AGG, {"calc.lengths": "10 20;30 40", "calc.alpha": "0.5"})
    assert not at.warning, texts(at.warning)
    assert at.text_area(key="agg.lengths").value == "10 20\n30 40"
    assert at.slider(key="agg.alpha").value == 0.5
    at.slider(key="agg.beta").set_value(2.0).run()
    assert not at.exception
    assert at.query_params["calc.beta"] == "2"
    bars = charts(at)["weights_chart"]["data"]
    assert len(bars) == len(AGGREGATORS) + 1 and all(len(values(b["y"])) == 4 for b in bars)


def test_framework_view_trl_and_verl():
    at = open_page(AGG)
    fw = charts(at)["framework_chart"]["data"]
    assert sum(t["type"] == "bar" for t in fw) == 2  # two micro-batches
    at.radio(key="fw.framework").set_value("verl").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="fw.loss_mode").value == "token-mean"
    assert at.query_params["fw.framework"] == "verl"
    assert "verl" in texts(at.caption)
    # A step whose size does not match the typed lengths draws its own.
    at.number_input(key="fw.micro_batch_size").set_value(3).run()
    assert not at.exception, at.exception
    assert "are drawn" in texts(at.caption)
    assert len(values(charts(at)["framework_chart"]["data"][0]["x"])) == 3


def test_framework_view_refuses_huge_steps():
    at = open_page(AGG, {"fw.micro_batch_size": "100000", "fw.grad_accum_steps": "64"})
    assert not at.exception, at.exception
    assert "at most" in texts(at.error)


def test_aggregators_tampered_url_warns():
    at = open_page(AGG, {"fw.loss_mode": "token-mean", "calc.max_len": "-1", "zzz": "1"})
    assert not at.exception, at.exception
    warning = texts(at.warning)
    assert "fw.loss_mode" in warning and "calc.max_len" in warning and "zzz" in warning


def test_calculator_refuses_thousands_of_lengths_before_drawing():
    at = open_page(AGG)
    at.text_area(key="agg.lengths").set_value(" ".join(["100"] * 20_000)).run()
    assert not at.exception, at.exception
    assert "20,000 lengths typed" in texts(at.error) and "at most 1,000" in texts(at.error)
    assert "weights_chart" not in charts(at)


def test_calculator_table_says_which_property_and_omits_moving_efficiency():
    at = open_page(AGG)
    table = [d for d in at.dataframe if d.key is None][0].value
    rows = table.set_index("aggregator")
    assert rows.loc["GRPO", "efficiency"] == "—" and rows.loc["DAPO", "efficiency"] == "—"
    assert float(rows.loc["Dr. GRPO", "efficiency"]) <= 1
    assert not rows.loc["VL Norm (α=1)", "direction unaffected"]
    assert rows.loc["Dr. GRPO", "direction unaffected"]
    assert rows.loc["VL Norm (α=1)", "step size independent of lengths"]
    assert "unbiased" not in " ".join(table.columns)
    # Explicit log ticks (plotly's own minor labels ran together: "2, 10, 9, 8...").
    yaxis = charts(at)["weights_chart"]["layout"]["yaxis"]
    assert yaxis["type"] == "log" and len(yaxis["tickvals"]) == len(yaxis["ticktext"]) >= 2


def test_aggregators_page_shows_no_internal_names():
    at = open_page(AGG)
    text = texts(at.markdown) + texts(at.caption)
    for name in ("`grpo`", "`vl_norm`", "`dr_grpo`", "`seq_sum`", "unbiased"):
        assert name not in text
    assert "/definitions#drift" in text


def test_out_of_range_numbers_block_and_say_what_is_allowed():
    at = open_page(AGG)
    at.number_input(key="agg.max_len").set_value(0).run()
    assert not at.exception, at.exception
    assert "M (max length) must be 1 to 1,000,000" in texts(at.error)
    at = open_page(LAB, FAST_LAB)
    at.number_input(key="lab.sweep.points").set_value(1).run()
    assert not at.exception, at.exception
    assert "The sweep was not run" in texts(at.error) and "points" in texts(at.error)
    assert "sweep_chart" not in charts(at)


def test_every_definition_link_has_its_heading():
    """Help texts link /definitions#anchor; each anchor is a heading of docs/definitions.md."""
    import re

    from pages.definitions import sections, slug

    _, body = sections((ROOT / "docs" / "definitions.md").read_text(encoding="utf-8"))
    anchors = {slug(title) for title, _ in body}
    used = set()
    for path in (ROOT / "pages").glob("*.py"):
        used |= set(re.findall(r"definition\(\s*[\"']([a-z-]+)[\"']", path.read_text()))
        used |= set(re.findall(r"/definitions#([a-z-]+)", path.read_text()))
    assert used and used <= anchors, used - anchors
    assert {"scale", "drift", "direction-bias", "variance", "cv", "efficiency"} <= used


def test_sweep_parameter_names_fit_their_select():
    from pages.lab_text import SWEEP_LABELS
    from vlsim.config import SWEEP_PARAMS

    assert set(SWEEP_LABELS) == set(SWEEP_PARAMS)
    assert all(len(label) <= 34 for label in SWEEP_LABELS.values())


# ----------------------------------------------------------------------------- slide export


def export_options(at: AppTest) -> dict[str, dict]:
    """Each chart's camera-button options (its plotly config), by the chart's key."""
    return {
        e.proto.id.rsplit("-", 1)[-1]: json.loads(e.proto.config)["toImageButtonOptions"]
        for e in at.get("plotly_chart")
    }


def export_all_labels(at: AppTest) -> list[str]:
    return [b.proto.label for b in at.get("download_button") if "Export all" in b.proto.label]


def test_length_lab_charts_export_for_slides_and_all_at_once():
    at = open_page(LAB, FAST_LAB)
    options = export_options(at)
    assert {"scale_chart", "direction_chart", "cv_chart", "sweep_chart"} <= set(options)
    assert all(o["scale"] == 3 and o["format"] == "png" for o in options.values())
    assert export_all_labels(at) == [f"Export all {len(options)} charts"]
    at.radio(key="lab.export_format").set_value("svg").run()
    assert {o["format"] for o in export_options(at).values()} == {"svg"}


def test_aggregators_charts_export_for_slides_and_all_at_once():
    at = open_page(AGG)
    options = export_options(at)
    assert "weights_chart" in options and all(o["scale"] == 3 for o in options.values())
    assert export_all_labels(at) == [f"Export all {len(options)} charts"]
