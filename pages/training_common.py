"""Shared UI helpers of the training pages (Training Arena, Runs, Probes).

One Store and one JobManager per process and data dir (st.cache_resource), cached metric reads,
run labels and colours, and plotly figure builders for stored metrics and probe records.
Figures are pure functions of DataFrames and dicts; nothing heavy lives in session_state.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from pydantic import BaseModel, ConfigDict, Field

from pages.binder import Binder
from pages.charts import COLORS, MICRO_BATCH_COLORS, line_style
from vlsim.aggregators import AGGREGATORS
from vlsim.analysis import METRIC_LABELS, probe_table, smooth
from vlsim.config import RECIPE_DISPLAY_NAMES
from vlsim.jobs import JobManager
from vlsim.lengths import LENGTH_FAMILIES
from vlsim.store import RunInfo, Store, default_data_dir

MAX_CONCURRENT_ENV = "VLSIM_MAX_CONCURRENT"
"""Environment variable: how many runs train at once on this server (default 2)."""

STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/directions_run:",
    "finished": ":material/check_circle:",
    "stopped": ":material/pause_circle:",
    "failed": ":material/error:",
}


# ----------------------------------------------------------------------------- resources


def data_dir() -> str:
    """The store directory of this server (VLSIM_DATA_DIR or ./vlsim-data), absolute."""
    return str(default_data_dir().resolve())


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store(path)


@st.cache_resource(show_spinner=False)
def _manager(path: str, max_concurrent: int) -> JobManager:
    return JobManager(path, max_concurrent=max_concurrent).start()


def get_store() -> Store:
    """This process's Store of the current data dir."""
    return _store(data_dir())


def get_manager() -> JobManager:
    """This process's JobManager of the current data dir (its polling thread started)."""
    try:
        limit = max(1, int(os.environ.get(MAX_CONCURRENT_ENV, "2")))
    except ValueError:
        limit = 2
    manager = _manager(data_dir(), limit)
    manager.start()  # restarts the thread if it ever died
    return manager


@st.cache_data(max_entries=48, show_spinner=False)
def cached_metrics(
    path: str, run_id: int, last_step: int | None, stamp: float | None
) -> pd.DataFrame:
    """A run's metrics without the per-answer length lists (cached until a new step lands)."""
    df = _store(path).metrics(run_id)
    return df.drop(columns=[c for c in df.columns if c.startswith("dist/")])


def run_metrics(info: RunInfo) -> pd.DataFrame:
    """The metrics of a run, read from the store only when it has logged something new."""
    store = get_store()
    return cached_metrics(data_dir(), info.id, store.last_step(info.id), info.heartbeat)


# ----------------------------------------------------------------------------- labels, colours


def aggregator_of(info: RunInfo) -> str:
    """The aggregator a run trains with ('' if its config has none)."""
    agg = info.config.get("aggregator") if isinstance(info.config, Mapping) else None
    return str(agg) if agg else ""


def aggregator_label(info: RunInfo) -> str:
    """'VL Norm (α=0.5)', 'GRPO', 'DAPO + VL Norm recipe (α=1)', ... for a run."""
    agg = aggregator_of(info)
    if not agg:
        return info.kind
    name = AGGREGATORS[agg].display_name if agg in AGGREGATORS else agg
    recipe = info.config.get("recipe", "none")
    if recipe != "none" and recipe in RECIPE_DISPLAY_NAMES:
        name = f"{RECIPE_DISPLAY_NAMES[recipe]} recipe"
    if agg == "vl_norm":
        alpha = info.config.get("alpha", 1.0)
        scope = info.config.get("scope", "group")
        name += f" (α={alpha:g}{', batch' if scope == 'batch' else ''})"
    return name


def run_label(info: RunInfo) -> str:
    """A short unique label: '#12 GRPO · seed 0'."""
    seed = f" · seed {info.seed}" if info.seed is not None else ""
    return f"#{info.id} {aggregator_label(info)}{seed}"


