"""Typed answer lengths as text, and the Aggregators page's single-batch calculator settings.

`parse_lengths_text` reads what a person types (one group per line, numbers split by spaces or
commas) and `format_lengths_text` writes it back; `parse_calculator_lengths` checks a typed
batch for the calculator. Engine-side: no Streamlit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vlsim.aggregators import ALPHA_RANGE, check_lengths
from vlsim.url_codec import MAX_VALUE_CHARS

_NUMBER = re.compile(r"[,\s]+")


def parse_lengths_text(text: str) -> list[list[float]]:
    """Typed lengths -> groups of numbers: one group per line (or ';'), numbers split by spaces
    or commas. Raises ValueError naming the first entry that is not a number.

    The result is checked (whole numbers, 1 <= L <= M, equal group sizes) by the aggregators'
    own validation, so its messages reach the user unchanged.
    """
    groups: list[list[float]] = []
    for line_no, line in enumerate(re.split(r"[\n;]", str(text)), start=1):
        tokens = [t for t in _NUMBER.split(line.strip()) if t]
        if not tokens:
            continue
        group = []
        for token in tokens:
            try:
                value = float(token)
            except ValueError:
                shown = token if len(token) <= 20 else token[:17] + "..."
                raise ValueError(
                    f"{shown!r} in group {line_no} is not a number; type lengths as whole "
                    "numbers separated by spaces or commas, one group per line"
                ) from None
            if not math.isfinite(value):
                raise ValueError(f"{token!r} in group {line_no} is not a finite number")
            group.append(value)
        groups.append(group)
    if not groups:
        raise ValueError("no lengths given; type at least one group of numbers")
    return groups


def format_lengths_text(groups: Iterable[Iterable[float]], sep: str = "\n") -> str:
    """Groups of lengths -> text that `parse_lengths_text` reads back."""
    return sep.join(" ".join(f"{v:g}" for v in group) for group in groups)


MAX_CALCULATOR_ANSWERS = 1000
"""Most answers the single-batch calculator takes: it draws a bar per answer and a table cell
per answer, which takes tens of seconds in the browser at 20,000."""


def parse_calculator_lengths(text: str, max_len: int) -> np.ndarray:
    """Typed lengths -> a validated (B, G) integer array for the calculator.

    Raises ValueError with a readable message: not numbers, ragged groups, lengths outside
    [1, M], or more than MAX_CALCULATOR_ANSWERS answers (counted before anything is drawn).
    """
    groups = parse_lengths_text(text)
    count = sum(len(g) for g in groups)
    if count > MAX_CALCULATOR_ANSWERS:
        raise ValueError(
            f"{count:,} lengths typed; the calculator takes at most {MAX_CALCULATOR_ANSWERS:,} "
            "answers (one bar each). For a large sample of lengths use the Length Lab's "
            "empirical family, which resamples them."
        )
    return check_lengths(groups, max_len)


class CalculatorConfig(BaseModel):
    """The Aggregators page's single-batch calculator: typed lengths and the weighting knobs."""

    model_config = ConfigDict(extra="forbid")

    lengths: str = Field(
        "40 120 600 3000;80 150 200 1200",
        max_length=MAX_VALUE_CHARS,
        description="Answer lengths: one group per line (or ';'), numbers separated by spaces or commas.",
    )
    max_len: int = Field(4096, ge=1, le=1_000_000, description="M: the maximum answer length.")
    alpha: float = Field(1.0, ge=ALPHA_RANGE[0], le=ALPHA_RANGE[1], description="VL Norm exponent.")
    scope: Literal["group", "batch"] = Field("group", description="VL Norm per group or per batch.")
    beta: float = Field(
        1.0,
        ge=0.0,
        le=3.0,
        description="Variance exponent: Var(g_i) = V L_i^beta (1 = independent tokens).",
    )
    seed: int = Field(
        0, ge=0, le=2**31 - 1, description="Seed for generated framework-view lengths."
    )
