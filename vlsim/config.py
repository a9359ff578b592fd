"""Pydantic configs of every vlsim experiment: validated once, serialisable to JSON/YAML/URLs.

Each field says what it is where it is declared (CleanRL style); invalid values are rejected
with a message that names the field. Module-specific pieces (length families, the CountDown
task, the model) are declared beside the code that uses them and composed here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vlsim.aggregators import AGGREGATORS, check_alpha, check_name
from vlsim.countdown import TaskConfig
from vlsim.lengths import LengthSpec, LogNormalLengths
from vlsim.traces import TraceConfig

ModelT = TypeVar("ModelT", bound=BaseModel)

Alpha = Annotated[float, AfterValidator(check_alpha)]
"""VL Norm's exponent alpha, checked to lie in vlsim.aggregators.ALPHA_RANGE."""
AggregatorName = Annotated[str, AfterValidator(check_name)]
"""A name registered in vlsim.aggregators.AGGREGATORS."""


MAX_LAB_ANSWERS = 50_000_000
"""Largest Length Lab (batches x groups x answers): about 4 GB of float64 working arrays."""


class LabConfig(BaseModel):
    """The Length Lab: synthetic per-answer gradients whose noise grows with answer length."""

    model_config = ConfigDict(extra="forbid")

    lengths: LengthSpec = Field(
        default_factory=lambda: LogNormalLengths(median=600, sigma=0.8),
        description="Distribution of the current answer lengths (tokens): right-skewed by "
        "default, as reasoning answers are.",
    )
    length_growth: float = Field(
        4.0,
        ge=1e-3,
        le=1e4,
        allow_inf_nan=False,
        description="How many times longer answers are now than at the reference (e.g. the "
        "start of training): the reference lengths are the current ones divided by this; the "
        "step size is shown relative to the reference (1 = no shift).",
    )
    max_len: int = Field(4096, ge=1, le=1_000_000, description="M: the maximum answer length.")
    group_size: int = Field(16, ge=2, le=1024, description="G: answers sampled per prompt.")
    n_groups: int = Field(8, ge=1, le=1024, description="B: prompts (groups) per batch.")
    n_batches: int = Field(
        20_000, ge=100, le=1_000_000, description="Monte Carlo batches drawn (more = tighter)."
    )
    dim: int = Field(32, ge=2, le=1024, description="d: dimension of the synthetic gradient.")
    rho: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="AR(1) correlation of neighbouring token terms; > 0 makes Var(g) grow faster than L.",
    )
    token_noise: float = Field(
        0.1, gt=0, le=100, description="Standard deviation of one token's noise (its norm)."
    )
    p_correct: float = Field(
        0.5, gt=0, lt=1, description="Probability that an answer of typical length is correct."
    )
    length_slope: float = Field(
        -1.0,
        ge=-5,
        le=5,
        description="kappa: change in log-odds of being correct per std of log-length (< 0: long answers more often wrong).",
    )
    length_drive: float = Field(
        1.0,
        ge=0,
        le=10,
        description="eta: how strongly an answer's score points toward 'be longer' for longer answers.",
    )
    std_normalize: bool = Field(
        True, description="Divide group advantages by the reward std (GRPO) or not (Dr. GRPO)."
    )
    alpha: Alpha = Field(1.0, description="VL Norm exponent: weights proportional to L^-alpha.")
    scope: Literal["group", "batch"] = Field(
        "group", description="VL Norm normalises per group (paper) or per batch (released code)."
    )
    aggregators: list[AggregatorName] = Field(
        default_factory=lambda: list(AGGREGATORS),
        min_length=1,
        description="Aggregators to evaluate.",
    )
    mode: Literal["exact", "tokens"] = Field(
        "exact",
        description="'exact' samples each answer's noise sum in closed form; 'tokens' simulates every token (slow; for checking).",
    )
    seed: int = Field(0, ge=0, description="Random seed: the same seed gives the same numbers.")

    @model_validator(mode="after")
    def _bounded_work(self) -> LabConfig:
        answers = self.n_batches * self.n_groups * self.group_size
        if answers > MAX_LAB_ANSWERS:
            raise ValueError(
                f"n_batches x n_groups x group_size = {answers:,} simulated answers; at most "
                f"{MAX_LAB_ANSWERS:,} fit in memory: lower n_batches, n_groups or group_size"
            )
        return self

    @field_validator("aggregators")
    @classmethod
    def _drop_repeats(cls, names: list[str]) -> list[str]:
        return list(dict.fromkeys(names))


