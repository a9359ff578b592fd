"""Hypotheses: ask a question, run it over several seeds in the background, read the verdict.

Widgets -> a question (vlsim.sweeps.questions) -> a SweepSpec (shown as runs before it starts)
-> vlsim.sweeps.launch (a `python -m vlsim sweep` process that queues the runs as jobs) -> a
live view that only reads the store and vlsim.sweeps.build_report: curves with bands, steps to a threshold with CIs, verdicts.
The settings and the sweep being watched live in the URL.
"""

from __future__ import annotations

import os
import secrets
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from pydantic import ValidationError

from pages.binder import Page
from pages.charts import COLORS, MICRO_BATCH_COLORS
from pages.common import ensure_app_navigation
from pages.export import ChartBook, chart_config
from pages.training_common import (
    METRIC_LABELS,
    data_dir,
    empty_figure,
    get_store,
    trace_length_widget,
)
from vlsim import sweeps as sw
from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE
from vlsim.stats import METHODS
from vlsim.sweeps.questions import (
    TEMPLATES,
    display_name,
    question_spec,
)
from vlsim.sweeps.questions import Question as HypothesisView

ensure_app_navigation()

PAGE = "hypotheses"
K = "hyp."


def _options(choices: list, key: str) -> list:
    """A multiselect's choices plus any value it holds already (a link may bring others)."""
    return sorted(set(choices) | set(st.session_state.get(key) or []))


def new_sweep_name(template: str) -> str:
    """A fresh, readable sweep name."""
    return f"hyp-{template}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


# ----------------------------------------------------------------------------- figures and tables


def condition_colors(conditions: list[str]) -> dict[str, str]:
    """Aggregator colours when each condition is one aggregator, else a palette."""
    if all(c in COLORS for c in conditions):
        return {c: COLORS[c] for c in conditions}
    return {c: MICRO_BATCH_COLORS[k % len(MICRO_BATCH_COLORS)] for k, c in enumerate(conditions)}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def bands_figure(
    bands: dict[str, pd.DataFrame], metric: str, threshold: float | None, level: float
) -> go.Figure:
    """Mean curve per condition with its t band, and the threshold as a dashed line."""
    title = f"{METRIC_LABELS.get(metric, metric)}: mean over seeds, {100 * level:g}% band"
    fig = go.Figure()
    colors = condition_colors(list(bands))
    for cond, df in bands.items():
        color = colors[cond]
        band = df.dropna(subset=["low", "high"])
        if len(band):
            xs = band["step"].tolist()
            fig.add_trace(
                go.Scatter(
                    x=xs + xs[::-1],
                    y=band["high"].tolist() + band["low"].tolist()[::-1],
                    fill="toself",
                    mode="lines",  # plotly's default adds markers to short traces
                    fillcolor=_rgba(color, 0.15),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=cond,
                    name=f"{sw.condition_display(cond)} band",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=df["step"],
                y=df["mean"],
                mode="lines+markers",
                name=sw.condition_display(cond),
                legendgroup=cond,
                line={"color": color, "width": 2},
                marker={"size": 5},
                customdata=df["n"],
                hovertemplate=f"{sw.condition_display(cond)}<br>step %{{x}}: %{{y:.3f}} (%{{customdata}} seeds)<extra></extra>",
            )
        )
    if not fig.data:
        return empty_figure(title, "no evaluations logged yet")
    if threshold is not None:
        fig.add_hline(
            y=threshold, line={"dash": "dash", "color": "#777"}, annotation_text="threshold"
        )
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        template="plotly_white",
        height=380,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0, "xanchor": "left"},
        xaxis_title="RL step",
    )
    return fig


@st.cache_data(max_entries=16, show_spinner=False)
def cached_report(path: str, spec_json: str, stamp: tuple) -> sw.SweepReport:
    """build_report, recomputed only when a run of the sweep logs or changes status."""
    return sw.build_report(get_store(), sw.SweepSpec.model_validate_json(spec_json))


def report_stamp(spec: sw.SweepSpec) -> tuple:
    """What changes when the sweep's runs progress: (id, status, last step) of each run."""
    store = get_store()
    return tuple(
        (r.id, r.status, store.last_step(r.id)) for r in store.list_runs(group_name=spec.group())
    )


# ----------------------------------------------------------------------------- state

st.title("Hypotheses")
st.markdown(
    "One run per aggregator cannot tell a real difference from luck: **seeds matter**. Pick a "
    "question, run every condition with several seeds in the background, and read the answer "
    "with confidence intervals. Same seed = same problems and the same warm-started policy, so "
    "conditions are compared seed by seed."
)

store = get_store()


def stored_sweep(view: HypothesisView) -> tuple[HypothesisView, list[str]]:
    """A link's sweep, if this data directory has it."""
    if view.sweep and sw.get_sweep(store, view.sweep) is None:
        notice = f"No sweep called {view.sweep[:60]!r} in this data directory."
        return view.model_copy(update={"sweep": ""}), [notice]
    return view, []


page = Page(PAGE)
hyp = page.bind(HypothesisView, K, HypothesisView.model_fields, check=stored_sweep)
page.open()

