"""Length Lab: Monte Carlo of every aggregator on synthetic gradients whose noise grows with length.

Widgets -> LabConfig -> vlsim.montecarlo.run_lab (cached) -> plotly charts. The settings live in
the URL (pages.binder), so copying the link reproduces the scenario.
"""

from __future__ import annotations

import json

import streamlit as st

from pages import charts
from pages.binder import Page
from pages.common import (
    cached_lab,
    cached_length_sample,
    definition,
    ensure_app_navigation,
    lab_headline,
)
from pages.export import ChartBook
from pages.lab_text import FAMILY_NAMES, SWEEP_HINTS, SWEEP_LABELS
from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE
from vlsim.config import SWEEP_PARAMS, LabConfig
from vlsim.lab_sweep import LOG_SWEEPS, SWEEP_DEFAULTS, SweepSettings
from vlsim.length_text import parse_lengths_text
from vlsim.lengths import LENGTH_FAMILIES
from vlsim.montecarlo import SweepPoint, best_alpha, reference_lengths, sweep_config

ensure_app_navigation()

PAGE = "lab"
K = "lab."  # prefix of this page's widget keys
MAX_URL_LENGTHS = 2000  # empirical lengths beyond this many are not put in the URL
MAX_ANSWERS = 50_000_000  # simulated answers per run (batches x B x G): about half a minute
FIELDS = ("lengths", "length_growth", "max_len", "group_size", "n_groups", "p_correct",
          "length_slope", "length_drive", "rho", "token_noise", "std_normalize", "alpha", "scope",
          "aggregators", "n_batches", "seed")  # fmt: skip
ALPHA_GRID = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]  # the α-variance curve
ALPHA_BATCHES = 2000  # Monte Carlo batches per point of that curve


def session_empirical() -> list[int] | None:
    """Lengths another page left in Session State ('empirical_lengths'), if any."""
    data = st.session_state.get("empirical_lengths")
    if data is None:
        return None
    try:
        values = [int(v) for v in list(data)]
    except (TypeError, ValueError):
        return None
    return values or None


def empirical_spec() -> dict:
    """The empirical family's spec from the pasted text, or else from Session State."""
    text = st.session_state.get(f"{K}empirical_text", "").strip()
    if text:
        values = [v for group in parse_lengths_text(text) for v in group]
        source = st.session_state.get("_lab_empirical_source") or "pasted lengths"
        return {"kind": "empirical", "lengths": values, "source": source}
    values = session_empirical() or []
    source = str(st.session_state.get("empirical_source", "a training run"))
    return {"kind": "empirical", "lengths": values, "source": source}


def linked_empirical(cfg: LabConfig) -> tuple[LabConfig, list[str]]:
    """A link's empirical lengths go to the text box they are edited in."""
    if cfg.lengths.kind == "empirical":
        st.session_state[f"{K}empirical_text"] = " ".join(str(v) for v in cfg.lengths.lengths)
        st.session_state["_lab_empirical_source"] = cfg.lengths.source
    return cfg, []


def _reset_sweep_range() -> None:
    start, stop = SWEEP_DEFAULTS[st.session_state[f"{K}sweep.param"]]
    st.session_state[f"{K}sweep.start"] = float(start)
    st.session_state[f"{K}sweep.stop"] = float(stop)


# ----------------------------------------------------------------------------- state

st.title("Length Lab")
book = ChartBook(PAGE, "Length Lab")
st.markdown(
    "Synthetic RLVR batches: every answer's gradient is its advantage times a per-answer signal "
    "plus one noise term per token, so the token noise grows like $\\mathrm{Var}(g_i) \\propto "
    "L_i$. Each aggregator weighs the same sampled batches. The charts show the two faces of "
    "**bias**, the step size that *drifts* as answers grow and the *direction* that tilts when "
    "length and correctness are linked, and the **noise** of each update "
    f"({definition('drift', 'definitions')})."
)

page = Page(PAGE)
lab = page.bind(LabConfig, K, FIELDS, keys={"lengths": "lab"}, check=linked_empirical)
sweeps = page.bind(SweepSettings, f"{K}sweep.", SweepSettings.model_fields, url="sweep.")
page.open()

# ----------------------------------------------------------------------------- sidebar

