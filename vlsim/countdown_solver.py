"""CountDown expressions in canonical form, and the exact solver that lists every solution.

An expression is a number or a flattened chain of + - or of * /, so that equivalent rewritings
(commutation, regrouping) print the same text. `solve` enumerates the distinct canonical
solutions of a problem with exact rational arithmetic; the problem generator and the warm-start
traces build their expressions with `atom` and `combine`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from functools import cache
from math import gcd
from typing import NamedTuple

PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class Expr(NamedTuple):
    """An expression in canonical form: a number, or a flattened chain of + - or of * /."""

    text: str
    level: int  # 1: sum/difference, 2: product/quotient, 3: a number
    plus: tuple[str, ...]  # terms added (level 1) or factors multiplied (level 2), sorted
    minus: tuple[str, ...]  # terms subtracted (level 1) or divisors (level 2), sorted


def atom(text: str) -> Expr:
    """A number as an expression."""
    return Expr(text, 3, (text,), ())


def combine(a: Expr, op: str, b: Expr) -> Expr:
    """a op b in canonical form: chains flattened, their parts sorted, parentheses only as needed.

    So 3+(4-2), 4+3-2 and 4-(2-3) all read "3+4-2", and 6/(3/4) reads "4*6/3".
    """
    level = PRECEDENCE[op]

    def parts(x: Expr) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if x.level == level:
            return x.plus, x.minus
        return ((f"({x.text})" if x.level < level else x.text),), ()

    (a_plus, a_minus), (b_plus, b_minus) = parts(a), parts(b)
    if op in "+*":
        plus, minus = a_plus + b_plus, a_minus + b_minus
    else:
        plus, minus = a_plus + b_minus, a_minus + b_plus
    plus, minus = tuple(sorted(plus)), tuple(sorted(minus))
    join, inverse = ("+", "-") if level == 1 else ("*", "/")
    text = join.join(plus) + "".join(inverse + part for part in minus)
    return Expr(text, level, plus, minus)


_Q = tuple[int, int]
"""A rational (numerator, denominator > 0) in lowest terms; much faster than Fraction here."""


def _q(num: int, den: int) -> _Q:
    """num / den in lowest terms with a positive denominator (den != 0)."""
    if den < 0:
        num, den = -num, -den
    g = gcd(num, den)
    return num // g, den // g


def _all_results(a: _Q, b: _Q) -> list[_Q]:
    """a+b, a-b, b-a, a*b, and a/b and b/a where defined."""
    (p, q), (r, s) = a, b
    out = [
        _q(p * s + r * q, q * s),
        _q(p * s - r * q, q * s),
        _q(r * q - p * s, q * s),
        _q(p * r, q * s),
    ]
    if r:
        out.append(_q(p * s, q * r))
    if p:
        out.append(_q(r * q, s * p))
    return out


def _partners(a: _Q, goal: _Q, others: frozenset) -> Iterator[tuple[str, _Q, bool]]:
    """(op, b, a_first) for every b in others with a op b == goal (a_first) or b op a == goal."""
    (p, q), (g, h) = a, goal
    candidates = [
        ("+", _q(g * q - p * h, h * q), True),  # a + b = goal
        ("-", _q(p * h - g * q, q * h), True),  # a - b = goal
        ("-", _q(g * q + p * h, h * q), False),  # b - a = goal
    ]
    if p:
        candidates += [("*", _q(g * q, h * p), True), ("/", _q(g * p, h * q), False)]
        if g:
            candidates.append(("/", _q(p * h, q * g), True))  # a / b = goal
    elif not g:  # 0 * b == 0 and 0 / b == 0 for every (non-zero) b
        candidates += [("*", b, True) for b in others]
        candidates += [("/", b, True) for b in others if b[0]]
    for op, b, a_first in candidates:
        if b in others:
            yield op, b, a_first


def _splits(mask: int) -> Iterator[tuple[int, int]]:
    """Each way to cut a set of indices (a bit mask) into two non-empty parts, once."""
    lowest = mask & -mask
    sub = (mask - 1) & mask
    while sub:
        if sub & lowest:
            yield sub, mask ^ sub
        sub = (sub - 1) & mask


def solve(numbers: Sequence[int], target: int, limit: int | None = None) -> list[str]:
    """Every distinct expression using each number once that equals target, shortest first.

    Exact rational arithmetic, so intermediate results may be negative or fractional.
    Expressions are in a canonical form: the terms of a chain of + and - (and the factors of a
    chain of * and /) are flattened and sorted, so expressions that differ only by reordering
    them count as one ("3+4-2" stands for 4+3-2 and 3-(2-4)); parentheses appear only around a
    sum inside a product. `limit` keeps the first results of that order.
    """
    nums = [operator.index(x) for x in numbers]
    if not nums or (limit is not None and limit < 1):
        return []
    goal = (operator.index(target), 1)

    @cache
    def values(mask: int) -> frozenset:
        if mask & (mask - 1) == 0:
            return frozenset({(nums[mask.bit_length() - 1], 1)})
        out: set[_Q] = set()
        for a_mask, b_mask in _splits(mask):
            others = values(b_mask)
            for a in values(a_mask):
                for b in others:
                    out.update(_all_results(a, b))
        return frozenset(out)

    @cache
    def expressions(mask: int, value: _Q) -> tuple[Expr, ...]:
        if mask & (mask - 1) == 0:
            num = nums[mask.bit_length() - 1]
            return (atom(str(num)),) if (num, 1) == value else ()
        found: dict[str, Expr] = {}
        for a_mask, b_mask in _splits(mask):
            if len(values(a_mask)) > len(values(b_mask)):
                a_mask, b_mask = b_mask, a_mask
            for a in sorted(values(a_mask)):
                for op, b, a_first in _partners(a, value, values(b_mask)):
                    for ea in expressions(a_mask, a):
                        for eb in expressions(b_mask, b):
                            expr = combine(ea, op, eb) if a_first else combine(eb, op, ea)
                            found.setdefault(expr.text, expr)
        return tuple(found[text] for text in sorted(found))

    full = (1 << len(nums)) - 1
    texts = sorted((e.text for e in expressions(full, goal)), key=lambda s: (len(s), s))
    return texts if limit is None else texts[:limit]
