"""The Length Lab's sweep: which parameter, over which range, with how many batches.

Engine-side settings model (no Streamlit); `vlsim.montecarlo.sweep_config` makes each point's
config.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlsim.aggregators import ALPHA_RANGE
from vlsim.config import SWEEP_PARAMS


class SweepSettings(BaseModel):
    """The Length Lab's sweep: which parameter, over which range, with how many batches."""

    model_config = ConfigDict(extra="forbid")

    param: Literal["length_scale", "alpha", "group_size", "rho", "length_slope", "max_len"] = Field(
        "length_scale", description="The parameter to sweep."
    )
    start: float = Field(0.25, description="First value.")
    stop: float = Field(4.0, description="Last value.")
    points: int = Field(7, ge=2, le=25, description="Number of values.")
    n_batches: int = Field(
        4000, ge=100, le=100_000, description="Batches per point (fewer = faster)."
    )

    @model_validator(mode="after")
    def _range(self) -> SweepSettings:
        lo, hi = SWEEP_RANGES[self.param]
        for name in ("start", "stop"):
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(
                    f"{name} for {self.param} must lie in [{lo:g}, {hi:g}], got {value}"
                )
        if self.stop <= self.start:
            raise ValueError(f"stop ({self.stop:g}) must be larger than start ({self.start:g})")
        return self

    def values(self) -> list[float]:
        """The swept values: geometric for scale-like parameters, even steps otherwise."""
        if self.param in LOG_SWEEPS:
            vals = np.geomspace(self.start, self.stop, self.points)
        else:
            vals = np.linspace(self.start, self.stop, self.points)
        if self.param in ("group_size", "max_len"):
            return [float(v) for v in dict.fromkeys(int(round(v)) for v in vals)]
        return [float(v) for v in vals]


SWEEP_RANGES: dict[str, tuple[float, float]] = {
    "length_scale": (0.01, 100.0),
    "alpha": ALPHA_RANGE,
    "group_size": (2, 1024),
    "rho": (0.0, 0.99),
    "length_slope": (-5.0, 5.0),
    "max_len": (1, 1_000_000),
}
"""Allowed range of each sweepable parameter."""

SWEEP_DEFAULTS: dict[str, tuple[float, float]] = {
    "length_scale": (0.25, 4.0),
    "alpha": (0.0, 2.0),
    "group_size": (2, 64),
    "rho": (0.0, 0.95),
    "length_slope": (-2.0, 2.0),
    "max_len": (1024, 16384),
}
"""A sensible default range for each sweepable parameter."""

LOG_SWEEPS = frozenset({"length_scale", "group_size", "max_len"})
"""Parameters swept (and drawn) on a log scale."""

assert set(SWEEP_RANGES) == set(SWEEP_PARAMS) == set(SWEEP_DEFAULTS)