empirical_available = bool(st.session_state.get(f"{K}empirical_text", "").strip()) or bool(
    session_empirical()
)
with st.sidebar:
    st.header("Answer lengths")
    kind = lab.family(
        "lengths",
        "length family (now)",
        kinds=[k for k in LENGTH_FAMILIES if k != "empirical" or empirical_available],
        format_func=FAMILY_NAMES.get,
        columns=1,
        bounded=False,
        help="The distribution the current answer lengths are drawn from; 'Empirical' appears "
        "once lengths are supplied.",
    )
    lab.widget("length_growth", "× longer than at the reference")
    st.caption(
        "The reference (e.g. the start of training) has every length divided by this; step "
        f"sizes are shown relative to it ({definition('drift')})."
    )
    with st.expander("Your own lengths (empirical)", expanded=kind == "empirical"):
        st.text_area(
            "lengths to resample",
            key=f"{K}empirical_text",
            height=90,
            help="Paste observed answer lengths (numbers separated by spaces, commas or lines); "
            "then choose the 'empirical' family.",
        )
        if session_empirical():
            st.caption(
                f"{len(session_empirical())} lengths from "
                f"{st.session_state.get('empirical_source', 'a training run')} are available."
            )

    st.header("Batch")
    lab.widget("max_len", "M (max length)")
    c1, c2 = st.columns(2)
    with c1:
        lab.widget("group_size", "G (answers)")
    with c2:
        lab.widget("n_groups", "B (prompts)")

    st.header("Rewards and gradients")
    lab.widget("p_correct", "p correct")
    lab.widget(
        "length_slope",
        "length-correctness slope κ",
        slider=True,
        step=0.05,
        more_help=f"Any κ ≠ 0 tilts every length-dependent weighting ({definition('direction-bias')}).",
    )
    lab.widget("length_drive", "length drive η", slider=True, step=0.1)
    lab.widget("rho", "token correlation ρ")
    lab.widget("token_noise", "token noise σ")
    lab.widget("std_normalize", "std-normalise advantages")

    st.header("Aggregators")
    lab.widget(
        "alpha",
        "VL Norm α",
        slider=True,
        min_value=ALPHA_RANGE[0],
        max_value=ALPHA_RANGE[1],
        step=0.05,
        help="VL Norm weighs answers ∝ L^-α: 0 is Dr. GRPO; α = β gives the least token-noise "
        f"variance when Var(g) = V L^β ({definition('variance')}).",
    )
    lab.widget(
        "scope",
        "VL Norm scope",
        radio=True,
        horizontal=True,
        more_help=f"It also sets the oracle's class ({definition('efficiency')}).",
    )
    lab.widget(
        "aggregators",
        options=list(AGGREGATORS),
        format_func=lambda n: AGGREGATORS[n].display_name,
        help="Which aggregators to evaluate (the optimal oracle is always added).",
    )

    st.header("Monte Carlo")
    lab.widget("n_batches", "batches")
    st.caption("20 000 batches is precise; 2 000 is ten times faster.")
    lab.widget("seed")

# ----------------------------------------------------------------------------- config

try:
    lengths = {"lengths": empirical_spec()} if kind == "empirical" else {}
except ValueError as err:  # pasted lengths that are not numbers
    st.error(str(err), icon=":material/error:")
    page.stop()
cfg = lab.value(
    "Nothing was run: these settings are outside what the lab allows. Change them to continue:",
    **lengths,
)
if cfg is None:
    page.stop()
too_long = cfg.lengths.kind == "empirical" and len(cfg.lengths.lengths) > MAX_URL_LENGTHS
if too_long:
    st.caption(
        f"The link does not include the {len(cfg.lengths.lengths)} empirical lengths "
        "(too many for a URL); it opens with the default length family."
    )
sweeps.value()  # the URL keeps the sweep's last good settings
page.write(omit=["lengths."] if too_long else [])

# ----------------------------------------------------------------------------- results

# LabConfig already refuses more than MAX_LAB_ANSWERS simulated answers (see vlsim.config).
with st.spinner(
    f"Simulating {cfg.n_batches:,} batches of {cfg.n_groups}×{cfg.group_size} answers..."
):
    result = cached_lab(cfg.model_dump_json())

st.info(lab_headline(result), icon=":material/lightbulb:")
st.caption(
    f"Lengths now: {cfg.lengths.describe()}; mean {result.mean_length:.0f} tokens "
    f"(std {result.std_length:.0f}); reference: the same ÷ {cfg.length_growth:g}, mean "
    f"{result.reference_mean_length:.0f}. M = {cfg.max_len}, B = {cfg.n_groups} prompts × "
    f"G = {cfg.group_size} answers, {cfg.n_batches:,} batches. Bars: Monte Carlo with 95% "
    "intervals; ◆: closed form; hatched grey: the oracle, the least token-noise variance of any "
    f"{result.oracle_class} ($x_i \\propto 1/\\mathrm{{Var}}(g_i)$)."
)

