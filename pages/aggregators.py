"""Aggregators: the formulas, a single-batch calculator, and what trainer settings really do.

Widgets -> typed lengths and settings -> vlsim.aggregators / theory / frameworks -> plotly.
Settings live in the URL under calc.* (calculator) and fw.* (framework view).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages import charts
from pages.binder import Page, View
from pages.common import definition, ensure_app_navigation, fmt
from pages.export import ChartBook
from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE, VL_NORM_BATCH_LATEX
from vlsim.aggregators import weights as aggregator_weights
from vlsim.config import LabConfig
from vlsim.frameworks import (
    FRAMEWORK_MODES,
    FRAMEWORK_VERSIONS,
    TRL_EXAMPLE,
    TrainerSetup,
    framework_view,
)
from vlsim.length_text import (
    CalculatorConfig,
    format_lengths_text,
    parse_calculator_lengths,
    parse_lengths_text,
)
from vlsim.lengths import sample_lengths
from vlsim.montecarlo import OPTIMAL, ORACLE_CLASS
from vlsim.theory import aggregator_figures, answer_variance, figures, optimal_weights

ensure_app_navigation()

PAGE = "agg"
FW_DEFAULT = TRL_EXAMPLE
VERL_ONLY = ("verl_engine", "verl_version", "norm_width", "loss_scale_factor")
MAX_STEP_ANSWERS = 4096  # answers per optimizer step the framework view will draw
FRAMEWORK_NAMES = {"trl": "TRL (GRPOTrainer)", "verl": "verl"}
MODE_TWIN = {  # the same idea under the other framework's name
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dapo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
    "seq-mean-token-mean": "grpo",
    "token-mean": "dapo",
    "seq-mean-token-sum": "dr_grpo",
    "seq-mean-token-sum-norm": "dr_grpo",
}


def lengths_text(text: str) -> dict[str, str]:
    """The calculator's lengths in their text box: one group per line."""
    try:
        return {"agg.lengths": format_lengths_text(parse_lengths_text(text))}
    except ValueError:
        return {"agg.lengths": text}


def _switch_framework() -> None:
    """Keep the closest loss mode when the framework changes."""
    mode = st.session_state.get("fw.loss_mode")
    new = st.session_state["fw.framework"]
    if mode not in FRAMEWORK_MODES[new]:
        twin = MODE_TWIN.get(mode)
        st.session_state["fw.loss_mode"] = (
            twin if twin in FRAMEWORK_MODES[new] else next(iter(FRAMEWORK_MODES[new]))
        )


# ----------------------------------------------------------------------------- state

page = Page(PAGE)
calc = page.bind(
    CalculatorConfig,
    "agg.",
    CalculatorConfig.model_fields,
    url="calc.",
    views={"lengths": View(lengths_text, lambda: ";".join(
        line.strip() for line in st.session_state["agg.lengths"].splitlines() if line.strip()
    ))},
)  # fmt: skip
fw = page.bind(
    TrainerSetup,
    "fw.",
    TrainerSetup.model_fields,
    url="fw.",
    defaults=FW_DEFAULT,
    views={"loss_scale_factor": View(
        lambda c: {"fw.loss_scale_factor": c or 0.0},
        lambda: st.session_state["fw.loss_scale_factor"] or None,
    )},
)  # fmt: skip
page.open()
if "_agg_pending_text" in st.session_state:  # lengths edited in the table
    st.session_state["agg.lengths"] = st.session_state.pop("_agg_pending_text")
    st.session_state["_agg_editor_version"] = st.session_state.get("_agg_editor_version", 0) + 1

# ----------------------------------------------------------------------------- formulas

st.title("Aggregators")
book = ChartBook(PAGE, "Aggregators")
st.markdown(
    "Every aggregator computes $\\text{loss} = \\sum_k \\sum_i x_{k,i} \\sum_t "
    "\\ell_{k,i,t}$ over $B$ prompts with $G$ answers each; answer $(k,i)$ has $L_{k,i}$ tokens "
    "and $M$ is the maximum length. Only the weight $x_{k,i}$ differs:"
)
for info in AGGREGATORS.values():
    with st.container(border=True):
        left, right = st.columns([2, 3], vertical_alignment="center")
        with left:
            st.markdown(f"**{info.display_name}**")
            if info.length_free_step:
                st.badge("step size independent of lengths", icon=":material/check:", color="green")
            else:
                st.badge("step size moves with lengths", icon=":material/warning:", color="red")
            if info.length_free_direction:
                st.badge(
                    "direction unaffected by a length-correctness link",
                    icon=":material/check:",
                    color="green",
                )
            else:
                st.badge(
                    "direction tilts when length and correctness are linked",
                    icon=":material/warning:",
                    color="orange",
                )
            st.caption("Called: " + "; ".join(info.aliases))
        with right:
            st.latex(info.latex)
            st.caption(info.description)

