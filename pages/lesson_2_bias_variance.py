"""Lesson 2, bias and variance: scale drift and direction bias (length-correctness link kappa)
against token noise, measured with the Length Lab on a small fast configuration."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from pydantic import BaseModel, ConfigDict, Field

from pages.binder import Page
from pages.charts import Z95, _layout, color_of, tick_label
from pages.common import cached_lab, ensure_app_navigation
from pages.export import ChartBook
from pages.lesson_common import (
    display,
    notice,
    question,
    reading_time,
    relative_lines,
    try_this,
)
from vlsim.lessons import LESSON2_NAMES, drift_rows, lesson2_config

ensure_app_navigation()

PAGE = "lesson2"
K = "l2."
KAPPAS = [-2.0, -1.0, 0.0, 1.0, 2.0]
N_BATCHES = 2000  # Monte Carlo batches per lab: about 0.1 s each


class Lesson2(BaseModel):
    """Lesson 2's settings, as its URL holds them."""

    model_config = ConfigDict(extra="forbid")

    kappa: float = Field(-1.0, ge=-2.0, le=2.0, description="How correctness depends on length.")
    stretch: float = Field(
        2.0,
        ge=1.0,
        le=4.0,
        description="Every length is multiplied by this factor (median 100 → 100×).",
    )
    alpha: float = Field(1.0, ge=0.0, le=2.0, description="VL Norm weighs answers ∝ L^-α.")


def lab(kappa: float, alpha: float, stretch: float = 1.0):
    """The lesson's Length Lab result (cached across reruns)."""
    return cached_lab(lesson2_config(kappa, alpha, stretch, N_BATCHES).model_dump_json())


def bars(
    values: dict[str, float],
    errors: dict[str, float] | None,
    title: str,
    y_title: str,
    reference: float | None = None,
) -> go.Figure:
    """One bar per aggregator in its colour, with 95% error bars and a reference line."""
    names = list(values)
    fig = go.Figure(
        go.Bar(
            x=[tick_label(display(n)) for n in names],
            y=[values[n] for n in names],
            marker={"color": [color_of(n) for n in names]},
            error_y={"type": "data", "array": [Z95 * errors[n] for n in names]} if errors else None,
            text=[f"{values[n]:.2f}" for n in names],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.3g}<extra></extra>",
        )
    )
    if reference is not None:
        fig.add_hline(y=reference, line={"dash": "dot", "color": "#555"})
    top = max(max(values.values()), reference or 0)
    fig.update_yaxes(title=y_title, range=[0, top * 1.25])
    return _layout(fig, title, height=380, showlegend=False)


st.title("Lesson 2 · Bias and variance")
reading_time(12)

page = Page(PAGE)
settings = page.bind(Lesson2, K, Lesson2.model_fields)
page.open()

book = ChartBook(PAGE, "Lesson 2: bias and variance")
with st.sidebar:
    st.header("This lesson")
    book.format_picker()

st.markdown(
    "An update $\\hat g = \\sum_i x_i g_i$ can be wrong in two ways. **Bias**: its average is "
    "not the true gradient $\\nabla J$, either in *size* (the step drifts with the lengths) or "
    "in *direction* (it leans toward longer or shorter answers). **Variance**: it scatters "
    "around its average. The numbers below come from the Length Lab: 2 000 simulated batches "
    "of $B = 4$ prompts × $G = 8$ answers, log-normal lengths around 100 tokens, $M = 4096$."
)

# ----------------------------------------------------------------------------- 1. size

st.header("1. Size: does the step drift as answers grow?")
text, chart = st.columns([2, 3], gap="large")
with text:
    st.markdown(
        "Given the lengths, the expected update is the true gradient times the total weight:"
    )
    st.latex(r"\mathbb{E}[\hat g \mid L] = \Big(\sum_i x_i\Big)\,\nabla J")
    st.markdown(
        "So the **scale** $M\\,\\mathbb{E}[\\sum_i x_i]$ is the step size. Let the answers grow "
        "(as they do during RLVR training) and compare the scale before and after."
    )
    stretch = settings.widget("stretch", "answers grow ×", slider=True, step=0.25)
    alpha = settings.widget("alpha", "VL Norm α", slider=True, step=0.05)
kappa = float(st.session_state[f"{K}kappa"])
start, grown = lab(kappa, alpha), lab(kappa, alpha, stretch)
rows = {r["name"]: r for r in drift_rows(start, grown)}
with chart:
    book.show(
        bars(
            {n: rows[n]["ratio"] for n in LESSON2_NAMES},
            None,
            f"Step size after the answers grew ×{stretch:g}, relative to before",
            "scale after / before",
            1.0,
        ),
        key="l2.drift",
        name="Step size drift",
    )
notice(
    "GRPO's and DAPO's step shrinks roughly as 1/stretch: the same learning rate moves the "
    "policy less as answers get longer. Dr. GRPO, the sequence sum and VL Norm stay at 1."
)

# ----------------------------------------------------------------------------- 2. noise

st.header("2. Noise: how much does the update scatter?")
text, chart = st.columns([2, 3], gap="large")
with text:
    st.markdown("With independent token terms an answer's noise grows with its length:")
    st.latex(r"\mathrm{Var}(\hat g \mid L) = V \sum_i x_i^2\,L_i")
    st.markdown(
        "Divided by the squared scale (a smaller step is not less noise), this is the "
        "**variance per unit scale**. The chart shows it relative to Dr. GRPO's."
    )
