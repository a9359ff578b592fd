"""Lesson 1, why length matters: one prompt, four answers of different lengths; each token's loss,
each aggregator's weights, and the step size as the answers grow."""

from __future__ import annotations

from typing import Literal

import numpy as np
import streamlit as st
from pydantic import BaseModel, ConfigDict, Field

from pages.binder import Page
from pages.common import ensure_app_navigation
from pages.export import ChartBook
from pages.lesson_common import (
    answer_bars,
    display,
    notice,
    question,
    reading_time,
    relative_lines,
    token_strips,
    try_this,
)
from vlsim.aggregators import AGGREGATORS
from vlsim.lessons import (
    example_group,
    group_weights,
    step_size,
    stretch_curve,
    stretch_lengths,
    token_loss_table,
    token_push,
)

ensure_app_navigation()

PAGE = "lesson1"
K = "l1."
M = 512  # maximum answer length of the example
BASE_LENGTHS = (8, 16, 24, 48)
NAMES = ["grpo", "dapo", "dr_grpo", "vl_norm"]
CORRECT = {"short": (1, 1, 0, 0), "long": (0, 0, 1, 1)}
FACTORS = [0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8]


class Lesson1(BaseModel):
    """Lesson 1's settings, as its URL holds them."""

    model_config = ConfigDict(extra="forbid")

    stretch: float = Field(
        1.0,
        ge=0.5,
        le=8.0,
        description="Multiplies every length: watch the step sizes below move as answers grow.",
    )
    correct: Literal["short", "long"] = Field("short", description="Which answers are right.")
    alpha: float = Field(
        1.0, ge=0.0, le=2.0, description="VL Norm weighs answers ∝ L^-α; α = 0 is Dr. GRPO."
    )


st.title("Lesson 1 · Why length matters")
reading_time(10)

page = Page(PAGE)
settings = page.bind(Lesson1, K, Lesson1.model_fields)
page.open()

book = ChartBook(PAGE, "Lesson 1: why length matters")
with st.sidebar:
    st.header("This lesson")
    book.format_picker()

# ----------------------------------------------------------------------------- 1. the group

st.header("1. One prompt, four answers")
text, widgets = st.columns([2, 3], gap="large")
with text:
    st.markdown(
        "In RLVR a prompt is answered $G$ times. Here $G = 4$ answers of 8, 16, 24 and 48 tokens "
        "(times the stretch below). Each answer gets a reward $r_i$ (1 = correct) and an "
        "**advantage** $A_i = (r_i - \\bar r)/\\mathrm{std}(r)$: positive for the right "
        "answers, negative for the wrong ones."
    )
    st.markdown(
        "Every token $t$ of answer $i$ has the loss $\\ell_{i,t} = -A_i \\log \\pi(o_{i,t})$, so "
        "its gradient is $-A_i$ times the token's score $\\nabla \\log \\pi$. The answer's "
        "gradient sums $L_i$ such terms:"
    )
    st.latex(r"g_i = A_i \sum_{t=1}^{L_i} \nabla \log \pi(o_{i,t})")
    st.latex(r"\mathrm{Var}(g_i) \approx V\,L_i")
with widgets:
    stretch = settings.widget("stretch", "stretch every answer ×", slider=True, step=0.25)
    correct = settings.widget(
        "correct",
        "which answers are right?",
        radio=True,
        horizontal=True,
        format_func=lambda c: {"short": "the two short ones", "long": "the two long ones"}[c],
    )
    lengths = stretch_lengths(BASE_LENGTHS, stretch, M)
    group = example_group(lengths, CORRECT[correct])
    st.dataframe(token_loss_table(group), hide_index=True, width="stretch")
    present = np.arange(lengths.max())[None, :] < lengths[:, None]  # (G, max L)
    adv = np.where(present, group.advantages[:, None], np.nan)
    labels = [f"answer {i + 1} (L={L})" for i, L in enumerate(lengths)]
    book.show(
        token_strips(
            {"advantage": adv}, labels, "Each token's advantage A (its loss is −A·log π)", "A"
        ),
        key="l1.loss",
        name="Each token's advantage",
    )
notice(
    "Every token of an answer carries the same advantage, so the same loss; a longer answer just "
    f"has more of them. Summed without weights, the {lengths[-1]}-token answer would count "
    f"{lengths[-1] / lengths[0]:.3g} times as much as the {lengths[0]}-token one, and bring that "
    "many times the token noise."
)

# ----------------------------------------------------------------------------- 2. weights

