"""Runs: every stored run; overlay curves, steps to a threshold, export, delete, stop/resume.

Reads the store (vlsim.store), measures with vlsim.analysis (one run) and vlsim.stats (speed-ups)
and acts through the shared JobManager. The selection and the chart settings live in the URL.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

import pandas as pd
import streamlit as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from streamlit.errors import StreamlitAPIException

from pages.binder import Page
from pages.common import ensure_app_navigation, show_notices
from pages.export import ChartBook
from pages.reference_offer import reference_runs_button, show_loaded_message
from pages.training_common import (
    METRIC_LABELS,
    aggregator_label,
    aggregator_of,
    curves_figure,
    empty_figure,
    get_manager,
    get_store,
    run_colors,
    run_label,
    run_metrics,
)
from vlsim.analysis import format_seconds, metric_range, observed_lengths, reachable_threshold
from vlsim.stats import run_speedups
from vlsim.store import STATUSES, RunInfo

ensure_app_navigation()

PAGE = "runs"
K = "runs."
DEFAULT_METRIC = "eval/mean_at_k"
MAX_DEFAULT_SELECTION = 6
LENGTH_LAB = "pages/length_lab.py"


class RunsView(BaseModel):
    """The Runs page's settings, as they appear in the URL."""

    model_config = ConfigDict(extra="forbid")

    runs: list[int] = Field(default_factory=list, description="Selected run ids.")
    status: list[str] = Field(default_factory=list, description="Show only these statuses.")
    name: str = Field("", max_length=200, description="Show only runs whose name contains this.")
    metric: str = Field(DEFAULT_METRIC, max_length=100, description="Metric of the overlay.")
    smoothing: float = Field(0.6, ge=0.0, le=0.95, description="EMA weight of the overlay.")
    x: Literal["step", "time/elapsed"] = Field("step", description="x axis of the overlay.")
    tmetric: str = Field(DEFAULT_METRIC, max_length=100, description="Metric of the threshold.")
    threshold: float = Field(
        0.3, description="Threshold the metric must reach (without a link: one the runs reach)."
    )
    baseline: int = Field(0, ge=0, description="Run id the speed-ups are relative to.")

    @field_validator("status")
    @classmethod
    def _statuses(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if v not in STATUSES]
        if bad:
            raise ValueError(
                f"unknown status(es) {', '.join(bad)}; choose from {', '.join(STATUSES)}"
            )
        return values

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("threshold must be a finite number")
        return value


DEFAULTS = RunsView()


def table_rows(infos: list[RunInfo]) -> pd.DataFrame:
    store = get_store()
    rows = []
    for info in infos:
        last = store.last_step(info.id)
        done = 0 if last is None or last < 0 else last + 1
        steps = f"{done}/{info.total_steps}" if info.total_steps else f"{done}"
        if done == 0 and info.status in ("stopped", "failed"):
            steps = f"{info.status} before RL"
        rows.append(
            {
                "id": info.id,
                "name": info.name,
                "aggregator": aggregator_label(info),
                "status": info.status,
                "steps": steps,
                "group": info.group_name or "",
                "created": dt.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M"),
                "error": (info.error or "").strip().splitlines()[0][:120] if info.error else "",
            }
        )
    return pd.DataFrame(rows)


def numeric_metrics(frames: list[pd.DataFrame]) -> list[str]:
    """Metric columns with numbers in any of the frames; the usual ones first."""
    found: dict[str, None] = {}
    for df in frames:
        for col in df.columns:
            if col in ("step", "time") or col.startswith("dist/"):
                continue
            if pd.to_numeric(df[col], errors="coerce").notna().any():
                found[col] = None
    first = [m for m in METRIC_LABELS if m in found]
    return first + sorted(m for m in found if m not in METRIC_LABELS)


def trained_or_training(info: RunInfo) -> bool:
    """False for a run that ended (stopped or failed) before its first RL step."""
    if info.status in ("queued", "running"):
        return True
    last = get_store().last_step(info.id)
    return last is not None and last >= 0


# ----------------------------------------------------------------------------- state

st.title("Runs")
book = ChartBook(PAGE, "Runs")
st.markdown(
    "Every training run in the store: compare their curves, measure how fast each reaches a "
    "threshold (the paper's “× faster convergence”), export, stop, resume or delete them."
)

store = get_store()
all_runs = store.list_runs()
by_id = {r.id: r for r in all_runs}


