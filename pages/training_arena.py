"""Training Arena: train tiny policies on CountDown with several aggregators and watch them live.

Widgets -> TrainConfig (one per aggregator, same seed and data) -> JobManager.submit_many (each
run trains in its own worker process) -> a live view that only reads the store. The settings
and the group being watched live in the URL, so a reload or a shared link re-attaches.
"""

from __future__ import annotations

import secrets
import time

import pandas as pd
import streamlit as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pages.common import (
    clamp_notices,
    ensure_app_navigation,
    new_url_params,
    remember_widgets,
    restore_widgets,
    seed_widgets,
    show_notices,
    write_url,
)
from pages.training_common import (
    TRACE_FORMAT,
    aggregator_label,
    curves_figure,
    get_manager,
    get_store,
    length_family_widgets,
    length_spec_from_widgets,
    length_widget_values,
    open_number_field,
    probe_stat_figure,
    recent_groups,
    run_colors,
    run_label,
    run_metrics,
    samples_frame,
    scatter_figure,
    status_text,
    stop_message,
)
from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE
from vlsim.analysis import format_seconds, progress
from vlsim.config import PRESETS, ProbeConfig, TrainConfig, format_errors, preset_config
from vlsim.countdown import TaskConfig, TraceConfig
from vlsim.liveness import checked_runs
from vlsim.scenario import from_query, parent_of, to_query

ensure_app_navigation()

PAGE = "arena"
K = "arena."  # prefix of this page's widget keys
LENGTH_KEY = f"{K}trace.length"
DEFAULT_PRESET = "quick"
DEFAULT_AGGREGATORS = ["grpo", "dapo", "dr_grpo", "vl_norm"]

# What the arena changes in a preset: probes on, so every aggregator's noise is drawn live.
ARENA_OVERRIDES: dict[str, dict] = {
    "quick": {"probe": {"every": 20, "prompts": 4, "rollouts": 32, "resamples": 128}},
}

FIELDS = (
    "task.n_numbers",
    "task.high",
    "task.max_target",
    "task.n_train",
    "task.n_test",
    "trace.mode",
    "trace.filler_symbols",
    "trace.wrong_rate",
    "trace.length_correctness_slope",
    "model_size",
    "prompts_per_step",
    "group_size",
    "max_new_tokens",
    "lr",
    "clip_low",
    "clip_high",
    "steps",
    "sft_steps",
    "seed",
    "alpha",
    "scope",
    "probe.every",
)
NOT_IN_URL = ("aggregator", "name")


class ArenaChoice(BaseModel):
    """What the arena compares and watches (the URL's aggregators, group and run)."""

    model_config = ConfigDict(extra="forbid")

    aggregators: list[str] = Field(
        default_factory=lambda: list(DEFAULT_AGGREGATORS),
        min_length=1,
        description="Aggregators to compare: one run each.",
    )
    group: str = Field("", max_length=200, description="The group of runs being watched.")
    run: int = Field(0, ge=0, description="The run whose probes and samples are shown.")

    @field_validator("aggregators")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in AGGREGATORS]
        if unknown:
            raise ValueError(f"unknown aggregator(s) {', '.join(unknown)}")
        return list(dict.fromkeys(names))


def preset_defaults(preset: str) -> TrainConfig:
    """The arena's starting config for a preset."""
    return preset_config(preset, **ARENA_OVERRIDES.get(preset, {}))


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set(data: dict, path: str, value) -> None:
    parts = path.split(".")
    parent_of(data, parts)[parts[-1]] = value


def widget_values(cfg: TrainConfig) -> dict:
    """Widget key -> value for a config (the inverse of `config_from_widgets`)."""
    values = {f"{K}{path}": _get(cfg, path) for path in FIELDS}
    values[f"{K}preset"] = cfg.preset if cfg.preset in PRESETS else DEFAULT_PRESET
    values[f"{K}probes_on"] = cfg.probe.every > 0
    if cfg.probe.every == 0:
        values[f"{K}probe.every"] = 25
    values.update(length_widget_values(LENGTH_KEY, cfg.trace.length.model_dump()))
    return values