SWEEP_PARAMS: dict[str, str] = {
    "length_scale": "Stretch every length by this factor (x axis: resulting mean length)",
    "alpha": "VL Norm exponent alpha",
    "group_size": "Group size G",
    "rho": "Token correlation rho",
    "length_slope": "Length-correctness slope kappa",
    "max_len": "Maximum length M",
}
"""Parameters the Length Lab can sweep, with their axis labels."""


def format_errors(err: ValidationError) -> str:
    """A ValidationError as short lines 'field: message' that a student can act on."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path, model: type[ModelT]) -> ModelT:
    """Load a JSON or YAML file into a config model (ValueError with readable messages)."""
    path = Path(path)
    text = path.read_text()
    data: Any
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    try:
        return model.model_validate(data or {})
    except ValidationError as err:
        raise ValueError(f"invalid config in {path}:\n{format_errors(err)}") from err


# ---------------------------------------------------------------- training arena


class ProbeConfig(BaseModel):
    """Gradient probes: per-answer gradients on fixed prompts, every aggregator evaluated on them."""

    model_config = ConfigDict(extra="forbid")

    every: int = Field(0, ge=0, description="Probe every this many RL steps (0 = never).")
    # 32 x 32 answers: on the default preset (step 30) the advantage-free slope's 95% interval
    # was 0.36-0.39 wide in three draws; 16 x 48 gave 0.29-0.62, 4 x 64 gave 1.3. The interval
    # resamples prompts, and prompts differ in their slopes, so it needs many prompts.
    prompts: int = Field(
        32, ge=2, le=96, description="Probe prompts (fixed, from the test split); >= 12 advised."
    )
    rollouts: int = Field(
        32,
        ge=4,
        le=1024,
        description="R: answers drawn per probe prompt; groups of G < R are resampled from them.",
    )
    resamples: int = Field(
        256, ge=10, le=100_000, description="Groups of G resampled from the R to estimate variance."
    )
    bootstrap: int = Field(
        2000,
        ge=0,
        le=100_000,
        description="Cluster-bootstrap replicates (prompts resampled) of the slope and bias intervals.",
    )
    block: Literal["all", "last_attention", "last_block", "head"] = Field(
        "last_attention",
        description="Parameters whose gradient is probed: all, the last attention layer, the last block, or the output head.",
    )
    projection_dim: int = Field(
        0,
        ge=0,
        le=65_536,
        description="Project per-answer gradients to this many random directions (0 = no projection).",
    )


class TrainConfig(BaseModel):
    """A tiny-policy RLVR run on CountDown: warm start, then GRPO-style RL with one aggregator."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200, description="Run name shown in lists (default: derived).")
    preset: str = Field(
        "default", description="The preset this config started from (its defaults: 'default')."
    )
    recipe: Literal["none", "dapo", "dapo_vl_norm"] = Field(
        "none",
        description="An RL recipe that sets several fields at once (see RECIPES): 'dapo' is "
        "DAPO as published (clip-higher 0.2/0.28, dynamic sampling, token-mean); "
        "'dapo_vl_norm' is the same with VL Norm aggregation; 'none' sets nothing.",
    )
    # task and warm-start data
    task: TaskConfig = Field(
        default_factory=TaskConfig,
        description="CountDown problems (default: two numbers, where the policy starts near 20%).",
    )
    trace: TraceConfig = Field(
        default_factory=lambda: TraceConfig(
            # Wide trace lengths, long traces more often wrong (P(wrong) grows with length):
            # the length-dependent weightings then see a length-correctness link to act on.
            length=LogNormalLengths(median=16.0, sigma=0.8),
            wrong_rate=0.3,
            length_correctness_slope=1.5,
        ),
        description="Reasoning traces of the warm-start data.",
    )
    # policy
    model_size: Literal["tiny", "small", "medium", "large"] = Field(
        "small",
        description="Policy size: tiny ~0.1M, small ~0.4M, medium ~1.5M, large ~5M parameters.",
    )
    max_new_tokens: int = Field(
        64, ge=8, le=2048, description="M: the answer budget; answers cut at M get reward 0."
    )
    # supervised warm start
    sft_steps: int = Field(600, ge=0, le=100_000, description="Supervised warm-start steps.")
    sft_batch_size: int = Field(64, ge=1, le=4096, description="Warm-start examples per step.")
    sft_lr: float = Field(3e-3, gt=0, le=1, description="Warm-start learning rate (AdamW).")
    # RL
    steps: int = Field(300, ge=0, le=1_000_000, description="RL optimizer steps.")
    prompts_per_step: int = Field(8, ge=1, le=4096, description="B: prompts per RL step.")
    group_size: int = Field(16, ge=2, le=1024, description="G: answers sampled per prompt.")
    # 3e-4: +25 to +34 held-out points in 10 min for grpo, dapo, dr_grpo and vl_norm (default
    # preset, seed 0); at 5e-4 grpo and vl_norm answers grow long late in training and accuracy
    # falls back; 1e-3 collapses these small policies.
    lr: float = Field(3e-4, gt=0, le=1, description="RL learning rate (AdamW).")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay in RL.")
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling temperature of rollouts.")
    aggregator: AggregatorName = Field("grpo", description="How token losses become one scalar.")
    alpha: Alpha = Field(1.0, description="VL Norm exponent (weights ~ L^-alpha).")
    scope: Literal["group", "batch"] = Field("group", description="VL Norm normalisation scope.")
    std_normalize: bool = Field(
        True, description="Divide advantages by the group's reward std (GRPO) or not (Dr. GRPO)."
    )
    clip_low: float = Field(0.2, ge=0, le=1, description="PPO clip below: ratio >= 1 - clip_low.")
    clip_high: float = Field(
        0.28, ge=0, le=10, description="PPO clip above: ratio <= 1 + clip_high (DAPO: 0.28)."
    )
    inner_epochs: int = Field(
        1, ge=1, le=16, description="Optimizer passes over each batch of rollouts (1 = on-policy)."
    )
    kl_coef: float = Field(0.0, ge=0, le=10, description="KL penalty to the warm-start policy.")
    dynamic_sampling: bool = Field(
        False, description="Skip groups whose rewards are all equal (DAPO's dynamic sampling)."
    )
    format_reward: float = Field(
        0.0, ge=0, le=1, description="Reward for a well-formed but wrong answer (0 = off)."
    )
    max_grad_norm: float = Field(
        1.0, ge=0, description="Clip the gradient norm to this (0 = no clipping)."
    )
    # evaluation, probes, logging
    eval_every: int = Field(
        25, ge=0, description="Evaluate on the held-out split every K steps (0 = never)."
    )
    eval_samples: int = Field(4, ge=1, le=64, description="k for sampled mean@k accuracy.")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="Gradient probes.")
    sample_log_every: int = Field(
        10, ge=0, description="Store a few sample rollouts every this many steps (0 = never)."
    )
    checkpoint_every: int = Field(
        50, ge=0, description="Save model, optimizer and RNG every this many steps (0 = never)."
    )
    device: str = Field("auto", description="auto (cuda > mps > cpu), cpu, cuda or mps.")
    threads: int = Field(
        0, ge=0, le=256, description="torch CPU threads (0 = leave torch's default)."
    )
    seed: int = Field(0, ge=0, description="Seed of the policy init, sampling and problem order.")

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, data: Any) -> Any:
        """Fill the fields a recipe sets that were not given (given ones are checked after)."""
        if isinstance(data, dict) and data.get("recipe") in RECIPES:
            return {**RECIPES[data["recipe"]], **data}
        return data

    @model_validator(mode="after")
    def _recipe_holds(self) -> TrainConfig:
        clashes = [
            f"{key}={getattr(self, key)!r} (the recipe sets {value!r})"
            for key, value in RECIPES.get(self.recipe, {}).items()
            if getattr(self, key) != value
        ]
        if clashes:
            raise ValueError(
                f"recipe {self.recipe!r} contradicts the settings given: {'; '.join(clashes)}. "
                f"Drop those settings, or set recipe to 'none' to choose them freely"
            )
        return self

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda", "mps") and not value.startswith("cuda:"):
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return value

    @model_validator(mode="after")
    def _fits(self) -> TrainConfig:
        if self.prompts_per_step > self.task.n_train:
            raise ValueError(
                f"prompts_per_step ({self.prompts_per_step}) exceeds the training problems "
                f"(task.n_train = {self.task.n_train})"
            )
        return self

    def run_name(self) -> str:
        """A readable default name: aggregator (and alpha) plus seed."""
        if self.name:
            return self.name
        agg = f"vl_norm(a={self.alpha:g})" if self.aggregator == "vl_norm" else self.aggregator
        return f"{self.preset}-{agg}-seed{self.seed}"


