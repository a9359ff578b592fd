"""Plotly figure builders: pure functions from engine results to go.Figure (no Streamlit).

Every aggregator keeps one colour, one dash pattern and one marker across all charts, so lines
that lie on top of each other (Dr. GRPO and VL Norm at a step ratio of 1) both stay visible;
the 'optimal' oracle is grey and hatched (bars) or long-dashed (lines): a reference, not
something a trainer runs. Legends sit below the axis title, with room for as many rows as they
need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vlsim.aggregators import AGGREGATORS
from vlsim.montecarlo import OPTIMAL, LabResult, SweepPoint
from vlsim.numfmt import format_number

COLORS: dict[str, str] = {
    "grpo": "#d62728",
    "dapo": "#ff7f0e",
    "dr_grpo": "#1f77b4",
    "seq_sum": "#9467bd",
    "vl_norm": "#2a9d55",
    OPTIMAL: "#9a9a9a",
}
"""One colour per aggregator, the same on every chart."""

LINE_STYLES: dict[str, dict] = {
    "grpo": {"dash": "solid", "width": 2, "symbol": "circle"},
    "dapo": {"dash": "dash", "width": 2, "symbol": "square"},
    "dr_grpo": {"dash": "solid", "width": 5, "symbol": "diamond"},
    "seq_sum": {"dash": "dashdot", "width": 2, "symbol": "x"},
    "vl_norm": {"dash": "dot", "width": 3, "symbol": "triangle-up"},
    OPTIMAL: {"dash": "longdash", "width": 2, "symbol": "circle-open"},
}
"""Dash, width and marker per aggregator: Dr. GRPO is drawn wide and solid, VL Norm dotted on
top, so the two stay distinguishable where their lines coincide."""


def line_style(name: str) -> dict:
    """plotly `line` and `marker` dicts of an aggregator's line (colour, dash, marker)."""
    style = LINE_STYLES.get(name, {"dash": "solid", "width": 2, "symbol": "circle"})
    return {
        "line": {"color": color_of(name), "dash": style["dash"], "width": style["width"]},
        "marker": {"symbol": style["symbol"], "size": 8, "color": color_of(name)},
    }


MICRO_BATCH_COLORS = [
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#72b7b2",
    "#b279a2",
    "#eeca3b",
    "#9d755d",
    "#ff9da6",
    "#bab0ac",
]

Z95 = 1.96  # error bars: +- 1.96 standard errors (95% interval)
THEORY_MARKER = {
    "symbol": "diamond",
    "size": 11,
    "color": "black",
    "line": {"width": 1, "color": "white"},
}


LEGEND_ROW_PX = 24  # height of one legend row
LEGEND_WIDTH_PX = 480  # the width a legend row is assumed to have (half-page charts)


def _legend_rows(fig: go.Figure) -> int:
    """How many rows the horizontal legend needs, estimated from its entries' text."""
    names = {
        (t.legendgroup or t.name)
        for t in fig.data
        if t.name and t.showlegend is not False and fig.layout.showlegend is not False
    }
    if not names:
        return 0
    width = sum(7 * len(str(n)) + 45 for n in names)
    return max(1, math.ceil(width / LEGEND_WIDTH_PX))


def _layout(fig: go.Figure, title: str, height: int = 380, **kwargs) -> go.Figure:
    """Shared look: title top left; the legend under the x-axis title, in as many rows as it
    needs (pinned to the bottom of the figure, with the bottom margin grown to hold it)."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        template="plotly_white",
        hoverlabel={"namelength": -1},
        **kwargs,
    )
    rows = _legend_rows(fig)
    x_titled = any(
        getattr(fig.layout[axis].title, "text", None)
        for axis in fig.layout
        if axis.startswith("xaxis")
    )
    bottom = 40 + (28 if x_titled else 0) + rows * LEGEND_ROW_PX
    fig.update_layout(
        height=height + rows * LEGEND_ROW_PX,
        margin={"l": 60, "r": 20, "t": 50, "b": bottom},
        legend={
            "orientation": "h",
            "yref": "container",
            "yanchor": "bottom",
            "y": 0.0,
            "x": 0,
            "xanchor": "left",
        },
    )
    return fig


def tick_label(display_name: str) -> str:
    """A display name broken onto two lines, so bar labels need no rotation."""
    head, sep, tail = display_name.partition(" (")
    if sep:
        return f"{head}<br>({tail}"
    if len(display_name) > 9 and " " in display_name:
        return display_name.replace(" ", "<br>", 1)
    return display_name


def nice_log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 tick values covering [lo, hi] for a log axis (plotly's own minor labels crowd)."""
    lo, hi = max(lo, 1e-12), max(hi, lo)
    ticks = []
    for exponent in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if lo / 1.05 <= value <= hi * 1.05:  # plotly pads a log axis about this much
                ticks.append(value)
    if len(ticks) > 9:  # too many: keep the powers of ten
        ticks = [t for t in ticks if np.isclose(np.log10(t), round(np.log10(t)))]
    if len(ticks) < 2:  # a narrow range: its ends, to two significant digits
        ticks = sorted({float(f"{lo:.2g}"), float(f"{hi:.2g}")})
    return ticks


