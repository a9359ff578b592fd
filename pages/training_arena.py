"""Training Arena: train tiny policies on CountDown with several aggregators and watch them live.

Widgets -> TrainConfig (one per aggregator, or per recipe, same seed and data) ->
JobManager.submit_many (one job: the runs train together in a worker process) -> a live view that
only reads the store. The settings and the group being watched live in the URL (pages.binder),
so a reload or a shared link re-attaches.
"""

from __future__ import annotations

import secrets
import time
from typing import Literal

import streamlit as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pages.arena_live import K, live_view
from pages.binder import Page, View
from pages.common import ensure_app_navigation
from pages.training_common import get_manager, get_store, recent_groups, trace_length_widget
from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE
from vlsim.config import (
    PRESETS,
    RECIPE_DISPLAY_NAMES,
    RECIPES,
    TrainConfig,
    apply_recipe,
    preset_config,
)

ensure_app_navigation()

PAGE = "arena"
DEFAULT_PRESET = "quick"
DEFAULT_AGGREGATORS = ["grpo", "dapo", "dr_grpo", "vl_norm"]

# What the arena changes in a preset: probes on, so every aggregator's noise is drawn live.
ARENA_OVERRIDES: dict[str, dict] = {
    "quick": {"probe": {"every": 20, "prompts": 4, "rollouts": 32, "resamples": 128}},
}
RECIPE_CHOICES = {**RECIPE_DISPLAY_NAMES, "both": "DAPO and DAPO + VL Norm, side by side"}
RECIPE_RUNS = {"dapo": ["dapo"], "dapo_vl_norm": ["dapo_vl_norm"], "both": ["dapo", "dapo_vl_norm"]}
RECIPE_NOTES = {
    "none": "No recipe: one run per aggregator chosen below, with the settings below.",
    "dapo": "DAPO: clip-higher (ratio kept in [1 − 0.2, 1 + 0.28]), dynamic sampling (groups "
    "whose answers all get the same reward are dropped) and the token mean.",
    "dapo_vl_norm": "DAPO + VL Norm: DAPO's clip-higher 0.2/0.28 and dynamic sampling, with VL "
    "Norm aggregation (α and scope below) in place of the token mean.",
    "both": "The paper's comparison: DAPO (token mean) and DAPO + VL Norm, same seed, data and "
    "warm start; both use clip-higher 0.2/0.28 and dynamic sampling.",
}
FIELDS = ("task.n_numbers", "task.high", "task.max_target", "task.n_train", "task.n_test",
          "trace.length", "trace.mode", "trace.filler_symbols", "trace.wrong_rate",
          "trace.length_correctness_slope", "model_size", "prompts_per_step", "group_size",
          "max_new_tokens", "lr", "clip_low", "clip_high", "kl_coef", "steps", "sft_steps", "seed",
          "alpha", "scope", "probe.every")  # fmt: skip


