"""Lesson 3, deriving VL Norm: minimise sum x_i^2 L_i^beta with a fixed total (Lagrange), check it
with a numeric minimiser, find alpha = beta, and take beta from a real run's probes."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pages.binder import Page
from pages.charts import _layout, color_of
from pages.common import ensure_app_navigation, fmt
from pages.export import ChartBook
from pages.lesson_common import (
    notice,
    question,
    reading_time,
    try_this,
)
from vlsim.lessons import (
    MeasuredSlope,
    alpha_from_slope,
    lagrange_multiplier,
    numeric_minimiser,
    parse_group_lengths,
    reference_slopes,
    stored_slopes,
    variance_by_alpha,
)
from vlsim.store import Store, default_data_dir

ensure_app_navigation()

PAGE = "lesson3"
K = "l3."
DEFAULT_LENGTHS = "10 30 60 120 300"
ALPHAS = np.round(np.arange(0.0, 2.0001, 0.05), 2)


@st.cache_data(ttl=30, show_spinner=False)
def measured_slopes(data_dir: str) -> tuple[list[MeasuredSlope], str]:
    """Length-noise slopes of stored runs with probes, else of the bundled reference runs."""
    stored = stored_slopes(Store(data_dir))
    if stored:
        return stored, "stored runs"
    return reference_slopes(), "the reference runs that ship with vlsim (docs/reference_runs)"


def use_slope(slope: float) -> None:
    """Take a measured slope as beta and as VL Norm's alpha."""
    value = alpha_from_slope(slope)
    st.session_state[f"{K}beta"] = value
    st.session_state[f"{K}alpha"] = value


class Lesson3(BaseModel):
    """Lesson 3's settings, as its URL holds them."""

    model_config = ConfigDict(extra="forbid")

    lengths: str = Field(
        DEFAULT_LENGTHS,
        max_length=1000,
        description="2 to 32 whole numbers separated by spaces or commas.",
    )
    beta: float = Field(
        1.0, ge=0.0, le=2.0, description="Var(g_i) = V L_i^β: 1 for independent tokens."
    )
    alpha: float = Field(0.5, ge=0.0, le=2.0, description="VL Norm weighs answers ∝ L^-α.")

    @field_validator("lengths")
    @classmethod
    def _lengths(cls, text: str) -> str:
        parse_group_lengths(text)  # ValueError with a readable message
        return text


st.title("Lesson 3 · Deriving VL Norm")
reading_time(12)

page = Page(PAGE)
settings = page.bind(Lesson3, K, Lesson3.model_fields)
page.open()

book = ChartBook(PAGE, "Lesson 3: deriving VL Norm")
with st.sidebar:
    st.header("This lesson")
    book.format_picker()

# ----------------------------------------------------------------------------- 1. problem

st.header("1. The problem")
text, widgets = st.columns([3, 2], gap="large")
with text:
    st.markdown(
        "Answer $i$'s gradient $g_i$ has mean $\\nabla J$ whatever its length, and a noise that "
        "grows with its length: $\\mathrm{Var}(g_i) = V L_i^{\\beta}$ ($\\beta = 1$ for "
        "independent tokens, more when neighbouring tokens are correlated). We look for weights "
        "that keep the step size fixed and make the update as quiet as possible:"
    )
    st.latex(
        r"\min_{x}\; \sum_{i=1}^{G} x_i^2 L_i^{\beta}\quad\text{subject to}\quad \sum_{i=1}^{G} x_i = c"
    )
    st.markdown(
        "The constraint is what makes the step size length-free: $\\mathbb{E}[\\hat g \\mid L] = "
        "(\\sum_i x_i)\\nabla J = c\\,\\nabla J$. (VL Norm uses $c = 1/M$.)"
    )
with widgets:
    text_value = settings.widget("lengths", "answer lengths of one group")
    beta = settings.widget("beta", "variance exponent β", slider=True, step=0.05)
try:
    lengths = parse_group_lengths(text_value)
except ValueError as err:
    st.error(f"{err}. Showing the default lengths {DEFAULT_LENGTHS}.", icon=":material/error:")
    lengths = parse_group_lengths(DEFAULT_LENGTHS)