STEP_TRACES: dict[str, Any] = {
    # The wide and growing presets' warm-start traces: every combination step of the solution
    # path written out (keep_path), plus dead ends in proportion to the steps (median 8 tokens a
    # step), so an answer's length follows its problem's size. No planted wrong answers.
    "length": {"kind": "lognormal", "median": 8, "sigma": 0.5},
    "length_per_step": True,
    "keep_path": True,
    "wrong_rate": 0.0,
    "length_correctness_slope": 0.0,
}


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        # Smaller and shorter: the tiny policy starts near 14% held-out sampled accuracy and
        # gains about 4.5 points in 200 steps (seed 0, 1 thread: 13.9% -> 18.4% on 96 problems
        # x 16 samples; tests/test_train.py checks a rise of at least 3).
        "model_size": "tiny",
        "max_new_tokens": 48,
        # A preset's trace replaces the default trace whole, so it restates the
        # length-correctness link.
        "trace": {
            "length": {"kind": "lognormal", "median": 12, "sigma": 0.8},
            "wrong_rate": 0.3,
            "length_correctness_slope": 1.5,
        },
        "sft_steps": 400,
        "steps": 200,
        "prompts_per_step": 16,
        "group_size": 8,
        "lr": 5e-4,  # the tiny policy tolerates a little more than the default 3e-4
        "eval_every": 20,
        "checkpoint_every": 20,
    },
    "default": {},  # TrainConfig's own defaults
    "long": {
        # Answers about four times longer (median trace 60 tokens, budget M = 192).
        "max_new_tokens": 192,
        "trace": {
            "length": {"kind": "lognormal", "median": 60, "sigma": 0.8},
            "wrong_rate": 0.3,
            "length_correctness_slope": 1.5,
        },
        "sft_steps": 800,
        "steps": 400,
    },
    "wide": {
        # Lengths stay wide through the TASK: 2-, 3- and 4-number CountDown mixed (40/20/40%,
        # and every RL step holds each size in that share: 7, 3 and 6 of its 16 prompts).
        # Every warm-start trace writes each combination step of its path (keep_path), plus
        # dead ends in proportion to the steps (median 8 tokens a step), so a 4-number answer
        # is about three times a 2-number one. No planted wrong answers (wrong_rate 0).
        # The KL penalty to the warm-start policy (0.1; GRPO's original recipe has one, 0.04)
        # keeps the answers to problems the policy cannot solve as the warm start wrote them:
        # a group whose answers all fail has advantages 0, so without it those answers get no
        # gradient of their own and drift, through the shared weights, to the length of the
        # solved 2-number answers (docs/presets.md: 13 variants, a bigger policy and Dr. GRPO
        # among them, all failed that way). The DAPO recipes drop the KL term, as DAPO does.
        # MEASURED (benchmarks/bench_presets.py --preset wide --steps 1000 --eval-every 50
        # --seed S, GRPO, 1 thread, two runs at once on 2 cores): p90/p10 of the step's lengths
        # >= 3 at all 20 evaluations on seeds 0, 1 and 2 (3.61-6.09, median 4.46; 3.53-5.99,
        # median 4.43; 3.23-6.02, median 4.03); mean length 30.6 -> 31.6, 32.2 -> 29.2 and
        # 32.5 -> 30.6 tokens. p10 sits in the 2-number answers (11-14 tokens), p90 in the
        # 4-number ones (40-78), which the policy almost never solves. Held-out mean@k (96
        # problems x 4 samples, +-0.03 is noise) 0.109 -> 0.134, 0.076 -> 0.139 and 0.094 ->
        # 0.144 (mean of the last five evaluations; best 0.159, 0.164, 0.161), the step's
        # share correct 0.17 -> 0.38, 0.20 -> 0.40 and 0.22 -> 0.29, in 13.1-16.7 RL minutes
        # (the reference policy's forward pass costs about 30%). Without the KL term
        # the policy learns a little more (0.109 -> 0.177 on seed 0) but p90/p10 fell under 3
        # at 3 and 6 of 20 evaluations; with 0.04, at 1 of 20 (2.95) and 0 of 20.
        "task": {"sizes": [2, 3, 4], "size_weights": [0.4, 0.2, 0.4]},
        "trace": STEP_TRACES,
        "kl_coef": 0.1,
        "max_new_tokens": 96,
        # 16 prompts of 8 answers (128 as by default): each step then holds every size (with 8
        # prompts, a step without 4-number problems has a narrow spread by chance).
        "prompts_per_step": 16,
        "group_size": 8,
    },
    "growing": {
        # Mean answer length GROWS through the TASK, by a curriculum: the wide preset's mixed
        # 2-, 3- and 4-number CountDown and its traces (each combination step written out, plus
        # dead ends), with the training prompts moving from mostly 2-number problems (70/30/0%)
        # at the first step to mostly 4-number ones (0/30/70%) at the last. Bigger problems need
        # more steps, so answers lengthen as the problems harden. This is not R1's emergent
        # growth (the policy is not rewarded for thinking longer); it is the same effect on the
        # aggregators: a batch's lengths, and so GRPO's and DAPO's step sizes, drift during the
        # run. The held-out problems stay one fixed mix (35/30/35%).
        # MEASURED (benchmarks/bench_presets.py --preset growing --steps 300, GRPO, seed 0, 2
        # threads on a shared 2-core machine, load 3.5-4): mean answer length 18.9 tokens over
        # the first 25 steps, 31.0 over the last 25 (x1.64, the ">= 1.5x" target met); the
        # step's p90/p10 stayed 1.8-8.7 (median 3.3). Held-out mean@k 0.107 -> 0.112 (best
        # 0.148; 96 problems x 4 samples, so +-0.03 is noise): in 14.7 RL minutes the policy
        # learns no measurable accuracy on the fixed held-out mix, because its training
        # problems harden as fast as it learns. Use it to watch step sizes drift, not to race.
        "task": {
            "sizes": [2, 3, 4],
            "size_weights": [0.7, 0.3, 0.0],
            "final_size_weights": [0.0, 0.3, 0.7],
        },
        "trace": STEP_TRACES,
        "max_new_tokens": 96,
        "prompts_per_step": 16,
        "group_size": 8,
    },
}
"""Named starting points: what each changes from TrainConfig's defaults ("default": nothing)."""