class ArenaChoice(BaseModel):
    """What the arena compares and watches: preset, recipe, aggregators, group and run."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field(
        DEFAULT_PRESET,
        description="A starting point for every setting; choosing one resets the controls below.",
    )
    recipe: Literal["none", "dapo", "dapo_vl_norm", "both"] = Field(
        "none", description="An RL recipe: its runs replace the aggregators chosen below."
    )
    aggregators: list[str] = Field(
        default_factory=lambda: list(DEFAULT_AGGREGATORS),
        min_length=1,
        description="One run per aggregator, with the same seed, data and warm start.",
    )
    group: str = Field(
        "",
        max_length=200,
        description="Runs started together; the link (?group=...) brings you back to them.",
    )
    run: int = Field(0, ge=0, description="The run whose probes and samples are shown.")

    @field_validator("preset")
    @classmethod
    def _preset(cls, name: str) -> str:
        if name not in PRESETS:
            raise ValueError(f"choose one of {', '.join(PRESETS)}")
        return name

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


def run_configs(cfg: TrainConfig, recipe: str, aggregators: list[str]) -> list[TrainConfig]:
    """One config per aggregator, or per recipe run; everything else (seed, data, warm start)
    shared."""
    if recipe in RECIPE_RUNS:
        return [apply_recipe(cfg, r) for r in RECIPE_RUNS[recipe]]
    base = cfg.model_dump(mode="json")
    return [TrainConfig.model_validate({**base, "aggregator": a}) for a in aggregators]


def _reset_to_preset() -> None:
    train.load(preset_defaults(st.session_state[f"{K}preset"]))


def _start() -> None:
    """Start button: queue the runs as one job under a new group and watch it."""
    ss = st.session_state
    try:
        cfg = train.read(preset=ss[f"{K}preset"], name="")
    except ValidationError as err:
        ss["_arena_start_error"] = train.errors(err)
        return
    if cfg.steps < 1:
        ss["_arena_start_error"] = "steps: the Arena needs at least 1 RL step"
        return
    group = f"arena-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    aggregators = ss.get(f"{K}aggregators") or []
    get_manager().submit_many(run_configs(cfg, ss[f"{K}recipe"], aggregators), group)
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

page = Page(PAGE)
chosen = page.bind(ArenaChoice, K, ArenaChoice.model_fields)
train = page.bind(
    TrainConfig,
    K,
    FIELDS,
    defaults=lambda: preset_defaults(st.session_state.get(f"{K}preset", DEFAULT_PRESET)),
    views={"probe.every": View(
        lambda every: {f"{K}probes_on": every > 0, f"{K}probe.every": every or 25},
        lambda: st.session_state[f"{K}probe.every"] if st.session_state[f"{K}probes_on"] else 0,
    )},
    not_in_url=("aggregator", "name", "preset", "recipe"),
)  # fmt: skip
page.open()
ss = st.session_state

# ----------------------------------------------------------------------------- sidebar


def row(n: int):
    """n sidebar columns whose inputs line up even where a narrow label wraps."""
    return st.columns(n, vertical_alignment="bottom")


with st.sidebar:
    st.header("Experiment")
    chosen.widget("preset", options=list(PRESETS), on_change=_reset_to_preset)
    recipe = chosen.widget("recipe", options=list(RECIPE_CHOICES), format_func=RECIPE_CHOICES.get)
    st.caption(RECIPE_NOTES[recipe])
    if recipe == "none":
        chosen.widget(
            "aggregators",
            "aggregators to compare",
            options=list(AGGREGATORS),
            format_func=lambda n: AGGREGATORS[n].display_name,
        )
    else:  # the recipe sets the clip range: show it, fixed
        ss[f"{K}clip_low"], ss[f"{K}clip_high"] = (
            RECIPES["dapo"][f] for f in ("clip_low", "clip_high")
        )
    c1, c2 = st.columns(2)
    with c1:
        train.widget(
            "alpha",
            "VL Norm α",
            slider=True,
            min_value=ALPHA_RANGE[0],
            max_value=ALPHA_RANGE[1],
            step=0.05,
            help="VL Norm weighs answers ∝ L^-α: 0 is Dr. GRPO, 1 is optimal for independent tokens.",
        )
    with c2:
        train.widget("scope", "VL Norm scope", radio=True)

    st.header("Task")
    for column, (path, label) in zip(row(3), (("task.n_numbers", "numbers"),
            ("task.high", "largest"), ("task.max_target", "max target")), strict=True):  # fmt: skip
        with column:
            train.widget(path, label)
    with st.expander("problem counts"):
        train.widget("task.n_train", "training problems")
        train.widget("task.n_test", "held-out problems")

    st.header("Warm-start traces")
    trace_length_widget(train, "trace.length")
    train.widget("trace.wrong_rate", "wrong rate")
    train.widget("trace.length_correctness_slope", "length→wrong slope")
    train.widget("trace.mode", "trace content", radio=True, horizontal=True)
    if ss[f"{K}trace.mode"] == "filler":
        train.widget("trace.filler_symbols", "filler symbols")

    st.header("Policy and RL")
    train.widget("model_size", "model size")
    for column, (path, label) in zip(row(3), (("prompts_per_step", "B prompts"),
            ("group_size", "G answers"), ("max_new_tokens", "M tokens")), strict=True):  # fmt: skip
        with column:
            train.widget(path, label)
    recipe_sets = {f for r in RECIPE_RUNS.get(recipe, []) for f in RECIPES[r]}  # locked boxes
    for pair in ((("lr", "learning rate"), ("seed", "seed")),
                 (("clip_low", "clip low"), ("clip_high", "clip high")),
                 (("steps", "RL steps"), ("sft_steps", "SFT steps"))):  # fmt: skip
        for column, (path, label) in zip(row(2), pair, strict=True):
            with column:
                train.widget(path, label, disabled=path in recipe_sets)
    train.widget(
        "kl_coef",
        "KL penalty to the warm start",
        more_help="The wide preset uses 0.1: answers to problems the policy cannot solve get no "
        "reward signal, and without it they drift to the length of the solved ones. The DAPO "
        "recipes set 0.",
        disabled="kl_coef" in recipe_sets,
    )

    st.header("Gradient probes")
    st.toggle(
        "probe every aggregator during training",
        key=f"{K}probes_on",
        help="Per-answer gradients on fixed prompts: variance, CV and bias of every aggregator.",
    )
    if ss[f"{K}probes_on"]:
        train.widget("probe.every", "probe every (steps)")

# ----------------------------------------------------------------------------- config

store = get_store()
get_manager()  # the queue starts moving as soon as a training page is open
cfg = train.value(
    "These settings cannot be trained (nothing starts until they are fixed):",
    preset=ss[f"{K}preset"],
    name="",
)
if cfg is not None and cfg.steps < 1:
    st.error(
        "These settings cannot be trained (nothing starts until they are fixed):\n\n"
        "- **RL steps**: the Arena needs at least 1 RL step (0 trains nothing)",
        icon=":material/error:",
    )
    cfg = None
runs = run_configs(cfg, recipe, ss[f"{K}aggregators"]) if cfg is not None else []

left, right = st.columns([3, 2], vertical_alignment="bottom")
with left:
    if cfg is not None:
        st.caption(
            f"{len(runs)} run(s) × ({cfg.sft_steps} warm-start steps, cached and shared, then "
            f"{cfg.steps} RL steps of B={cfg.prompts_per_step} prompts × G={cfg.group_size} "
            f"answers, M={cfg.max_new_tokens}). Held-out evaluation every {cfg.eval_every} steps"
            + (f", probes every {cfg.probe.every}." if cfg.probe.every else ".")
        )
    if recipe == "none" and not ss[f"{K}aggregators"]:
        st.warning("Choose at least one aggregator to compare.", icon=":material/warning:")
with right:
    st.button(
        "Start training",
        type="primary",
        icon=":material/play_arrow:",
        on_click=_start,
        disabled=not runs,
        width="stretch",
        help="Queue the runs (one per aggregator, or the recipe's) and watch them below.",
    )
if ss.get("_arena_start_error"):
    st.error("Could not start:\n\n" + ss["_arena_start_error"], icon=":material/error:")

# ----------------------------------------------------------------------------- group choice

groups = recent_groups(store)
if ss[f"{K}group"] and ss[f"{K}group"] not in groups:
    st.warning(
        f"No runs belong to the group {ss[f'{K}group'][:60]!r} in this data directory; "
        "choose a recent group or start one.",
        icon=":material/link_off:",
    )
    ss[f"{K}group"] = ""
group = chosen.widget(
    "group",
    "watch group",
    options=["", *groups],
    format_func=lambda g: g or "(none: start one, or pick a recent group)",
)
chosen.value(aggregators=ss[f"{K}aggregators"] or ["grpo"], run=int(ss.get(f"{K}run") or 0))
page.write()

if group:
    infos_now = store.list_runs(group_name=group)
    ticking = any(i.status in ("queued", "running") for i in infos_now)
    st.fragment(live_view, run_every=2 if ticking else None)(group)
else:
    st.info(
        "Press **Start training** to queue one run per aggregator, or pick a recent group above. "
        "With the default settings, four runs take a few minutes on a laptop CPU.",
        icon=":material/info:",
    )