def config_from_widgets() -> TrainConfig:
    """The TrainConfig the widgets describe, on top of the preset/URL base (ValidationError)."""
    ss = st.session_state
    data = dict(ss.get("_arena_base") or preset_defaults(DEFAULT_PRESET).model_dump(mode="json"))
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key in ("task", "trace", "probe"):
        data[key] = dict(data.get(key) or {})
    for path in FIELDS:
        _set(data, path, ss[f"{K}{path}"])
    if not ss[f"{K}probes_on"]:
        data["probe"]["every"] = 0
    data["trace"]["length"] = length_spec_from_widgets(LENGTH_KEY)
    data["preset"] = ss[f"{K}preset"]
    data["name"] = ""
    return TrainConfig.model_validate(data)


def run_configs(cfg: TrainConfig, aggregators: list[str]) -> list[TrainConfig]:
    """One config per aggregator; everything else (seed, data, warm start) shared."""
    base = cfg.model_dump(mode="json")
    return [TrainConfig.model_validate({**base, "aggregator": a}) for a in aggregators]


def url_params(cfg: TrainConfig, choice: ArenaChoice) -> dict[str, str]:
    params = to_query(cfg, preset_defaults(cfg.preset))
    params = {k: v for k, v in params.items() if k not in NOT_IN_URL}
    if cfg.preset != DEFAULT_PRESET:
        params["preset"] = cfg.preset
    else:
        params.pop("preset", None)
    if choice.aggregators != DEFAULT_AGGREGATORS:
        params["aggregators"] = ",".join(choice.aggregators)
    if choice.group:
        params["group"] = choice.group
    if choice.run:
        params["run"] = str(choice.run)
    return params


def read_url(params: dict[str, str]) -> tuple[TrainConfig, ArenaChoice, list[str]]:
    """URL -> (config, choice, notices); bad parameters fall back to defaults with a notice."""
    notices: list[str] = []
    preset = params.get("preset", DEFAULT_PRESET)
    if preset not in PRESETS:
        notices.append(
            f"URL parameter preset={preset[:40]!r} ignored: choose one of {', '.join(PRESETS)}; "
            f"using {DEFAULT_PRESET}."
        )
        preset = DEFAULT_PRESET
    choice_keys = set(ArenaChoice.model_fields)
    cfg_params = {
        k: v
        for k, v in params.items()
        if k not in choice_keys and k not in NOT_IN_URL and k != "preset"
    }
    cfg, cfg_notices = from_query(TrainConfig, cfg_params, defaults=preset_defaults(preset))
    choice, choice_notices = from_query(
        ArenaChoice, {k: v for k, v in params.items() if k in choice_keys}
    )
    ignored = [k for k in params if k in NOT_IN_URL]
    notices += cfg_notices + choice_notices
    notices += [f"URL parameter {k} ignored: the arena sets it per run." for k in ignored]
    return cfg, choice, notices


def _reset_to_preset() -> None:
    cfg = preset_defaults(st.session_state[f"{K}preset"])
    st.session_state["_arena_base"] = cfg.model_dump(mode="json")
    seed_widgets(widget_values(cfg), force=True)


def _start() -> None:
    """Start button: queue one run per aggregator under a new group and watch it."""
    ss = st.session_state
    try:
        cfg = config_from_widgets()
        choice = ArenaChoice(aggregators=ss[f"{K}aggregators"])
    except ValidationError as err:
        ss["_arena_start_error"] = format_errors(err)
        return
    if cfg.steps < 1:
        ss["_arena_start_error"] = "steps: the Arena needs at least 1 RL step"
        return
    group = f"arena-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    get_manager().submit_many(run_configs(cfg, choice.aggregators), group)  # one job
    ss["_arena_stopped"] = ""
    ss[f"{K}group"] = group
    ss[f"{K}run"] = 0
    ss["_arena_start_error"] = None


# ----------------------------------------------------------------------------- state

st.title("Training Arena")
st.markdown(
    "Tiny transformer policies learn CountDown (reach the target with the given numbers) by "
    "GRPO-style RL. Every run starts from the **same** supervised warm start and sees the same "
    "prompts in the same order; only the **aggregator** differs. Runs train in background "
    "processes, so you can close this tab and come back: the link keeps the group."
)