st.markdown(
    "**VL Norm's scope.** The paper normalises inside each group (above); its released code "
    "normalises over the whole batch, so a group's total weight then depends on the other groups:"
)
st.latex(VL_NORM_BATCH_LATEX)
st.markdown(
    "**Two faces of bias.** *Step size*: a constant factor in $\\sum_i x_i$ is only a learning "
    "rate; what matters is whether it *drifts* when the lengths change. For GRPO "
    "($\\sum_i x_i = \\frac{1}{BG}\\sum_i 1/L_i$) and DAPO ($1/\\bar L$ per answer) it does: "
    "their step shrinks as answers grow "
    f"({definition('drift')}). *Direction*: when length and correctness are related, every "
    "weighting that depends on length tilts $\\mathbb{E}[\\hat g]$ away from $\\nabla J$ toward "
    "longer or shorter answers, measured as $1 - \\cos(\\mathbb{E}\\hat g, \\nabla J)$ "
    f"({definition('direction-bias')}). VL Norm's total per group is fixed, so its step size "
    "cannot drift, but its weights depend on length, so its direction tilts nearly as much as "
    "GRPO's. Only Dr. GRPO and the sequence sum, whose weights ignore lengths, keep both."
)

# ----------------------------------------------------------------------------- calculator

st.header("Calculator: one batch")
st.markdown(
    "Type the lengths of one batch and see each answer's weight, the totals, and the variance "
    "under the model $\\mathrm{Var}(g_i) = V L_i^{\\beta}$ (units: $V = |\\nabla J| = 1$)."
)
inputs, outputs = st.columns([1, 2], gap="large")
with inputs:
    typed, table = st.tabs(["Type", "Table"])
    with typed:
        calc.widget(
            "lengths",
            "lengths (one group per line)",
            area=True,
            height=130,
            help="Whole numbers of tokens separated by spaces or commas; each line is one "
            "prompt's group, and every group needs the same number of answers.",
        )
    calc.widget("max_len", "M (max length)")
    calc.widget(
        "alpha",
        "VL Norm α",
        slider=True,
        min_value=ALPHA_RANGE[0],
        max_value=ALPHA_RANGE[1],
        step=0.05,
        help="VL Norm weighs answers ∝ L^-α: 0 is Dr. GRPO; α = β gives the least token-noise "
        f"variance when Var(g) = V L^β ({definition('variance')}).",
    )
    calc.widget(
        "scope",
        "VL Norm scope",
        radio=True,
        horizontal=True,
        help="Normalise per group (the paper) or over the whole batch (the released code); "
        f"also the oracle's class ({definition('efficiency')}).",
    )
    calc.widget(
        "beta",
        "variance exponent β",
        slider=True,
        step=0.1,
        help="Var(g_i) = V L_i^β: 1 for independent token terms, up to 2 for correlated ones.",
    )

calc_error: str | None = None
L = None
M_LOW, M_HIGH = 1, 1_000_000
if not M_LOW <= st.session_state["agg.max_len"] <= M_HIGH:
    calc_error = (
        f"M (max length) must be {M_LOW} to {M_HIGH:,}; got "
        f"{st.session_state['agg.max_len']:,}. Nothing was computed."
    )
else:
    try:
        L = parse_calculator_lengths(
            st.session_state["agg.lengths"], st.session_state["agg.max_len"]
        )
    except ValueError as err:
        calc_error = str(err)

