"""Length Lab: Monte Carlo of every aggregator on synthetic gradients whose noise grows with length.

Widgets -> LabConfig -> vlsim.montecarlo.run_lab (cached) -> plotly charts. The settings live in
the URL (see vlsim.scenario), so copying the link reproduces the scenario.
"""

from __future__ import annotations

import json

import streamlit as st
from pydantic import ValidationError

from pages import charts
from pages.common import (
    cached_lab,
    cached_length_sample,
    clamp_notices,
    ensure_app_navigation,
    field_default,
    fmt,
    lab_headline,
    new_url_params,
    number_field,
    remember_widgets,
    restore_widgets,
    seed_widgets,
    show_notices,
    write_url,
)
from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE
from vlsim.config import SWEEP_PARAMS, LabConfig, format_errors
from vlsim.lengths import LENGTH_FAMILIES
from vlsim.montecarlo import OPTIMAL, SweepPoint, sweep_config
from vlsim.scenario import (
    LOG_SWEEPS,
    SWEEP_DEFAULTS,
    SweepSettings,
    from_query,
    parse_lengths_text,
    to_query,
)

ensure_app_navigation()

PAGE = "lab"
K = "lab."  # prefix of this page's widget keys
SWEEP_PREFIX = "sweep."  # prefix of the sweep's URL parameters
DEFAULTS = LabConfig()
SWEEP_DEFAULT = SweepSettings()
MAX_URL_LENGTHS = 2000  # empirical lengths beyond this many are not put in the URL
MAX_ANSWERS = 50_000_000  # simulated answers per run (batches x B x G): about half a minute
FIELDS = (
    "max_len",
    "group_size",
    "n_groups",
    "p_correct",
    "length_slope",
    "length_drive",
    "rho",
    "token_noise",
    "std_normalize",
    "alpha",
    "scope",
    "aggregators",
    "n_batches",
    "seed",
)
SWEEP_FIELDS = ("param", "start", "stop", "points", "n_batches")
SWEEP_HINTS = {
    "length_scale": "As answers grow, GRPO's and DAPO's scale falls: the same learning rate "
    "takes smaller steps. The unbiased aggregators stay at their constant scale.",
    "alpha": "VL Norm's efficiency peaks where α matches the variance exponent β: 1 for "
    "independent tokens, higher when token correlation ρ makes long answers noisier.",
    "group_size": "More answers per prompt average out more noise: every CV falls, while the "
    "biased scales stay where the lengths put them.",
    "rho": "Correlated tokens make a long answer's noise grow faster than its length (β > 1): "
    "VL Norm with a fixed α loses efficiency, the oracle adapts.",
    "length_slope": "κ ties correctness to length; watch the direction chart above for the "
    "tilt it causes, and the efficiency here.",
    "max_len": "Dr. GRPO's and VL Norm's scale stays 1 for any M; GRPO's, DAPO's and the "
    "sequence sum's grow in proportion to M (while lengths stay below it).",
}


def family_fields(kind: str) -> list[str]:
    """The parameters of a length family that get a widget."""
    skip = {"kind", "lengths", "source"}
    return [f for f in LENGTH_FAMILIES[kind].model_fields if f not in skip]


def widget_values(cfg: LabConfig, sweep: SweepSettings) -> dict:
    """Widget key -> value for a config and a sweep (the inverse of reading the widgets)."""
    values = {f"{K}{f}": getattr(cfg, f) for f in FIELDS}
    values[f"{K}aggregators"] = list(cfg.aggregators)
    kind = cfg.lengths.kind
    values[f"{K}kind"] = kind
    for f in family_fields(kind):
        values[f"{K}{kind}.{f}"] = getattr(cfg.lengths, f)
    if kind == "empirical":
        values[f"{K}empirical_text"] = " ".join(str(v) for v in cfg.lengths.lengths)
        st.session_state["_lab_empirical_source"] = cfg.lengths.source
    values.update({f"{K}sweep.{f}": getattr(sweep, f) for f in SWEEP_FIELDS})
    return values


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


# ----------------------------------------------------------------------------- state

st.title("Length Lab")
st.markdown(
    "Synthetic RLVR batches: every answer's gradient is its advantage times a signal plus one "
    "noise term per token, so $\\mathrm{Var}(g_i) \\propto L_i$. Each aggregator weighs the same "
    "sampled batches; the charts show its **bias** (scale, direction) and its **noise**."
)

