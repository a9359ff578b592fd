"""The Probes page through AppTest, on a stored record shaped like today's probe_policy output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from vlsim.config import preset_config
from vlsim.probes import ProbeRecord
from vlsim.store import Store

ROOT = Path(__file__).resolve().parents[1]
PROBES = str(ROOT / "pages" / "probes.py")


def fit(slope: float, low: float, high: float, quantity: str) -> dict:
    points = {"length": [5, 10, 20, 6, 12, 24], "prompt": [0, 0, 0, 1, 1, 1],
              "deviation": [1.0e-5, 2.1e-5, 3.9e-5, 1.2e-5, 2.5e-5, 5.0e-5]}  # fmt: skip
    return {"slope": slope, "ci_low": low, "ci_high": high, "se": 0.1, "n": 6, "prompts": 2,
            "quantity": quantity, "points": points}  # fmt: skip


def record(step: int) -> dict:
    aggs = {}
    for name, v, lo, hi in (("grpo", 2e-6, 0.05, 0.4), ("dapo", 3e-6, -0.1, 0.2),
                            ("dr_grpo", 4e-6, 0.0, 0.0), ("vl_norm", 1.5e-4, -0.2, 0.3)):  # fmt: skip
        aggs[name] = {"scale": 1.0, "variance": v, "cv": v**0.5, "cosine": 0.95,
                      "relative_variance": v / 4e-6, "relative_bias_calibrated": (lo + hi) / 2,
                      "relative_bias_ci_low": lo, "relative_bias_ci_high": hi}  # fmt: skip
    meta = {"block": "last_attention", "params": 1000, "dim": 1000, "projection_dim": 0,
            "prompts": 2, "rollouts": 8, "group_size": 4, "resamples": 64, "bootstrap": 100,
            "method": "batched", "max_len": 40, "alpha": 1.0, "scope": "group",
            "std_normalize": True, "temperature": 1.0, "aggregators": list(aggs)}  # fmt: skip
    bins = {"edges": [0.0, 1.0, 2.0], "count": [70, 10], "score_mean": [0.2, 0.9],
            "contribution_share": [0.4, 0.6], "entropy_mean": [0.3, 1.4],
            "contribution_mean": [0.1, 0.5]}  # fmt: skip
    rec = {"meta": meta, "aggregators": aggs, "length_noise": fit(0.62, 0.1, 1.3, "A_i s_i"),
           "length_noise_free": fit(1.07, 0.91, 1.24, "s_i"),
           "tokens": {"n": 80, "bins": bins}, "seconds": 1.0,
           "time": {"sampling": 0.1, "gradients": 0.5, "stats": 0.4}}  # fmt: skip
    ProbeRecord.model_validate(rec)  # the shape probe_policy writes
    return rec


@pytest.fixture
def run_id(tmp_path, monkeypatch) -> int:
    monkeypatch.setenv("VLSIM_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(ROOT)
    store = Store(tmp_path)
    cfg = preset_config("quick", probe={"every": 10})
    rid = store.create_run("probed", "train", cfg.model_dump(mode="json"), status="finished")
    for step in (0, 10):
        store.log_probe(rid, step, record(step))
    store.close()
    return rid


def test_probes_page_shows_both_slopes_intervals_and_display_names(run_id) -> None:
    at = AppTest.from_file(PROBES, default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "Advantage-free slope**: 1.07 (95% CI 0.91 to 1.24)" in text
    assert "Paper’s slope**: 0.62 (95% CI 0.10 to 1.30)" in text
    for anchor in ("slope", "variance", "direction-bias"):
        assert f"(/definitions#{anchor})" in text, anchor
    figs = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}  # fmt: skip
    assert any(t.startswith("advantage-free") for t in figs)
    slopes = figs["fitted slopes over training"]
    names = [t["name"] for t in slopes["data"]]
    assert any("advantage-free" in n for n in names) and any("paper" in n for n in names)
    variance = next(f for t, f in figs.items() if t.startswith("variance"))
    assert {t["name"] for t in variance["data"]} >= {"GRPO", "DAPO", "Dr. GRPO", "VL Norm"}
    yaxis = variance["layout"]["yaxis"]  # 2e-6 .. 1.5e-4: one label per decade, as 10^k
    assert yaxis["dtick"] == 1 and yaxis["exponentformat"] == "power"
    relvar = figs["variance relative to Dr. GRPO"]["layout"]["yaxis"]  # 0.5 .. 37.5, too
    assert relvar["dtick"] == 1
    table = at.dataframe[0].value
    assert list(table["aggregator"]) == ["GRPO", "DAPO", "Dr. GRPO", "VL Norm"]
    directions = dict(zip(table["aggregator"], table["direction"], strict=True))
    assert directions["GRPO"] == "tilted" and directions["VL Norm"].startswith("no tilt")
    assert list(table["95% interval"]) == ["0.05 to 0.4", "-0.1 to 0.2", "0 to 0", "-0.2 to 0.3"]


def export_scale(chart) -> int:
    """The image scale of a chart's camera button (its plotly config)."""
    return json.loads(chart.proto.config)["toImageButtonOptions"]["scale"]


def test_probes_charts_export_for_slides_and_all_at_once(run_id) -> None:
    at = AppTest.from_file(PROBES, default_timeout=60)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    charts = at.get("plotly_chart")
    assert charts and all(export_scale(c) == 3 for c in charts)
    assert at.radio(key="probes.export_format").options == ["PNG", "SVG"]
    at.radio(key="probes.export_format").set_value("svg").run()
    fmts = {
        json.loads(c.proto.config)["toImageButtonOptions"]["format"] for c in at.get("plotly_chart")
    }
    assert fmts == {"svg"}
    buttons = [b for b in at.get("download_button") if "Export all" in b.proto.label]
    assert [b.proto.label for b in buttons] == [f"Export all {len(charts)} charts"]


def test_overlapping_aggregator_lines_stay_visible() -> None:
    from pages.training_common import probe_stat_figure

    fig = probe_stat_figure([{"step": s, **record(s)} for s in (0, 10)], "cosine")
    by_name = {t.name: t for t in fig.data}  # every cosine is 0.95: all four lines coincide
    styles = {(t.line.dash, t.line.width, t.marker.symbol) for t in by_name.values()}
    assert len(styles) == len(by_name) == 4
    order = [t.name for t in fig.data]  # later traces are drawn on top
    assert order.index("Dr. GRPO") < order.index("DAPO")
    assert order.index("Dr. GRPO") < order.index("VL Norm")
    assert by_name["Dr. GRPO"].line.width > max(by_name[n].line.width for n in ("DAPO", "VL Norm"))
