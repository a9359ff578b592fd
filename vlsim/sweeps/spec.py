"""Sweep specs: a base config, the conditions to compare, the seeds, and how to read the result.

A sweep spec (`SweepSpec`, JSON or YAML) names a base config (a training config from a preset,
or a Length Lab config), the *conditions* to compare (a grid over any fields and/or a list of
variants) and the *seeds* every condition is run with. `vlsim.sweeps.plan` expands it into runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlsim.config import PRESETS, format_errors

GROUP_PREFIX = "sweep/"
"""Runs of sweep NAME have group_name 'sweep/NAME'."""

MAX_RUNS = 2000
"""A spec that expands to more runs than this is refused."""

EXECUTORS = ("local", "ray")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"


CONFIG_KEY_EXCLUDE = ("name", "threads")
"""Config fields that do not enter a run's identity (a label, an execution detail)."""

WARMSTART_FIELDS = (
    "task", "trace", "model_size", "max_new_tokens", "sft_steps", "sft_batch_size", "sft_lr",
)  # fmt: skip
"""Fields that fix a training run's problems and initial policy (besides its seed)."""


class SweepError(ValueError):
    """A sweep that cannot be planned or run, with a message a student can act on."""


# ---------------------------------------------------------------- the spec


class AnalysisSpec(BaseModel):
    """How a sweep's runs become an answer: the metric, the threshold and the comparisons."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(
        "",
        max_length=100,
        description="Metric compared across conditions (default: eval/mean_at_k for training, "
        "lab/vl_norm/cv for the Length Lab).",
    )
    threshold: float | None = Field(
        0.3, description="Steps-to-threshold of the metric (training only; null = no threshold)."
    )
    higher_is_better: bool = Field(True, description="The metric must rise to the threshold.")
    smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="EMA weight applied per run before thresholds."
    )
    final_last: int = Field(
        1, ge=1, le=100, description="Final value = mean of the metric's last N logged values."
    )
    baseline: str = Field(
        "", description="Condition the others are compared with (default: the first)."
    )
    compare: list[str] = Field(
        default_factory=list, description="Conditions compared with the baseline (default: all)."
    )
    pairs: list[tuple[str, str]] = Field(
        default_factory=list,
        description="Explicit comparisons [baseline, other]; when given, they replace "
        "baseline-vs-compare in the verdicts.",
    )
    paired: Literal["auto", "yes", "no"] = Field(
        "auto",
        description="Pair runs by seed: 'auto' pairs when the same seed gives the same problems "
        "and initial policy in both conditions.",
    )
    level: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence level of the intervals.")
    n_boot: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="Ignored (kept so older specs load): every interval is computed, not resampled.",
    )
    seed: int = Field(
        0, ge=0, description="Ignored (kept so older specs load): no interval draws random numbers."
    )


class SweepSpec(BaseModel):
    """A base config, the conditions to compare (grid and/or variants) and the seeds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "", description="Sweep name (letters, digits, _ . -); default: the file name."
    )
    question: str = Field("", max_length=500, description="The question, in words.")
    kind: Literal["train", "lab"] = Field(
        "train", description="'train': tiny-policy RL runs; 'lab': Length Lab evaluations."
    )
    preset: str = Field("quick", description="Training preset the base starts from (train only).")
    base: dict[str, Any] = Field(
        default_factory=dict,
        description="Config fields shared by every run (TrainConfig or LabConfig; dotted keys allowed).",
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Field -> values; every combination is a condition (dotted keys: trace.length).",
    )
    variants: list[dict[str, Any]] = Field(
        default_factory=list,
        description="A list of conditions, each a dict of field values (and an optional 'label'); "
        "combined with every grid point.",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        max_length=1000,
        description="Seeds every condition runs with (the replicates).",
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec, description="How to read the result."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not re.match(NAME_PATTERN, value):
            raise ValueError(
                "name may hold letters, digits, '_', '.' and '-' (at most 100, starting with a "
                f"letter or digit); got {value!r}"
            )
        return value

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; choose one of {', '.join(PRESETS)}")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if key == "seed":
                raise ValueError(
                    "put seeds in 'seeds', not in the grid: they are the replicates every "
                    "condition runs with"
                )
            if not values:
                raise ValueError(f"grid field {key!r} has no values")
        return grid

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for k, variant in enumerate(variants):
            if "seed" in variant:
                raise ValueError(f"variant {k + 1} sets 'seed'; list seeds in 'seeds' instead")
        return variants

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be 0 or more")
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must not repeat")
        return seeds

    def metric(self) -> str:
        """The metric the analysis compares (its default depends on the kind)."""
        if self.analysis.metric:
            return self.analysis.metric
        return "lab/vl_norm/cv" if self.kind == "lab" else "eval/mean_at_k"

    def group(self) -> str:
        """The store's group name of this sweep's runs."""
        return GROUP_PREFIX + self.name


def parse_spec(data: Mapping[str, Any], default_name: str = "") -> SweepSpec:
    """A SweepSpec from a dict (SweepError with one readable line per problem)."""
    try:
        spec = SweepSpec.model_validate(dict(data or {}))
    except ValidationError as err:
        raise SweepError(f"invalid sweep spec:\n{format_errors(err)}") from err
    if not spec.name:
        name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", default_name).strip("-.") or "sweep"
        spec = spec.model_copy(update={"name": name[:100]})
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    """Load a spec from a JSON or YAML file; its name defaults to the file's stem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SweepError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # noqa: BLE001 - YAML and JSON raise different errors
        raise SweepError(f"cannot parse {path}: {err}") from err
    if not isinstance(data, dict):
        raise SweepError(
            f"{path} must hold a mapping of spec fields (name, base, grid, seeds, ...)"
        )
    try:
        return parse_spec(data, default_name=path.stem)
    except SweepError as err:
        raise SweepError(f"{path}: {err}") from err
