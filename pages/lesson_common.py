"""What the lessons share: their boxes (what to notice, questions with answers, a scenario link)
and the figures of the lessons and the Step Inspector. UI only (their URL state: pages.binder)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pages.charts import _layout, color_of, nice_log_ticks
from vlsim.aggregators import AGGREGATORS

# Line styles that keep overlapping lines apart (Dr. GRPO, VL Norm and the sequence sum all sit
# at 1 on a relative-step chart).
DASHES = {
    "grpo": "solid",
    "dapo": "dot",
    "dr_grpo": "dash",
    "seq_sum": "longdash",
    "vl_norm": "dashdot",
}
SYMBOLS = {
    "grpo": "circle",
    "dapo": "square",
    "dr_grpo": "diamond",
    "seq_sum": "x",
    "vl_norm": "triangle-up",
}
PUSH_SCALE = "RdBu"  # red: pushed down (A < 0), blue: pushed up (A > 0)


def display(name: str) -> str:
    """The display name of an aggregator key."""
    return AGGREGATORS[name].display_name if name in AGGREGATORS else name


# ----------------------------------------------------------------------------- boxes


def reading_time(minutes: int) -> None:
    """A caption with the lesson's reading time."""
    st.caption(f":material/schedule: About {minutes} minutes, with the questions.")


def notice(text: str) -> None:
    """The 'What to notice' box under a chart."""
    st.info(f"**What to notice.** {text}", icon=":material/visibility:")


def question(key: str, number: int, text: str, answer: str) -> None:
    """A check-your-understanding question; its answer shows once the button is pressed."""
    state = f"_revealed.{key}"
    with st.container(border=True):
        st.markdown(f"**Question {number}.** {text}")
        if st.session_state.get(state):
            st.success(f"**Answer.** {answer}", icon=":material/check_circle:")
        else:
            st.button(
                "Show the answer",
                key=f"reveal.{key}",
                on_click=lambda: st.session_state.__setitem__(state, True),
            )


def try_this(page: str, params: Mapping[str, str], text: str) -> None:
    """A 'Try this' box: what to do, and a link that opens the page in that scenario."""
    with st.container(border=True):
        st.markdown(f"**Try this.** {text}")
        st.page_link(
            page,
            label="Open this scenario",
            icon=":material/play_circle:",
            query_params=dict(params),
        )


# ----------------------------------------------------------------------------- figures


def token_strips(
    values: Mapping[str, np.ndarray],
    row_labels: Sequence[str],
    title: str,
    colorbar: str,
    texts: Sequence[Sequence[str]] | None = None,
    zmax: float | None = None,
    height: int | None = None,
    stacked: bool = False,
) -> go.Figure:
    """Answers as strips of tokens, one panel per entry of values ((G, T) arrays, NaN = no
    token), coloured on one shared symmetric scale; texts puts each token's text on its cell.
    Panels sit side by side, or one under another (stacked, for long strips with text)."""
    names = list(values)
    n = len(names)
    titles = [display(k) for k in names]
    if stacked:
        fig = make_subplots(
            rows=n,
            cols=1,
            shared_xaxes=True,
            subplot_titles=titles,
            vertical_spacing=min(0.3 / max(n, 1), 0.08),
        )
    else:
        fig = make_subplots(
            rows=1,
            cols=n,
            shared_yaxes=True,
            subplot_titles=titles,
            horizontal_spacing=0.03 if n > 1 else 0.0,
        )
    finite = [np.nanmax(np.abs(v)) for v in values.values() if np.isfinite(v).any()]
    zmax = zmax or (max(finite) if finite else 1.0) or 1.0
    G = len(row_labels)
    for col, name in enumerate(names, start=1):
        z = values[name]
        trace = go.Heatmap(
            z=z,
            y=list(row_labels),
            x=np.arange(1, z.shape[1] + 1),
            zmin=-zmax,
            zmax=zmax,
            colorscale=PUSH_SCALE,
            showscale=col == n,
            colorbar={"title": {"text": colorbar, "side": "right"}, "thickness": 12},
            xgap=1 if z.shape[1] <= 60 else 0,  # gaps would hide the cells of long strips
            ygap=3,
            hovertemplate="%{y}, token %{x}: %{z:.3g}<extra>" + display(name) + "</extra>",
        )
        if texts is not None:
            width = z.shape[1]
            cells = [[(row[t] if t < len(row) else "") for t in range(width)] for row in texts]
            trace.update(text=cells, texttemplate="%{text}", textfont={"size": 10})
            trace.hovertemplate = (
                "%{y}, token %{x} '%{text}': %{z:.3g}<extra>" + display(name) + "</extra>"
            )
        row, column = (col, 1) if stacked else (1, col)
        fig.add_trace(trace, row=row, col=column)
        if not stacked or col == n:
            fig.update_xaxes(title="token position", row=row, col=column)
    fig.update_yaxes(autorange="reversed")
    fig.update_annotations(font_size=13)
    per_panel = 40 + 24 * G if stacked else 0
    fig = _layout(
        fig,
        title,
        height=height or (90 + n * per_panel if stacked else max(220, 60 + 34 * G)),
        showlegend=False,
    )
    fig.update_layout(margin={"l": 90, "r": 20, "t": 70, "b": 50})
    return fig


