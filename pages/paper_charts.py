"""Figures of the Paper check page: pure functions from a reproduction report's parts to plotly.

Each takes the plain dicts of the report JSON (`vlsim.reproduce.report`); numbers that are
missing (None, NaN) are left out, never drawn as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from pages.charts import COLORS, _layout, color_of

SERIES = {
    "paper": ("paper's: g_i = A_i s_i", "#444444", "circle"),
    "free": ("advantage-free: s_i", "#1f77b4", "diamond"),
}
"""The two Figure-4 quantities: legend name, colour, marker."""

CONDITION_STYLE = {
    "GRPO": (COLORS["grpo"], "solid"),
    "GRPO + VL Norm": (COLORS["vl_norm"], "dash"),
    "DAPO": (COLORS["dapo"], "solid"),
    "DAPO + VL Norm": (COLORS["vl_norm"], "solid"),
}
"""Colour and dash of claim 4's conditions (VL Norm green, its GRPO twin dashed)."""

STATS = {
    "spread": "step-size spread (sd / mean of M Σx)",
    "bias": "direction bias (calibrated relative bias)",
    "variance_ratio": "variance per unit scale / Dr. GRPO's",
    "drift": "step-size drift since the first probe",
}
"""Per-aggregator statistics of claims 2-3 and their axis titles."""


def num(value: Any) -> float:
    """A float, NaN for anything that is not a finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _errors(est: Mapping[str, Any]) -> tuple[float, float, float]:
    """(value, minus, plus) of an estimate dict; NaN parts where there is no interval."""
    v, lo, hi = num(est.get("value")), num(est.get("low")), num(est.get("high"))
    return v, v - lo, hi - v


def figure4_figure(fig4: Mapping[str, Any] | None) -> go.Figure:
    """One prompt's answers: deviation against length (log-log), both quantities, with c L^beta."""
    fig = go.Figure()
    title = "Figure 4: deviation against length, one prompt"
    if not fig4:
        return _layout(fig, title + " (no probe data)")
    for key, (name, color, symbol) in SERIES.items():
        series = fig4.get(key) or {}
        L = np.asarray(series.get("length", []), dtype=float)
        d = np.asarray(series.get("deviation", []), dtype=float)
        ok = (L > 0) & (d > 0)
        if not ok.any():
            continue
        fig.add_trace(
            go.Scatter(x=L[ok], y=d[ok], mode="markers", name=name,
                       marker={"color": color, "symbol": symbol, "size": 8, "opacity": 0.75},
                       hovertemplate="L=%{x}<br>deviation %{y:.3g}<extra>" + name + "</extra>")
        )  # fmt: skip
        beta, c = num(series.get("slope")), num(series.get("c"))
        if math.isfinite(beta) and math.isfinite(c) and L[ok].min() < L[ok].max():
            xs = np.geomspace(L[ok].min(), L[ok].max(), 30)
            fig.add_trace(
                go.Scatter(x=xs, y=c * xs**beta, mode="lines", name=f"fit: L^{beta:.2f}",
                           line={"color": color, "dash": "dash", "width": 2}, hoverinfo="skip")
            )  # fmt: skip
    fig.update_xaxes(type="log", title="answer length L_i (tokens)")
    fig.update_yaxes(type="log", title="‖v_i − mean of the others‖²", exponentformat="power")
    return _layout(fig, title)


def slopes_figure(presets: Sequence[Mapping[str, Any]], band: float) -> go.Figure:
    """Both slopes per preset: each seed's (its interval over prompts) and the mean's t interval."""
    fig = go.Figure()
    fig.add_hrect(y0=1 - band, y1=1 + band, fillcolor="#2a9d55", opacity=0.08, line_width=0)
    fig.add_hline(y=1, line={"color": "#2a9d55", "dash": "dot"})
    fig.add_hline(y=0, line={"color": "#999999", "width": 1})
    for k, (key, (name, color, symbol)) in enumerate(SERIES.items()):
        offset = -0.15 + 0.3 * k
        xs, ys, mean_x, mean_y, minus, plus = [], [], [], [], [], []
        for i, p in enumerate(presets):
            for s in p[key]["seeds"]:
                if math.isfinite(num(s.get("slope"))):
                    xs.append(i + offset - 0.06)
                    ys.append(num(s["slope"]))
            v, m, pl = _errors(p[key]["mean"])
            mean_x.append(i + offset)
            mean_y.append(v)
            minus.append(m)
            plus.append(pl)
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="markers", name=f"{name}: per seed", showlegend=True,
                       marker={"color": color, "symbol": symbol + "-open", "size": 7})
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=mean_x, y=mean_y, mode="markers", name=f"{name}: mean, 95% CI over seeds",
                       marker={"color": color, "symbol": symbol, "size": 11},
                       error_y={"type": "data", "symmetric": False, "array": plus,
                                "arrayminus": minus, "thickness": 2})
        )  # fmt: skip
    fig.update_xaxes(tickvals=list(range(len(presets))), ticktext=[p["preset"] for p in presets],
                     range=[-0.6, len(presets) - 0.4], title="preset")  # fmt: skip
    fig.update_yaxes(title="slope beta in Var ∝ L^beta")
    return _layout(fig, "Length-noise slopes per preset (shaded: 'about linear')")