def run_colors(infos: Sequence[RunInfo]) -> dict[int, str]:
    """A colour per run: its aggregator's colour while aggregators are distinct, else a palette."""
    aggs = [aggregator_of(i) for i in infos]
    distinct = len(set(aggs)) == len(aggs) and all(a in COLORS for a in aggs)
    if distinct:
        return {i.id: COLORS[a] for i, a in zip(infos, aggs, strict=True)}
    return {i.id: MICRO_BATCH_COLORS[k % len(MICRO_BATCH_COLORS)] for k, i in enumerate(infos)}


def status_text(status: str) -> str:
    return f"{STATUS_ICONS.get(status, '')} {status}"


TRACE_FORMAT = (
    "How to read a trace: the policy's search before its answer, one token per character. "
    "`,` separates arithmetic steps, `x;` ends an attempt that missed the target, and the last "
    "attempt leads to the answer. E.g. `0x;15*15010=77520` is the end of a failed attempt "
    "(`0x;`, cut from the left) and then the step 15*15010=77520; the answer column is the "
    "expression after the trace."
)


def stop_message(results: Mapping[int, str], labels: Mapping[int, str]) -> str:
    """What Stop all did, run by run ('' if there was nothing to stop)."""
    words = {"unqueued": "taken out of the queue", "stopping": "stops after its current step"}
    done = [f"{labels.get(i, f'#{i}')} ({words[w]})" for i, w in results.items() if w in words]
    if not done:
        return ""
    return f"Stopping {len(done)} run(s): " + "; ".join(done) + "."


def recent_groups(store: Store, limit: int = 20) -> list[str]:
    """Group names of training runs, newest first."""
    seen: dict[str, None] = {}
    for info in store.list_runs(kind="train"):
        if info.group_name and info.group_name not in seen:
            seen[info.group_name] = None
            if len(seen) >= limit:
                break
    return list(seen)


# ----------------------------------------------------------------------------- widgets


class RunStep(BaseModel):
    """A stored run and one of its logged steps, as the Probes and Step Inspector URLs hold them."""

    model_config = ConfigDict(extra="forbid")

    run: int = Field(0, ge=0, description="The run shown (0: the newest).")
    step: int = Field(-1, ge=-1, description="The logged step shown (-1: the latest).")


def trace_length_widget(binder: Binder, path: str) -> str:
    """The warm-start traces' length family and its parameters (no empirical lengths here)."""
    return binder.widget(
        path,
        "trace-length family",
        kinds=[k for k in LENGTH_FAMILIES if k != "empirical"],
        help="The distribution that warm-start trace lengths are drawn from (then cut to fit M).",
    )


# ----------------------------------------------------------------------------- figures