# ----------------------------------------------------------------------------- 2. Lagrange

st.header("2. Step by step, with a Lagrange multiplier")
text, check = st.columns([3, 2], gap="large")
with text:
    st.markdown("**Step 1.** Add the constraint with a multiplier $\\lambda$:")
    st.latex(
        r"\mathcal{L}(x, \lambda) = \sum_i x_i^2 L_i^{\beta} - \lambda\Big(\sum_i x_i - c\Big)"
    )
    st.markdown("**Step 2.** Set each partial derivative to zero:")
    st.latex(
        r"\frac{\partial \mathcal{L}}{\partial x_i} = 2 x_i L_i^{\beta} - \lambda = 0 \;\Rightarrow\; x_i = \frac{\lambda}{2}\,L_i^{-\beta}"
    )
    st.markdown("**Step 3.** The constraint fixes $\\lambda$:")
    st.latex(
        r"\sum_i \frac{\lambda}{2} L_i^{-\beta} = c \;\Rightarrow\; \lambda = \frac{2c}{\sum_j L_j^{-\beta}}"
    )
    st.markdown("**Step 4.** So the least-variance weights are")
    st.latex(r"x_i = c\,\frac{L_i^{-\beta}}{\sum_j L_j^{-\beta}}")
    st.markdown(
        "The objective is a sum of squares with positive coefficients (convex), so this "
        "stationary point is the minimum. With $c = 1/M$ it is exactly VL Norm's weight with "
        "$\\alpha = \\beta$."
    )
result = numeric_minimiser(lengths, beta, total=1.0)
with check:
    st.markdown("**Live check.** scipy's SLSQP minimiser, started from equal weights ($c = 1$):")
    labels = [f"L={L}" for L in lengths]
    fig = go.Figure(
        [
            go.Bar(
                x=labels,
                y=result.numeric,
                name="numeric minimiser",
                marker={"color": "#8fa8c8"},
                hovertemplate="%{x}: %{y:.5f}<extra>numeric</extra>",
            ),
            go.Scatter(
                x=labels,
                y=result.closed,
                mode="markers",
                name="closed form c·L^−β/ΣL^−β",
                marker={"symbol": "diamond", "size": 12, "color": "black"},
                hovertemplate="%{x}: %{y:.5f}<extra>closed form</extra>",
            ),
        ]
    )
    fig.update_yaxes(title="weight x_i (c = 1)", rangemode="tozero")
    book.show(
        _layout(fig, "Numeric minimiser against the closed form", height=360),
        key="l3.fig_check",
        name="Numeric minimiser against the closed form",
    )
    verdict = "match" if result.max_abs_diff < 1e-5 else "differ"
    st.caption(
        f"They {verdict}: largest difference {result.max_abs_diff:.1e} of the total; variance "
        f"{fmt(result.numeric_variance, 6)} (numeric) and {fmt(result.closed_variance, 6)} "
        f"(closed form); λ = {fmt(lagrange_multiplier(lengths, beta))}. Minimiser: {result.message}"
    )
notice(
    "The bars (found by trial, without the formula) land on the diamonds (the formula). Change "
    "the lengths or β and they move together: long answers get less weight, more so for larger β."
)

# ----------------------------------------------------------------------------- 3. alpha

st.header("3. Which α?  α = β")
text, chart = st.columns([2, 3], gap="large")
with text:
    st.markdown(
        "VL Norm weighs answers $x_i \\propto L_i^{-\\alpha}$ with a fixed total. The chart "
        "shows its variance, relative to the least possible, for every $\\alpha$: the minimum "
        "sits where $\\alpha = \\beta$."
    )
    alpha = settings.widget("alpha", "VL Norm α", slider=True, step=0.05)
    st.markdown(
        "$\\alpha = 0$ is Dr. GRPO (equal weights); $\\alpha = 1$ is VL Norm's default, the "
        "best choice when tokens are independent ($\\beta = 1$)."
    )
