"""The Paper check page through AppTest, on a small report built from hand-made records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reproduce_fixtures import small_report
from streamlit.testing.v1 import AppTest

from vlsim.reproduce import report as report_module
from vlsim.reproduce import write_json

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "paper_check.py")


def figures(at: AppTest) -> dict[str, dict]:
    """Plotly figure specs by title (plotly charts are unknown elements in AppTest)."""
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {s["layout"]["title"]["text"]: s for s in specs}


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(ROOT)
    return tmp_path


def test_page_shows_verdicts_numbers_charts_and_the_rerun_command(data_dir) -> None:
    write_json(small_report(), data_dir / "reproductions" / "reproduction-quick.json")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    verdicts = [m.value for m in at.markdown if m.value.startswith("**Claim")]
    assert len(verdicts) == 4 and all(":green[**reproduced**]" in v for v in verdicts)
    boxes = " ".join(s.value for s in at.success)
    assert "Reproduced: on quick the paper's slope" in boxes
    assert (
        "DAPO + VL Norm vs DAPO: DAPO + VL Norm reaches held-out accuracy 0.3 2.67x faster" in boxes
    )
    caption = " ".join(c.value for c in at.caption)
    assert "Report of the **quick** scale" in caption and str(data_dir) in caption
    anchors = ("slope", "step-size-spread", "direction-bias", "variance-ratio", "speed-up",
               "length-spread")  # fmt: skip
    for anchor in anchors:
        assert f"(/definitions#{anchor})" in caption, anchor
    lengths = at.dataframe[-1].value
    assert list(lengths["condition"]) == ["quick (claims 1-3)", "DAPO (claim 4)"]
    assert "Claim 4's runs" in " ".join(i.value for i in at.info)
    figs = figures(at)
    scatter = next(f for t, f in figs.items() if t.startswith("Figure 4"))
    assert {t["name"] for t in scatter["data"]} >= {"paper's: g_i = A_i s_i", "fit: L^0.90"}
    variance = figs["variance per unit scale / Dr. GRPO's"]
    assert variance["layout"]["yaxis"]["type"] == "log"
    assert any(t.get("name") == "closed form, beta = 1" for t in variance["data"])
    speed = figs["Speed-up with VL Norm, Fieller 95% interval"]
    assert speed["data"][0]["x"][0] == pytest.approx(80 / 30)
    assert [c.value for c in at.code] == ["python -m vlsim reproduce --quick"]


def test_page_without_a_report_says_how_to_make_one(data_dir, monkeypatch) -> None:
    def unreadable(path):
        raise ValueError("not a report")

    monkeypatch.setattr(report_module, "read_json", unreadable)  # the shipped one too
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "python -m vlsim reproduce --quick" in at.info[0].value
    assert not at.get("plotly_chart")


def test_a_claim_over_several_presets_shows_each_presets_verdict_in_a_table(data_dir) -> None:
    report = small_report()
    claim2 = report["claims"][1]
    claim2["presets"] = [
        {"preset": "quick", "verdict": "inconclusive at this scale", "why": "ratio spans 1"},
        {"preset": "default", "verdict": "reproduced", "why": "VL Norm is less noisy"},
    ]
    claim2["verdict"] = "inconclusive at this scale"
    write_json(report, data_dir / "reproductions" / "reproduction-quick.json")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    boxes = [w.value for w in at.warning]
    assert (
        "**Inconclusive at this scale** overall: inconclusive at this scale on quick; "
        "reproduced on default." in boxes
    )
    tables = [d.value for d in at.dataframe]
    parts = next(t for t in tables if "preset" in t.columns and "why" in t.columns)
    assert parts.to_dict("records") == claim2["presets"]
    assert claim2["sentence"] in [m.value for m in at.markdown]  # in the expander
