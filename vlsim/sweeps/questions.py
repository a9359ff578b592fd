"""Question templates: a few questions a student asks, each turned into a sweep spec.

"Does B reach the accuracy threshold faster than A?", "which VL Norm alpha is fastest?", "does
the lead change with G or M?", or a grid of one's own. `Question` holds a template's settings
(the Hypotheses page keeps them in its URL); `question_spec` turns them into a `SweepSpec`
whose verdicts answer the question.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vlsim.aggregators import AGGREGATORS
from vlsim.analysis import metric_label
from vlsim.config import AggregatorName, Alpha, preset_config
from vlsim.lengths import LengthSpec
from vlsim.sweeps.execute import fit_workers
from vlsim.sweeps.plan import conditions, expand
from vlsim.sweeps.spec import SweepError, SweepSpec, parse_spec

TEMPLATES = {
    "ab": "Aggregator A vs B",
    "alpha": "VL Norm α sweep",
    "group_size": "Effect of G (answers per prompt)",
    "max_len": "Effect of M (answer budget)",
    "grid": "Build a grid",
}
METRICS = ("eval/mean_at_k", "eval/accuracy_greedy")
DEFAULT_GRID = "grid:\n  aggregator: [grpo, dr_grpo, vl_norm]\n"
MAX_WORKERS = 16


class Question(BaseModel):
    """A question from a template: its settings (the Hypotheses page's URL holds them)."""

    model_config = ConfigDict(extra="forbid")

    template: Literal["ab", "alpha", "group_size", "max_len", "grid"] = Field(
        "ab", description="The kind of question."
    )
    a: AggregatorName = Field("dapo", description="Aggregator A (the baseline).")
    b: AggregatorName = Field("vl_norm", description="Aggregator B.")
    alpha: Alpha = Field(1.0, description="VL Norm α of the runs that do not sweep it.")
    alphas: list[Alpha] = Field(
        default_factory=lambda: [0.0, 0.5, 1.0], min_length=1, max_length=12,
        description="α values of the α sweep.",
    )  # fmt: skip
    sizes: list[int] = Field(
        default_factory=lambda: [4, 8, 16], min_length=1, max_length=8,
        description="Group sizes G compared.",
    )  # fmt: skip
    budgets: list[int] = Field(
        default_factory=lambda: [24, 40, 64], min_length=1, max_length=8,
        description="Answer budgets M compared.",
    )  # fmt: skip
    grid: str = Field(DEFAULT_GRID, max_length=4000, description="A sweep grid in YAML.")
    length: LengthSpec = Field(
        default_factory=lambda: preset_config("quick").trace.length,
        description="Trace lengths of the warm-start data (the answers' length setting).",
    )
    seeds: int = Field(
        5,
        ge=1,
        le=20,
        description="Seeds per condition (0, 1, ...); 5 gives a speed-up interval in nearly every sweep.",
    )
    steps: int = Field(200, ge=2, le=5000, description="RL steps per run (the budget).")
    threshold: float = Field(0.25, ge=0.0, le=1.0, description="Accuracy to reach.")
    metric: Literal["eval/mean_at_k", "eval/accuracy_greedy"] = Field(
        "eval/mean_at_k", description="Held-out accuracy measure."
    )
    workers: int = Field(
        default_factory=lambda: fit_workers()[0], ge=1, le=MAX_WORKERS,
        description="Jobs (worker processes) trained at once; the runs are packed into them.",
    )  # fmt: skip
    sweep: str = Field("", max_length=120, description="The sweep being watched.")

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, values: list[float]) -> list[float]:
        return list(dict.fromkeys(values))

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, values: list[int]) -> list[int]:
        if any(not 2 <= v <= 256 for v in values):
            raise ValueError("group sizes must be between 2 and 256")
        return list(dict.fromkeys(values))

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, values: list[int]) -> list[int]:
        if any(not 8 <= v <= 2048 for v in values):
            raise ValueError("answer budgets must be between 8 and 2048")
        return list(dict.fromkeys(values))