RECIPES: dict[str, dict[str, Any]] = {
    # DAPO (Yu et al. 2025) as the VL Norm paper runs it: clip-higher (ratio kept in
    # [1 - 0.2, 1 + 0.28]), dynamic sampling (groups whose answers all get the same reward are
    # dropped from the update; they are not replaced by new samples), token-mean aggregation,
    # group-normalised advantages and no KL term. Overlong reward shaping is not part of it here:
    # answers cut at the budget get reward 0 in every run.
    "dapo": {
        "aggregator": "dapo",
        "clip_low": 0.2,
        "clip_high": 0.28,
        "dynamic_sampling": True,
        "std_normalize": True,
        "kl_coef": 0.0,
    },
    # The same recipe with VL Norm aggregation in place of the token mean (the paper's
    # "DAPO + VL Norm"); alpha and scope stay free (defaults 1.0 and per group, as in the paper).
    "dapo_vl_norm": {
        "aggregator": "vl_norm",
        "clip_low": 0.2,
        "clip_high": 0.28,
        "dynamic_sampling": True,
        "std_normalize": True,
        "kl_coef": 0.0,
    },
}
"""What each recipe of TrainConfig.recipe sets; a config naming a recipe must agree with it."""

RECIPE_DISPLAY_NAMES: dict[str, str] = {
    "none": "None (set each field)",
    "dapo": "DAPO",
    "dapo_vl_norm": "DAPO + VL Norm",
}
"""How the UI names each value of TrainConfig.recipe."""