left, right = st.columns(2, gap="large")
with left:
    book.show(charts.scale_figure(result), key="scale_chart")
    st.markdown(
        "The step size on today's lengths divided by the step size on the reference lengths: "
        "the learning-rate multiplier the change of lengths applied. GRPO "
        "($\\propto \\mathbb{E}[1/L]$) and DAPO ($\\propto 1/\\bar L$) shrink their step as "
        "answers grow: **their step size depends on the lengths**. Dr. GRPO, the sequence sum and "
        "VL Norm have a constant total weight, so their ratio is exactly 1. The absolute scale "
        "$M\\,\\mathbb{E}[\\sum_i x_i]$ (in *All numbers*) is only a learning-rate factor. "
        + definition("drift")
    )
with right:
    book.show(charts.direction_figure(result), key="direction_chart")
    if cfg.length_slope == 0:
        st.markdown(
            "With κ = 0 correctness does not depend on length, so every aggregator points the "
            "right way. Set the **length-correctness slope κ** in the sidebar (e.g. −1: long "
            "answers more often wrong) to see every length-dependent weighting tilt. "
            + definition("direction-bias")
        )
    else:
        vl = result.by_name().get("vl_norm")
        grpo = result.by_name().get("grpo")
        both = (
            f" (here VL Norm {vl.angle_deg:.1f}° vs GRPO {grpo.angle_deg:.1f}°)"
            if vl is not None and grpo is not None
            else ""
        )
        st.markdown(
            f"κ = {cfg.length_slope:g}: length and correctness are linked, so weights that "
            "depend on length change how much of the 'be longer' direction the update carries. "
            f"**VL Norm tilts nearly as much as GRPO**{both}: a constant total fixes the step "
            "size, not the direction. Only Dr. GRPO and the sequence sum, whose weights ignore "
            "lengths, keep the direction of ∇J. Positive: pushes answers to grow faster than "
            "the true gradient would. " + definition("direction-bias")
        )

left, right = st.columns(2, gap="large")
with left:
    book.show(charts.variance_figure(result), key="variance_chart")
    st.markdown(
        "Variance per unit scale (a smaller step is not less noise). Dark: token noise, "
        "$V\\sum_i x_i^2 L_i$ with its closed form ◆, which weights shrinking with $L$ cut; "
        "light: the reward-sampling noise, one term per answer that does not accumulate over "
        "tokens, which equal weights (Dr. GRPO) spread best. " + definition("variance")
    )
with right:
    book.show(charts.efficiency_figure(result), key="efficiency_chart")
    st.markdown(
        "Efficiency = the oracle's token-noise variance ÷ this one's, in (0, 1]: the oracle is "
        f"the best {result.oracle_class}. VL Norm with $\\alpha = \\beta$ reaches 1. GRPO and "
        "DAPO are not shown: their step size moves with the lengths, so they are outside the "
        "oracle's class and a ratio would compare unlike things (their noise is in the variance "
        "chart). " + definition("efficiency")
    )

left, right = st.columns(2, gap="large")
with left:
    book.show(charts.cv_figure(result), key="cv_chart")
    st.markdown(
        "$\\mathrm{CV} = \\sqrt{\\text{variance}}\\,/\\,|\\nabla J|$: the noise of one update "
        "relative to the true gradient, both noise parts included. Lower means fewer steps "
        "wasted on noise. " + definition("cv")
    )
with right:
    alpha_cfg = LabConfig.model_validate(
        {
            **json.loads(cfg.model_dump_json()),
            "aggregators": ["vl_norm"],
            "n_batches": min(cfg.n_batches, ALPHA_BATCHES),
        }
    )
    alpha_points = [
        SweepPoint(value=a, mean_length=r.mean_length, result=r)
        for a, r in (
            (a, cached_lab(sweep_config(alpha_cfg, "alpha", a).model_dump_json()))
            for a in ALPHA_GRID
        )
    ]
    book.show(charts.alpha_variance_figure(alpha_points), key="alpha_chart")
    best_total = best_alpha(alpha_points, "variance")
    best_noise = best_alpha(alpha_points, "noise_variance")
    st.markdown(
        f"VL Norm over α ({min(cfg.n_batches, ALPHA_BATCHES):,} batches per point). "
        f"The token-noise part is least at α ≈ {best_noise:g} (α = β; β = 1 for independent "
        f'tokens), the **total at α ≈ {best_total:g}**: "least variance" holds for the '
        "token-noise term with $\\mathrm{Var}(g_i) = V L_i^{\\beta}$ and α = β only. When the "
        "per-answer reward noise dominates (lower the token noise σ), the total favours small "
        "α, down to Dr. GRPO (α = 0). " + definition("variance")
    )

left, right = st.columns(2, gap="large")
with left:
    sample, summary = cached_length_sample(
        cfg.lengths.model_dump_json(), cfg.max_len, seed=cfg.seed
    )
    ref_sample, _ = cached_length_sample(
        reference_lengths(cfg).model_dump_json(), cfg.max_len, seed=cfg.seed
    )
    book.show(
        charts.length_histogram(sample, summary, cfg.max_len, ref_sample),
        key="length_hist",
    )