def in_this_store(view: RunsView) -> tuple[RunsView, list[str]]:
    """A link's selection without the runs this store does not hold."""
    missing = [i for i in view.runs if i not in by_id]
    if not missing:
        return view, []
    notice = (
        f"Run(s) {', '.join(map(str, missing[:10]))} from the link are not in this store; "
        "they are left out."
    )
    return view.model_copy(update={"runs": [i for i in view.runs if i in by_id]}), [notice]


page = Page(PAGE)
settings = page.bind(RunsView, K, RunsView.model_fields, check=in_this_store)
linked = page.open()
# a link's threshold differs from the default (links hold only the settings that do)
linked_threshold = linked and settings.good.threshold != DEFAULTS.threshold
if not st.session_state.get(f"{K}runs") and not st.session_state.get("_runs_seeded"):
    trained = [r for r in all_runs if trained_or_training(r)]
    newest_group = next((r.group_name for r in trained if r.group_name), None)
    pick = [r.id for r in trained if newest_group and r.group_name == newest_group]
    st.session_state[f"{K}runs"] = (pick or [r.id for r in trained])[:MAX_DEFAULT_SELECTION]
st.session_state["_runs_seeded"] = True
st.session_state[f"{K}runs"] = [i for i in st.session_state[f"{K}runs"] if i in by_id]

show_loaded_message()
if not all_runs:
    st.info(
        "No runs yet. Start some in the **Training Arena** (or with `python -m vlsim train`), "
        "import an archive with `python -m vlsim runs import FILE`, or load the reference runs.",
        icon=":material/info:",
    )
    # loaded: the page picks its default selection again, among the new runs (the key is
    # outside K: a button's value must not be remembered with the settings, see Page.write)
    reference_runs_button(
        f"_{K}load_reference", lambda _: st.session_state.pop("_runs_seeded", None)
    )
    st.stop()

# ----------------------------------------------------------------------------- table

c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
with c1:
    st.multiselect(
        "status",
        list(STATUSES),
        key=f"{K}status",
        help="Show only runs with these statuses (none chosen: all).",
    )
with c2:
    st.text_input(
        "name contains", key=f"{K}name", help="Show only runs whose name contains this text."
    )
with c3:
    st.button(
        "Refresh",
        icon=":material/refresh:",
        help="Read the store again (statuses and curves of running runs).",
    )

status_filter = st.session_state[f"{K}status"]
name_filter = st.session_state[f"{K}name"].strip().lower()
shown = [
    r
    for r in all_runs
    if (not status_filter or r.status in status_filter)
    and (
        not name_filter
        or name_filter in r.name.lower()
        or name_filter in (r.group_name or "").lower()
    )
]
st.dataframe(table_rows(shown), hide_index=True, height=min(400, 38 + 35 * len(shown)))

options = list(dict.fromkeys([r.id for r in shown] + st.session_state[f"{K}runs"]))
st.multiselect(
    "runs to compare",
    options,
    key=f"{K}runs",
    format_func=lambda i: f"{run_label(by_id[i])} ({by_id[i].status})",
    help="The runs drawn in the overlay and measured in the threshold table.",
)
selected = [by_id[i] for i in st.session_state[f"{K}runs"]]

# ----------------------------------------------------------------------------- overlay

frames = [(info, run_metrics(info)) for info in selected]
colors = run_colors(selected)
metrics = numeric_metrics([df for _, df in frames]) or [DEFAULT_METRIC]
for key in (f"{K}metric", f"{K}tmetric"):
    if st.session_state[key] not in metrics:
        if linked and st.session_state[key] != DEFAULT_METRIC and selected:
            show_notices([f"metric {st.session_state[key][:40]!r} is not logged by these runs"])
        st.session_state[key] = DEFAULT_METRIC if DEFAULT_METRIC in metrics else metrics[0]

st.subheader("Curves")
c1, c2, c3 = st.columns([2, 2, 1])
with c1:
    st.selectbox(
        "metric",
        metrics,
        key=f"{K}metric",
        format_func=lambda m: METRIC_LABELS.get(m, m),
        help="Which logged metric to overlay.",
    )
with c2:
    st.slider(
        "smoothing",
        0.0,
        0.95,
        step=0.05,
        key=f"{K}smoothing",
        help="Exponential moving average with TensorBoard's debiasing (0 = raw values).",
    )
with c3:
    st.radio(
        "x axis",
        ["step", "time/elapsed"],
        key=f"{K}x",
        format_func=lambda v: "RL step" if v == "step" else "seconds",
        help="Compare per update or per second of training.",
    )