def log_tick_text(value: float) -> str:
    """A log-axis tick label: plain for ordinary sizes, '1e-5' style otherwise."""
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:g}"
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def color_of(name: str) -> str:
    return COLORS.get(name, "#444444")


def _bars(
    result: LabResult,
    value: str,
    se: str | None,
    name: str = "Monte Carlo",
    text_format: str = ".3g",
) -> go.Bar:
    """One bar per aggregator (oracle hatched grey) with 95% error bars."""
    rows = result.results
    y = [getattr(r, value) for r in rows]
    errors = [Z95 * getattr(r, se) for r in rows] if se else None
    return go.Bar(
        x=[tick_label(r.display_name) for r in rows],
        y=y,
        name=name,
        marker={
            "color": [color_of(r.name) for r in rows],
            "pattern": {"shape": ["/" if r.name == OPTIMAL else "" for r in rows]},
            "line": {"width": 0},
        },
        error_y={"type": "data", "array": errors, "visible": errors is not None, "thickness": 1.5},
        text=[format(v, text_format) for v in y],
        textposition="outside",
        cliponaxis=False,
        customdata=[r.name for r in rows],
        hovertemplate="%{x}: %{y:.4g}<extra>" + name + "</extra>",
    )


def _theory(result: LabResult, value: str, name: str = "closed form") -> go.Scatter:
    rows = result.results
    return go.Scatter(
        x=[tick_label(r.display_name) for r in rows],
        y=[getattr(r, value) for r in rows],
        mode="markers",
        name=name,
        marker=THEORY_MARKER,
        customdata=[r.name for r in rows],
        hovertemplate="%{x}: %{y:.4g}<extra>" + name + "</extra>",
    )


def _swatch(name: str, color: str) -> go.Scatter:
    """A legend-only entry: the bars carry one colour per aggregator, so their own legend
    swatch (the first bar's colour) would mislead."""
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        name=name,
        marker={"symbol": "square", "size": 12, "color": color},
        hoverinfo="skip",
    )


def scale_figure(result: LabResult) -> go.Figure:
    """Step size on the current lengths / on the reference lengths, per aggregator (1 = the
    step did not move): Monte Carlo bars with 95% intervals, closed-form diamonds."""
    bars = _bars(result, "relative_scale", "relative_scale_se", text_format=".2f")
    bars.text = [f"×{r.relative_scale:.2f}" for r in result.results]
    bars.showlegend = False
    fig = go.Figure(
        [
            bars,
            _theory(result, "relative_scale_theory"),
            _swatch("Monte Carlo (±95%)", "#777777"),
        ]
    )
    fig.add_hline(
        y=1,
        line={"dash": "dot", "color": "#555"},
        annotation_text="same step as at the reference",
        annotation_position="bottom left",
    )
    top = max(max(r.relative_scale, r.relative_scale_theory) for r in result.results)
    fig.update_yaxes(title="step now ÷ step at reference", range=[0, max(1.25, top * 1.2)])
    return _layout(fig, "Step-size drift: step now ÷ step at the reference lengths", height=400)


def variance_figure(result: LabResult) -> go.Figure:
    """Variance per unit scale, stacked: token noise (with its closed form) + reward sampling."""
    rows = result.results
    noise = _bars(result, "noise_variance", "noise_variance_se", name="token noise")
    noise.text = None
    reward = go.Bar(
        x=[tick_label(r.display_name) for r in rows],
        y=[r.variance - r.noise_variance for r in rows],
        name="reward sampling",
        marker={"color": [color_of(r.name) for r in rows], "opacity": 0.35},
        text=[f"{r.variance:.3g}" for r in rows],
        textposition="outside",
        cliponaxis=False,
        customdata=[r.name for r in rows],
        hovertemplate="%{x}: %{y:.4g}<extra>reward sampling</extra>",
    )
    theory = _theory(result, "noise_variance_theory", name="token noise, closed form")
    noise.showlegend = reward.showlegend = False
    fig = go.Figure(
        [
            noise,
            reward,
            theory,
            _swatch("token noise (dark)", "#777777"),
            _swatch("reward sampling (light)", "#d0d0d0"),
        ]
    )
    fig.update_layout(barmode="stack", legend_traceorder="normal")
    top = max(r.variance for r in rows)
    fig.update_yaxes(title="E‖ĝ − Eĝ‖² / scale²", range=[0, top * 1.2])
    return _layout(fig, "Variance per unit scale (lower is better)", height=400)


