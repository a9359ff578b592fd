"""Probes: what every aggregator would do with the same per-answer gradients of a real policy.

Reads probe records (vlsim.probes.probe_policy, stored during training) and draws them:
per-aggregator variance, CV and calibrated direction bias, the paper's Figure 4 and its
advantage-free version (noise against length, log-log, with fitted slopes and intervals) and the
token contributions by entropy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.binder import Page
from pages.common import ensure_app_navigation, fmt
from pages.export import ChartBook
from pages.training_common import (
    RunStep,
    entropy_figure,
    get_store,
    probe_stat_figure,
    run_label,
    scatter_figure,
)
from vlsim.aggregators import AGGREGATORS
from vlsim.analysis import probe_series
from vlsim.jobs import probe_counts

ensure_app_navigation()

PAGE = "probes"
K = "probes."
SLOPES = {
    "length_noise_free": ("advantage-free slope (score gradient s_i)", "#1f77b4"),
    "length_noise": ("paper's slope (g_i = A_i s_i)", "#444444"),
}


def display(name: str) -> str:
    """An aggregator's display name (the stored name if it is unknown)."""
    return AGGREGATORS[name].display_name if name in AGGREGATORS else name


def number(value: Any) -> float:
    """A float, NaN for anything that is not a finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def readable_log_axis(fig: go.Figure, axis: str = "y") -> go.Figure:
    """Tick labels on a log axis that never run together: one per decade, or three values."""
    found = [getattr(trace, axis, None) for trace in fig.data]
    values = np.array([number(v) for vs in found if vs is not None for v in vs], dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return fig
    lo, hi = float(values.min()), float(values.max())
    if hi / lo >= 10:  # one tick per decade, written 10^k
        update = {"type": "log", "tickmode": "linear", "tick0": 0, "dtick": 1,
                  "exponentformat": "power", "showexponent": "all"}  # fmt: skip
    else:  # less than a decade: three round values
        ticks = np.geomspace(lo, hi, 3) if hi > lo else np.array([lo])
        update = {"type": "log", "tickmode": "array", "tickvals": list(ticks),
                  "ticktext": [fmt(float(t), 2) for t in ticks]}  # fmt: skip
    return fig.update_yaxes(**update) if axis == "y" else fig.update_xaxes(**update)


def relative(value: float) -> str:
    """A relative bias for a table: three digits, 0 for rounding noise below 0.0005."""
    return "0" if abs(value) < 5e-4 else f"{value:.2g}"


def slope_sentence(fit: Mapping[str, Any] | None, what: str) -> str:
    """One sentence with a slope, its interval and what it is fitted to (or why it is missing)."""
    if not isinstance(fit, Mapping) or not math.isfinite(number(fit.get("slope"))):
        return f"**{what}**: not available in this record."
    lo, hi = number(fit.get("ci_low")), number(fit.get("ci_high"))
    ci = f" (95% CI {lo:.2f} to {hi:.2f})" if math.isfinite(lo) and math.isfinite(hi) else ""
    used = f" from {fit.get('n')} answers of {fit.get('prompts')} prompts" if fit.get("n") else ""
    return f"**{what}**: {number(fit['slope']):.2f}{ci}{used}."


def slopes_over_steps(probes: list[dict[str, Any]]) -> go.Figure:
    """Both slopes over training, each with its interval as a band."""
    fig = go.Figure()
    for key, (label, color) in SLOPES.items():
        slope = probe_series(probes, key, "slope")
        if not len(slope):
            continue
        low = probe_series(probes, key, "ci_low")
        high = probe_series(probes, key, "ci_high")
        if len(low) and len(high):
            band = low.merge(high, on="step", suffixes=("_lo", "_hi")).sort_values("step")
            r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
            fig.add_trace(
                go.Scatter(
                    x=list(band["step"]) + list(band["step"])[::-1],
                    y=list(band["value_hi"]) + list(band["value_lo"])[::-1],
                    mode="lines",  # plotly's default adds markers to short traces
                    fill="toself",
                    fillcolor=f"rgba({r},{g},{b},0.15)",
                    line={"width": 0},
                    name=f"95% CI, {label.split(' (')[0]}",
                    hoverinfo="skip",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=slope["step"], y=slope["value"], mode="lines+markers", name=label,
                line={"color": color},
            )
        )  # fmt: skip
    fig.add_hline(y=1.0, line_dash="dot", line_color="#888", annotation_text="slope 1")
    fig.update_layout(
        title={"text": "fitted slopes over training", "x": 0.01, "font": {"size": 15}},
        template="plotly_white",
        height=400,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.25},
        xaxis_title="RL step",
    )
    return fig


def aggregator_rows(aggs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One table row per aggregator, with display names and the calibrated bias's interval."""
    rows = []
    for name, stats in aggs.items():
        s = stats if isinstance(stats, Mapping) else {}
        bias, lo, hi = (number(s.get(k)) for k in ("relative_bias_calibrated",
                                                   "relative_bias_ci_low",
                                                   "relative_bias_ci_high"))  # fmt: skip
        if math.isfinite(lo) and math.isfinite(hi):
            interval = f"{relative(lo)} to {relative(hi)}"
            verdict = "tilted" if lo > 0 else "no tilt beyond answer noise"
        else:
            interval, verdict = "n/a", "not measured in this record"
        rows.append(
            {
                "aggregator": display(str(name)),
                "variance per unit scale": number(s.get("variance")),
                "variance relative to Dr. GRPO": number(s.get("relative_variance")),
                "CV": number(s.get("cv")),
                "calibrated relative bias": round(bias, 3) + 0.0 if math.isfinite(bias) else bias,
                "95% interval": interval,
                "direction": verdict,
                "raw cosine (includes noise)": number(s.get("cosine")),
            }
        )
    return rows


