"""Probes: what every aggregator would do with the same per-answer gradients of a real policy.

Reads probe records (vlsim.probes.probe_policy, stored during training) and draws them:
per-aggregator variance, CV and cosine over steps, the paper's Figure 4 (deviation against
length, log-log, with its fitted slope) and the token contributions by entropy.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from pydantic import BaseModel, ConfigDict, Field

from pages.common import (
    ensure_app_navigation,
    fmt,
    new_url_params,
    seed_widgets,
    show_notices,
    write_url,
)
from pages.training_common import (
    PROBE_LABELS,
    entropy_figure,
    get_store,
    probe_stat_figure,
    run_label,
    scatter_figure,
)
from vlsim.aggregators import AGGREGATORS
from vlsim.analysis import probe_series
from vlsim.jobs import probe_counts
from vlsim.scenario import from_query, to_query

ensure_app_navigation()

PAGE = "probes"
K = "probes."


class ProbesView(BaseModel):
    """The Probes page's settings, as they appear in the URL."""

    model_config = ConfigDict(extra="forbid")

    run: int = Field(0, ge=0, description="Run whose probes are shown (0: the newest).")
    step: int = Field(-1, ge=-1, description="Probe step of the scatter (-1: the latest).")


DEFAULTS = ProbesView()

st.title("Gradient probes")
st.markdown(
    "During a run with probes on, the trainer pauses every few steps, draws R answers for a few "
    "fixed prompts and computes **every answer's own policy gradient** $g_i$. Each aggregator is "
    "then applied to the *same* gradients (groups of G resampled from the R answers), so their "
    "noise and bias are compared on one real policy rather than a model of it."
)

store = get_store()
counts = probe_counts(store)
runs = [r for r in store.list_runs() if r.id in counts]

url = new_url_params(PAGE)
if url is not None:
    view, notices = from_query(ProbesView, url)
    if view.run and view.run not in counts:
        notices.append(f"run {view.run} has no probe records in this store; showing the newest.")
        view = view.model_copy(update={"run": 0})
    seed_widgets({f"{K}run": view.run, f"{K}step": view.step}, force=True)
    show_notices(notices)
seed_widgets({f"{K}run": 0, f"{K}step": -1})

if not runs:
    st.info(
        "No run has probe records yet. In the **Training Arena**, keep *probe every aggregator* "
        "on and start a run; the first probe arrives with its first RL step.",
        icon=":material/info:",
    )
    st.stop()

ids = [r.id for r in runs]
by_id = {r.id: r for r in runs}
if st.session_state[f"{K}run"] not in ids:
    st.session_state[f"{K}run"] = ids[0]
run_id = st.selectbox(
    "run",
    ids,
    key=f"{K}run",
    format_func=lambda i: f"{run_label(by_id[i])} · {counts[i]} probes · {by_id[i].status}",
    help="Runs that recorded gradient probes, newest first.",
)
probes = store.probes(run_id)
steps = [p.get("step") for p in probes]
if st.session_state[f"{K}step"] not in steps:
    st.session_state[f"{K}step"] = steps[-1]

meta = probes[-1].get("meta") if isinstance(probes[-1].get("meta"), dict) else {}
if meta:
    st.caption(
        f"Probed block: {meta.get('block', '?')} ({meta.get('params', '?')} parameters"
        + (f", projected to {meta['projection_dim']}" if meta.get("projection_dim") else "")
        + f"); {meta.get('prompts', '?')} prompts × R = {meta.get('rollouts', '?')} answers, "
        f"groups of G = {meta.get('group_size', '?')} resampled {meta.get('resamples', '?')} "
        f"times; M = {meta.get('max_len', '?')}, VL Norm α = {meta.get('alpha', '?')} "
        f"({meta.get('scope', '?')} scope)."
    )
else:
    st.caption("These probe records carry no description of how they were made (no 'meta').")

# ----------------------------------------------------------------------------- over steps

st.header("Every aggregator on the same gradients")
st.latex(
    r"\hat g = \sum_i x_i\, g_i,\qquad \text{variance} = "
    r"\frac{\mathbb{E}\lVert \hat g - \mathbb{E}\hat g\rVert^2}{(M\,\mathbb{E}\textstyle\sum_i x_i)^2}"
    r",\qquad \mathrm{CV} = \frac{\sqrt{\text{variance}}}{\lVert \nabla J\rVert}"
)
st.markdown(
    "Variance is per unit scale, so a smaller step is not mistaken for less noise. The "
    "reference $\\nabla J$ is the plain mean of all probed answers' gradients; the cosine "
    "measures how far an aggregator's expected update tilts away from it (direction bias)."
)
c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(
        probe_stat_figure(probes, "variance", log_y=True), width="stretch", key=f"{K}variance"
    )