url = new_url_params(PAGE)
if url is not None:
    lab_params = {k: v for k, v in url.items() if not k.startswith(SWEEP_PREFIX)}
    cfg_url, notices = from_query(LabConfig, lab_params)
    sweep_url, sweep_notices = from_query(SweepSettings, url, prefix=SWEEP_PREFIX)
    values = widget_values(cfg_url, sweep_url)
    fallback = widget_values(DEFAULTS, SWEEP_DEFAULT)
    url_kind = cfg_url.lengths.kind
    for name in family_fields(url_kind):
        fallback[f"{K}{url_kind}.{name}"] = field_default(LENGTH_FAMILIES[url_kind], name)
    notices += sweep_notices + clamp_notices(values, fallback)
    seed_widgets(values, force=True)
    st.session_state["_lab_base"] = cfg_url.model_dump(mode="json")
    show_notices(notices)
else:
    restore_widgets(PAGE)
seed_widgets(widget_values(DEFAULTS, SWEEP_DEFAULT))

# ----------------------------------------------------------------------------- sidebar

empirical_available = bool(st.session_state.get(f"{K}empirical_text", "").strip()) or bool(
    session_empirical()
)
kinds = [k for k in LENGTH_FAMILIES if k != "empirical" or empirical_available]
if st.session_state[f"{K}kind"] not in kinds:
    st.session_state[f"{K}kind"] = DEFAULTS.lengths.kind

with st.sidebar:
    st.header("Answer lengths")
    kind = st.selectbox(
        "length family",
        kinds,
        key=f"{K}kind",
        format_func=lambda k: {"pareto": "pareto (long tail)", "mixture": "mixture (bimodal)"}.get(
            k, k
        ),
        help="The distribution answer lengths are drawn from; 'empirical' appears once lengths are supplied.",
    )
    st.caption((LENGTH_FAMILIES[kind].__doc__ or "").strip().splitlines()[0])
    for name in family_fields(kind):
        number_field(LENGTH_FAMILIES[kind], name, key=f"{K}{kind}.{name}")
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
    number_field(LabConfig, "max_len", f"{K}max_len", "M (max length)")
    c1, c2 = st.columns(2)
    with c1:
        number_field(LabConfig, "group_size", f"{K}group_size", "G (answers)")
    with c2:
        number_field(LabConfig, "n_groups", f"{K}n_groups", "B (prompts)")

    st.header("Rewards and gradients")
    number_field(LabConfig, "p_correct", f"{K}p_correct", "p correct")
    st.slider(
        "length-correctness slope κ",
        -5.0,
        5.0,
        step=0.05,
        key=f"{K}length_slope",
        help=LabConfig.model_fields["length_slope"].description,
    )
    st.slider(
        "length drive η",
        0.0,
        10.0,
        step=0.1,
        key=f"{K}length_drive",
        help=LabConfig.model_fields["length_drive"].description,
    )
    number_field(LabConfig, "rho", f"{K}rho", "token correlation ρ")
    number_field(LabConfig, "token_noise", f"{K}token_noise", "token noise σ")
    st.toggle(
        "std-normalise advantages",
        key=f"{K}std_normalize",
        help=LabConfig.model_fields["std_normalize"].description,
    )

    st.header("Aggregators")
    st.slider(
        "VL Norm α",
        *ALPHA_RANGE,
        step=0.05,
        key=f"{K}alpha",
        help="VL Norm weighs answers ∝ L^-α: 0 is Dr. GRPO, 1 is optimal for independent tokens.",
    )
    st.radio(
        "VL Norm scope",
        ["group", "batch"],
        key=f"{K}scope",
        horizontal=True,
        help=LabConfig.model_fields["scope"].description,
    )
    st.multiselect(
        "aggregators",
        list(AGGREGATORS),
        key=f"{K}aggregators",
        format_func=lambda n: AGGREGATORS[n].display_name,
        help="Which aggregators to evaluate (the optimal oracle is always added).",
    )

    st.header("Monte Carlo")
    number_field(LabConfig, "n_batches", f"{K}n_batches", "batches")
    st.caption("20 000 batches is precise; 2 000 is ten times faster.")
    number_field(LabConfig, "seed", f"{K}seed", "seed")

# ----------------------------------------------------------------------------- config

try:
    if kind == "empirical":
        lengths = empirical_spec()
    else:
        lengths = {
            "kind": kind,
            **{f: st.session_state[f"{K}{kind}.{f}"] for f in family_fields(kind)},
        }
    base = st.session_state.get("_lab_base", DEFAULTS.model_dump(mode="json"))
    data = {**base, **{f: st.session_state[f"{K}{f}"] for f in FIELDS}, "lengths": lengths}
    cfg = LabConfig.model_validate(data)
except ValidationError as err:
    st.error(
        "These settings do not fit together:\n\n" + format_errors(err), icon=":material/error:"
    )
    remember_widgets(PAGE, K)
    st.stop()