with right:
    st.markdown(
        f"**Lengths now** (bars; the reference is the outline). Mean {summary['mean']:.0f}, median {summary['median']:.0f}, p95 "
        f"{summary['p95']:.0f} tokens; {100 * summary['at_max']:.1f}% of answers hit "
        f"M = {cfg.max_len}. The wider the spread, the more Dr. GRPO's noise depends on a few "
        "long answers and the more a length-dependent weighting can tilt."
    )

with st.expander("All numbers"):
    st.dataframe(
        [
            {
                "aggregator": r.display_name,
                "step now ÷ at reference": r.relative_scale,
                "(closed form)": r.relative_scale_theory,
                "drift": r.drift,
                "batch-to-batch drift": r.batch_drift,
                "scale M·E[Σx]": r.scale,
                "scale (closed form)": r.scale_theory,
                "variance": r.variance,
                "token-noise variance": r.noise_variance,
                "token noise (closed form)": r.noise_variance_theory,
                "reward-sampling variance": r.signal_variance,
                "CV": r.cv,
                "efficiency": r.efficiency,
                "efficiency (closed form)": r.efficiency_theory,
                "angle (°)": r.angle_deg,
                "1 − cos": r.direction_bias,
                "length tilt (°)": r.length_tilt_deg,
                "ESS": r.ess,
            }
            for r in result.results
        ],
        hide_index=True,
    )
    st.caption(
        f"Scale: M·E[Σx] ({definition('scale')}); drift: step now ÷ step at the reference − 1. "
        "Efficiency is empty for GRPO and DAPO (outside the oracle's class). "
        + (
            ""
            if result.theory_exact
            else "With κ ≠ 0 the token-noise closed forms use E[A²] of the length-independent "
            "model, so they are approximate."
        )
    )

# ----------------------------------------------------------------------------- sweep

st.header("Sweep one parameter")
st.markdown(
    "Rerun the lab along one parameter (same seed at every point, fewer batches). Stretching "
    "the lengths keeps the reference where it is, so the first panel shows the step drifting "
    "as answers grow: GRPO's and DAPO's step shrinks while the length-free steps stay at 1."
)


c1, c2, c3, c4, c5 = st.columns([3, 1, 1, 1, 1.3])
with c1:
    sweeps.widget(
        "param",
        "swept parameter",
        format_func=SWEEP_LABELS.get,
        on_change=_reset_sweep_range,
        help="The parameter that varies along the x axis; all others stay as in the sidebar.",
    )
with c2:
    sweeps.widget("start", "from", help="First value of the sweep.")
with c3:
    sweeps.widget("stop", "to", help="Last value of the sweep.")
with c4:
    sweeps.widget("points", step=1, help="How many values.")
with c5:
    sweeps.widget(
        "n_batches",
        "batches/point",
        step=1000,
        help="Monte Carlo batches at each point: fewer is faster.",
    )

sweep = sweeps.value("The sweep was not run; change these settings:")
if sweep is not None:
    values = sweep.values()
    per_point = sweep.n_batches * cfg.n_groups * cfg.group_size
    if per_point * len(values) > MAX_ANSWERS:
        st.error(
            f"This sweep would simulate {per_point * len(values):,} answers; this page stops at "
            f"{MAX_ANSWERS:,}. Use fewer points or batches per point.",
            icon=":material/hourglass_disabled:",
        )
    else:
        base_cfg = LabConfig.model_validate(
            {**json.loads(cfg.model_dump_json()), "n_batches": sweep.n_batches}
        )
        bar = st.progress(0.0, text=f"Sweeping {SWEEP_LABELS[sweep.param]}...")
        points: list[SweepPoint] = []
        for i, value in enumerate(values):
            try:
                point_cfg = sweep_config(base_cfg, sweep.param, value)
            except ValueError as err:  # e.g. lengths stretched past what the family allows
                st.error(
                    f"The sweep stopped at point {i + 1} of {len(values)}: {err}",
                    icon=":material/error:",
                )
                break
            point = cached_lab(point_cfg.model_dump_json())
            points.append(SweepPoint(value=value, mean_length=point.mean_length, result=point))
            bar.progress((i + 1) / len(values), text=f"Point {i + 1} of {len(values)}")
        bar.empty()
        if points:
            x_title = (
                "mean answer length (tokens)"
                if sweep.param == "length_scale"
                else SWEEP_PARAMS[sweep.param]
            )
            book.show(
                charts.sweep_figure(points, sweep.param, x_title, sweep.param in LOG_SWEEPS),
                key="sweep_chart",
            )
            st.caption(SWEEP_HINTS[sweep.param])

with st.sidebar:
    st.subheader("Charts for slides")
    book.format_picker()
    book.download_all()