metric = st.session_state[f"{K}metric"]
if selected:
    book.show(
        curves_figure(
            frames,
            metric,
            smoothing=st.session_state[f"{K}smoothing"],
            colors=colors,
            x=st.session_state[f"{K}x"],
        ),
        key=f"{K}overlay",
    )
else:
    book.show(empty_figure("curves", "select runs to compare"), key=f"{K}overlay")

# ----------------------------------------------------------------------------- threshold

st.subheader("Steps to a threshold")
c1, c2, c3 = st.columns(3)
with c1:
    st.selectbox(
        "metric to reach",
        metrics,
        key=f"{K}tmetric",
        format_func=lambda m: METRIC_LABELS.get(m, m),
        help="The metric that must reach the threshold (held-out accuracy by default).",
    )
with c2:
    tmetric = st.session_state[f"{K}tmetric"]
    ranges = [r for r in (metric_range(df, tmetric) for _, df in frames) if r is not None]
    auto, auto_note = reachable_threshold(ranges)
    if linked_threshold:
        st.session_state["_runs_auto_threshold"] = None  # the link chose it
    last_auto = st.session_state.get("_runs_auto_threshold", math.nan)
    if last_auto is not None and auto is not None:
        if math.isnan(last_auto) or st.session_state[f"{K}threshold"] == last_auto:
            st.session_state[f"{K}threshold"] = auto
            st.session_state["_runs_auto_threshold"] = auto
        else:  # changed by hand: keep it
            st.session_state["_runs_auto_threshold"] = None
    st.number_input(
        "threshold",
        key=f"{K}threshold",
        format="%g",
        step=0.05,
        help="First logged value at or above this counts as reached. Until you change it, it "
        "follows the selected runs: a value above every run's start that each of them reaches.",
    )
with c3:
    base_ids = [i.id for i in selected]
    if st.session_state[f"{K}baseline"] not in base_ids:
        grpo = [i.id for i in selected if aggregator_of(i) == "grpo"]
        st.session_state[f"{K}baseline"] = (grpo or base_ids[-1:] or [0])[0]
    st.selectbox(
        "baseline",
        base_ids or [0],
        key=f"{K}baseline",
        format_func=lambda i: run_label(by_id[i]) if i in by_id else "(no run selected)",
        help="Speed-ups are the baseline's RL steps to the threshold divided by each run's "
        "([definition](/definitions#speed-up)).",
    )
if selected:
    threshold = float(st.session_state[f"{K}threshold"])
    tlabel = METRIC_LABELS.get(tmetric, tmetric)
    if auto_note and st.session_state.get("_runs_auto_threshold") is not None:
        st.caption(auto_note)
    names = {info.id: run_label(info) for info in selected}
    table = run_speedups(
        {names[info.id]: df for info, df in frames},
        tmetric,
        threshold,
        baseline=names.get(st.session_state[f"{K}baseline"]),
    )
    shown = pd.DataFrame(
        {
            "run": table["run"],
            "RL steps": [
                f"{s:.0f}" if r else ("—" if math.isnan(s) else f"not reached in {s:.0f}")
                for s, r in zip(table["steps"], table["reached"], strict=True)
            ],
            "seconds": [format_seconds(v) if pd.notna(v) else "—" for v in table["seconds"]],
            "× faster (steps)": [
                "—"
                if math.isnan(v)
                else f"{'≥ ' if b == '>=' else '≤ ' if b == '<=' else ''}{v:.2f}×"
                for v, b in zip(table["speedup"], table["bound"], strict=True)
            ],
            "note": table["note"],
        }
    )
    st.dataframe(shown, hide_index=True, key=f"{K}speedup")
    reached = table[table["reached"]].sort_values("steps")
    if len(reached):
        best = reached.iloc[0]
        first = (
            f"First to reach {tlabel} {threshold:g}: **{best['run']}** after "
            f"{int(best['steps'])} RL steps ({format_seconds(best['seconds'])}). "
        )
    else:
        first = f"No selected run reaches {tlabel} {threshold:g}. "
    st.caption(
        first + "One run per side gives no interval: a speed-up between single runs can be "
        "luck. Compare conditions over several seeds on the **Hypotheses** page for a verdict. "
        "Evaluation metrics exist only every eval_every steps, so steps are multiples of it; "
        "≥ (≤): the baseline (the run) never reached the threshold, so the ratio is a bound."
    )

# ----------------------------------------------------------------------------- URL

try:
    settings.read()
except ValidationError as err:
    st.warning(f"These settings cannot go into the link:\n\n{settings.errors(err)}")
page.write()

# ----------------------------------------------------------------------------- actions