defaults_cfg = preset_defaults(DEFAULT_PRESET)
url = new_url_params(PAGE)
if url is not None:
    cfg_url, choice_url, notices = read_url(url)
    values = widget_values(cfg_url)
    values[f"{K}aggregators"] = choice_url.aggregators
    values[f"{K}group"] = choice_url.group
    values[f"{K}run"] = choice_url.run
    notices += clamp_notices(values, widget_values(preset_defaults(cfg_url.preset)))
    seed_widgets(values, force=True)
    st.session_state["_arena_base"] = cfg_url.model_dump(mode="json")
    show_notices(notices)
else:
    restore_widgets(PAGE)
seed_widgets(widget_values(defaults_cfg))
seed_widgets({f"{K}aggregators": list(DEFAULT_AGGREGATORS), f"{K}group": "", f"{K}run": 0})

# ----------------------------------------------------------------------------- sidebar


def nf(model, name: str, path: str, label: str) -> None:
    open_number_field(model, name, key=f"{K}{path}", label=label)


def row(n: int):
    """n sidebar columns whose inputs line up even where a narrow label wraps."""
    return st.columns(n, vertical_alignment="bottom")


with st.sidebar:
    st.header("Experiment")
    st.selectbox(
        "preset",
        list(PRESETS),
        key=f"{K}preset",
        on_change=_reset_to_preset,
        help="A starting point for every setting; choosing one resets the controls below.",
    )
    st.multiselect(
        "aggregators to compare",
        list(AGGREGATORS),
        key=f"{K}aggregators",
        format_func=lambda n: AGGREGATORS[n].display_name,
        help="One run per aggregator, with the same seed, data and warm start.",
    )
    c1, c2 = st.columns(2)
    with c1:
        st.slider(
            "VL Norm α",
            *ALPHA_RANGE,
            step=0.05,
            key=f"{K}alpha",
            help="VL Norm weighs answers ∝ L^-α: 0 is Dr. GRPO, 1 is optimal for independent tokens.",
        )
    with c2:
        st.radio(
            "VL Norm scope",
            ["group", "batch"],
            key=f"{K}scope",
            help=TrainConfig.model_fields["scope"].description,
        )

    st.header("Task")
    c1, c2, c3 = row(3)
    with c1:
        nf(TaskConfig, "n_numbers", "task.n_numbers", "numbers")
    with c2:
        nf(TaskConfig, "high", "task.high", "largest")
    with c3:
        nf(TaskConfig, "max_target", "task.max_target", "max target")
    with st.expander("problem counts"):
        nf(TaskConfig, "n_train", "task.n_train", "training problems")
        nf(TaskConfig, "n_test", "task.n_test", "held-out problems")

    st.header("Warm-start traces")
    length_family_widgets(LENGTH_KEY)
    nf(TraceConfig, "wrong_rate", "trace.wrong_rate", "wrong rate")
    nf(
        TraceConfig,
        "length_correctness_slope",
        "trace.length_correctness_slope",
        "length→wrong slope",
    )
    st.radio(
        "trace content",
        ["search", "filler"],
        key=f"{K}trace.mode",
        horizontal=True,
        help=TraceConfig.model_fields["mode"].description,
    )
    if st.session_state[f"{K}trace.mode"] == "filler":
        nf(TraceConfig, "filler_symbols", "trace.filler_symbols", "filler symbols")

    st.header("Policy and RL")
    st.selectbox(
        "model size",
        ["tiny", "small", "medium", "large"],
        key=f"{K}model_size",
        help=TrainConfig.model_fields["model_size"].description,
    )
    c1, c2, c3 = row(3)
    with c1:
        nf(TrainConfig, "prompts_per_step", "prompts_per_step", "B prompts")
    with c2:
        nf(TrainConfig, "group_size", "group_size", "G answers")
    with c3:
        nf(TrainConfig, "max_new_tokens", "max_new_tokens", "M tokens")
    for (left_path, left_label), (right_path, right_label) in (
        (("lr", "learning rate"), ("seed", "seed")),
        (("clip_low", "clip low"), ("clip_high", "clip high")),
        (("steps", "RL steps"), ("sft_steps", "SFT steps")),
    ):
        c1, c2 = row(2)
        with c1:
            nf(TrainConfig, left_path, left_path, left_label)
        with c2:
            nf(TrainConfig, right_path, right_path, right_label)

    st.header("Gradient probes")
    st.toggle(
        "probe every aggregator during training",
        key=f"{K}probes_on",
        help="Per-answer gradients on fixed prompts: variance, CV and bias of every aggregator.",
    )
    if st.session_state[f"{K}probes_on"]:
        open_number_field(ProbeConfig, "every", key=f"{K}probe.every", label="probe every (steps)")

