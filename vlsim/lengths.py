"""Answer-length distributions: pydantic specs that sample reproducible integer lengths in [1, M].

Each family is a small pydantic model with a `kind` tag, so a spec round-trips through JSON,
YAML, a URL or the store, and `LengthSpec` (a discriminated union) validates any of them.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

MAX_TOKENS = 1_000_000_000
"""Largest length parameter a family accepts (lengths are clipped to M <= 1e6 anyway); keeps
every draw finite, so a huge typed value or a stretched sweep gets a message, not an overflow."""


class _LengthBase(BaseModel):
    """Shared behaviour: sample floats, round, clip to [1, max_len]."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def _raw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        raise NotImplementedError

    def sample(
        self, rng: np.random.Generator, shape: int | tuple[int, ...], max_len: int
    ) -> np.ndarray:
        """Draw integer lengths of the given shape, rounded and clipped to [1, max_len]."""
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(shape)) if shape else 1
        raw = self._raw(rng, size)
        return np.clip(np.rint(raw), 1, max_len).astype(np.int64).reshape(shape)

    def describe(self) -> str:
        """One short sentence for the UI."""
        raise NotImplementedError


class FixedLengths(_LengthBase):
    """Every answer has the same length: no length variance, so every aggregator agrees."""

    kind: Literal["fixed"] = "fixed"
    length: int = Field(
        100, ge=1, le=MAX_TOKENS, description="The length of every answer, in tokens."
    )

    def _raw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, float(self.length))

    def describe(self) -> str:
        return f"every answer has {self.length} tokens"


class UniformLengths(_LengthBase):
    """Lengths spread evenly between two bounds."""

    kind: Literal["uniform"] = "uniform"
    low: int = Field(10, ge=1, le=MAX_TOKENS, description="Shortest length, in tokens.")
    high: int = Field(1000, ge=1, le=MAX_TOKENS, description="Longest length, in tokens.")

    @model_validator(mode="after")
    def _ordered(self) -> UniformLengths:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be at least low ({self.low})")
        return self

    def _raw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=size).astype(float)

    def describe(self) -> str:
        return f"uniform between {self.low} and {self.high} tokens"


def _truncated_normal(
    rng: np.random.Generator, mean: float, std: float, size: int, low: float = 0.5
) -> np.ndarray:
    """Normal draws conditioned on >= low (rejection; falls back to clipping if it is hopeless)."""
    out = rng.normal(mean, std, size)
    for _ in range(50):
        bad = out < low
        if not bad.any():
            break
        out[bad] = rng.normal(mean, std, int(bad.sum()))
    return np.maximum(out, low)


class NormalLengths(_LengthBase):
    """A bell curve around a typical length, truncated to positive lengths."""

    kind: Literal["normal"] = "normal"
    mean: float = Field(300.0, gt=0, le=MAX_TOKENS, description="Typical length, in tokens.")
    std: float = Field(
        100.0, ge=0, le=MAX_TOKENS, description="Spread (standard deviation), in tokens."
    )

    def _raw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return _truncated_normal(rng, self.mean, self.std, size)

    def describe(self) -> str:
        return f"normal around {self.mean:g} tokens (std {self.std:g}), truncated to [1, M]"


class LogNormalLengths(_LengthBase):
    """Right-skewed lengths: most answers moderate, some much longer (typical of reasoning)."""

    kind: Literal["lognormal"] = "lognormal"
    median: float = Field(300.0, gt=0, le=MAX_TOKENS, description="Median length, in tokens.")
    sigma: float = Field(
        0.8, ge=0, le=4, description="Spread of log-length; 0.5 is mild, 1.0 is wide."
    )

    def _raw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.lognormal(math.log(self.median), self.sigma, size)

    def describe(self) -> str:
        return f"log-normal, median {self.median:g} tokens, log-spread {self.sigma:g}"


class MixtureLengths(_LengthBase):
    """Two kinds of answers (short and long), each normal: a bimodal distribution."""

    kind: Literal["mixture"] = "mixture"
    short_mean: float = Field(
        100.0, gt=0, le=MAX_TOKENS, description="Typical length of the short answers."
    )
    short_std: float = Field(30.0, ge=0, le=MAX_TOKENS, description="Spread of the short answers.")
    long_mean: float = Field(
        1500.0, gt=0, le=MAX_TOKENS, description="Typical length of the long answers."
    )
    long_std: float = Field(300.0, ge=0, le=MAX_TOKENS, description="Spread of the long answers.")
    long_weight: float = Field(
        0.3, ge=0, le=1, description="Fraction of answers that are long (0 to 1)."
    )

    def _raw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        is_long = rng.random(size) < self.long_weight
        short = _truncated_normal(rng, self.short_mean, self.short_std, size)
        long = _truncated_normal(rng, self.long_mean, self.long_std, size)
        return np.where(is_long, long, short)

    def describe(self) -> str:
        return (
            f"bimodal: {1 - self.long_weight:.0%} short (~{self.short_mean:g}), "
            f"{self.long_weight:.0%} long (~{self.long_mean:g})"
        )


