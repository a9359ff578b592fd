"""What a reproduction runs: the presets probed, the seeds, the conditions and how claims are read.

`ReproduceConfig` is validated once; `scale_config("quick" | "full" | "tiny")` gives the shipped
scales. Every field says what it is where it is declared. The list of presets is a field, so a
new preset joins the default list by one line in `SCALES`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlsim.config import PRESETS, ProbeConfig, format_errors

SPEED_CONDITIONS: dict[str, dict[str, Any]] = {
    "grpo": {"label": "GRPO", "recipe": "none", "aggregator": "grpo"},
    "grpo_vl_norm": {"label": "GRPO + VL Norm", "recipe": "none", "aggregator": "vl_norm"},
    "dapo": {"label": "DAPO", "recipe": "dapo"},
    "dapo_vl_norm": {"label": "DAPO + VL Norm", "recipe": "dapo_vl_norm"},
}
"""Claim 4's conditions: a display label and the TrainConfig fields each sets (recipes expanded
by `vlsim.reproduce.plan`). GRPO here is the plain GRPO loss (per-answer token mean); its VL Norm
twin changes only the aggregation, as DAPO + VL Norm changes only DAPO's."""

SPEED_PAIRS: tuple[tuple[str, str], ...] = (("dapo", "dapo_vl_norm"), ("grpo", "grpo_vl_norm"))
"""(baseline, with VL Norm) comparisons of claim 4, the paper's headline (DAPO) first."""

PAPER_AGGREGATORS = ("grpo", "dapo", "dr_grpo", "vl_norm")
"""The aggregators the paper's claims name (the probes evaluate every registered one)."""


class ProbeSettings(BaseModel):
    """The probes of claims 1-3 (see vlsim.config.ProbeConfig; `every` is set by the plan)."""

    model_config = ConfigDict(extra="forbid")

    prompts: int = Field(32, ge=2, le=96, description="P: probe prompts (test split).")
    rollouts: int = Field(32, ge=4, le=1024, description="R: answers drawn per probe prompt.")
    resamples: int = Field(256, ge=10, le=100_000, description="Groups of G resampled from R.")
    bootstrap: int = Field(
        2000, ge=0, le=100_000, description="Cluster-bootstrap replicates over prompts."
    )
    block: Literal["all", "last_attention", "last_block", "head"] = Field(
        "last_attention",
        description="Probed parameters; the paper's Figure 4 uses the last layer's QKV "
        "projection, the closest here is the last attention layer (QKV and output projection).",
    )

    def probe_config(self, every: int) -> dict[str, Any]:
        """The TrainConfig.probe dict: these settings, probing every `every` RL steps."""
        data = {"every": every, **self.model_dump()}
        ProbeConfig.model_validate(data)
        return data