# ----------------------------------------------------------------------------- config

store = get_store()
get_manager()  # the queue starts moving as soon as a training page is open
config_error = None
try:
    cfg = config_from_widgets()
    choice = ArenaChoice(
        aggregators=st.session_state[f"{K}aggregators"] or ["grpo"],
        group=st.session_state[f"{K}group"] or "",
        run=int(st.session_state[f"{K}run"] or 0),
    )
except ValidationError as err:
    cfg, choice, config_error = None, None, format_errors(err)
if cfg is not None and cfg.steps < 1:
    cfg, config_error = None, "steps: the Arena needs at least 1 RL step (0 trains nothing)"

if config_error is not None:
    st.error(
        "These settings cannot be trained (nothing starts until they are fixed):\n\n"
        + config_error,
        icon=":material/error:",
    )
else:
    write_url(PAGE, url_params(cfg, choice))
remember_widgets(PAGE, K)

left, right = st.columns([3, 2], vertical_alignment="bottom")
with left:
    if cfg is not None:
        aggs = st.session_state[f"{K}aggregators"]
        st.caption(
            f"{len(aggs)} run(s) × ({cfg.sft_steps} warm-start steps, cached and shared, then "
            f"{cfg.steps} RL steps of B={cfg.prompts_per_step} prompts × G={cfg.group_size} "
            f"answers, M={cfg.max_new_tokens}). Held-out evaluation every {cfg.eval_every} steps"
            + (f", probes every {cfg.probe.every}." if cfg.probe.every else ".")
        )
    if not st.session_state[f"{K}aggregators"]:
        st.warning("Choose at least one aggregator to compare.", icon=":material/warning:")
with right:
    st.button(
        "Start training",
        type="primary",
        icon=":material/play_arrow:",
        on_click=_start,
        disabled=cfg is None or not st.session_state[f"{K}aggregators"],
        width="stretch",
        help="Queue one background run per chosen aggregator and watch them below.",
    )
if st.session_state.get("_arena_start_error"):
    st.error(
        "Could not start:\n\n" + st.session_state["_arena_start_error"], icon=":material/error:"
    )

# ----------------------------------------------------------------------------- group choice

groups = recent_groups(store)
current = st.session_state[f"{K}group"]
if current and current not in groups:
    st.warning(
        f"No runs belong to the group {current[:60]!r} in this data directory; "
        "choose a recent group or start one.",
        icon=":material/link_off:",
    )
    st.session_state[f"{K}group"] = current = ""
options = [""] + groups
st.selectbox(
    "watch group",
    options,
    key=f"{K}group",
    format_func=lambda g: g or "(none: start one, or pick a recent group)",
    help="Runs started together; the link (?group=...) brings you back to them.",
)


# ----------------------------------------------------------------------------- live view


def run_row(info, metrics: pd.DataFrame) -> None:
    """Label, status, progress bar with ETA, and stop/resume for one run."""
    manager = get_manager()
    c1, c2, c3 = st.columns([2, 5, 1], vertical_alignment="center")
    with c1:
        st.markdown(f"**{run_label(info)}**  \n{status_text(info.status)}")
    with c2:
        last = int(metrics["step"].max()) if len(metrics) else None
        done = 0 if last is None or last < 0 else last + 1
        elapsed = None
        if "time/elapsed" in metrics and len(metrics):
            elapsed = float(pd.to_numeric(metrics["time/elapsed"], errors="coerce").max())
        frac, eta = progress(done, info.total_steps, elapsed)
        total = info.total_steps or 0
        if info.status == "queued":
            pos = manager.queue_position(info.id)
            text = f"queued, position {pos}" if pos else "queued"
        elif info.status == "running" and last is None:
            text = "warm start (supervised), then RL"
        elif info.status == "running":
            text = f"step {done}/{total} · ETA {format_seconds(eta)}"
        elif info.status in ("failed", "stopped") and info.error:
            first = info.error.strip().splitlines()[0]
            text = f"{info.status} at step {done}/{total}: {first}"
        else:
            text = f"{info.status} at step {done}/{total} · {format_seconds(elapsed)} of RL"
        st.progress(frac, text=text[:160])
    with c3:
        if info.status in ("queued", "running"):
            if st.button(
                "Stop",
                key=f"{K}stop.{info.id}",
                icon=":material/stop:",
                help="Stop after the current step (resumable). A running run stops with every "
                "run started with it: they train together as one job.",
            ):
                st.session_state["_arena_stopped"] = stop_message(
                    manager.stop_runs([info.id]), {info.id: run_label(info)}
                )
                st.rerun(scope="fragment")
        elif info.status in ("stopped", "failed") and st.button(
            "Resume",
            key=f"{K}resume.{info.id}",
            icon=":material/replay:",
            help="Queue it again; it continues from its last checkpoint.",
        ):
            manager.resume(info.id)
            st.rerun(scope="fragment")