with table:
    version = st.session_state.get("_agg_editor_version", 0)
    if L is None:
        st.caption("Fix the typed lengths to edit them as a table.")
    else:
        frame = pd.DataFrame(
            L,
            index=[f"group {k + 1}" for k in range(L.shape[0])],
            columns=[f"answer {i + 1}" for i in range(L.shape[1])],
        )
        edited = st.data_editor(
            frame, key=f"agg.editor.{version}", num_rows="dynamic", width="stretch"
        )
        if not edited.equals(frame):
            st.session_state["_agg_pending_text"] = format_lengths_text(
                edited.astype(float).to_numpy()
            )
            st.rerun()
        st.caption("Edit cells or add rows (groups); the typed text follows.")

M = st.session_state["agg.max_len"]
alpha = st.session_state["agg.alpha"]
scope = st.session_state["agg.scope"]
beta = st.session_state["agg.beta"]
with outputs:
    if calc_error is not None:
        st.error(calc_error, icon=":material/error:")
    else:
        weights = {n: aggregator_weights(n, L, M, alpha, scope) for n in AGGREGATORS}
        answer_var = answer_variance(L, beta=beta)
        weights[OPTIMAL] = optimal_weights(answer_var, M, scope)
        labels = {
            **{n: info.display_name for n, info in AGGREGATORS.items()},
            "vl_norm": f"VL Norm (α={alpha:g}{', batch' if scope == 'batch' else ''})",
            OPTIMAL: "Optimal (oracle)",
        }
        book.show(charts.weights_figure(weights, L, labels), key="weights_chart")