def cv_figure(result: LabResult) -> go.Figure:
    """Coefficient of variation sqrt(variance) / |grad J| per aggregator."""
    fig = go.Figure([_bars(result, "cv", "cv_se")])
    top = max(r.cv + Z95 * r.cv_se for r in result.results)
    fig.update_yaxes(title="CV = √variance / |∇J|", range=[0, top * 1.2])
    return _layout(fig, "Relative noise (CV)", height=400, showlegend=False)


def efficiency_figure(result: LabResult) -> go.Figure:
    """Oracle token-noise variance / this one, for the aggregators with a length-free step (the
    oracle's class); GRPO and DAPO have no efficiency (None) and are left out."""
    kept = [r for r in result.results if r.efficiency is not None]
    shown = result.model_copy(update={"results": kept})
    bars = _bars(shown, "efficiency", "efficiency_se", text_format=".2f")
    bars.showlegend = False
    fig = go.Figure(
        [bars, _theory(shown, "efficiency_theory"), _swatch("Monte Carlo (±95%)", "#777777")]
    )
    fig.add_hline(y=1, line={"dash": "dot", "color": "#555"})
    top = max(max(r.efficiency, r.efficiency_theory) for r in kept)
    fig.update_yaxes(title="efficiency (token noise)", range=[0, max(1.15, top * 1.15)])
    return _layout(fig, "Efficiency of the token-noise part (1 = the oracle)", height=400)


def direction_figure(result: LabResult) -> go.Figure:
    """Signed angle between the expected update and grad J (> 0: toward longer answers), one
    horizontal bar per aggregator with its 95% interval; 1 - cos is in the bar's label."""
    rows = result.results
    tilts = [r.length_tilt_deg for r in rows]
    # The value sits in the row's label: text beside a bar would run into the labels when the
    # bar points left.
    shown = [round(t, 1) or 0.0 for t in tilts]  # no "-0.0°"
    labels = [f"{r.display_name}  <b>{t:+.1f}°</b>" for r, t in zip(rows, shown, strict=True)]
    fig = go.Figure(
        go.Bar(
            y=labels,
            x=tilts,
            orientation="h",
            marker={
                "color": [color_of(r.name) for r in rows],
                "pattern": {"shape": ["/" if r.name == OPTIMAL else "" for r in rows]},
            },
            error_x={"type": "data", "array": [Z95 * r.length_tilt_se for r in rows]},
            customdata=[r.name for r in rows],
            hovertext=[f"1 − cos = {format_number(r.direction_bias, 2)}" for r in rows],
            showlegend=False,
            hovertemplate="%{y}: %{x:.3g}°, %{hovertext}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line={"color": "#555", "width": 1})
    # A floor keeps numerical noise (a few 1e-3 degrees when kappa = 0) from looking like bias.
    span = max(max(abs(t) + Z95 * r.length_tilt_se for t, r in zip(tilts, rows, strict=True)), 1.0)
    fig.update_xaxes(
        range=[-span * 1.15, span * 1.15],
        nticks=7,
        title="tilt toward longer answers (°)",
    )
    fig.update_yaxes(autorange="reversed")
    fig = _layout(fig, "Direction: angle of E[update] from ∇J", height=400)
    fig.update_layout(margin={"l": 190})
    return fig


SWEEP_PANELS = (
    ("relative_scale", "step ÷ step at reference"),
    ("cv", "CV (relative noise)"),
    ("efficiency", "efficiency (token noise)"),
)


def sweep_figure(points: Sequence[SweepPoint], param: str, x_title: str, log_x: bool) -> go.Figure:
    """Step ratio to the reference (log), CV and efficiency of every aggregator against the
    swept value (efficiency only for aggregators that have one)."""
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=[title for _, title in SWEEP_PANELS],
        horizontal_spacing=0.08,
    )
    if not points:
        return _layout(fig, "Sweep")
    x = [p.mean_length if param == "length_scale" else p.value for p in points]
    names = [r.name for r in points[0].result.results]
    for name in names:
        rows = [p.result.by_name()[name] for p in points]
        # VL Norm's display name carries alpha, which changes along an alpha sweep.
        label = "VL Norm" if name == "vl_norm" and param == "alpha" else rows[0].display_name
        style = line_style(name)
        for col, (key, _) in enumerate(SWEEP_PANELS, start=1):
            y = [getattr(r, key) for r in rows]
            if all(v is None for v in y):
                continue
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines+markers",
                    name=label,
                    legendgroup=name,
                    showlegend=col == 1,
                    line=style["line"],
                    marker=style["marker"],
                    customdata=[name] * len(rows),
                    hovertemplate=f"{label}<br>x=%{{x:.4g}}<br>{key}=%{{y:.4g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    ratios = [p.result.by_name()[n].relative_scale for p in points for n in names]
    ticks = nice_log_ticks(min(ratios + [1.0]), max(ratios + [1.0]))
    fig.update_yaxes(
        type="log",
        tickvals=ticks,
        ticktext=[log_tick_text(t) for t in ticks],
        row=1,
        col=1,
    )
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=3)
    x_ticks = nice_log_ticks(min(x), max(x)) if log_x else None
    for col in (1, 2, 3):
        fig.update_xaxes(
            title=x_title if col == 2 else None,
            type="log" if log_x else "linear",
            tickvals=x_ticks,
            ticktext=[log_tick_text(t) for t in x_ticks] if x_ticks else None,
            nticks=6,
            row=1,
            col=col,
        )
    fig.update_annotations(font_size=13)
    return _layout(fig, f"Sweep: {x_title}", height=440)