except ValueError as err:  # pasted lengths that are not numbers
    st.error(str(err), icon=":material/error:")
    remember_widgets(PAGE, K)
    st.stop()

sweep_error = None
try:
    sweep = SweepSettings.model_validate(
        {f: st.session_state[f"{K}sweep.{f}"] for f in SWEEP_FIELDS}
    )
except ValidationError as err:
    sweep, sweep_error = None, err

params = to_query(cfg, DEFAULTS)
if cfg.lengths.kind == "empirical" and len(cfg.lengths.lengths) > MAX_URL_LENGTHS:
    params = {k: v for k, v in params.items() if not k.startswith("lengths.")}
    st.caption(
        f"The link does not include the {len(cfg.lengths.lengths)} empirical lengths "
        "(too many for a URL); it opens with the default length family."
    )
if sweep is not None:
    params.update({SWEEP_PREFIX + k: v for k, v in to_query(sweep, SWEEP_DEFAULT).items()})
write_url(PAGE, params)
remember_widgets(PAGE, K)

# ----------------------------------------------------------------------------- results

# LabConfig already refuses more than MAX_LAB_ANSWERS simulated answers (see vlsim.config).
with st.spinner(
    f"Simulating {cfg.n_batches:,} batches of {cfg.n_groups}×{cfg.group_size} answers..."
):
    result = cached_lab(cfg.model_dump_json())

st.info(lab_headline(result), icon=":material/lightbulb:")
st.caption(
    f"Lengths: {cfg.lengths.describe()}; mean {result.mean_length:.0f} tokens "
    f"(std {result.std_length:.0f}), M = {cfg.max_len}, B = {cfg.n_groups} prompts × "
    f"G = {cfg.group_size} answers, {cfg.n_batches:,} batches. Bars: Monte Carlo with 95% "
    "intervals; ◆: closed form; hatched grey: the optimal oracle, the best length-only "
    "unbiased weighting ($x_i \\propto 1/\\mathrm{Var}(g_i)$), which minimises the token-noise part."
)

left, right = st.columns(2, gap="large")
with left:
    st.plotly_chart(charts.scale_figure(result), width="stretch", key="scale_chart")
    st.markdown(
        "Scale $= M\\,\\mathbb{E}[\\sum_i x_i]$. A constant means the step does not depend on "
        "the lengths: 1 for Dr. GRPO and VL Norm, $M$ for the sequence sum (just a larger "
        "learning rate). GRPO ($\\approx M\\,\\mathbb{E}[1/L]$) and DAPO ($\\approx M/\\bar L$) "
        "move with the lengths: **biased**."
    )
with right:
    st.plotly_chart(charts.variance_figure(result), width="stretch", key="variance_chart")
    st.markdown(
        "Variance per unit scale (a smaller step is not less noise). Dark: token noise, "
        "$V\\sum_i x_i^2 L_i$ with its closed form ◆; light: noise from sampling the rewards. "
        "Long answers carry more token noise, so weights that shrink with $L$ cut it."
    )

left, right = st.columns(2, gap="large")
with left:
    st.plotly_chart(charts.cv_figure(result), width="stretch", key="cv_chart")
    st.markdown(
        "$\\mathrm{CV} = \\sqrt{\\text{variance}}\\,/\\,|\\nabla J|$: the noise of one update "
        "relative to the true gradient. Lower means fewer steps wasted on noise."
    )
with right:
    st.plotly_chart(charts.efficiency_figure(result), width="stretch", key="efficiency_chart")
    st.markdown(
        "Efficiency = the least token-noise variance any unbiased length-only weighting reaches "
        "(the oracle) ÷ this one's. VL Norm with $\\alpha = \\beta$ is optimal; GRPO can exceed 1 "
        "only because it is not unbiased."
    )

left, right = st.columns(2, gap="large")
with left:
    st.plotly_chart(charts.direction_figure(result), width="stretch", key="direction_chart")
    if cfg.length_slope == 0:
        st.markdown(
            "With κ = 0 correctness does not depend on length, so every aggregator points the "
            "right way. Set the **length-correctness slope κ** (e.g. −1: long answers are more "
            "often wrong) to see length-dependent weights tilt the update."
        )
    else:
        tilts = ", ".join(
            f"{r.display_name} {r.length_tilt_deg:+.2f}°"
            for r in result.results
            if r.name != OPTIMAL
        )
        st.markdown(
            f"κ = {cfg.length_slope:g}: the true gradient's 'be longer' part is "
            f"{fmt(result.true_longer)}. Tilt toward longer answers relative to ∇J: {tilts}. "
            "Positive: the aggregator pushes answers to grow faster than the true gradient would."
        )
