"""Step Inspector: one stored group of G answers, token by token, coloured by how hard each token
is pushed under each aggregator (weight times advantage), with a bar of each answer's total."""

from __future__ import annotations

import streamlit as st

from pages.binder import Page
from pages.common import ensure_app_navigation
from pages.export import ChartBook
from pages.lesson_common import answer_bars, display, notice, token_strips
from pages.training_common import RunStep, get_store
from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE
from vlsim.inspector import (
    NOT_FULL_GROUPS,
    answer_totals,
    groups_at,
    has_full_groups,
    push_strips,
    relative_weights,
    steps_with_groups,
)

ensure_app_navigation()

PAGE = "inspector"
K = "insp."
DEFAULT_NAMES = ["grpo", "dapo", "dr_grpo", "vl_norm"]


st.title("Step Inspector")
st.markdown(
    "One prompt's $G$ answers at one logged step of a stored run, token by token. A token's "
    "colour is how hard the update pushes it: its weight times its advantage, with weights "
    "relative to Dr. GRPO's, $B\\,G\\,M\\,x_i$ (under Dr. GRPO every answer weighs 1, so a "
    "token's push is its advantage). Blue tokens are made more likely, red ones less."
)

page = Page(PAGE)
shown = page.bind(RunStep, K, RunStep.model_fields)
page.open()
store = get_store()  # cached per data directory, as on every page
runs = [r for r in store.list_runs(kind="train")]
if not runs:
    st.info(
        "No stored training runs yet. Train one in the Training Arena (a quick run takes a few "
        "minutes); its sample steps appear here.",
        icon=":material/inbox:",
    )
    st.page_link(
        "pages/training_arena.py", label="Training Arena", icon=":material/model_training:"
    )
    st.stop()

ids = [r.id for r in runs]
by_id = {r.id: r for r in runs}
run_id = shown.widget(
    "run", options=ids, format_func=lambda i: f"{i}: {by_id[i].name} ({by_id[i].status})"
)
run = by_id[run_id]
records = store.samples(run_id, limit_steps=None)
if not records:
    st.info(
        "This run has no sample records (its sample_log_every is 0, or it has not reached a "
        "sample step yet).",
        icon=":material/inbox:",
    )
    st.stop()
if not has_full_groups(records):
    st.warning(
        f"{NOT_FULL_GROUPS[0].upper()}{NOT_FULL_GROUPS[1:]}. Runs trained now store full groups.",
        icon=":material/history:",
    )
    st.dataframe(
        [
            {
                k: r.get(k)
                for k in ("step", "numbers", "target", "trace", "answer", "reward", "length")
            }
            for r in records
        ],
        hide_index=True,
        width="stretch",
    )
    st.stop()

config = run.config
max_len = int(config.get("max_new_tokens", 1))
steps = steps_with_groups(records)
st.session_state.setdefault(f"{K}alpha", float(config.get("alpha", 1.0)))
st.session_state.setdefault(f"{K}scope", str(config.get("scope", "group")))
st.session_state.setdefault(f"{K}names", DEFAULT_NAMES)

book = ChartBook(PAGE, f"Step Inspector: run {run_id}")
with st.sidebar:
    st.header("Inspector")
    names = st.multiselect(
        "aggregators",
        list(AGGREGATORS),
        key=f"{K}names",
        format_func=display,
        help="Side by side, on one colour scale. The sequence sum's weights are "
        "M times Dr. GRPO's, so they fill the colour scale alone.",
    )
    alpha = st.slider("VL Norm α", *ALPHA_RANGE, step=0.05, key=f"{K}alpha")
    scope = st.radio(
        "VL Norm scope",
        ["group", "batch"],
        key=f"{K}scope",
        horizontal=True,
        help="batch: normalised over the stored groups of this step (a part of the step's batch).",
    )
    book.format_picker()

c1, c2 = st.columns(2)
with c1:
    step = shown.widget("step", "logged step", options=steps, fallback=steps[-1])
groups = groups_at(records, step, bool(config.get("std_normalize", True)), config.get("group_size"))
if st.session_state.get(f"{K}group", 0) >= len(groups):
    st.session_state[f"{K}group"] = 0
with c2:
    chosen = st.radio(
        "group (prompt)",
        range(len(groups)),
        horizontal=True,
        key=f"{K}group",
        format_func=lambda b: f"{groups[b].group + 1}: {groups[b].prompt}",
    )
if not names:
    st.warning("Choose at least one aggregator in the sidebar.", icon=":material/rule:")
    st.stop()
group = groups[chosen]
try:
    rel = relative_weights(groups, names, max_len, alpha, scope)
except ValueError as err:
    st.error(str(err), icon=":material/error:")
    st.stop()

st.dataframe(
    [
        {
            "answer": a.index + 1,
            "text": a.text,
            "reward": a.reward,
            "length": a.length,
            "advantage": round(a.advantage, 3),
            **{f"weight ({display(n)})": round(float(rel[n][chosen, i]), 3) for n in names},
        }
        for i, a in enumerate(group.answers)
    ],
    hide_index=True,
    width="stretch",
)
if group.advantages_recomputed:
    st.caption(
        "The records hold no advantages: they are recomputed from the rewards within the "
        "group, as the trainer does."
    )

labels = [f"{a.index + 1} (L={a.length}, r={a.reward:g})" for a in group.answers]
strips = push_strips(group, rel, chosen)
book.show(
    token_strips(
        strips,
        labels,
        f"Push on each token (weight × advantage), step {step}",
        "push",
        texts=[a.tokens for a in group.answers],
        stacked=True,
    ),
    key="insp.strips",
    name="Push on each token",
)
notice(
    "Inside an answer every token gets the same push: the aggregators differ in how they share "
    "the step between answers. GRPO and VL Norm push the tokens of short answers harder; "
    "Dr. GRPO pushes every token by its advantage alone."
)
book.show(
    answer_bars(
        answer_totals(rel, group, chosen),
        labels,
        "Total weight of each answer (weight × length)",
        "total weight (Dr. GRPO token = 1)",
    ),
    key="insp.totals",
    name="Total weight of each answer",
)
notice(
    "Under Dr. GRPO an answer's total grows with its length; under GRPO every answer has the same "
    "total M; VL Norm (α = 1) also gives every answer the same total, scaled so the group "
    "keeps Dr. GRPO's step size."
)
st.caption(
    f"Run {run_id}: M = {max_len}, G = {len(group.answers)}; {len(groups)} stored groups at "
    f"this step form the batch that DAPO's divisor and VL Norm's batch scope use. Per-token "
    "gradient norms are not stored with the samples, so tokens are coloured by push alone."
)
with st.sidebar:
    book.download_all()
shown.value()
page.write()