def summary_table(runs: list) -> pd.DataFrame:
    rows = []
    for info, df in runs:
        row = {"run": run_label(info), "status": info.status}
        for col, name in (
            ("eval/mean_at_k", "held-out mean@k"),
            ("eval/accuracy_greedy", "held-out greedy"),
        ):
            values = pd.to_numeric(df[col], errors="coerce").dropna() if col in df else []
            row[f"{name} (last)"] = float(values.iloc[-1]) if len(values) else None
            row[f"{name} (best)"] = float(values.max()) if len(values) else None
        lengths = (
            pd.to_numeric(df["charts/response_length_mean"], errors="coerce").dropna()
            if "charts/response_length_mean" in df
            else []
        )
        row["mean length (last 10 steps)"] = (
            float(lengths.tail(10).mean()) if len(lengths) else None
        )
        rows.append(row)
    return pd.DataFrame(rows)


def stop_group(group: str) -> None:
    """Stop all: every run of the group that is queued or running now, and say what stopped."""
    infos = get_store().list_runs(group_name=group)
    ids = [i.id for i in infos if i.status in ("queued", "running")]
    results = get_manager().stop_runs(ids)
    labels = {i.id: run_label(i) for i in infos}
    st.session_state["_arena_stopped"] = stop_message(results, labels) or "Nothing was running."