st.title("Gradient probes")
book = ChartBook(PAGE, "Gradient probes")
st.markdown(
    "During a run with probes on, the trainer pauses every few steps, draws R answers for a few "
    "fixed prompts and computes **every answer's own policy gradient** $g_i = A_i s_i$, where "
    "$s_i = \\nabla \\sum_t \\log\\pi(o_{i,t})$ is its score gradient. Each aggregator is then "
    "applied to the *same* gradients (groups of G resampled from the R answers), so their "
    "noise and bias are compared on one real policy rather than a model of it."
)

store = get_store()
counts = probe_counts(store)
runs = [r for r in store.list_runs() if r.id in counts]


def has_probes(view: RunStep) -> tuple[RunStep, list[str]]:
    """A link's run, if it has probe records here."""
    if view.run and view.run not in counts:
        notice = f"run {view.run} has no probe records in this store; showing the newest."
        return view.model_copy(update={"run": 0}), [notice]
    return view, []


page = Page(PAGE)
shown = page.bind(RunStep, K, RunStep.model_fields, check=has_probes)
page.open()

if not runs:
    st.info(
        "No run has probe records yet. In the **Training Arena**, keep *probe every aggregator* "
        "on and start a run; the first probe arrives with its first RL step.",
        icon=":material/info:",
    )
    st.stop()

ids = [r.id for r in runs]
by_id = {r.id: r for r in runs}
run_id = shown.widget(
    "run",
    options=ids,
    format_func=lambda i: f"{run_label(by_id[i])} · {counts[i]} probes · {by_id[i].status}",
    help="Runs that recorded gradient probes, newest first.",
)
probes = store.probes(run_id)
steps = [p.get("step") for p in probes]

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
    r"\frac{\mathbb{E}\lVert \hat g - \mathbb{E}\hat g\rVert^2}{(\mathbb{E}\textstyle\sum_i x_i)^2}"
    r",\qquad \mathrm{CV} = \frac{\sqrt{\text{variance}}}{\lVert \nabla J\rVert}"
)
st.markdown(
    "Variance is per unit scale, so a smaller step is not mistaken for less noise, and it is "
    "the variance of *fresh* groups of G (resampling G of the R probed answers alone would "
    "understate it by (R − G)/R). The reference $\\nabla J$ is the mean of all probed answers' "
    "gradients. [What is the variance?](/definitions#variance)"
)
c1, c2 = st.columns(2)
with c1:
    fig = readable_log_axis(probe_stat_figure(probes, "variance", log_y=True))
    book.show(fig, key=f"{K}variance")
with c2:
    book.show(probe_stat_figure(probes, "cv"), key=f"{K}cv")