with right:
    sample, summary = cached_length_sample(
        cfg.lengths.model_dump_json(), cfg.max_len, seed=cfg.seed
    )
    st.plotly_chart(
        charts.length_histogram(sample, summary, cfg.max_len), width="stretch", key="length_hist"
    )
    st.markdown(
        f"Mean {summary['mean']:.0f}, median {summary['median']:.0f}, p95 {summary['p95']:.0f} "
        f"tokens; {100 * summary['at_max']:.1f}% of answers hit M = {cfg.max_len}. The longer the "
        "tail, the more GRPO/DAPO's scale and Dr. GRPO's noise depend on a few long answers."
    )

with st.expander("All numbers"):
    st.dataframe(
        [
            {
                "aggregator": r.display_name,
                "scale": r.scale,
                "scale (closed form)": r.scale_theory,
                "scale drift": r.scale_drift,
                "variance": r.variance,
                "token-noise variance": r.noise_variance,
                "token noise (closed form)": r.noise_variance_theory,
                "CV": r.cv,
                "efficiency": r.efficiency,
                "efficiency (closed form)": r.efficiency_theory,
                "1 − cos": r.direction_bias,
                "length tilt (°)": r.length_tilt_deg,
                "ESS": r.ess,
            }
            for r in result.results
        ],
        hide_index=True,
        width="stretch",
    )
    if not result.theory_exact:
        st.caption(
            "With κ ≠ 0 the closed forms use E[A²] of the length-independent model, so they are "
            "approximate."
        )

# ----------------------------------------------------------------------------- sweep

st.header("Sweep one parameter")
st.markdown(
    "Rerun the lab along one parameter (same seed at every point, fewer batches). Stretching "
    "the lengths shows the scale drift: GRPO's and DAPO's step shrinks as answers grow, while "
    "the unbiased aggregators stay put; VL Norm keeps its low noise at every length."
)


def _reset_sweep_range() -> None:
    start, stop = SWEEP_DEFAULTS[st.session_state[f"{K}sweep.param"]]
    st.session_state[f"{K}sweep.start"] = float(start)
    st.session_state[f"{K}sweep.stop"] = float(stop)


c1, c2, c3, c4, c5 = st.columns([2, 1, 1, 1, 1])
with c1:
    st.selectbox(
        "swept parameter",
        list(SWEEP_PARAMS),
        key=f"{K}sweep.param",
        format_func=lambda p: SWEEP_PARAMS[p],
        on_change=_reset_sweep_range,
        help="The parameter that varies along the x axis; all others stay as in the sidebar.",
    )
with c2:
    st.number_input("from", key=f"{K}sweep.start", format="%g", help="First value of the sweep.")
with c3:
    st.number_input("to", key=f"{K}sweep.stop", format="%g", help="Last value of the sweep.")
with c4:
    st.number_input(
        "points", min_value=2, max_value=25, key=f"{K}sweep.points", help="How many values."
    )
with c5:
    st.number_input(
        "batches/point",
        min_value=100,
        max_value=100_000,
        step=1000,
        key=f"{K}sweep.n_batches",
        help="Monte Carlo batches at each point: fewer is faster.",
    )

if sweep_error is not None:
    st.error("Sweep settings:\n\n" + format_errors(sweep_error), icon=":material/error:")
else:
    values = sweep.values()
    per_point = sweep.n_batches * cfg.n_groups * cfg.group_size
    if per_point * len(values) > MAX_ANSWERS:
        st.error(
            f"This sweep would simulate {per_point * len(values):,} answers; this page stops at "
            f"{MAX_ANSWERS:,}. Use fewer points or batches per point.",
            icon=":material/hourglass_disabled:",
        )
        st.stop()
    base_cfg = LabConfig.model_validate(
        {**json.loads(cfg.model_dump_json()), "n_batches": sweep.n_batches}
    )
    bar = st.progress(0.0, text=f"Sweeping {SWEEP_PARAMS[sweep.param]}...")
    points: list[SweepPoint] = []
    for i, value in enumerate(values):
        try:
            point_cfg = sweep_config(base_cfg, sweep.param, value)
        except (ValidationError, ValueError) as err:
            detail = format_errors(err) if isinstance(err, ValidationError) else str(err)
            st.error(f"At {sweep.param} = {value:g}: {detail}", icon=":material/error:")
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
        st.plotly_chart(
            charts.sweep_figure(points, sweep.param, x_title, sweep.param in LOG_SWEEPS),
            width="stretch",
            key="sweep_chart",
        )
        st.caption(SWEEP_HINTS[sweep.param])
