"""The Training Arena's live view of one group of runs: progress, stop/resume, curves, details.

Everything here reads the store (after the liveness check) and never trains; the page runs
`live_view` in a fragment that refreshes every two seconds while runs are active.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.export import ChartBook
from pages.training_common import (
    TRACE_FORMAT,
    aggregator_label,
    curves_figure,
    get_manager,
    get_store,
    probe_stat_figure,
    run_colors,
    run_label,
    run_metrics,
    samples_frame,
    scatter_figure,
    status_text,
    stop_message,
)
from vlsim.analysis import format_seconds, progress
from vlsim.liveness import checked_runs

K = "arena."  # prefix of the Arena's widget keys


def run_row(info, metrics: pd.DataFrame) -> None:
    """Label, status, progress bar with ETA, and stop/resume for one run."""
    manager = get_manager()
    c1, c2, c3 = st.columns([2, 5, 1], vertical_alignment="center")
    with c1:
        st.markdown(f"**{run_label(info)}**  \n{status_text(info.status)}")
    with c2:
        last = int(metrics["step"].max()) if len(metrics) else None
        done = 0 if last is None or last < 0 else last + 1
        elapsed = None
        if "time/elapsed" in metrics and len(metrics):
            elapsed = float(pd.to_numeric(metrics["time/elapsed"], errors="coerce").max())
        frac, eta = progress(done, info.total_steps, elapsed)
        total = info.total_steps or 0
        if info.status == "queued":
            pos = manager.queue_position(info.id)
            text = f"queued, position {pos}" if pos else "queued"
        elif info.status == "running" and last is None:
            text = "warm start (supervised), then RL"
        elif info.status == "running":
            text = f"step {done}/{total} · ETA {format_seconds(eta)}"
        elif info.status in ("failed", "stopped") and info.error:
            first = info.error.strip().splitlines()[0]
            text = f"{info.status} at step {done}/{total}: {first}"
        else:
            text = f"{info.status} at step {done}/{total} · {format_seconds(elapsed)} of RL"
        st.progress(frac, text=text[:160])
    with c3:
        if info.status in ("queued", "running"):
            if st.button(
                "Stop",
                key=f"{K}stop.{info.id}",
                icon=":material/stop:",
                help="Stop after the current step (resumable). A running run stops with every "
                "run started with it: they train together as one job.",
            ):
                st.session_state["_arena_stopped"] = stop_message(
                    manager.stop_runs([info.id]), {info.id: run_label(info)}
                )
                st.rerun(scope="fragment")
        elif info.status in ("stopped", "failed") and st.button(
            "Resume",
            key=f"{K}resume.{info.id}",
            icon=":material/replay:",
            help="Queue it again; it continues from its last checkpoint.",
        ):
            manager.resume(info.id)
            st.rerun(scope="fragment")


def summary_table(runs: list) -> pd.DataFrame:
    rows = []
    for info, df in runs:
        row = {"run": run_label(info), "status": info.status}
        for col, name in (
            ("eval/mean_at_k", "held-out mean@k"),
            ("eval/accuracy_greedy", "held-out greedy"),
        ):
            values = pd.to_numeric(df[col], errors="coerce").dropna() if col in df else []
            row[f"{name} (last)"] = float(values.iloc[-1]) if len(values) else None
            row[f"{name} (best)"] = float(values.max()) if len(values) else None
        lengths = (
            pd.to_numeric(df["charts/response_length_mean"], errors="coerce").dropna()
            if "charts/response_length_mean" in df
            else []
        )
        row["mean length (last 10 steps)"] = (
            float(lengths.tail(10).mean()) if len(lengths) else None
        )
        rows.append(row)
    return pd.DataFrame(rows)


def stop_group(group: str) -> None:
    """Stop all: every run of the group that is queued or running now, and say what stopped."""
    infos = get_store().list_runs(group_name=group)
    ids = [i.id for i in infos if i.status in ("queued", "running")]
    results = get_manager().stop_runs(ids)
    labels = {i.id: run_label(i) for i in infos}
    st.session_state["_arena_stopped"] = stop_message(results, labels) or "Nothing was running."


def live_view(group: str) -> None:
    """Everything about one group, read from the store only (dead runs shown as stopped)."""
    store = get_store()
    infos = sorted(checked_runs(store, group_name=group), key=lambda r: r.id)
    if not infos:
        st.info("No runs in this group yet.", icon=":material/hourglass_empty:")
        return
    runs = [(info, run_metrics(info)) for info in infos]
    colors = run_colors(infos)
    manager = get_manager()
    # charts export at slide resolution; no "export all" here: the fragment redraws every two
    # seconds, which would replace a download's prepared file while a user clicks it
    book = ChartBook("arena", f"Training Arena: {group}")

    st.subheader("Runs")
    for info, df in runs:
        run_row(info, df)
    active = [i for i in infos if i.status in ("queued", "running")]
    resumable = [i for i in infos if i.status in ("stopped", "failed")]
    c1, c2, c3 = st.columns([1, 1, 3])
    with c1:
        st.button(
            "Stop all",
            key=f"{K}stop_all",
            disabled=not active,
            icon=":material/stop_circle:",
            help="Stop every queued or running run of this group (and of their jobs).",
            on_click=stop_group,  # a callback: runs before the next rerun, never lost
            args=(group,),
        )
    with c2:
        if st.button(
            "Resume all",
            key=f"{K}resume_all",
            disabled=not resumable,
            icon=":material/replay:",
            help="Queue every stopped or failed run again.",
        ):
            for i in resumable:
                manager.resume(i.id)
            st.rerun(scope="fragment")
    with c3:
        st.caption(
            f"The runs started together train as one job (one worker process); up to "
            f"{manager.max_concurrent} jobs train at once on this server, counting sweeps; the "
            "rest wait in the queue. Updated every 2 seconds."
        )

    if st.session_state.get("_arena_stopped"):
        st.success(st.session_state["_arena_stopped"], icon=":material/stop_circle:")

    st.subheader("Curves")
    book.format_picker()
    c1, c2 = st.columns(2)
    with c1:
        smoothing = st.slider(
            "smoothing",
            0.0,
            0.95,
            0.6,
            0.05,
            key=f"{K}smoothing",
            help="Exponential moving average (as in TensorBoard) of the per-step training curves.",
        )
    with c2:
        x_axis = st.radio(
            "x axis",
            ["step", "time/elapsed"],
            key=f"{K}x",
            horizontal=True,
            format_func=lambda v: "RL step" if v == "step" else "seconds of RL",
            help="Compare runs per update or per second of compute.",
        )
    c1, c2 = st.columns(2)
    with c1:
        book.show(
            curves_figure(
                runs,
                "eval/mean_at_k",
                "held-out accuracy (— mean@k, -- greedy)",
                colors=colors,
                dash_metric="eval/accuracy_greedy",
                x=x_axis,
            ),
            key=f"{K}chart.acc",
        )
    with c2:
        book.show(
            curves_figure(
                runs, "charts/reward_mean", "training reward", smoothing, colors, x=x_axis
            ),
            key=f"{K}chart.reward",
        )
    c1, c2 = st.columns(2)
    with c1:
        book.show(
            curves_figure(
                runs,
                "charts/response_length_mean",
                "answer length: mean, band p10–p90",
                smoothing,
                colors,
                band=("charts/response_length_p10", "charts/response_length_p90"),
                x=x_axis,
            ),
            key=f"{K}chart.length",
        )
    with c2:
        book.show(
            curves_figure(
                runs, "grad/norm", "gradient norm (before clipping)", smoothing, colors, x=x_axis
            ),
            key=f"{K}chart.grad",
        )
    st.caption(
        "GRPO and DAPO divide by lengths, so their step size follows how long the answers are; "
        "Dr. GRPO and VL Norm keep it fixed. With long traces more often wrong (the default "
        "length→wrong slope), length-dependent weights also change how fast answers shrink or grow."
    )
    with st.expander("Summary table"):
        st.dataframe(summary_table(runs), hide_index=True, width="stretch")

    # -- one run in detail
    st.subheader("One run in detail")
    ids = [i.id for i in infos]
    if st.session_state.get(f"{K}run") not in ids:
        st.session_state[f"{K}run"] = ids[0]
    chosen = st.selectbox(
        "run",
        ids,
        key=f"{K}run",
        format_func=lambda i: run_label(next(x for x in infos if x.id == i)),
        help="Its gradient probes and its latest sample answers are shown below.",
    )
    info = next(x for x in infos if x.id == chosen)
    probes = store.probes(chosen)
    if probes:
        last = probes[-1]
        st.markdown(
            f"Gradient probes of **{aggregator_label(info)}**'s policy ({len(probes)} so far, "
            f"latest at step {last.get('step')}): every aggregator evaluated on the same "
            "per-answer gradients. See the Probes page for more."
        )
        c1, c2 = st.columns(2)
        with c1:
            book.show(
                probe_stat_figure(probes, "variance", log_y=True),
                key=f"{K}probe.var",
            )
        with c2:
            book.show(probe_stat_figure(probes, "cv"), key=f"{K}probe.cv")
        c1, c2 = st.columns(2)
        with c1:
            book.show(probe_stat_figure(probes, "cosine"), key=f"{K}probe.cos")
        with c2:
            fig, text = scatter_figure(last)
            book.show(fig, key=f"{K}probe.scatter")
            st.caption(text)
    elif info.config.get("probe", {}).get("every"):
        st.caption("No probe records yet; the first comes with the first RL step.")
    else:
        st.caption("Probes are off for this run (turn them on in the sidebar before starting).")

    samples = store.samples(chosen, limit_steps=1)
    if samples:
        st.markdown(f"Latest sample answers (step {samples[-1].get('step')}):")
        st.dataframe(samples_frame(samples), hide_index=True, width="stretch")
        st.caption(TRACE_FORMAT)
    if info.status == "failed" and info.error:
        with st.expander("Error of this run"):
            st.code(info.error[-3000:])

    if not active and st.session_state.get("_arena_was_active"):
        st.session_state["_arena_was_active"] = False
        st.rerun()  # everything ended: redraw once without the timer
    st.session_state["_arena_was_active"] = bool(active)