c1, c2 = st.columns(2)
with c1:
    book.show(probe_stat_figure(probes, "cosine"), key=f"{K}cosine")
    st.caption(
        "The raw cosine is below 1 even for an unbiased aggregator: the reference and the "
        "aggregated update are both estimated from the same noisy answers. The table below "
        "gives the calibrated bias, with that noise taken out. "
        "[What is direction bias?](/definitions#direction-bias)"
    )
with c2:
    fig = probe_stat_figure(probes, "relative_variance", log_y=True)
    book.show(readable_log_axis(fig), key=f"{K}relvar")

# ----------------------------------------------------------------------------- one probe

st.header("Noise against length (the paper's Figure 4)")
shown.widget(
    "step",
    "probe step",
    options=steps,
    fallback=steps[-1],
    slider=True,
    help="Which probe record the scatters, the entropy bins and the table show.",
)
record = next(p for p in probes if p.get("step") == st.session_state[f"{K}step"])
free, paper = record.get("length_noise_free"), record.get("length_noise")
st.markdown(
    "Each dot is one answer: its squared distance from the mean of the *other* answers to its "
    "prompt, against its length; the fit estimates β in Var ∝ L^β with an intercept per prompt "
    "and an interval from resampling prompts. "
    "[How is the slope defined?](/definitions#slope)\n\n"
    f"- {slope_sentence(free, 'Advantage-free slope')} It measures how the noise of the score "
    "gradient $s_i$ grows with length: the honest Var(g_i) ∝ L^β that VL Norm's α should match.\n"
    f"- {slope_sentence(paper, 'Paper’s slope')} Deviations of $g_i = A_i s_i$, as the paper "
    "plots them: when correctness depends on length, $A_i^2$ changes with length too and this "
    "slope mixes that in."
)
c1, c2 = st.columns(2)
with c1:
    fig, text = scatter_figure(record)
    fig = readable_log_axis(readable_log_axis(fig, "x"))
    book.show(fig, key=f"{K}scatter")
    st.caption("The paper's version: g_i includes the advantage A_i. " + text)
with c2:
    if isinstance(free, Mapping):
        fig, text = scatter_figure({"length_noise": free})
        fig.update_layout(title_text="advantage-free: ‖s_i − s̄‖² vs length L_i")
        fig = readable_log_axis(readable_log_axis(fig, "x"))
        book.show(fig, key=f"{K}scatter_free")
        st.caption("The advantage-free version: every answer, A_i = 0 ones included. " + text)
    else:
        st.caption("This record was made before the advantage-free slope was measured.")
book.show(slopes_over_steps(probes), key=f"{K}slope")

st.header("Where the noise comes from: tokens by entropy")
st.markdown(
    "A token the policy predicts with probability near 1 has a score "
    "$\\nabla\\log\\pi$ near 0, so it adds length without adding noise. The bars give each "
    "entropy bin's share of $\\sum A_i^2\\lVert\\nabla\\log\\pi\\rVert$ over all probed tokens; "
    "the line, the mean score norm of a token in that bin."
)
book.show(entropy_figure(record), key=f"{K}entropy")
tokens = record.get("tokens") if isinstance(record.get("tokens"), dict) else {}
if tokens:
    st.caption(
        f"{tokens.get('n', '?')} answer tokens; mean entropy {fmt(tokens.get('entropy_mean'))} "
        f"nats, mean score norm {fmt(tokens.get('score_mean'))}."
    )

aggs = record.get("aggregators")
if isinstance(aggs, dict) and aggs:
    st.subheader(f"All aggregators at step {record.get('step')}")
    st.dataframe(pd.DataFrame(aggregator_rows(aggs)), hide_index=True, width="stretch")
    st.caption(
        "Calibrated relative bias: |E ĝ / E Σx − reference| / |reference| with the part answer "
        "noise alone would give subtracted (signed square root, so it can be negative), and a "
        "95% interval from resampling prompts. An interval that contains 0 means no tilt is "
        "distinguishable from noise with these answers; it does not prove there is none. "
        "[Direction bias](/definitions#direction-bias) · [variance](/definitions#variance)"
    )
else:
    st.caption("This probe record has no per-aggregator statistics.")


with st.sidebar:
    st.subheader("Charts for slides")
    book.format_picker()
    book.download_all()

shown.value()
page.write()