def _layout(fig: go.Figure, title: str, y_title: str = "", height: int = 340, **kw) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0, "xanchor": "left"},
        hoverlabel={"namelength": -1},
        yaxis_title=y_title,
        **kw,
    )
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def curves_figure(
    runs: Sequence[tuple[RunInfo, pd.DataFrame]],
    metric: str,
    title: str | None = None,
    smoothing: float = 0.0,
    colors: Mapping[int, str] | None = None,
    dash_metric: str | None = None,
    band: tuple[str, str] | None = None,
    x: str = "step",
) -> go.Figure:
    """One line per run of `metric` against x (step or time/elapsed).

    dash_metric adds a dashed line per run (e.g. greedy next to sampled accuracy); band shades
    the range between two columns (e.g. p10 and p90 of the length). Runs without the metric
    draw nothing.
    """
    colors = colors or run_colors([info for info, _ in runs])
    fig = go.Figure()
    for info, df in runs:
        color = colors.get(info.id, "#444444")
        label = run_label(info)
        if band is not None and all(c in df for c in band) and x in df:
            rows = df.dropna(subset=list(band)).sort_values(x)
            if len(rows):
                xs = rows[x].tolist()
                fig.add_trace(
                    go.Scatter(
                        x=xs + xs[::-1],
                        y=rows[band[1]].tolist() + rows[band[0]].tolist()[::-1],
                        mode="lines",  # plotly's default adds markers to short traces
                        fill="toself",
                        fillcolor=_rgba(color, 0.12),
                        line={"width": 0},
                        hoverinfo="skip",
                        showlegend=False,
                        name=f"{label} p10–p90",
                    )
                )
        for col, dash in ((metric, "solid"), (dash_metric, "dash")):
            if col is None or col not in df or x not in df:
                continue
            rows = df[[x, col]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(x)
            if rows.empty:
                continue
            y = smooth(rows[col], smoothing) if smoothing else rows[col]
            fig.add_trace(
                go.Scatter(
                    x=rows[x],
                    y=y,
                    mode="lines+markers" if len(rows) < 30 else "lines",
                    name=label if dash == "solid" else f"{label} (greedy)",
                    line={"color": color, "dash": dash, "width": 2},
                    marker={"size": 5},
                    legendgroup=str(info.id),
                    showlegend=dash == "solid",
                    hovertemplate=f"{label}<br>{x} %{{x}}: %{{y:.4g}}<extra></extra>",
                )
            )
    title = title or METRIC_LABELS.get(metric, metric)
    if not fig.data:
        return empty_figure(title, "no values logged yet")
    fig.update_xaxes(title="RL step" if x == "step" else "seconds of RL")
    return _layout(fig, title)


def empty_figure(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=260)


PROBE_LABELS = {
    "variance": "variance per unit scale",
    "cv": "coefficient of variation (CV)",
    "cosine": "cosine with the reference gradient",
    "relative_variance": "variance relative to Dr. GRPO",
    "scale": "scale M·E[Σx]",
    "direction_bias": "direction bias 1 − cos",
}


def probe_stat_figure(
    probes: Sequence[Mapping[str, Any]], stat: str, log_y: bool = False
) -> go.Figure:
    """One line per aggregator: a probe statistic over the run's steps."""
    table = probe_table(probes)
    title = PROBE_LABELS.get(stat, stat)
    if table.empty or table[stat].isna().all():
        return empty_figure(title, "no probe values for this statistic yet")
    traces = []
    for rank, (name, rows) in enumerate(table.groupby("aggregator", sort=False)):
        rows = rows.dropna(subset=[stat]).sort_values("step")
        if rows.empty:
            continue
        display = AGGREGATORS[name].display_name if name in AGGREGATORS else name
        traces.append(
            go.Scatter(
                x=rows["step"],
                y=rows[stat],
                mode="lines+markers",
                name=display,
                **line_style(name),
                legendrank=1000 + rank,  # legend in the records' order, whatever the drawing order
                # the sequence sum equals Dr. GRPO per unit scale: hidden unless clicked
                visible="legendonly" if name == "seq_sum" else True,
                hovertemplate=f"{display}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
            )
        )
    # wide lines first, narrow dashed ones on top: DAPO stays visible on Dr. GRPO, Dr. GRPO
    # (wide, solid) around VL Norm (dotted) where their values coincide
    traces.sort(key=lambda t: -t.line.width)
    fig = go.Figure(traces)
    fig.update_xaxes(title="RL step")
    if log_y:
        fig.update_yaxes(type="log")
    return _layout(fig, title)


def scatter_figure(record: Mapping[str, Any]) -> tuple[go.Figure, str]:
    """The paper's Figure 4 from one probe record: ||g_i − mean||² against L_i (log-log).

    Returns the figure and a sentence with the fitted slope and its 95% CI (or why not).
    """
    noise = record.get("length_noise") if isinstance(record, Mapping) else None
    points = noise.get("points") if isinstance(noise, Mapping) else None
    title = "deviation ‖g_i − ḡ‖² vs length L_i"
    if not isinstance(points, Mapping) or not points.get("length"):
        return empty_figure(title, "this probe record has no scatter points"), (
            "No scatter points stored in this probe record."
        )
    L = np.asarray(points.get("length", []), dtype=float)
    dev = np.asarray(points.get("deviation", []), dtype=float)
    prompt = np.asarray(points.get("prompt", [0] * len(L)))
    n = min(len(L), len(dev), len(prompt))
    L, dev, prompt = L[:n], dev[:n], prompt[:n]
    ok = (L > 0) & (dev > 0) & np.isfinite(L) & np.isfinite(dev)
    L, dev, prompt = L[ok], dev[ok], prompt[ok]
    fig = go.Figure()
    for k, p in enumerate(sorted(set(prompt.tolist()))):
        sel = prompt == p
        fig.add_trace(
            go.Scatter(
                x=L[sel],
                y=dev[sel],
                mode="markers",
                name=f"prompt {p}",
                marker={"size": 7, "opacity": 0.7, "color": MICRO_BATCH_COLORS[k % 10]},
                hovertemplate="L=%{x}<br>deviation %{y:.3g}<extra>prompt " + str(p) + "</extra>",
            )
        )
    slope = _number(noise.get("slope"))
    lo, hi = _number(noise.get("ci_low")), _number(noise.get("ci_high"))
    if math.isfinite(slope) and len(L) > 1:
        cx, cy = np.exp(np.log(L).mean()), np.exp(np.log(dev).mean())
        xs = np.geomspace(L.min(), L.max(), 30)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=cy * (xs / cx) ** slope,
                mode="lines",
                name=f"fit: slope {slope:.2f}",
                line={"color": "black", "dash": "dash", "width": 2},
                hoverinfo="skip",
            )
        )
        ci = f" (95% CI {lo:.2f} to {hi:.2f})" if math.isfinite(lo) and math.isfinite(hi) else ""
        used = noise.get("n")
        text = (
            f"Fitted log-log slope **{slope:.2f}**{ci} from {used if used is not None else len(L)} "
            f"answers (a separate intercept per prompt). Slope 1 means Var(g_i) ∝ L_i; "
            "above 1, token terms are correlated."
        )
    else:
        text = "The slope is undefined for this record (too few answers with a non-zero advantage)."
    fig.update_xaxes(type="log", title="answer length L_i (tokens)")
    fig.update_yaxes(type="log", dtick=1)
    return _layout(fig, title, "‖g_i − ḡ‖²", height=400), text