base = start.by_name()["dr_grpo"].noise_variance
with chart:
    book.show(
        bars(
            {n: start.by_name()[n].noise_variance / base for n in LESSON2_NAMES},
            {n: start.by_name()[n].noise_variance_se / base for n in LESSON2_NAMES},
            "Token noise per unit scale, relative to Dr. GRPO (lower is better)",
            "relative token noise",
            1.0,
        ),
        key="l2.noise",
        name="Token noise",
    )
vl_share = start.by_name()["vl_norm"].noise_variance / base
grpo_share = start.by_name()["grpo"].noise_variance / base
notice(
    f"VL Norm (α = {alpha:g}) carries {100 * vl_share:.0f}% of Dr. GRPO's token noise: it weighs "
    f"the noisy long answers less (α = 1 is the least for independent tokens). GRPO carries "
    f"{100 * grpo_share:.0f}%, but only because it also shrinks long answers, and its step "
    "size drifts (chart 1)."
)

# ----------------------------------------------------------------------------- 3. direction

st.header("3. Direction: does the update lean toward longer answers?")
text, chart = st.columns([2, 3], gap="large")
with text:
    st.markdown(
        "Now link correctness to length: answer $i$ is right with probability "
        "$\\sigma(\\mathrm{logit}\\,p + \\kappa z_i)$, $z_i$ its standardised log-length. "
        "$\\kappa < 0$: long answers are more often wrong."
    )
    st.latex(r"\nabla J = \mathbb{E}\Big[\sum_i g_i\Big]")
    st.latex(r"\text{tilt} = \angle(\mathbb{E}\hat g) - \angle(\nabla J)")
    st.markdown(
        "The **tilt** is how far the expected update turns toward *be longer* (positive) or "
        "*be shorter* (negative) compared with the true gradient."
    )
    kappa = settings.widget("kappa", "length-correctness link κ", slider=True, step=0.25)
sweep = {k: lab(k, alpha) for k in KAPPAS}
with chart:
    curves = {
        n: np.array([sweep[k].by_name()[n].length_tilt_deg for k in KAPPAS]) for n in LESSON2_NAMES
    }
    book.show(
        relative_lines(
            KAPPAS,
            curves,
            "Tilt of the expected update against κ",
            "κ (length-correctness link)",
            "tilt (degrees; + = toward longer)",
            marker_x=kappa,
            log_axes=False,
        ),
        key="l2.tilt",
        name="Direction tilt",
    )
notice(
    "At κ = 0 every line is at 0: no link, no tilt. With κ ≠ 0, GRPO and VL Norm (α > 0) tilt (they "
    "weigh short answers more, and those are more often right or wrong); DAPO tilts a little "
    "(its weight is shared within a batch). Dr. GRPO and the sequence sum stay exactly at 0."
)

# ----------------------------------------------------------------------------- 4. trade-off

st.header("4. The honest trade-off")
now = lab(kappa, alpha).by_name()
st.dataframe(
    [
        {
            "aggregator": display(n),
            "step after ×" + f"{stretch:g} (1 = fixed)": round(rows[n]["ratio"], 3),
            "token noise vs Dr. GRPO": round(start.by_name()[n].noise_variance / base, 3),
            f"tilt at κ = {kappa:g} (°)": f"{now[n].length_tilt_deg:+.2f} ± {Z95 * now[n].length_tilt_se:.2f}",
        }
        for n in LESSON2_NAMES
    ],
    hide_index=True,
    width="stretch",
)
st.markdown(
    "No weighting wins on every row. **VL Norm fixes the step size and cuts token noise, but "
    "when length and correctness are linked, every length-dependent weighting (GRPO, DAPO and "
    "VL Norm) tilts the direction.** Only length-independent weights (Dr. GRPO, the sequence "
    "sum) keep it, and they pay with the most noise."
)

st.header("Check your understanding")
question(
    "l2.q1",
    1,
    "VL Norm's step size is 1 at every length. Is its update unbiased in every respect?",
    "No. Its expected size is fixed, but its weights still depend on length, so when κ ≠ 0 the "
    "expected update leans (chart 3). Only Dr. GRPO and the sequence sum keep the direction.",
)
question(
    "l2.q2",
    2,
    "GRPO's token noise is about as low as VL Norm's. Why is GRPO not the better choice?",
    "Its step size drifts with the lengths (chart 1), and it tilts at least as much as VL Norm "
    "when κ ≠ 0. Inside a group it is VL Norm (α = 1) times a length-dependent constant.",
)
question(
    "l2.q3",
    3,
    "At κ = 0, which aggregators point the right way?",
    "All of them, within Monte Carlo error: the direction bias needs a link between length and "
    "correctness. Their sizes and noise still differ.",
)
try_this(
    "pages/lesson_2_bias_variance.py",
    {"kappa": "0", "stretch": "3", "alpha": "1"},
    "Remove the link (κ = 0) and let the answers triple in length: every tilt vanishes, and "
    "only the step sizes and the noise still tell the aggregators apart.",
)
with st.sidebar:
    book.download_all()
settings.value()
page.write()