def alpha_variance_figure(points: Sequence[SweepPoint]) -> go.Figure:
    """VL Norm's variance against alpha: total, token-noise part and reward-sampling part, with
    the alpha that minimises the total and the one that minimises the token noise marked."""
    alphas = [p.value for p in points]
    rows = [p.result.by_name()["vl_norm"] for p in points]
    parts = (
        ("variance", "total", "#2a9d55", "solid"),
        ("noise_variance", "token-noise part", "#1f77b4", "dash"),
        ("signal_variance", "reward-sampling part", "#ff7f0e", "dot"),
    )
    fig = go.Figure()
    for key, label, color, dash in parts:
        y = [getattr(r, key) for r in rows]
        fig.add_trace(
            go.Scatter(
                x=alphas,
                y=y,
                mode="lines+markers",
                name=label,
                line={"color": color, "dash": dash, "width": 3 if key == "variance" else 2},
                hovertemplate=f"α=%{{x:.3g}}: %{{y:.4g}}<extra>{label}</extra>",
            )
        )
        best = int(np.argmin(y))
        if key != "signal_variance":
            fig.add_trace(
                go.Scatter(
                    x=[alphas[best]],
                    y=[y[best]],
                    mode="markers+text",
                    marker={"symbol": "star", "size": 14, "color": color},
                    text=[f"least at α={alphas[best]:g}"],
                    textposition="top center",
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
    fig.update_xaxes(title="VL Norm α (0 = Dr. GRPO)", nticks=9)
    fig.update_yaxes(title="variance per unit scale", rangemode="tozero")
    return _layout(fig, "Which α is least noisy? Total vs token noise", height=400)


def length_histogram(
    lengths: np.ndarray,
    summary: Mapping[str, float],
    max_len: int,
    reference: np.ndarray | None = None,
) -> go.Figure:
    """Histogram of sampled lengths (log-spaced bins when they span decades) with mean/median/p95,
    and the reference lengths as an outline when given."""
    L = np.asarray(lengths, dtype=np.float64).ravel()
    both = L if reference is None else np.concatenate([L, np.asarray(reference, float).ravel()])
    lo, hi = max(both.min(), 1.0), max(both.max(), 1.0)
    log_x = hi / lo > 30
    bins = np.geomspace(lo, hi * 1.0001, 50) if log_x else np.linspace(lo - 0.5, hi + 0.5, 50)
    counts, edges = np.histogram(L, bins=bins)
    share = counts / max(L.size, 1)
    centers = np.sqrt(edges[:-1] * edges[1:]) if log_x else (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Bar(
            x=centers,
            y=share,
            width=np.diff(edges),
            name="now",
            marker={"color": "#8fa8c8", "line": {"width": 0}},
            customdata=np.stack([edges[:-1], edges[1:]], axis=-1),
            hovertemplate="%{customdata[0]:.0f}–%{customdata[1]:.0f} tokens: %{y:.2%}<extra>now</extra>",
        )
    )
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64).ravel()
        ref_counts, _ = np.histogram(ref, bins=bins)
        fig.add_trace(
            go.Scatter(
                x=centers,
                y=ref_counts / max(ref.size, 1),
                mode="lines",
                line={"shape": "hvh", "color": "#444444", "width": 1.5},
                name="reference",
                hovertemplate="%{x:.0f} tokens: %{y:.2%}<extra>reference</extra>",
            )
        )
    marks = [
        ("mean", summary["mean"], "#d62728"),
        ("median", summary["median"], "#2a9d55"),
        ("p95", summary["p95"], "#555555"),
    ]
    for i, (label, value, color) in enumerate(marks):
        fig.add_vline(x=value, line={"color": color, "dash": "dash", "width": 1.5})
        fig.add_annotation(
            x=np.log10(value) if log_x else value,
            y=1.0 - 0.09 * i,
            yref="paper",
            text=f"{label} {value:.0f}",
            showarrow=False,
            xanchor="left",
            xshift=4,
            font={"color": color, "size": 12},
            bgcolor="rgba(255,255,255,0.8)",
        )
    fig.update_xaxes(
        title=f"answer length (tokens; M = {max_len})",
        type="log" if log_x else "linear",
        tickvals=nice_log_ticks(lo, hi) if log_x else None,
    )
    fig.update_yaxes(title="share of answers", tickformat=".0%")
    return _layout(fig, "Sampled answer lengths", height=340, showlegend=reference is not None)


def weights_figure(
    weights: Mapping[str, np.ndarray], lengths: np.ndarray, labels: Mapping[str, str] | None = None
) -> go.Figure:
    """Grouped bars: each aggregator's weight x_{k,i} for every answer of a (B, G) batch."""
    L = np.asarray(lengths)
    B, G = L.shape
    x = [f"g{k + 1}·a{i + 1}<br>L={int(L[k, i])}" for k in range(B) for i in range(G)]
    traces = []
    for name, w in weights.items():
        label = (labels or {}).get(
            name, AGGREGATORS[name].display_name if name in AGGREGATORS else name
        )
        traces.append(
            go.Bar(
                x=x,
                y=np.asarray(w).ravel(),
                name=label,
                marker={
                    "color": color_of(name),
                    "pattern": {"shape": "/" if name == OPTIMAL else ""},
                },
                customdata=[name] * (B * G),
                hovertemplate="%{x}: x = %{y:.4g}<extra>" + label + "</extra>",
            )
        )
    fig = go.Figure(traces)
    fig.update_layout(barmode="group", bargap=0.2)
    # Explicit 1-2-5 (or power-of-ten) ticks: plotly's own log labels run together.
    positive = [float(np.min(w[w > 0])) for w in map(np.asarray, weights.values()) if (w > 0).any()]
    top = max(float(np.max(np.asarray(w))) for w in weights.values())
    ticks = nice_log_ticks(min(positive), top) if positive else None
    fig.update_yaxes(
        type="log",
        title="weight x (log)",
        tickvals=ticks,
        ticktext=[log_tick_text(t) for t in ticks] if ticks else None,
    )
    fig.update_xaxes(title="answer (group · index, length)")
    return _layout(fig, "Weight of each answer", height=440)


def framework_figure(
    weights: np.ndarray,
    lengths: np.ndarray,
    micro_batch: np.ndarray,
    process: np.ndarray,
    equivalent: np.ndarray | None = None,
    equivalent_label: str = "",
) -> go.Figure:
    """Effective weight per answer, coloured by micro-batch; the textbook weights as diamonds."""
    L = np.asarray(lengths)
    x = np.arange(1, L.size + 1)
    fig = go.Figure()
    n_mb = int(np.max(micro_batch)) + 1
    for mb in range(n_mb):
        sel = np.asarray(micro_batch) == mb
        p = int(np.asarray(process)[sel][0])
        fig.add_trace(
            go.Bar(
                x=x[sel],
                y=np.asarray(weights)[sel],
                name=f"micro-batch {mb + 1} (process {p + 1})",
                marker={"color": MICRO_BATCH_COLORS[mb % len(MICRO_BATCH_COLORS)]},
                customdata=L[sel],
                showlegend=n_mb <= 16,
                hovertemplate="answer %{x}, L=%{customdata}: x = %{y:.4g}<extra>%{fullData.name}</extra>",
            )
        )
    if equivalent is not None:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=np.asarray(equivalent),
                mode="markers",
                name=equivalent_label or "vlsim equivalent",
                marker=THEORY_MARKER,
                hovertemplate="answer %{x}: %{y:.4g}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(bargap=0.15)
    fig.update_xaxes(title="answer (in step order)", dtick=1 if L.size <= 40 else None)
    fig.update_yaxes(title="effective weight x", rangemode="tozero")
    return _layout(fig, "Effective weight of each answer in one optimizer step", height=400)
