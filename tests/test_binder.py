"""The binder on a toy model: widgets from annotations, a link read once, errors in the widgets'
labels, and a URL that holds only the last good non-default settings."""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the script imports `pages.binder`
    sys.path.insert(0, str(ROOT))


def toy_page() -> None:
    from typing import Literal

    import streamlit as st
    from pydantic import BaseModel, Field

    from pages.binder import Page
    from vlsim.lengths import LengthSpec, LogNormalLengths

    class Toy(BaseModel):
        size: int = Field(8, ge=2, le=64, description="How many.")
        rate: float = Field(0.5, gt=0, le=1, description="How fast.")
        mode: Literal["a", "b"] = Field("a", description="Which way.")
        on: bool = Field(True, description="Whether.")
        names: list[Literal["x", "y", "z"]] = Field(default_factory=lambda: ["x"])
        note: str = Field("", max_length=10, description="A note.")
        lengths: LengthSpec = Field(default_factory=lambda: LogNormalLengths(median=100))

    page = Page("toy")
    toy = page.bind(Toy, "toy.", Toy.model_fields)
    page.open()
    for name in Toy.model_fields:
        toy.widget(name, f"the {name}")
    cfg = toy.value("Nothing was run:")
    if cfg is not None:
        st.text(cfg.model_dump_json())
    page.write()


def run(**params: str) -> AppTest:
    at = AppTest.from_function(toy_page, default_timeout=30)
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def url(at: AppTest) -> dict[str, str]:
    return {k: at.query_params[k] for k in at.query_params}


def test_widgets_come_from_the_annotations_and_defaults_leave_a_clean_url():
    at = run()
    assert at.number_input(key="toy.size").value == 8
    assert "How many." in at.number_input(key="toy.size").help
    assert "Allowed: 2 to 64." in at.number_input(key="toy.size").help
    assert "more than 0 and at most 1" in at.number_input(key="toy.rate").help
    assert at.selectbox(key="toy.mode").options == ["a", "b"]
    assert at.toggle(key="toy.on").value is True
    assert at.multiselect(key="toy.names").value == ["x"]
    assert at.text_input(key="toy.note").value == ""
    assert at.selectbox(key="toy.lengths.kind").value == "lognormal"
    assert at.number_input(key="toy.lengths.lognormal.median").value == 100
    assert url(at) == {}


def test_changes_reach_the_url_and_a_bad_value_keeps_the_last_good_one():
    at = run()
    at.number_input(key="toy.size").set_value(16).run()
    at.selectbox(key="toy.mode").set_value("b").run()
    assert url(at) == {"size": "16", "mode": "b"}
    at.number_input(key="toy.size").set_value(1).run()
    assert not at.exception
    error = at.error[0].value
    assert "Nothing was run:" in error and "**the size**" in error
    assert "greater than or equal to 2" in error
    assert url(at) == {"size": "16", "mode": "b"}  # the last good settings
    at.selectbox(key="toy.lengths.kind").set_value("pareto").run()
    at.number_input(key="toy.lengths.pareto.shape").set_value(50.0)
    at.number_input(key="toy.size").set_value(4).run()
    assert "**shape**" in at.error[0].value  # a family's parameter, named as its box is
    at.number_input(key="toy.lengths.pareto.shape").set_value(1.5).run()
    assert not at.error
    assert url(at) == {"size": "4", "mode": "b", "lengths.kind": "pareto",
                       "lengths.minimum": "50", "lengths.shape": "1.5"}  # fmt: skip


def test_a_link_sets_the_widgets_once_and_bad_parameters_are_named():
    at = run(size="99", mode="c", bogus="1", **{"lengths.kind": "pareto", "names": "y,z"})
    warning = at.warning[0].value
    assert "size" in warning and "mode" in warning and "bogus" in warning
    assert at.number_input(key="toy.size").value == 8  # the default stands in
    assert at.multiselect(key="toy.names").value == ["y", "z"]
    assert at.selectbox(key="toy.lengths.kind").value == "pareto"
    assert url(at) == {"names": "y,z", "lengths.kind": "pareto", "lengths.minimum": "50",
                       "lengths.shape": "1.2"}  # fmt: skip
    at.number_input(key="toy.size").set_value(32).run()  # the page's own rerun: no new notice
    assert not at.warning and at.number_input(key="toy.size").value == 32


def visited_page() -> None:
    import streamlit as st
    from pydantic import BaseModel, Field

    from pages.binder import Page

    class Small(BaseModel):
        size: int = Field(8, ge=2, le=64, description="How many.")

    if st.session_state.get("elsewhere"):  # another page: this one's widgets are not drawn
        st.text("another page")
        return
    page = Page("visit")
    small = page.bind(Small, "visit.", Small.model_fields)
    page.open()
    small.widget("size")
    small.value()
    st.button("act", key="visit.act")  # under the same prefix, but not a setting
    st.download_button("save", data="x", key="visit.save")
    page.write()


def test_settings_survive_a_visit_to_another_page_and_buttons_are_not_put_back():
    at = AppTest.from_function(visited_page, default_timeout=30).run()
    at.number_input(key="visit.size").set_value(16).run()
    at.button(key="visit.act").click().run()
    at.session_state["elsewhere"] = True
    at.run()
    assert "visit.size" not in at.session_state and "visit.act" not in at.session_state
    at.session_state["elsewhere"] = False
    at.run()
    # a button's value put back through Session State would raise on the page's return
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="visit.size").value == 16
    assert url(at) == {"size": "16"}
