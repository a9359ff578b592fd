"""Numbers in messages and prose: a few significant digits, never hundreds of them."""

from __future__ import annotations

import math
from numbers import Real

_MAX_DIGITS = 15  # integers longer than this are shown in scientific notation


def format_number(value: object, digits: int = 4) -> str:
    """A number as short text: '4096', '0.25', '1.5e+308', 'inf'; other values via str (cut).

    Python integers can have any number of digits (a URL's '1e200' read as an int has 201);
    those longer than 15 digits are written in scientific notation, so no notice or error
    message ever prints a wall of digits.
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**_MAX_DIGITS else _big_int(value, digits)
        return text
    if isinstance(value, Real):
        x = float(value)
        if not math.isfinite(x):
            return str(x)
        if x.is_integer() and abs(x) < 10**_MAX_DIGITS:
            return str(int(x))
        return f"{x:.{digits}g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _big_int(value: int, digits: int) -> str:
    """An integer of any size in scientific notation without converting it to float."""
    try:
        return f"{float(value):.{digits}g}"
    except OverflowError:  # beyond float range: cut the decimal digits instead
        pass
    sign = "-" if value < 0 else ""
    try:
        text = str(abs(value))
    except ValueError:  # more digits than Python converts to text (sys.int_info limit)
        return f"{sign}about 1e+{int(abs(value).bit_length() * math.log10(2))}"
    mantissa = text[0] + ("." + text[1:digits].rstrip("0") if digits > 1 else "")
    return f"{sign}{mantissa.rstrip('.')}e+{len(text) - 1}"
