"""Training Arena: train tiny policies on CountDown with several aggregators and watch them live.

Widgets -> TrainConfig (one per aggregator, same seed and data) -> JobManager.submit_many (each
run trains in its own worker process) -> a live view that only reads the store. The settings
and the group being watched live in the URL, so a reload or a shared link re-attaches.
"""

from __future__ import annotations

import secrets
import time

import streamlit as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pages.arena_live import K, live_view
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
    get_manager,
    get_store,
    length_family_widgets,
    length_spec_from_widgets,
    length_widget_values,
    open_number_field,
    recent_groups,
)
from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE
from vlsim.config import PRESETS, ProbeConfig, TrainConfig, format_errors, parent_of, preset_config
from vlsim.countdown import TaskConfig
from vlsim.scenario import from_query, to_query
from vlsim.traces import TraceConfig

ensure_app_navigation()

PAGE = "arena"
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