def entropy_figure(record: Mapping[str, Any]) -> go.Figure:
    """Token contribution share (bars) and mean score norm (line) per entropy bin."""
    tokens = record.get("tokens") if isinstance(record, Mapping) else None
    bins = tokens.get("bins") if isinstance(tokens, Mapping) else None
    title = "where the gradient comes from: tokens by entropy"
    if not isinstance(bins, Mapping) or not bins.get("edges"):
        return empty_figure(title, "this probe record has no entropy bins")
    edges = np.asarray(bins["edges"], dtype=float)
    centers = (edges[:-1] + edges[1:]) / 2
    k = len(centers)

    def col(name: str) -> list[float]:
        values = list(bins.get(name) or [])
        values = (values + [None] * k)[:k]
        return [_number(v) for v in values]

    share, score, count = col("contribution_share"), col("score_mean"), col("count")
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=centers,
            y=share,
            width=(edges[1] - edges[0]) * 0.9 if k else None,
            name="share of Σ A² ‖score‖",
            marker={"color": "#4c78a8"},
            customdata=count,
            hovertemplate="entropy %{x:.2f}<br>share %{y:.3f}<br>tokens %{customdata}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=centers,
            y=score,
            mode="lines+markers",
            name="mean score norm per token",
            yaxis="y2",
            line={"color": "#e45756"},
        )
    )
    fig.update_layout(
        yaxis2={
            "overlaying": "y",
            "side": "right",
            "title": "score norm",
            "showgrid": False,
            # plotly aligns an overlaid axis' ticks with the left one by default, which labels
            # it with odd values (and below zero); a norm gets its own round ticks from zero
            "tickmode": "auto",
            "rangemode": "tozero",
            "zeroline": False,
        }
    )
    fig.update_xaxes(title="policy entropy at the token (nats)")
    return _layout(fig, title, "share of the gradient", height=380)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def samples_frame(samples: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Stored rollouts as a table: step, numbers -> target, trace, answer, reward, length."""
    rows = []
    for s in samples:
        numbers = s.get("numbers")
        rows.append(
            {
                "step": s.get("step"),
                "problem": (
                    f"{' '.join(str(n) for n in numbers)} → {s.get('target')}"
                    if isinstance(numbers, (list, tuple))
                    else str(s.get("target", ""))
                ),
                "trace": s.get("trace", ""),
                "answer": s.get("answer", ""),
                "reward": s.get("reward"),
                "length": s.get("length"),
                "cut at M": s.get("truncated"),
            }
        )
    return pd.DataFrame(rows)