def apply_recipe(cfg: TrainConfig, recipe: str) -> TrainConfig:
    """cfg switched to a recipe: the recipe's fields overwrite cfg's ('none' changes only the name)."""
    if recipe != "none" and recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose none or {', '.join(RECIPES)}")
    data = {**cfg.model_dump(), **RECIPES.get(recipe, {}), "recipe": recipe}
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"invalid training config:\n{format_errors(err)}") from err


def preset_config(preset: str = "default", **overrides: Any) -> TrainConfig:
    """A TrainConfig from a preset plus overrides (nested dicts merge into the preset's)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    data = merge_dicts({"preset": preset}, copy.deepcopy(PRESETS[preset]))  # callers may edit it
    if overrides.get("recipe") in RECIPES:  # a recipe's settings replace the preset's (wide's KL)
        data = merge_dicts(data, copy.deepcopy(RECIPES[overrides["recipe"]]))
    data = merge_dicts(data, overrides)  # given settings that clash with the recipe still fail
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"invalid training config:\n{format_errors(err)}") from err


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: nested dicts merge, anything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def parent_of(data: dict, path: Sequence[str]) -> dict:
    """The dict that holds path's last key, creating (or replacing non-dict) parents on the way."""
    for part in path[:-1]:
        child = data.get(part)
        if not isinstance(child, dict):
            child = {}
            data[part] = child
        data = child
    return data


def get_path(data: Any, path: Sequence[str]) -> Any:
    """The value at a path of nested dicts, or None where the path leaves them."""
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def set_path(data: dict, path: Sequence[str], value: Any) -> None:
    """Put value at a path of nested dicts, creating (or replacing non-dict) parents on the way."""
    parent_of(data, path)[path[-1]] = value
