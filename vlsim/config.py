"""Pydantic configs of every vlsim experiment: validated once, serialisable to JSON/YAML/URLs.

Each field says what it is where it is declared (CleanRL style); invalid values are rejected
with a message that names the field. Module-specific pieces (length families, the CountDown
task, the model) are declared beside the code that uses them and composed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlsim.aggregators import AGGREGATORS, ALPHA_RANGE
from vlsim.lengths import LengthSpec, ParetoLengths

ModelT = TypeVar("ModelT", bound=BaseModel)


class LabConfig(BaseModel):
    """The Length Lab: synthetic per-answer gradients whose noise grows with answer length."""

    model_config = ConfigDict(extra="forbid")

    lengths: LengthSpec = Field(
        default_factory=lambda: ParetoLengths(minimum=50, shape=1.1),
        description="Distribution of answer lengths (tokens); long-tailed by default.",
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
        0.0,
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
    alpha: float = Field(1.0, description="VL Norm exponent: weights proportional to L^-alpha.")
    scope: Literal["group", "batch"] = Field(
        "group", description="VL Norm normalises per group (paper) or per batch (released code)."
    )
    aggregators: list[str] = Field(
        default_factory=lambda: list(AGGREGATORS),
        min_length=1,
        description="Aggregators to evaluate.",
    )
    mode: Literal["exact", "tokens"] = Field(
        "exact",
        description="'exact' samples each answer's noise sum in closed form; 'tokens' simulates every token (slow; for checking).",
    )
    seed: int = Field(0, ge=0, description="Random seed: the same seed gives the same numbers.")

    @field_validator("alpha")
    @classmethod
    def _alpha_range(cls, value: float) -> float:
        lo, hi = ALPHA_RANGE
        if not lo <= value <= hi:
            raise ValueError(f"alpha must be between {lo:g} and {hi:g}")
        return value

    @field_validator("aggregators")
    @classmethod
    def _known_aggregators(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in AGGREGATORS]
        if unknown:
            raise ValueError(
                f"unknown aggregator(s) {', '.join(unknown)}; choose from {', '.join(AGGREGATORS)}"
            )
        return list(dict.fromkeys(names))


SweepParam = Literal["length_scale", "alpha", "group_size", "rho", "length_slope", "max_len"]
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
