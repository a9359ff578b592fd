"""Typed lengths: text -> groups of numbers and back, and the calculator's checks."""

from __future__ import annotations

import numpy as np
import pytest

from vlsim.aggregators import check_lengths
from vlsim.length_text import (
    MAX_CALCULATOR_ANSWERS,
    format_lengths_text,
    parse_calculator_lengths,
    parse_lengths_text,
)


def test_parse_lengths_text():
    assert parse_lengths_text("1 2 3\n4, 5, 6\n\n") == [[1, 2, 3], [4, 5, 6]]
    assert parse_lengths_text("1,2;3,4") == [[1, 2], [3, 4]]
    text = format_lengths_text([[1, 2], [30, 4000]])
    assert parse_lengths_text(text) == [[1, 2], [30, 4000]]
    with pytest.raises(ValueError, match="not a number"):
        parse_lengths_text("1 2 x")
    with pytest.raises(ValueError, match="no lengths"):
        parse_lengths_text("  \n ")
    with pytest.raises(ValueError, match="finite"):
        parse_lengths_text("1 inf")
    # Ragged groups parse, and the engine's check names the problem.
    with pytest.raises(ValueError, match="rectangular"):
        check_lengths(parse_lengths_text("1 2 3\n4 5"), 10)


def test_a_long_entry_is_cut_in_the_message():
    with pytest.raises(ValueError, match=r"'a{17}\.\.\.' in group 2 is not a number"):
        parse_lengths_text("1 2\n" + "a" * 500)


def test_calculator_lengths_are_checked_and_counted_before_drawing():
    lengths = parse_calculator_lengths("10 20\n30 40", max_len=100)
    assert lengths.shape == (2, 2) and np.issubdtype(lengths.dtype, np.integer)
    with pytest.raises(ValueError, match="exceeds max_len"):
        parse_calculator_lengths("10 200", max_len=100)
    too_many = " ".join(["5"] * (MAX_CALCULATOR_ANSWERS + 1))
    with pytest.raises(ValueError, match=f"at most {MAX_CALCULATOR_ANSWERS:,}"):
        parse_calculator_lengths(too_many, max_len=100)