# ----------------------------------------------------------------------------- the question

st.subheader("The question")
template = hyp.widget(
    "template",
    radio=True,
    format_func=TEMPLATES.get,
    horizontal=True,
    help="A ready-made question, or your own grid over any training setting.",
)
aggs = list(AGGREGATORS)
c1, c2, c3, c4 = st.columns(4)
if template in ("ab", "alpha", "group_size", "max_len"):
    with c1:
        hyp.widget(
            "a",
            "A (baseline)" if template != "alpha" else "compare with",
            options=aggs,
            format_func=display_name,
            help="The condition the others are measured against.",
        )
if template in ("ab", "group_size", "max_len"):
    with c2:
        hyp.widget("b", "B", options=aggs, format_func=display_name, help="The challenger.")
if template == "alpha":
    with c2:
        hyp.widget(
            "alphas",
            "VL Norm α values",
            options=_options([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0], f"{K}alphas"),
            help="One condition per α (0 is Dr. GRPO's weighting, 1 the least variance).",
        )
elif template == "group_size":
    with c3:
        hyp.widget(
            "sizes",
            "G values",
            options=_options([2, 4, 8, 16, 32], f"{K}sizes"),
            help="Answers sampled per prompt.",
        )
elif template == "max_len":
    with c3:
        hyp.widget(
            "budgets",
            "M values",
            options=_options([16, 24, 32, 40, 48, 64, 96, 128], f"{K}budgets"),
            help="The answer budget: answers cut at M get reward 0.",
        )
if template == "grid":
    hyp.widget(
        "grid",
        "grid (YAML)",
        area=True,
        height=140,
        help="Any TrainConfig field: 'grid' (every combination) and/or 'variants' (a list), "
        "optionally 'base' and 'analysis'. Dotted keys reach nested fields, e.g. trace.length, "
        "task.n_numbers. With 'kind: lab' the runs are Length Lab evaluations.",
    )
if template != "alpha":
    with c4:
        hyp.widget(
            "alpha",
            "VL Norm α",
            slider=True,
            min_value=ALPHA_RANGE[0],
            max_value=ALPHA_RANGE[1],
            step=0.05,
            help="The α of VL Norm runs (weights ∝ L^-α).",
        )

with st.expander("Length setting: warm-start trace lengths", expanded=False):
    trace_length_widget(hyp, "length")

st.subheader("Seeds and budget")
c1, c2, c3, c4, c5 = st.columns(
    [1, 1, 1, 2, 1], vertical_alignment="bottom"
)  # the accuracy labels are long
with c1:
    hyp.widget("seeds", bounded=True, help="Runs per condition, seeds 0, 1, ...")
with c2:
    hyp.widget("steps", "RL steps", bounded=True, step=10,
               help="Steps per run (the quick preset's policy).")  # fmt: skip
with c3:
    hyp.widget("threshold", bounded=True, help="Steps to reach this accuracy are compared "
               "(runs that never do are censored).")  # fmt: skip
with c4:
    hyp.widget("metric", "accuracy", format_func=lambda m: METRIC_LABELS.get(m, m))
with c5:
    hyp.widget(
        "workers", "parallel runs", bounded=True,
        help=f"Worker processes training at once ({os.cpu_count()} cores here; one torch thread "
        "per core); the runs are packed into one job per worker, at most 8 runs each.",
    )  # fmt: skip

spec: sw.SweepSpec | None = None
view = hyp.value("These settings cannot be run:")
try:
    spec = question_spec(view) if view is not None else None
except sw.SweepError as err:
    view = None
    st.error(str(err), icon=":material/error:")

if spec is not None:
    plan = sw.expand(spec)
    n_cond = len({p.condition for p in plan})
    st.caption(
        f"{spec.question} — {n_cond} conditions × {len(spec.seeds)} seeds = {len(plan)} runs "
        + (f"of {view.steps} RL steps" if spec.kind == "train" else "(Length Lab evaluations)")
        + f", {view.workers} at a time."
    )
    with st.expander(f"The {len(plan)} runs, in the order they start"):
        st.dataframe(sw.plan_table(plan).drop(columns=["run", "status"]), hide_index=True)


def _launch() -> None:
    """Launch button: start the sweep in the background and watch it."""
    ss = st.session_state
    try:
        v = hyp.read()
        name = new_sweep_name(v.template)
        sw.launch(question_spec(v, name), get_store(), workers=v.workers)
    except (ValidationError, sw.SweepError) as err:
        ss["_hyp_error"] = hyp.errors(err) if isinstance(err, ValidationError) else str(err)
        return
    ss[f"{K}sweep"] = name
    ss["_hyp_error"] = None


st.button(
    "Launch sweep",
    type="primary",
    icon=":material/rocket_launch:",
    disabled=spec is None,
    on_click=_launch,
    help="Runs train in a background process; you can leave this page and come back.",
)
if st.session_state.get("_hyp_error"):
    st.error(st.session_state["_hyp_error"])

# ----------------------------------------------------------------------------- watch and read

st.divider()
records = sw.list_sweeps(store)
names = [r.name for r in records]
current = st.session_state[f"{K}sweep"]
if current and current not in names:
    st.session_state[f"{K}sweep"] = current = ""