with c2:
    st.plotly_chart(probe_stat_figure(probes, "cv"), width="stretch", key=f"{K}cv")
c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(probe_stat_figure(probes, "cosine"), width="stretch", key=f"{K}cosine")
with c2:
    st.plotly_chart(
        probe_stat_figure(probes, "relative_variance", log_y=True),
        width="stretch",
        key=f"{K}relvar",
    )

# ----------------------------------------------------------------------------- one probe

st.header("Noise against length (the paper's Figure 4)")
st.markdown(
    "Each dot is one answer: its squared distance from its prompt's mean gradient against its "
    "length. If token terms were independent with equal variance, "
    "$\\mathbb{E}\\lVert g_i - \\bar g\\rVert^2 \\propto L_i$ and the log-log slope is 1; "
    "VL Norm's $\\alpha$ is best set to that slope."
)
st.select_slider(
    "probe step",
    options=steps,
    key=f"{K}step",
    help="Which probe record the scatter, the entropy bins and the table show.",
)
record = next(p for p in probes if p.get("step") == st.session_state[f"{K}step"])
c1, c2 = st.columns([3, 2])
with c1:
    fig, text = scatter_figure(record)
    st.plotly_chart(fig, width="stretch", key=f"{K}scatter")
    st.markdown(text)
with c2:
    slopes = probe_series(probes, "length_noise", "slope")
    lows = probe_series(probes, "length_noise", "ci_low")
    highs = probe_series(probes, "length_noise", "ci_high")
    fig = go.Figure()
    if len(lows) and len(highs):
        band = lows.merge(highs, on="step", suffixes=("_lo", "_hi")).sort_values("step")
        fig.add_trace(
            go.Scatter(
                x=list(band["step"]) + list(band["step"])[::-1],
                y=list(band["value_hi"]) + list(band["value_lo"])[::-1],
                mode="lines",  # plotly's default adds markers to short traces
                fill="toself",
                fillcolor="rgba(0,0,0,0.1)",
                line={"width": 0},
                name="95% CI",
                hoverinfo="skip",
            )
        )
    if len(slopes):
        fig.add_trace(
            go.Scatter(
                x=slopes["step"], y=slopes["value"], mode="lines+markers", name="slope",
                line={"color": "black"},
            )
        )  # fmt: skip
    fig.add_hline(y=1.0, line_dash="dot", line_color="#888", annotation_text="slope 1")
    fig.update_layout(
        title={"text": "fitted slope over training", "x": 0.01, "font": {"size": 15}},
        template="plotly_white",
        height=400,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
        xaxis_title="RL step",
    )
    st.plotly_chart(fig, width="stretch", key=f"{K}slope")

st.header("Where the noise comes from: tokens by entropy")
st.markdown(
    "A token the policy predicts with probability near 1 has a score "
    "$\\nabla\\log\\pi$ near 0, so it adds length without adding noise. The bars give each "
    "entropy bin's share of $\\sum A_i^2\\lVert\\nabla\\log\\pi\\rVert$ over all probed tokens; "
    "the line, the mean score norm of a token in that bin."
)
st.plotly_chart(entropy_figure(record), width="stretch", key=f"{K}entropy")
tokens = record.get("tokens") if isinstance(record.get("tokens"), dict) else {}
if tokens:
    st.caption(
        f"{tokens.get('n', '?')} answer tokens; mean entropy {fmt(tokens.get('entropy_mean'))} "
        f"nats, mean score norm {fmt(tokens.get('score_mean'))}."
    )

aggs = record.get("aggregators")
if isinstance(aggs, dict) and aggs:
    rows = []
    for name, stats in aggs.items():
        stats = stats if isinstance(stats, dict) else {}
        rows.append(
            {
                "aggregator": AGGREGATORS[name].display_name if name in AGGREGATORS else name,
                **{PROBE_LABELS.get(k, k): stats.get(k) for k in PROBE_LABELS},
            }
        )
    with st.expander(f"All numbers at step {record.get('step')}"):
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
else:
    st.caption("This probe record has no per-aggregator statistics.")

write_url(PAGE, to_query(ProbesView(run=run_id, step=st.session_state[f"{K}step"]), DEFAULTS))