st.header("2. Each aggregator's weights")
text, widgets = st.columns([2, 3], gap="large")
with text:
    st.markdown(
        "An aggregator turns the token losses into one number $\\sum_i x_i \\sum_t \\ell_{i,t}$: "
        "it gives answer $i$ the weight $x_i$ (one group, $B = 1$, maximum length $M = 512$):"
    )
    for name in NAMES:
        st.markdown(f"**{display(name)}**")
        st.latex(AGGREGATORS[name].latex)
    st.markdown(
        "The colour of a token below is how hard the update pushes it: $M\\,x_i A_i$ "
        "(blue: made more likely, red: less likely)."
    )
with widgets:
    alpha = settings.widget("alpha", "VL Norm α", slider=True, step=0.05)
    w = group_weights(lengths, M, NAMES, alpha)
    book.show(
        answer_bars(
            {n: M * w[n] for n in NAMES}, labels, "Weight of each answer (M·x)", "M·x", log_y=True
        ),
        key="l1.weights",
        name="Weight of each answer",
    )
notice(
    "GRPO gives the short answers the most weight (1/L); Dr. GRPO weighs all alike; VL Norm "
    "with α = 1 has GRPO's shape but a fixed total. Set α = 0 and VL Norm becomes Dr. GRPO."
)
book.show(
    token_strips(
        token_push(group, M, NAMES, alpha), labels, "How hard each token is pushed (M·x·A)", "M·x·A"
    ),
    key="l1.push",
    name="How hard each token is pushed",
)
notice(
    "Under GRPO the short answers' tokens glow and the long ones fade; under Dr. GRPO every "
    "token of a right answer is pushed equally, so a long answer gets more push in total."
)

# ----------------------------------------------------------------------------- 3. step size

st.header("3. The step size as answers grow")
text, chart = st.columns([2, 3], gap="large")
with text:
    st.markdown(
        "The **step size** is the total weight, $M\\sum_i x_i$ (the scale). If it depends on the "
        "lengths, the same learning rate takes smaller steps as the answers grow:"
    )
    st.latex(r"\text{GRPO: } M\sum_i \frac{1}{G L_i} = M\,\overline{1/L}")
    st.latex(r"\text{DAPO: } M \sum_i \frac{1}{\sum_j L_j} = \frac{M}{\bar L}")
    st.latex(r"\text{Dr. GRPO, VL Norm: } 1")
    st.dataframe(
        [
            {"aggregator": display(n), "step size M·Σx now": step_size(lengths, M, n, alpha)}
            for n in NAMES
        ],
        hide_index=True,
        width="stretch",
    )
with chart:
    curve = stretch_curve(BASE_LENGTHS, FACTORS, M, NAMES, alpha)
    book.show(
        relative_lines(
            FACTORS,
            curve,
            "Step size relative to stretch 1",
            "stretch ×",
            "step / step at ×1",
            marker_x=stretch,
        ),
        key="l1.steps",
        name="Step size as answers grow",
    )
notice(
    "GRPO's and DAPO's lines fall as 1/stretch: answers twice as long, half the step. Dr. GRPO's "
    "and VL Norm's stay at 1 (dashed lines on top of each other): their step does not depend on "
    "how long the answers are."
)

# ----------------------------------------------------------------------------- questions

st.header("Check your understanding")
question(
    "l1.q1",
    1,
    "Every answer doubles in length. What happens to GRPO's step size, and to Dr. GRPO's?",
    "GRPO's step M·mean(1/L) halves; Dr. GRPO's stays 1. Set the stretch to 2 and read the table.",
)
question(
    "l1.q2",
    2,
    "Inside one group GRPO and VL Norm (α = 1) both weigh answers ∝ 1/L. What differs?",
    "Only the total: GRPO's Σx = (1/G)Σ1/L_i moves with the lengths, VL Norm's is fixed at 1/M. "
    "Same direction inside a group, a different step size.",
)
question(
    "l1.q3",
    3,
    "Why does a long answer bring more noise into the update than a short one?",
    "Its gradient sums one noisy score term per token; with independent terms the variance "
    "grows like L. Weighting long answers less (VL Norm) cuts that noise.",
)
try_this(
    "pages/lesson_1_why_length.py",
    {"stretch": "4", "correct": "long", "alpha": "1"},
    "Make every answer four times longer and let the long answers be the right ones: which "
    "aggregator still pushes the right answers hardest, and whose step has shrunk?",
)
with st.sidebar:
    book.download_all()
settings.value()
page.write()