class ReproduceConfig(BaseModel):
    """One reproduction of the paper's four claims at toy scale (see `SCALES`)."""

    model_config = ConfigDict(extra="forbid")

    scale: str = Field(
        "quick", pattern=r"^[a-z0-9_]{1,30}$", description="Name of the scale (names the sweeps)."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields applied on top of every preset (e.g. a shorter warm "
        "start at the quick scale); dotted keys are not accepted, nested dicts merge.",
    )
    # claims 1-3: probes of trained policies
    presets: list[str] = Field(
        default_factory=lambda: ["quick"],
        min_length=1,
        description="Presets whose trained policies are probed for claims 1-3.",
    )
    probe_recipe: Literal["none", "dapo", "dapo_vl_norm"] = Field(
        "dapo",
        description="How the probed policies are trained (a TrainConfig recipe; 'none' = GRPO). "
        "Every aggregator is evaluated on the same rollouts whatever trained the policy.",
    )
    probe_steps: int = Field(
        20,
        ge=1,
        le=100_000,
        description="RL steps of each probed run; it is probed after its first step and after "
        "its last (the claims read the last probe, the drift compares the two).",
    )
    probe_seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        description="Seeds of the probed runs of each preset (intervals over seeds need >= 2).",
    )
    probe: ProbeSettings = Field(default_factory=ProbeSettings, description="Probe settings.")
    # claim 4: speed
    speed_preset: str = Field("quick", description="Preset of claim 4's CountDown runs.")
    speed_conditions: list[Literal["grpo", "grpo_vl_norm", "dapo", "dapo_vl_norm"]] = Field(
        default_factory=lambda: list(SPEED_CONDITIONS),
        min_length=2,
        description="Claim 4's conditions (SPEED_CONDITIONS); pairs missing a side are skipped.",
    )
    speed_steps: int = Field(200, ge=1, le=100_000, description="RL steps of each claim-4 run.")
    speed_seeds: list[int] = Field(
        default_factory=lambda: list(range(8)),
        min_length=1,
        description="Seeds of every claim-4 condition (same seed = same problems and warm "
        "start: comparisons are paired; speed-up intervals need >= 3).",
    )
    eval_every: int = Field(
        20, ge=1, description="Held-out evaluation every this many steps (claim 4)."
    )
    eval_samples: int = Field(
        4, ge=1, le=64, description="k of the held-out mean@k accuracy (the paper: Avg@8)."
    )
    threshold: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Held-out accuracy (eval/mean_at_k) whose first crossing is 'converged' "
        "in claim 4's steps-to-threshold.",
    )
    smoothing: float = Field(
        0.0, ge=0, lt=1, description="EMA weight on each run's accuracy before thresholds."
    )
    # reading the claims
    linear_band: float = Field(
        0.5,
        gt=0,
        le=2,
        description="Claim 1 'about linearly': the slope's interval must lie inside "
        "[1 - band, 1 + band] (and above 0).",
    )
    level: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of every interval.")
    prediction_draws: int = Field(
        2000,
        ge=10,
        le=100_000,
        description="Resampled batches of observed lengths behind the closed-form variance ratio.",
    )

    @field_validator("presets")
    @classmethod
    def _presets(cls, presets: list[str]) -> list[str]:
        unknown = [p for p in presets if p not in PRESETS]
        if unknown:
            raise ValueError(
                f"unknown preset(s) {', '.join(map(repr, unknown))}; choose from {', '.join(PRESETS)}"
            )
        return list(dict.fromkeys(presets))

    @field_validator("speed_preset")
    @classmethod
    def _speed_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; choose one of {', '.join(PRESETS)}")
        return value

    @field_validator("probe_seeds", "speed_seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct and 0 or more")
        return seeds

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, data: dict[str, Any]) -> dict[str, Any]:
        banned = {"seed", "name", "preset", "probe", "steps"} & set(data)
        if banned:
            raise ValueError(
                f"overrides may not set {', '.join(sorted(banned))}: the plan sets them"
            )
        return data


SCALES: dict[str, dict[str, Any]] = {
    # Seconds: for tests only (not offered by the CLI's help).
    "tiny": {
        "scale": "tiny",
        "overrides": {
            "sft_steps": 30,
            "format_reward": 0.5,  # some answers earn a reward: the paper's slope is defined
            "prompts_per_step": 8,
            "checkpoint_every": 2,
            "sample_log_every": 0,
            "task": {"n_train": 100, "n_test": 8},
        },
        "presets": ["quick"],
        "probe_steps": 2,
        "probe_seeds": [0, 1],
        "probe": {"prompts": 4, "rollouts": 8, "resamples": 32, "bootstrap": 100},
        "speed_conditions": ["dapo", "dapo_vl_norm"],
        "speed_steps": 4,
        "speed_seeds": [0, 1],
        "eval_every": 2,
        "threshold": 0.05,
        "prediction_draws": 50,
    },
    # About 5 minutes on 2 quiet cores: the quick preset (its whole warm start: with half of it
    # the policy answers nothing right, and no claim can be read), small probes, and claim 4's
    # headline pair only (DAPO vs DAPO + VL Norm) for 120 steps.
    "quick": {
        "scale": "quick",
        "presets": ["quick"],
        "probe_steps": 20,
        "probe_seeds": [0, 1, 2],
        "probe": {"prompts": 16, "rollouts": 16, "resamples": 128, "bootstrap": 1000},
        "speed_conditions": ["dapo", "dapo_vl_norm"],
        "speed_steps": 120,
        "speed_seeds": [0, 1, 2],
        "eval_every": 20,
        "threshold": 0.2,
    },
    # About an hour on 2 cores (estimate: vlsim.reproduce.estimate): every preset, 8 seeds.
    "full": {
        "scale": "full",
        "presets": ["quick", "default", "long", "wide", "growing"],
        "probe_steps": 50,
        "probe_seeds": [0, 1, 2],
        "speed_steps": 200,
        "speed_seeds": [0, 1, 2, 3, 4, 5, 6, 7],
        "eval_every": 20,
        "eval_samples": 8,
        "threshold": 0.2,
    },
}
"""The shipped scales: what each sets in ReproduceConfig (the rest are the field defaults)."""


def scale_config(scale: str, **changes: Any) -> ReproduceConfig:
    """The ReproduceConfig of a shipped scale, with fields changed (ValueError if invalid)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    try:
        return ReproduceConfig.model_validate({**SCALES[scale], **changes})
    except ValidationError as err:
        raise ValueError(f"invalid reproduction settings:\n{format_errors(err)}") from err
