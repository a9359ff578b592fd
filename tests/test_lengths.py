"""Length distributions: bounds, reproducibility, validation, scaling."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from vlsim.lengths import (
    LENGTH_FAMILIES,
    EmpiricalLengths,
    UniformLengths,
    length_summary,
    parse_length_spec,
    sample_lengths,
    scale_spec,
)


def all_specs() -> list:
    specs = [cls() for kind, cls in LENGTH_FAMILIES.items() if kind != "empirical"]
    return [*specs, EmpiricalLengths(lengths=[3, 40, 900, 5000], source="a run")]


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.kind)
def test_samples_are_integers_in_range_and_reproducible(spec) -> None:
    a = sample_lengths(spec, (50, 4, 8), 2048, seed=3)
    assert a.shape == (50, 4, 8) and a.dtype == np.int64
    assert a.min() >= 1 and a.max() <= 2048
    np.testing.assert_array_equal(a, sample_lengths(spec, (50, 4, 8), 2048, seed=3))
    assert (
        not np.array_equal(a, sample_lengths(spec, (50, 4, 8), 2048, seed=4))
        or spec.kind == "fixed"
    )
    assert spec.describe()
    assert parse_length_spec(spec.model_dump()) == spec


def test_family_means() -> None:
    assert length_summary(UniformLengths(low=10, high=30), 100)["mean"] == pytest.approx(
        20, rel=0.01
    )
    s = length_summary(
        parse_length_spec({"kind": "lognormal", "median": 100, "sigma": 0.5}), 10_000
    )
    assert s["median"] == pytest.approx(100, rel=0.02)
    assert s["mean"] == pytest.approx(100 * np.exp(0.5**2 / 2), rel=0.02)
    pareto = length_summary(
        parse_length_spec({"kind": "pareto", "minimum": 50, "shape": 1.1}), 4096
    )
    assert pareto["p95"] > 5 * pareto["median"]  # a long tail
    assert length_summary(parse_length_spec({"kind": "fixed", "length": 9000}), 4096)["at_max"] == 1


def test_validation_messages_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="high .* must be at least low"):
        UniformLengths(low=50, high=10)
    with pytest.raises(ValidationError, match="at least 1 token"):
        EmpiricalLengths(lengths=[0, 5])
    with pytest.raises(ValidationError, match="kind"):
        parse_length_spec({"kind": "zipf"})
    with pytest.raises(ValidationError, match="sigma"):
        parse_length_spec({"kind": "lognormal", "sigma": -1})


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.kind)
def test_scale_spec_stretches_lengths(spec) -> None:
    base = length_summary(spec, 100_000)["mean"]
    doubled = length_summary(scale_spec(spec, 2.0), 100_000)["mean"]
    assert doubled == pytest.approx(2 * base, rel=0.05)


def test_numbers_in_messages_stay_short() -> None:
    from vlsim.numfmt import format_number

    assert format_number(int(float("1e200"))) == "1e+200"
    assert format_number(10**5000).startswith("1e+5000") or "1e+5000" in format_number(10**5000)
    assert len(format_number(10**100_000)) < 30  # beyond what int() turns into text
    assert format_number(4096) == "4096" and format_number(0.25) == "0.25"
    assert format_number(float("inf")) == "inf"