def aggregator_figure(
    table: Mapping[str, Mapping[str, Any]], stat: str, prediction: Mapping[str, Any] | None = None
) -> go.Figure:
    """One statistic of claims 2-3 per aggregator: bars with 95% intervals over seeds.

    For the variance ratio (log axis) the closed form's VL Norm prediction is drawn beside it.
    """
    names = list(table)
    values = [_errors(table[n][stat]) for n in names]
    labels = [table[n]["display_name"] for n in names]
    fig = go.Figure(
        go.Bar(
            x=labels, y=[v[0] for v in values], name="measured, 95% CI over seeds",
            marker={"color": [color_of(n) for n in names]},
            error_y={"type": "data", "symmetric": False, "array": [v[2] for v in values],
                     "arrayminus": [v[1] for v in values], "thickness": 1.5},
            hovertemplate="%{x}: %{y:.3g}<extra></extra>",
        )
    )  # fmt: skip
    if stat == "variance_ratio":
        fig.update_yaxes(type="log")
        fig.add_hline(y=1, line={"color": "#999999", "dash": "dot"})
        if prediction and "vl_norm" in table:
            label = table["vl_norm"]["display_name"]
            for key, name, symbol in (("beta1", "closed form, beta = 1", "diamond"),
                                      ("fitted", "closed form, fitted beta", "star")):  # fmt: skip
                if math.isfinite(num(prediction.get(key))):
                    fig.add_trace(
                        go.Scatter(x=[label], y=[num(prediction[key])], mode="markers", name=name,
                                   marker={"symbol": symbol, "size": 12, "color": "black"})
                    )  # fmt: skip
    else:
        fig.add_hline(y=0, line={"color": "#999999", "width": 1})
    fig.update_yaxes(title=STATS[stat])
    return _layout(fig, STATS[stat], height=340, showlegend=stat == "variance_ratio")


def curves_figure(conditions: Sequence[Mapping[str, Any]], threshold: float) -> go.Figure:
    """Held-out accuracy per condition: the mean over seeds with its pointwise 95% band."""
    fig = go.Figure()
    for c in conditions:
        color, dash = CONDITION_STYLE.get(c["condition"], ("#444444", "solid"))
        curve = c["curve"]
        steps = [num(s) for s in curve["step"]]
        low, high = [num(v) for v in curve["low"]], [num(v) for v in curve["high"]]
        if any(math.isfinite(v) for v in low):
            fig.add_trace(
                go.Scatter(x=steps + steps[::-1], y=high + low[::-1], fill="toself",
                           fillcolor=color, opacity=0.12, line={"width": 0}, hoverinfo="skip",
                           showlegend=False, legendgroup=c["condition"])
            )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=steps, y=[num(v) for v in curve["mean"]], mode="lines+markers",
                       name=f"{c['condition']} ({c['runs']} seeds)", legendgroup=c["condition"],
                       line={"color": color, "dash": dash, "width": 2}, marker={"size": 5})
        )  # fmt: skip
    fig.add_hline(y=threshold, line={"color": "#999999", "dash": "dash"},
                  annotation_text=f"threshold {threshold:g}")  # fmt: skip
    fig.update_xaxes(title="RL step (-1: the warm-started policy)")
    fig.update_yaxes(title="held-out accuracy (mean@k)")
    return _layout(fig, "Held-out accuracy, mean over seeds with 95% band")


def speedup_figure(pairs: Sequence[Mapping[str, Any]], paper: float) -> go.Figure:
    """Each comparison's speed-up with Fieller's 95% interval; 1x (no difference) and the paper's."""
    fig = go.Figure()
    for p in pairs:
        v, m, pl = _errors(p["speedup"])
        name = f"{p['other']} vs {p['base']}"
        fig.add_trace(
            go.Scatter(x=[v], y=[name], mode="markers", name=name, showlegend=False,
                       marker={"size": 12, "color": COLORS["vl_norm"]},
                       error_x={"type": "data", "symmetric": False, "array": [pl],
                                "arrayminus": [m], "thickness": 2},
                       hovertemplate=f"{name}: %{{x:.2f}}x<extra></extra>")
        )  # fmt: skip
    fig.add_vline(
        x=1, line={"color": "#999999", "dash": "dot"}, annotation_text="1x: no difference"
    )
    fig.add_vline(x=paper, line={"color": "#d62728", "dash": "dash"},
                  annotation_text=f"paper: {paper:g}x")  # fmt: skip
    fig.update_xaxes(title="speed-up to the threshold (x times fewer steps)", rangemode="tozero")
    return _layout(fig, "Speed-up with VL Norm, Fieller 95% interval", height=260)