def live_view(group: str) -> None:
    """Everything about one group, read from the store only (dead runs shown as stopped)."""
    store = get_store()
    infos = sorted(checked_runs(store, group_name=group), key=lambda r: r.id)
    if not infos:
        st.info("No runs in this group yet.", icon=":material/hourglass_empty:")
        return
    runs = [(info, run_metrics(info)) for info in infos]
    colors = run_colors(infos)
    manager = get_manager()

    st.subheader("Runs")
    for info, df in runs:
        run_row(info, df)
    active = [i for i in infos if i.status in ("queued", "running")]
    resumable = [i for i in infos if i.status in ("stopped", "failed")]
    c1, c2, c3 = st.columns([1, 1, 3])
    with c1:
        st.button(
            "Stop all",
            key=f"{K}stop_all",
            disabled=not active,
            icon=":material/stop_circle:",
            help="Stop every queued or running run of this group (and of their jobs).",
            on_click=stop_group,  # a callback: runs before the next rerun, never lost
            args=(group,),
        )
    with c2:
        if st.button(
            "Resume all",
            key=f"{K}resume_all",
            disabled=not resumable,
            icon=":material/replay:",
            help="Queue every stopped or failed run again.",
        ):
            for i in resumable:
                manager.resume(i.id)
            st.rerun(scope="fragment")
    with c3:
        st.caption(
            f"The runs started together train as one job (one worker process); up to "
            f"{manager.max_concurrent} jobs train at once on this server, counting sweeps; the "
            "rest wait in the queue. Updated every 2 seconds."
        )

    if st.session_state.get("_arena_stopped"):
        st.success(st.session_state["_arena_stopped"], icon=":material/stop_circle:")

    st.subheader("Curves")
    c1, c2 = st.columns(2)
    with c1:
        smoothing = st.slider(
            "smoothing",
            0.0,
            0.95,
            0.6,
            0.05,
            key=f"{K}smoothing",
            help="Exponential moving average (as in TensorBoard) of the per-step training curves.",
        )
    with c2:
        x_axis = st.radio(
            "x axis",
            ["step", "time/elapsed"],
            key=f"{K}x",
            horizontal=True,
            format_func=lambda v: "RL step" if v == "step" else "seconds of RL",
            help="Compare runs per update or per second of compute.",
        )
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(
            curves_figure(
                runs,
                "eval/mean_at_k",
                "held-out accuracy (— mean@k, -- greedy)",
                colors=colors,
                dash_metric="eval/accuracy_greedy",
                x=x_axis,
            ),
            width="stretch",
            key=f"{K}chart.acc",
        )
    with c2:
        st.plotly_chart(
            curves_figure(
                runs, "charts/reward_mean", "training reward", smoothing, colors, x=x_axis
            ),
            width="stretch",
            key=f"{K}chart.reward",
        )
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(
            curves_figure(
                runs,
                "charts/response_length_mean",
                "answer length: mean, band p10–p90",
                smoothing,
                colors,
                band=("charts/response_length_p10", "charts/response_length_p90"),
                x=x_axis,
            ),
            width="stretch",
            key=f"{K}chart.length",
        )
    with c2:
        st.plotly_chart(
            curves_figure(
                runs, "grad/norm", "gradient norm (before clipping)", smoothing, colors, x=x_axis
            ),
            width="stretch",
            key=f"{K}chart.grad",
        )
    st.caption(
        "GRPO and DAPO divide by lengths, so their step size follows how long the answers are; "
        "Dr. GRPO and VL Norm keep it fixed. With long traces more often wrong (the default "
        "length→wrong slope), length-dependent weights also change how fast answers shrink or grow."
    )
    with st.expander("Summary table"):
        st.dataframe(summary_table(runs), hide_index=True, width="stretch")

    # -- one run in detail
    st.subheader("One run in detail")
    ids = [i.id for i in infos]
    if st.session_state.get(f"{K}run") not in ids:
        st.session_state[f"{K}run"] = ids[0]
    chosen = st.selectbox(
        "run",
        ids,
        key=f"{K}run",
        format_func=lambda i: run_label(next(x for x in infos if x.id == i)),
        help="Its gradient probes and its latest sample answers are shown below.",
    )
    info = next(x for x in infos if x.id == chosen)
    probes = store.probes(chosen)
    if probes:
        last = probes[-1]
        st.markdown(
            f"Gradient probes of **{aggregator_label(info)}**'s policy ({len(probes)} so far, "
            f"latest at step {last.get('step')}): every aggregator evaluated on the same "
            "per-answer gradients. See the Probes page for more."
        )
        c1, c2 = st.columns(2)
        with c1:
            st.plotly_chart(
                probe_stat_figure(probes, "variance", log_y=True),
                width="stretch",
                key=f"{K}probe.var",
            )
        with c2:
            st.plotly_chart(probe_stat_figure(probes, "cv"), width="stretch", key=f"{K}probe.cv")
        c1, c2 = st.columns(2)
        with c1:
            st.plotly_chart(
                probe_stat_figure(probes, "cosine"), width="stretch", key=f"{K}probe.cos"
            )
        with c2:
            fig, text = scatter_figure(last)
            st.plotly_chart(fig, width="stretch", key=f"{K}probe.scatter")
            st.caption(text)
    elif info.config.get("probe", {}).get("every"):
        st.caption("No probe records yet; the first comes with the first RL step.")
    else:
        st.caption("Probes are off for this run (turn them on in the sidebar before starting).")

    samples = store.samples(chosen, limit_steps=1)
    if samples:
        st.markdown(f"Latest sample answers (step {samples[-1].get('step')}):")
        st.dataframe(samples_frame(samples), hide_index=True, width="stretch")
        st.caption(TRACE_FORMAT)
    if info.status == "failed" and info.error:
        with st.expander("Error of this run"):
            st.code(info.error[-3000:])

    if not active and st.session_state.get("_arena_was_active"):
        st.session_state["_arena_was_active"] = False
        st.rerun()  # everything ended: redraw once without the timer
    st.session_state["_arena_was_active"] = bool(active)


group = st.session_state[f"{K}group"]
if group:
    infos_now = get_store().list_runs(group_name=group)
    ticking = any(i.status in ("queued", "running") for i in infos_now)
    st.fragment(live_view, run_every=2 if ticking else None)(group)
else:
    st.info(
        "Press **Start training** to queue one run per aggregator, or pick a recent group above. "
        "With the default settings, four runs take a few minutes on a laptop CPU.",
        icon=":material/info:",
    )