def answer_bars(
    values: Mapping[str, np.ndarray],
    answer_labels: Sequence[str],
    title: str,
    y_title: str,
    log_y: bool = False,
) -> go.Figure:
    """Grouped bars: one group per answer, one bar per aggregator (its colour and name)."""
    fig = go.Figure(
        [
            go.Bar(
                x=list(answer_labels),
                y=np.asarray(v, dtype=float),
                name=display(name),
                marker={"color": color_of(name)},
                hovertemplate="%{x}: %{y:.4g}<extra>" + display(name) + "</extra>",
            )
            for name, v in values.items()
        ]
    )
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(title=y_title, type="log" if log_y else "linear")
    if log_y:
        finite = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values.values()])
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if finite.size:
            fig.update_yaxes(tickvals=nice_log_ticks(finite.min(), finite.max()))
    return _layout(fig, title, height=380)


def relative_lines(
    x: Sequence[float],
    curves: Mapping[str, np.ndarray],
    title: str,
    x_title: str,
    y_title: str,
    marker_x: float | None = None,
    log_axes: bool = True,
) -> go.Figure:
    """One line per aggregator with its own dash and marker, labelled at its right end (lines
    that coincide stay readable)."""
    fig = go.Figure()
    for name, y in curves.items():
        y = np.asarray(y, dtype=float)
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=y,
                mode="lines+markers",
                name=display(name),
                line={"color": color_of(name), "dash": DASHES.get(name, "solid"), "width": 2.5},
                marker={"symbol": SYMBOLS.get(name, "circle"), "size": 8},
                hovertemplate="x = %{x:.3g}: %{y:.3g}<extra>" + display(name) + "</extra>",
            )
        )

    # Direct labels at the right end; lines that end close together share one label.
    def place(value: float) -> float:  # the value in axis coordinates
        return float(np.log10(value)) if log_axes and value > 0 else value

    ends = sorted(
        (place(float(np.asarray(y, dtype=float)[-1])), display(n)) for n, y in curves.items()
    )
    span = max(ends[-1][0] - ends[0][0], 1e-9)
    groups: list[list[tuple[float, str]]] = []
    for end in ends:
        if groups and end[0] - groups[-1][-1][0] <= 0.06 * span:
            groups[-1].append(end)
        else:
            groups.append([end])
    for group in groups:
        fig.add_annotation(
            x=np.log10(x[-1]) if log_axes else x[-1],
            y=float(np.mean([p for p, _ in group])),
            text="<br>".join(n for _, n in group),
            showarrow=False,
            xanchor="left",
            xshift=10,
            font={"size": 12},
        )
    if marker_x is not None:
        fig.add_vline(x=marker_x, line={"color": "#555", "dash": "dot"})
        fig.add_annotation(
            x=np.log10(marker_x) if log_axes else marker_x,
            y=1,
            yref="paper",
            text="now",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            xshift=3,
            font={"color": "#555"},
        )
    kind = "log" if log_axes else "linear"
    fig.update_xaxes(
        title=x_title, type=kind, tickvals=nice_log_ticks(min(x), max(x)) if log_axes else list(x)
    )
    if not log_axes:
        pad = 0.05 * (max(x) - min(x))
        fig.update_xaxes(range=[min(x) - pad, max(x) + pad])
    all_y = np.concatenate([np.asarray(v, dtype=float) for v in curves.values()])
    all_y = all_y[np.isfinite(all_y) & (all_y > 0)]
    fig.update_yaxes(
        title=y_title,
        type=kind,
        tickvals=nice_log_ticks(all_y.min(), all_y.max()) if log_axes and all_y.size else None,
    )
    fig = _layout(fig, title, height=400)
    fig.update_layout(legend={"y": -0.25}, margin={"r": 150})
    return fig