def display_name(name: str) -> str:
    """An aggregator's display name (any other text unchanged)."""
    return AGGREGATORS[name].display_name if name in AGGREGATORS else name


def question_spec(view: Question, name: str = "") -> SweepSpec:
    """The sweep a question asks for (SweepError with a readable message if it cannot be run)."""
    every = max(1, view.steps // 10)
    base: dict[str, Any] = {
        "steps": view.steps,
        "eval_every": every,
        "checkpoint_every": every,
        "alpha": view.alpha,
        "trace.length": view.length.model_dump(mode="json"),
    }
    what = f"{metric_label(view.metric)} {view.threshold:g}"
    lengths = view.length.describe()
    data: dict[str, Any] = {
        "name": name or "preview",
        "kind": "train",
        "preset": "quick",
        "base": base,
        "seeds": list(range(view.seeds)),
        "analysis": {"metric": view.metric, "threshold": view.threshold},
    }
    a, b = view.a, view.b
    if view.template in ("ab", "group_size", "max_len") and a == b:
        raise SweepError("choose two different aggregators for A and B")
    if view.template == "ab":
        data["variants"] = [{"aggregator": a}, {"aggregator": b}]
        data["question"] = (
            f"Does {display_name(b)} reach {what} faster than {display_name(a)} ({lengths})?"
        )
    elif view.template == "alpha":
        data["variants"] = [{"aggregator": a}] + [
            {"aggregator": "vl_norm", "alpha": x} for x in view.alphas
        ]
        data["question"] = (
            f"Which VL Norm α reaches {what} fastest, compared with {display_name(a)} ({lengths})?"
        )
    elif view.template in ("group_size", "max_len"):
        field = "group_size" if view.template == "group_size" else "max_new_tokens"
        values = view.sizes if view.template == "group_size" else view.budgets
        data["grid"] = {"aggregator": [a, b], field: values}
        letter = "G" if field == "group_size" else "M"
        data["question"] = (
            f"Does {display_name(b)}'s lead over {display_name(a)} in reaching {what} change with {letter}?"
        )
    else:
        own = _grid_yaml(view.grid)
        if own.get("kind") == "lab":  # Length Lab runs: only the box's own base applies
            data["base"] = own.pop("base", {})
            data["analysis"] = {"threshold": None}
        else:
            data["base"] = {**base, **own.pop("base", {})}
        data["analysis"] = {**data["analysis"], **own.pop("analysis", {})}
        data.update(own)
        if data.get("kind") == "lab":
            data.setdefault("question", "How do the conditions compare in the Length Lab?")
        data.setdefault("question", f"Which condition reaches {what} fastest?")
    spec = parse_spec(data)
    if view.template in ("group_size", "max_len"):
        spec = _pair_by_value(spec, a, b)
    expand(spec)  # every config must be valid
    return spec


def _grid_yaml(text: str) -> dict[str, Any]:
    """The YAML of the grid box: grid, variants, and optionally base, kind and analysis."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise SweepError(f"the grid is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise SweepError("the grid must be a mapping, e.g. 'grid: {aggregator: [grpo, vl_norm]}'")
    allowed = {"grid", "variants", "base", "kind", "analysis", "question"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SweepError(
            f"the grid box may set {', '.join(sorted(allowed))}; not {', '.join(unknown)}"
        )
    for key in ("base", "analysis"):
        if not isinstance(data.get(key, {}), dict):
            raise SweepError(f"'{key}' in the grid box must be a mapping of fields")
    return data


def _pair_by_value(spec: SweepSpec, a: str, b: str) -> SweepSpec:
    """Verdicts of B vs A at each value of the swept field, instead of all vs the first."""
    conds = conditions(spec)
    by_value: dict[str, dict[str, str]] = {}
    for label, overrides in conds:
        key = str({k: v for k, v in overrides.items() if k != "aggregator"})
        by_value.setdefault(key, {})[overrides["aggregator"]] = label
    pairs = [(d[a], d[b]) for d in by_value.values() if a in d and b in d]
    analysis = spec.analysis.model_copy(update={"pairs": pairs})
    return spec.model_copy(update={"analysis": analysis})