if not current and names and not st.session_state.get("_hyp_shown_once"):
    st.session_state[f"{K}sweep"] = current = names[0]  # first visit: the newest stored sweep
st.session_state["_hyp_shown_once"] = True
hyp.widget(
    "sweep",
    options=["", *names],
    format_func=lambda n: n or "(none: launch one, or pick a stored sweep)",
    help="The sweep whose runs and results are shown; the link (?sweep=...) brings you back.",
)
hyp.value()  # the URL keeps the last good settings
page.write()


def watch(name: str) -> None:
    """Progress, stop/continue, curves with bands, the table and the verdicts of one sweep."""
    sw.reap()
    store = get_store()
    record = sw.get_sweep(store, name)
    if record is None:
        st.warning(f"The sweep {name!r} is gone.")
        return
    spec = record.spec
    report = cached_report(data_dir(), spec.model_dump_json(), report_stamp(spec))
    total = len(report.plan)
    done = int((report.plan["status"] == "finished").sum())
    failed = int((report.plan["status"] == "failed").sum())
    running = int((report.plan["status"] == "running").sum())
    active = record.active
    st.markdown(f"**{spec.question or spec.name}**")
    state = "running" if active else ("done" if done == total else "not running")
    text = f"{done}/{total} runs finished · {running} running · {state}"
    if failed:
        text += f" · {failed} failed"
    st.progress(done / total if total else 0.0, text=text)
    c1, c2, _ = st.columns([1, 1, 4])
    with c1:
        if active and st.button(
            "Stop", icon=":material/stop:", help="Running runs stop after their step."
        ):
            sw.stop(store, name)
            st.rerun()
    with c2:
        if (
            not active
            and done < total
            and st.button(
                "Continue",
                icon=":material/replay:",
                help="Run what is not finished (finished runs are kept).",
            )
        ):
            sw.launch(spec, store, workers=st.session_state[f"{K}workers"])
            st.rerun()
    if not active and record.status in ("starting", "running"):
        st.caption(
            "The sweep's process ended before its runs did; Continue picks up where it stopped."
        )

    level = spec.analysis.level
    threshold = spec.analysis.threshold if spec.kind == "train" else None
    fig = bands_figure(report.bands(), report.metric, threshold, level)
    fmt = st.session_state.get(f"{PAGE}.export_format", "png")
    st.plotly_chart(
        fig,
        width="stretch",
        key=f"{K}bands",
        config=chart_config(f"{spec.name} {fig.layout.title.text or 'bands'}", fmt),
    )
    st.markdown(f"**Per condition** ({100 * level:g}% CIs: {METHODS})")
    st.dataframe(sw.summary_text(report), hide_index=True, width="stretch", key=f"{K}summary")
    if threshold is not None:
        st.caption(
            "Steps to the threshold: a run that never reaches it counts with the whole horizon "
            "(censored, never dropped), so the mean is a lower bound and the speed-up is the "
            "ratio of these means (2x = twice as fast). A median '>N' means most runs did not "
            "reach it within N steps."
        )
    st.markdown("**Verdicts**")
    if not report.verdicts:
        st.caption("One condition only: nothing to compare.")
    for verdict in report.verdicts:
        box = st.success if verdict.conclusive else st.info
        box(verdict.text, icon=":material/gavel:" if verdict.conclusive else ":material/help:")
        for note in verdict.notes:
            st.caption(note)
    if len(report.probes):
        st.markdown("**Gradient probes across seeds** (variance and CV per aggregator, mean [CI])")
        st.dataframe(pd.DataFrame(sw.probe_rows(report.probes)), hide_index=True, width="stretch")
        for sentence in sw.slope_sentences(report.probes):
            st.caption(sentence[0].upper() + sentence[1:])
    for note in report.notes:
        st.caption(note)
    with st.expander("Runs of this sweep"):
        st.dataframe(report.plan, hide_index=True, width="stretch")
        st.caption(
            f"They are in the store as group {spec.group()!r} (see the Runs page); "
            f"`python -m vlsim sweep report {spec.name}` prints this report."
        )
    if not active and st.session_state.get("_hyp_was_active"):
        st.session_state["_hyp_was_active"] = False
        st.rerun()  # the sweep ended: redraw once without the timer
    st.session_state["_hyp_was_active"] = active


with st.sidebar:
    # one chart, redrawn by a fragment while a sweep runs: its camera button is the export (an
    # "export all" file prepared in a fragment that redraws every three seconds could be replaced
    # while a user clicks it)
    ChartBook(PAGE, "Hypotheses").format_picker()

name = st.session_state[f"{K}sweep"]
if name:
    record = sw.get_sweep(store, name)
    ticking = record is not None and record.active
    st.fragment(watch, run_every=3 if ticking else None)(name)
else:
    st.info(
        "Launch a sweep above, or pick a stored one. With the defaults, 2 conditions × 5 seeds "
        "of 200 steps (the quick preset, which gains about 4-5 points in them) take about five "
        "minutes on a 2-core CPU.",
        icon=":material/info:",
    )
