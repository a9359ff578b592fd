"""Home: what the app teaches, in a few lines, and where to go."""

import streamlit as st

from pages.common import ensure_app_navigation
from pages.reference_offer import reference_runs_button, show_loaded_message
from pages.training_common import get_store

ensure_app_navigation()

st.title("vlsim: loss aggregation in RLVR")
with st.container(border=True):
    st.markdown(
        "**Start here.** Three short lessons (about 35 minutes in all) build the idea step by "
        "step: why answer length matters, bias against variance, and where VL Norm's weights "
        "come from."
    )
    st.page_link(
        "pages/lesson_1_why_length.py",
        label="Lesson 1 · Why length matters",
        icon=":material/school:",
    )
show_loaded_message()
if not get_store().has_runs():
    with st.container(border=True):
        st.markdown(
            "**No runs in this store yet.** Train some in the Training Arena, or start from "
            "the reference runs."
        )
        reference_runs_button(
            "home.load_reference", lambda _: st.session_state.update(_home_loaded=True)
        )
elif st.session_state.pop("_home_loaded", False):
    st.page_link("pages/runs.py", label="See them on the Runs page", icon=":material/table_chart:")
st.markdown(
    "In reinforcement learning with verifiable rewards a prompt is answered $G$ times and "
    "answer $i$ has $L_i$ tokens. Its gradient $g_i$ sums one term per token, so **long answers "
    "are noisy**: $\\mathrm{Var}(g_i) \\approx V L_i$. Every trainer turns the token losses into "
    "one number with some *aggregation*, and that choice gives each answer a weight $x_i$:"
)
st.latex(
    r"\hat g = \sum_{k=1}^{B} \sum_{i=1}^{G} x_{k,i}\, g_{k,i},"
    r"\qquad \mathbb{E}[\hat g] = \Big(\sum_{k,i} x_{k,i}\Big) \nabla J,"
    r"\qquad \mathrm{Var}(\hat g) = V \sum_{k,i} x_{k,i}^2 L_{k,i}"
)
st.markdown(
    "The weights decide three things. **Step size**: if $\\sum x$ depends on the lengths "
    "(GRPO, DAPO), the step *drifts* as answers grow, as if the learning rate changed during "
    "training. **Direction**: when length and correctness are related, every weighting that "
    "depends on length (GRPO, DAPO slightly, and VL Norm too) tilts the update toward longer or "
    "shorter answers; only length-free weights (Dr. GRPO, the sequence sum) keep the direction. "
    "**Noise**: a constant weight (Dr. GRPO) lets long answers bring their token noise in full. "
    "VL Norm keeps $\\sum x$ constant and weighs answers $\\propto 1/L_i^{\\alpha}$: its step "
    "size does not depend on the lengths, and with $\\alpha = \\beta$ it has the least "
    "*token-noise* variance when $\\mathrm{Var}(g_i) = V L_i^{\\beta}$. Per-answer noise that "
    "does not grow with length favours equal weights, so in total a smaller $\\alpha$, or "
    "Dr. GRPO, can be less noisy. Every figure is defined on the "
    "[Definitions](/definitions) page."
)

st.subheader("Explore")
# A page link draws its label on one line (cut off where it is too long), so the link holds
# the page's name and the description sits beside it.
EXPLORE = [
    (
        "pages/aggregators.py",
        "Aggregators",
        ":material/function:",
        "The formulas, a calculator for your own lengths, and what TRL and verl settings "
        "really do.",
    ),
    (
        "pages/length_lab.py",
        "Length Lab",
        ":material/science:",
        "Monte Carlo of every aggregator's step-size drift, direction bias and noise as "
        "answers grow from a reference length distribution, with the closed forms beside it.",
    ),
    (
        "pages/training_arena.py",
        "Training Arena",
        ":material/model_training:",
        "Train tiny transformer policies on CountDown with GRPO-style RL, one run per "
        "aggregator, and watch accuracy, lengths and gradient noise live.",
    ),
    (
        "pages/runs.py",
        "Runs",
        ":material/table_chart:",
        "Every stored run: overlay curves, compare steps to an accuracy threshold, export, "
        "or send a run's lengths to the Length Lab.",
    ),
    (
        "pages/probes.py",
        "Probes",
        ":material/troubleshoot:",
        "Every aggregator's variance, CV and bias measured on the same rollouts of a "
        "training policy, and the length-variance slope (the paper's Figure 4).",
    ),
    (
        "pages/step_inspector.py",
        "Step Inspector",
        ":material/grid_on:",
        "One group of answers from a stored step, token by token: how hard each token is "
        "pushed under every aggregator, with its answer's reward, length and advantage.",
    ),
    (
        "pages/hypotheses.py",
        "Hypotheses",
        ":material/lab_research:",
        "Check a claim over several seeds: run A against B (or an α, G or M sweep) in the "
        "background and read curves with bands, steps to a threshold with CIs, and a verdict.",
    ),
    (
        "pages/definitions.py",
        "Definitions",
        ":material/menu_book:",
        "Every figure the app shows (scale, drift, direction bias, variance, CV, efficiency, "
        "slope, interval, verdict, speed-up) in a sentence or two, with its formula.",
    ),
]
for path, name, icon, description in EXPLORE:
    link, text = st.columns([1, 4], vertical_alignment="center")
    with link:
        st.page_link(path, label=f"**{name}**", icon=icon)
    with text:
        st.markdown(description)
st.caption("Every page keeps its settings in the link: copy the URL to share a scenario.")