def _delete(run_id: int) -> None:
    get_manager().delete(run_id)
    st.session_state[f"{K}runs"] = [i for i in st.session_state[f"{K}runs"] if i != run_id]
    st.session_state.pop(f"{K}action_run", None)
    st.session_state["_runs_message"] = ("success", f"Run #{run_id} deleted.")


def _switch_to_lab(run_id: int) -> None:
    last = int(st.session_state.get(f"{K}lab_steps") or 0)
    lengths = observed_lengths(store.metrics(run_id), last_steps=last or None)
    if not lengths:
        st.session_state["_runs_message"] = ("warning", "This run has recorded no answer lengths.")
        return
    st.session_state["empirical_lengths"] = lengths
    st.session_state["empirical_source"] = f"run {run_label(by_id[run_id])}" + (
        f", last {last} steps" if last else ""
    )
    st.session_state["_runs_switch"] = True


with st.sidebar:
    st.subheader("Charts for slides")
    book.format_picker()
    book.download_all()

st.subheader("One run")
action_ids = [i.id for i in selected] or [r.id for r in shown]
if not action_ids:
    st.caption("No run matches the filters.")
    st.stop()
if st.session_state.get(f"{K}action_run") not in action_ids:
    st.session_state[f"{K}action_run"] = action_ids[0]
run_id = st.selectbox(
    "run",
    action_ids,
    key=f"{K}action_run",
    format_func=lambda i: f"{run_label(by_id[i])} ({by_id[i].status})",
    help="The run the buttons below act on.",
)
info = by_id[run_id]
manager = get_manager()
message = st.session_state.pop("_runs_message", None)
if message:
    getattr(st, message[0])(message[1])

c1, c2, c3, c4 = st.columns(4)
with c1:
    if st.button(
        "Stop",
        icon=":material/stop:",
        disabled=info.status not in ("queued", "running"),
        help="Stop after the current step (it can be resumed).",
    ):
        result = manager.stop(run_id)
        st.session_state["_runs_message"] = ("info", f"Run #{run_id}: {result}.")
        st.rerun()
with c2:
    if st.button(
        "Resume",
        icon=":material/replay:",
        disabled=info.status not in ("stopped", "failed"),
        help="Queue it again; it continues from its last checkpoint.",
    ):
        manager.resume(run_id)
        st.session_state["_runs_message"] = ("info", f"Run #{run_id} is queued again.")
        st.rerun()
with c3:
    st.download_button(
        "Export CSV",
        data=lambda: store.export(run_id, "csv"),
        file_name=f"vlsim-run-{run_id}.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
        help="The run's metrics, one row per step.",
    )
with c4:
    st.download_button(
        "Export JSON",
        data=lambda: store.export(run_id, "json"),
        file_name=f"vlsim-run-{run_id}.json",
        mime="application/json",
        icon=":material/download:",
        on_click="ignore",
        help="Run info, config, metrics and probe records.",
    )

c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
with c1:
    st.number_input(
        "use the answer lengths of the last N steps (0 = all)",
        min_value=0,
        max_value=1_000_000,
        value=20,
        key=f"{K}lab_steps",
        help="Late steps show the lengths the trained policy produces; all steps mix the whole run.",
    )
with c2:
    st.button(
        "Use in the Length Lab",
        icon=":material/science:",
        on_click=_switch_to_lab,
        args=(run_id,),
        help="Resample this run's observed answer lengths in the Length Lab (empirical family).",
    )
if st.session_state.pop("_runs_switch", False):
    try:
        st.switch_page(LENGTH_LAB)
    except StreamlitAPIException:  # the app has no Length Lab page registered
        st.info(
            f"{len(st.session_state['empirical_lengths'])} lengths are ready for the Length Lab "
            "(choose its 'empirical' length family).",
            icon=":material/science:",
        )

with st.expander("Delete this run", icon=":material/delete:"):
    st.markdown(
        f"Deleting **{run_label(info)}** removes its metrics, probes, samples and checkpoint. "
        "A running run is stopped first. This cannot be undone."
    )
    confirm = st.checkbox(
        f"Yes, delete run #{run_id}", key=f"_{K}confirm.{run_id}", help="Tick to enable the button."
    )
    st.button(
        "Delete",
        type="primary",
        disabled=not confirm,
        icon=":material/delete_forever:",
        on_click=_delete,
        args=(run_id,),
        help="Delete the run and everything it recorded.",
    )

if info.error:
    with st.expander("Error"):
        st.code(info.error[-4000:])
log = manager.log_tail(run_id)
if log:
    with st.expander("Worker output (last lines)"):
        st.code(log)