ratio = variance_by_alpha(lengths, beta, ALPHAS)
now = float(variance_by_alpha(lengths, beta, [alpha])[0])
with chart:
    fig = go.Figure(
        go.Scatter(
            x=ALPHAS,
            y=ratio,
            mode="lines",
            name="VL Norm",
            line={"color": color_of("vl_norm"), "width": 3},
            hovertemplate="α = %{x}: %{y:.3f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[alpha],
            y=[now],
            mode="markers+text",
            name="your α",
            text=[f"α = {alpha:g}: {now:.2f}"],
            textposition="top right",
            marker={"size": 12, "color": "black"},
        )
    )
    fig.add_vline(x=beta, line={"dash": "dot", "color": "#555"})
    fig.add_annotation(
        x=beta, y=1, yref="paper", text=f"β = {beta:g}", showarrow=False, yanchor="bottom"
    )
    fig.update_xaxes(title="α")
    fig.update_yaxes(title="variance / least variance", type="log")
    book.show(
        _layout(fig, "VL Norm's variance against α", height=380, showlegend=False),
        key="l3.fig_alpha",
        name="VL Norm's variance against alpha",
    )
notice(
    "The curve touches 1 exactly at α = β and rises on both sides: too small an α lets long "
    "answers bring their noise, too large an α throws away what they know."
)

# ----------------------------------------------------------------------------- 4. measured

st.header("4. β from a real run")
slopes, where = measured_slopes(str(default_data_dir()))
st.markdown(
    "The gradient probes of a training run measure each answer's deviation "
    "$\\lVert g_i - \\mathbb{E} g_i\\rVert^2$ and fit $\\log$ deviation against $\\log L_i$ "
    "(the paper's Figure 4). The slope of that line is the $\\beta$ of real answers."
)
if not slopes:
    st.warning(
        "No run with probe records was found, and the reference runs are missing.",
        icon=":material/search_off:",
    )
else:
    st.caption(f"Slopes from {where}.")
    choice = st.selectbox(
        "measured slope",
        range(len(slopes)),
        format_func=lambda i: (
            f"{slopes[i].source}, step {slopes[i].step}: slope {slopes[i].slope:.2f}"
            + (
                f" (95% CI {slopes[i].ci_low:.2f} to {slopes[i].ci_high:.2f})"
                if slopes[i].ci_low is not None and slopes[i].ci_high is not None
                else ""
            )
        ),
        key=f"{K}slope",
    )
    picked = slopes[choice]
    st.button(
        f"Use β = α = {alpha_from_slope(picked.slope):g}",
        key=f"{K}use_slope",
        on_click=use_slope,
        args=(picked.slope,),
        type="primary",
        help="Sets β and VL Norm's α to the measured slope (rounded to 0.05, kept in [0, 2]).",
    )
    if picked.slope < 0 or picked.slope > 2:
        st.caption("The slope lies outside [0, 2]; α is kept at the nearest end of that range.")

st.header("Check your understanding")
question(
    "l3.q1",
    1,
    "Why does the constraint Σ x_i = c make the step size independent of the lengths?",
    "Because E[ĝ | L] = (Σ x_i) ∇J: with the total fixed, the expected update is c ∇J whatever "
    "the lengths are. GRPO's and DAPO's totals move with the lengths; VL Norm's does not.",
)
question(
    "l3.q2",
    2,
    "Neighbouring tokens are correlated so that Var(g_i) ∝ L_i^1.5. Which α is best?",
    "α = 1.5: the minimiser is x_i ∝ L_i^−β, whatever β is.",
)
question(
    "l3.q3",
    3,
    "α = 0 gives equal weights (Dr. GRPO). Why is that not the minimum when β = 1?",
    "With equal weights the variance is c²ΣL_i/G², with 1/L weights it is c²/Σ(1/L_i); since "
    "mean(L)·mean(1/L) ≥ 1, equal weights are never quieter, and equal only when all lengths match.",
)
try_this(
    "pages/lesson_3_deriving_vl_norm.py",
    {"lengths": "5 10 400 800", "beta": "1.5", "alpha": "1"},
    "Spread the lengths widely and make the noise grow faster than length (β = 1.5): how much "
    "variance does the default α = 1 waste, and where is the minimum now?",
)
with st.sidebar:
    book.download_all()
settings.value()
page.write()