class ParetoLengths(_LengthBase):
    """A long tail: lengths >= a minimum with a power-law tail; a few answers run to the limit."""

    kind: Literal["pareto"] = "pareto"
    minimum: float = Field(
        50.0, gt=0, le=MAX_TOKENS, description="Shortest length (the Pareto scale), in tokens."
    )
    shape: float = Field(
        1.2,
        gt=0.1,
        le=10,
        description="Tail index: smaller means a heavier tail (1.0-1.5 is very long-tailed).",
    )

    def _raw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        u = 1.0 - rng.random(size)  # in (0, 1]
        return self.minimum * u ** (-1.0 / self.shape)

    def describe(self) -> str:
        return f"long-tailed (Pareto), from {self.minimum:g} tokens, tail index {self.shape:g}"


class EmpiricalLengths(_LengthBase):
    """Resample lengths observed elsewhere, e.g. the answers of a training run."""

    kind: Literal["empirical"] = "empirical"
    lengths: list[Annotated[int, Field(le=MAX_TOKENS)]] = Field(
        ..., min_length=1, description="Observed lengths to resample from (each >= 1)."
    )
    source: str = Field("", description="Where the lengths came from (shown in the UI).")

    @model_validator(mode="after")
    def _positive(self) -> EmpiricalLengths:
        if min(self.lengths) < 1:
            raise ValueError("empirical lengths must all be at least 1 token")
        return self

    def _raw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(np.asarray(self.lengths, dtype=float), size=size, replace=True)

    def describe(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"resampled from {len(self.lengths)} observed lengths{where}"


LengthSpec = Annotated[
    FixedLengths
    | UniformLengths
    | NormalLengths
    | LogNormalLengths
    | MixtureLengths
    | ParetoLengths
    | EmpiricalLengths,
    Field(discriminator="kind"),
]
"""Any length distribution; pydantic picks the family from its `kind` field."""

LENGTH_FAMILIES: dict[str, type[_LengthBase]] = {
    "fixed": FixedLengths,
    "uniform": UniformLengths,
    "normal": NormalLengths,
    "lognormal": LogNormalLengths,
    "mixture": MixtureLengths,
    "pareto": ParetoLengths,
    "empirical": EmpiricalLengths,
}
"""Family name -> its spec class (the UI lists these; each class's docstring explains it)."""

_ADAPTER: TypeAdapter = TypeAdapter(LengthSpec)


def parse_length_spec(data: dict | _LengthBase) -> _LengthBase:
    """Validate a dict (e.g. from JSON or a URL) into a length spec."""
    if isinstance(data, _LengthBase):
        return data
    return _ADAPTER.validate_python(data)


def sample_lengths(
    spec: _LengthBase, shape: int | tuple[int, ...], max_len: int, seed: int | None = 0
) -> np.ndarray:
    """Reproducible integer lengths in [1, max_len] for a spec and a seed."""
    return spec.sample(np.random.default_rng(seed), shape, max_len)


def length_summary(spec: _LengthBase, max_len: int, n: int = 100_000, seed: int = 0) -> dict:
    """Mean, std, quantiles and the share cut at max_len, estimated from n draws."""
    draws = sample_lengths(spec, n, max_len, seed)
    q = np.percentile(draws, [5, 25, 50, 75, 95])
    return {
        "mean": float(draws.mean()),
        "std": float(draws.std()),
        "p5": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
        "p95": float(q[4]),
        "at_max": float((draws == max_len).mean()),
    }


def scale_spec(spec: _LengthBase, factor: float) -> _LengthBase:
    """The same family stretched by `factor` (every length multiplied): for mean-length sweeps."""
    if factor <= 0:
        raise ValueError(f"length scale factor must be positive, got {factor}")
    fields = {
        "fixed": ("length",),
        "uniform": ("low", "high"),
        "normal": ("mean", "std"),
        "lognormal": ("median",),
        "mixture": ("short_mean", "short_std", "long_mean", "long_std"),
        "pareto": ("minimum",),
    }
    if spec.kind == "empirical":
        scaled = [max(1, round(v * factor)) for v in spec.lengths]
        return spec.model_copy(update={"lengths": scaled})
    update = {}
    for name in fields[spec.kind]:
        value = getattr(spec, name) * factor
        update[name] = max(1, round(value)) if isinstance(getattr(spec, name), int) else value
    return parse_length_spec({**spec.model_dump(), **update})