if calc_error is None:
    rows = []
    for name, x in weights.items():
        fig = (
            figures(x, answer_var, M, scope=scope)
            if name == OPTIMAL
            else aggregator_figures(name, L, M, alpha, scope, beta=beta)
        )
        info = AGGREGATORS.get(name)
        rows.append(
            {
                "aggregator": labels[name],
                "step size independent of lengths": info.length_free_step if info else True,
                "direction unaffected": info.length_free_direction if info else False,
                "total Σx": fmt(float(x.sum()), 4),
                "scale M·Σx": fmt(fig.scale, 4),
                "per-group Σx": ", ".join(fmt(float(s), 3) for s in x.sum(axis=1)),
                "token-noise variance / scale²": fmt(fig.variance, 4),
                "CV": fmt(fig.cv, 3),
                "ESS": fmt(fig.ess, 3),
                "efficiency": "—" if fig.efficiency is None else fmt(fig.efficiency, 3),
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(
        "Scale M·Σx: 1 for Dr. GRPO and VL Norm whatever the lengths (M for the sequence sum); "
        "for GRPO and DAPO it changes with the lengths "
        f"({definition('scale')}). Variance: the token-noise term "
        "$\\sum_i x_i^2 L_i^{\\beta}$ per unit scale only; per-answer reward noise, which "
        "favours equal weights, is in the Length Lab "
        f"({definition('variance')}). Efficiency: the oracle, the least such variance of any "
        f"{ORACLE_CLASS[scope]} ($x_i \\propto L_i^{{-\\beta}}$ "
        f"{'over the batch' if scope == 'batch' else 'inside each group'}), ÷ this one's; "
        "— for GRPO and DAPO, whose step size moves with the lengths "
        f"({definition('efficiency')}). ESS: the effective number of answers, "
        "$(\\sum x)^2/\\sum x^2$."
    )

# ----------------------------------------------------------------------------- framework view

st.header("Framework view: what your trainer's settings do")
st.markdown(
    "Trainers split one optimizer step over $P$ processes × $GA$ accumulation steps × $b$ "
    "answers per micro-batch and normalise each micro-batch on its own. Which tokens a divisor "
    "counts decides the real weights; they need not match the textbook formula."
)
c1, c2 = st.columns([1, 2])
with c1:
    framework = fw.widget(
        "framework",
        radio=True,
        format_func=FRAMEWORK_NAMES.get,
        horizontal=True,
        on_change=_switch_framework,
        help="The trainer whose loss code is simulated.",
    )
    if st.session_state["fw.loss_mode"] not in FRAMEWORK_MODES[framework]:
        _switch_framework()
    mode = fw.widget(
        "loss_mode",
        "loss_type" if framework == "trl" else "loss_agg_mode",
        options=list(FRAMEWORK_MODES[framework]),
        help="TRL's loss_type or verl's loss_agg_mode.",
    )
    st.caption(FRAMEWORK_MODES[framework][mode])
with c2:
    numbers = {"micro_batch_size": "b (micro-batch)", "grad_accum_steps": "GA (accum. steps)",
               "num_processes": "P (processes)", "max_len": "M (max length)"}  # fmt: skip
    for column, (name, label) in zip(st.columns(4), numbers.items(), strict=True):
        with column:
            fw.widget(name, label)
    if framework == "verl":
        e0, e1, e2, e3 = st.columns(4)
        with e0:
            fw.widget("verl_version", "verl version", radio=True, horizontal=True)
        with e1:
            fw.widget(
                "verl_engine", "verl engine", options=["new", "legacy"], radio=True, horizontal=True
            )
        with e2:
            fw.widget("norm_width", "norm width", radio=True, horizontal=True)
        with e3:
            fw.widget(
                "loss_scale_factor", "loss_scale_factor (0 = not set)", min_value=0.0, step=256.0
            )

verl_off = {} if framework == "verl" else {f: getattr(FW_DEFAULT, f) for f in VERL_ONLY}
setup = fw.value("These trainer settings do not fit together:", **verl_off)

if setup is not None and setup.num_answers > MAX_STEP_ANSWERS:
    st.error(
        f"P·GA·b = {setup.num_answers:,} answers per step; this view draws at most "
        f"{MAX_STEP_ANSWERS:,}. The weights only depend on the pattern, so try smaller numbers.",
        icon=":material/error:",
    )
elif setup is not None:
    B = setup.num_answers
    G = L.shape[1] if L is not None else 4
    if L is not None and L.size == B:
        step_lengths, group_size = L.ravel(), G
        st.caption(f"Using the calculator's {B} lengths in order (groups of G = {G}).")
    else:
        group_size = next(g for g in range(min(G, B), 0, -1) if B % g == 0)
        step_lengths = sample_lengths(
            LabConfig().lengths, B, setup.max_len, seed=st.session_state["agg.seed"]
        )
        have = "invalid lengths" if L is None else f"{L.size} lengths"
        st.caption(
            f"The calculator has {have} but this step has P·GA·b = {B} answers, so {B} lengths "
            f"are drawn from the Length Lab's default long tail "
            f"({LabConfig().lengths.describe()}), in groups of {group_size}."
        )
        calc.widget("seed", "seed for these lengths", bounded=True)
    try:
        view = framework_view(setup, step_lengths, group_size)
    except ValueError as err:
        st.error(str(err), icon=":material/error:")
        view = None
    if view is not None:
        # The textbook formula beside the real weights; a per-micro-batch token mean has no
        # equivalent, so it is compared with the batch token mean (DAPO) it stands in for.
        reference = view.equivalent or "dapo"
        factor = view.constant_factor if view.constant_factor is not None else 1.0
        equivalent = (
            factor
            * aggregator_weights(
                reference, step_lengths.reshape(-1, group_size), setup.max_len
            ).ravel()
        )
        label = f"{AGGREGATORS[reference].display_name} formula" + (
            f" × {factor:.4g}" if factor != 1.0 else ""
        )
        if view.equivalent is None:
            label += " (for comparison)"
        book.show(
            charts.framework_figure(
                view.weights, step_lengths, view.micro_batch, view.process, equivalent, label
            ),
            key="framework_chart",
        )
        m1, m2, m3 = st.columns(3)
        name = "none" if view.equivalent is None else AGGREGATORS[view.equivalent].display_name
        m1.metric("vlsim equivalent", name)
        if view.equivalent is not None and view.matches_equivalent:
            m1.badge("matches exactly", icon=":material/check:", color="green")
        elif view.equivalent is not None:
            m1.badge("differs on these lengths", icon=":material/warning:", color="red")
        m2.metric("scale M·Σx", fmt(view.scale, 4))
        m3.metric(
            "constant factor vs formula",
            "—" if view.constant_factor is None else f"{view.constant_factor:.4g}",
        )
        if view.notes:
            st.markdown("\n".join(f"- {note}" for note in view.notes))
    st.caption(
        "Read from: " + "; ".join(FRAMEWORK_VERSIONS.values()) + ". Versions drift: check your "
        "trainer's source if it is newer."
    )

with st.sidebar:
    st.subheader("Charts for slides")
    book.format_picker()
    book.download_all()

calc.value()  # the URL keeps the calculator's last good settings
page.write()
