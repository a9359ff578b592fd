"""Tests of the CountDown task: verifier, solver, problems, tokenizer, prompts and traces."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vlsim.countdown import (
    ANS,
    EOS,
    FILLER_ALPHABET,
    SPECIAL_TOKENS,
    CharTokenizer,
    Problem,
    TaskConfig,
    encode_prompts,
    extract_answer,
    format_prompt,
    is_well_formed,
    make_splits,
    prompt_width,
    reward,
    solve,
    verify,
)
from vlsim.lengths import FixedLengths, LogNormalLengths
from vlsim.traces import TraceConfig, build_sft_batch, make_completion

SMALL = TaskConfig(n_numbers=3, n_train=300, n_test=50, seed=1)


@pytest.fixture(scope="module")
def splits() -> tuple[list[Problem], list[Problem]]:
    return make_splits(SMALL)


def trace_of(completion: str) -> str:
    """The reasoning trace: everything before the answer marker."""
    return completion.split(ANS, 1)[0]


# --------------------------------------------------------------------------------------------
# verify: exact arithmetic
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "numbers", "target"),
    [
        ("6/(3/4)", (3, 4, 6), 8),  # 3/4 is not an integer; 6 / (3/4) = 8
        ("4*6/3", (3, 4, 6), 8),
        ("(12-7)*3", (3, 7, 12), 15),
        ("3*(12-7)", (12, 3, 7), 15),  # order of the numbers does not matter
        ("8/(3-8/3)", (3, 3, 8, 8), 24),  # 8/3, then 1/3, then 24
        ("(1+1/3)*6", (1, 1, 3, 6), 8),  # 4/3 * 6 = 8
        ("2*2+1", (1, 2, 2), 5),  # repeated numbers form a multiset
        ("7-7", (7, 7), 0),
        ("((17-13)*4)-9", (4, 9, 13, 17), 7),  # redundant parentheses are fine
    ],
)
def test_verify_accepts_exact_solutions(expression: str, numbers: tuple, target: int) -> None:
    assert verify(expression, numbers, target)


@pytest.mark.parametrize(
    ("expression", "numbers", "target"),
    [
        ("6/3/4", (3, 4, 6), 8),  # = 1/2
        ("(12-7)*3", (3, 7, 12), 16),
        ("8/3", (3, 8), 2),  # 8/3 is not 2 (no integer division)
        ("1/3+1/3+1/3", (1, 1, 1, 3, 3, 3), 2),  # = 1
    ],
)
def test_verify_rejects_wrong_values(expression: str, numbers: tuple, target: int) -> None:
    assert not verify(expression, numbers, target)


@pytest.mark.parametrize(
    ("expression", "numbers", "target"),
    [
        ("3+4", (3, 4, 6), 7),  # 6 is missing
        ("3+4+4-6", (3, 4, 6), 5),  # 4 used twice
        ("3+4+6-1", (3, 4, 6), 12),  # 1 is not given
        ("3+3", (3,), 6),  # used twice
        ("12+3", (1, 2, 3), 15),  # 12 concatenates 1 and 2
        ("2.0*4", (2, 4), 8),  # decimal
        ("2*4.", (2, 4), 8),
        ("-3+4+6", (3, 4, 6), 7),  # unary minus
        ("4-(-3)+6", (3, 4, 6), 13),
        ("+3+4", (3, 4), 7),  # unary plus
        ("2**3", (2, 3), 8),  # power
        ("2^3", (2, 3), 1),
        ("8//2", (8, 2), 4),  # floor division
        ("7%4", (7, 4), 3),
        ("x+3", (3,), 3),  # names
        ("abs(3)+4", (3, 4), 7),  # calls
        ("(3).real+4", (3, 4), 7),  # attribute
        ("'3'+'4'", (3, 4), 34),  # strings
        ("[3]*4", (3, 4), 12),  # list
        ("3<4", (3, 4), 1),  # comparison
        ("3|4", (3, 4), 7),  # bitwise
        ("3&7", (3, 7), 3),
        ("1<<3", (1, 3), 8),
        ("~3+4", (3, 4), 0),
        ("lambda: 3", (3,), 3),
        ("3 if 4 else 4", (3, 4), 3),
        ("True+2", (2,), 3),
        ("0x10", (0,), 16),
        ("1e1", (1,), 10),
        ("1_0", (1, 0), 10),
        ("3j", (3,), 3),
        ("__import__('os').system('true')", (0,), 0),
        ("(3,4)", (3, 4), 7),
        ("3 4", (3, 4), 7),
        ("", (), 0),
        ("()", (), 0),
    ],
)
def test_verify_rejection_rules(expression: str, numbers: tuple, target: int) -> None:
    assert verify(expression, numbers, target) is False


def test_verify_division_by_zero_is_false() -> None:
    assert not verify("3/(4-4)", (3, 4, 4), 0)
    assert not verify("6/(3-3)+4", (3, 3, 4, 6), 4)
    assert not verify("0/0", (0, 0), 0)
    assert verify("0/4", (0, 4), 0)


def test_verify_whitespace() -> None:
    assert verify(" ( 12 - 7 ) * 3 ", (3, 7, 12), 15)
    assert verify("\t(12-7)*3\n", (3, 7, 12), 15)
    assert not verify("(12-7)\n*3", (3, 7, 12), 15)
    assert not verify("1 2+3", (1, 2, 3), 15)


@pytest.mark.parametrize(
    "expression",
    [
        "1+" * 500_000 + "1",  # a million characters
        "(" * 10_000 + "3" + ")" * 10_000,  # deep nesting
        "(" * 21 + "3" + ")" * 21,  # just over the depth bound
        "9" * 5000,  # huge literal
        "9" * 10 + "-" + "9" * 10,  # literals over the digit bound
        "9" * 150 + "**" + "9" * 40,
        None,
        123,
        b"3+4",
        ["3", "+", "4"],
        "３+４",  # fullwidth digits
        "٣+٤",  # Arabic-Indic digits
        "3+4\x00",
        "(3+4",
        "3+4)",
        ")3+4(",
    ],
)
def test_verify_hostile_inputs_return_false(expression: object) -> None:
    assert verify(expression, (3, 4), 7) is False  # type: ignore[arg-type]


def test_verify_bad_numbers_or_target_return_false() -> None:
    assert verify("3+4", [3, 4], 7)
    assert verify("3+4", np.array([3, 4]), np.int64(7))
    assert not verify("3+4", None, 7)  # type: ignore[arg-type]
    assert not verify("3+4", (3, 4), None)  # type: ignore[arg-type]
    assert not verify("3+4", (3, 4), "7")  # type: ignore[arg-type]
    assert not verify("3+4", (3.0, 4), 7)
    assert not verify("3+4", (3, 4), 7.5)  # type: ignore[arg-type]
    assert not verify("1+1", (True, True), 2)
    assert not verify("3+4", (3, 4), Fraction(7, 1))


def test_verify_depth_bound_accepts_ordinary_nesting() -> None:
    assert verify("(" * 20 + "3+4" + ")" * 20, (3, 4), 7)


# An independent reading of the verifier's specification, used as the oracle of the
# properties below: Python's expression grammar over digits, + - * / ** // ( ) and blanks
# (so that "2**3" or "-1" parse as Python parses them and are then refused), the size bounds
# of the docstring, and evaluation in Python's order with exact fractions.

_OK_CHARS = frozenset("0123456789+-*/() \t")


class _Refused(Exception):
    """The text is not an expression the verifier may evaluate."""


class _ZeroDivision(Exception):
    """The expression divides by zero while being evaluated."""


def _tokens(text: str) -> list[str]:
    """Numbers, operators (longest first) and brackets; blanks only separate."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch in " \t":
            i += 1
        elif ch.isdigit():
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            literal = text[i:j]
            if literal[0] == "0" and literal.strip("0"):  # Python refuses 012
                raise _Refused(literal)
            out.append(literal)
            i = j
        elif text[i : i + 2] in ("**", "//"):
            out.append(text[i : i + 2])
            i += 2
        else:
            out.append(ch)
            i += 1
    return out


def _parse_tree(tokens: list[str]) -> tuple:
    """Python's precedence: + - < * / // < unary + - < ** (right-associative)."""
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise _Refused("end")
        pos += 1
        return tokens[pos - 1]

    def expr() -> tuple:
        node = term()
        while peek() in ("+", "-"):
            node = ("bin", take(), node, term())
        return node

    def term() -> tuple:
        node = factor()
        while peek() in ("*", "/", "//"):
            node = ("bin", take(), node, factor())
        return node

    def factor() -> tuple:
        if peek() in ("+", "-"):
            return ("unary", take(), factor())
        return power()

    def power() -> tuple:
        base = atom()
        if peek() == "**":
            return ("bin", take(), base, factor())
        return base

    def atom() -> tuple:
        tok = take()
        if tok.isdigit():
            return ("num", int(tok))
        if tok == "(":
            inner = expr()
            if take() != ")":
                raise _Refused("bracket")
            return inner
        raise _Refused(tok)

    tree = expr()
    if pos != len(tokens):
        raise _Refused("trailing")
    return tree


def _value(node: tuple, literals: list[int]) -> Fraction:
    """Evaluate left to right; only + - * / on whole numbers are allowed."""
    if node[0] == "num":
        literals.append(node[1])
        return Fraction(node[1])
    if node[0] == "unary" or node[1] not in "+-*/" or len(node[1]) != 1:
        raise _Refused(node[1])
    a, b = _value(node[2], literals), _value(node[3], literals)
    if node[1] == "/" and b == 0:
        raise _ZeroDivision
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else a}[node[1]]


def _within_bounds(text: object) -> str | None:
    """The stripped text if it passes the documented size and character bounds, else None."""
    if not isinstance(text, str) or len(text) > 200:
        return None
    t = text.strip()
    if not t or not set(t) <= _OK_CHARS:
        return None
    if any(len(run) > 9 for run in re.findall(r"[0-9]+", t)):
        return None
    depth = 0
    for ch in t:
        depth += (ch == "(") - (ch == ")")
        if depth < 0 or depth > 20:
            return None
    return t if depth == 0 else None


def oracle_verify(text: object, numbers: tuple[int, ...], target: int) -> bool:
    t = _within_bounds(text)
    if t is None or len(re.findall(r"[0-9]+", t)) != len(numbers):
        return False
    literals: list[int] = []
    try:
        value = _value(_parse_tree(_tokens(t)), literals)
    except (_Refused, _ZeroDivision):
        return False
    return value == target and sorted(literals) == sorted(numbers)


def oracle_well_formed(text: object) -> bool:
    t = _within_bounds(text)
    if t is None:
        return False
    try:
        _value(_parse_tree(_tokens(t)), [])
    except _Refused:
        return False
    except _ZeroDivision:
        return True  # readable; the value just does not exist
    return True


@pytest.mark.parametrize(
    ("text", "verdict", "well_formed"),
    [
        ("1+2+3", True, True),
        (" (1+2) * 3 / 1.5", False, False),
        ("3*2*1", True, True),
        ("1+2*3", False, True),
        ("-1+2+3", False, False),
        ("2**3", False, False),
        ("1/0+-1", False, True),  # the division by zero is met before the unary minus
        ("1/(0)", False, True),
        ("01+2+3", False, False),
        ("(1+2)(3)", False, False),
    ],
)
def test_oracle_hand_cases(text: str, verdict: bool, well_formed: bool) -> None:
    assert oracle_verify(text, (1, 2, 3), 6) is verdict
    assert oracle_well_formed(text) is well_formed
    assert verify(text, (1, 2, 3), 6) is verdict
    assert is_well_formed(text) is well_formed


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_verify_matches_the_oracle_on_any_text(text: str) -> None:
    assert verify(text, (1, 2, 3), 6) is oracle_verify(text, (1, 2, 3), 6)
    assert is_well_formed(text) is oracle_well_formed(text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789+-*/() .", max_size=60))
def test_verify_matches_the_oracle_on_near_expressions(text: str) -> None:
    assert verify(text, (1, 2, 3), 6) is oracle_verify(text, (1, 2, 3), 6)
    assert is_well_formed(text) is oracle_well_formed(text)
    assert extract_answer(f"{ANS}{text}{EOS}") == (text.strip() or None)


@st.composite
def built_expressions(draw) -> tuple[str, tuple[int, ...], Fraction | None]:
    """A random bracketed expression over some numbers, and its exact value (None: 1/0)."""
    numbers = tuple(draw(st.lists(st.integers(0, 20), min_size=1, max_size=4)))
    items: list[tuple[str, Fraction | None]] = [(str(n), Fraction(n)) for n in numbers]
    while len(items) > 1:
        i = draw(st.integers(0, len(items) - 2))
        op = draw(st.sampled_from("+-*/"))
        blank = draw(st.sampled_from(["", " "]))
        (ta, va), (tb, vb) = items[i], items[i + 1]
        if va is None or vb is None or (op == "/" and vb == 0):
            value = None
        else:
            value = va / vb if op == "/" else {"+": va + vb, "-": va - vb, "*": va * vb}[op]
        items[i : i + 2] = [(f"({ta}{blank}{op}{blank}{tb})", value)]
    return items[0][0], numbers, items[0][1]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(built_expressions(), st.booleans())
def test_verify_built_expressions(built, hit: bool) -> None:
    text, numbers, value = built
    target = int(value) if value is not None and value.denominator == 1 and hit else 10**6
    expected = value is not None and value == target
    assert verify(text, numbers, target) is expected
    assert oracle_verify(text, numbers, target) is expected
    assert is_well_formed(text)


# --------------------------------------------------------------------------------------------
# solve
# --------------------------------------------------------------------------------------------


def test_solve_known_cases() -> None:
    assert solve((3, 4, 6), 8) == ["4*6/3"]  # 6/(3/4) and 6/3*4 are the same rearrangement
    assert solve((3, 4, 6), 4) == []  # no way to make 4
    assert solve((4, 9, 13, 17), 7) == ["(17-13)*4-9"]
    assert "8/(3-8/3)" in solve((3, 3, 8, 8), 24)
    assert solve((5,), 5) == ["5"]
    assert solve((), 0) == []


def test_solve_limit_and_order() -> None:
    every = solve((1, 2, 3, 4), 24)
    assert len(every) > 1 and len(every) == len(set(every))
    assert solve((1, 2, 3, 4), 24, limit=2) == every[:2]
    assert [len(e) for e in every] == sorted(len(e) for e in every)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=2, max_size=4),
    st.integers(0, 100),
)
def test_every_solver_expression_verifies(numbers: list[int], target: int) -> None:
    found = solve(numbers, target)
    assert len(found) == len(set(found))
    for expression in found:
        assert verify(expression, numbers, target), expression


# --------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------


def test_generated_problems_are_solvable_and_in_bounds(splits) -> None:
    train, test = splits
    assert len(train) == SMALL.n_train and len(test) == SMALL.n_test
    for problem in train + test:
        assert len(problem.numbers) == SMALL.n_numbers
        assert all(SMALL.low <= x <= SMALL.high for x in problem.numbers)
        assert 1 <= problem.target <= SMALL.max_target
        assert solve(problem.numbers, problem.target, limit=1), problem


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_problems_for_each_size(n: int) -> None:
    cfg = TaskConfig(n_numbers=n, low=2, high=12, max_target=50, n_train=25, n_test=5, seed=3)
    train, test = make_splits(cfg)
    for problem in train + test:
        assert len(problem.numbers) == n
        assert all(2 <= x <= 12 for x in problem.numbers) and 1 <= problem.target <= 50
        assert solve(problem.numbers, problem.target, limit=1)


def test_splits_are_disjoint_and_deterministic(splits) -> None:
    train, test = splits
    train_keys = {p.key for p in train}
    test_keys = {p.key for p in test}
    assert len(train_keys) == len(train) and len(test_keys) == len(test)
    assert not train_keys & test_keys
    assert make_splits(SMALL) == splits
    assert make_splits(SMALL.model_copy(update={"seed": 2})) != splits


@pytest.mark.slow
def test_too_many_problems_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="n_train"):
        TaskConfig(n_numbers=2, low=1, high=2, max_target=3, n_train=100, n_test=0)
    cfg = TaskConfig(n_numbers=2, low=1, high=2, max_target=4, n_train=11, n_test=0)
    with pytest.raises(ValueError, match="distinct problems"):
        make_splits(cfg)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_numbers": 6}, "n_numbers"),
        ({"n_numbers": 1}, "n_numbers"),
        ({"low": 0}, "low"),
        ({"low": 10, "high": 5}, "high"),
        ({"max_target": 0}, "max_target"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": -1}, "n_test"),
        ({"seed": -1}, "seed"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_task_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        TaskConfig(**kwargs)


# --------------------------------------------------------------------------------------------
# Tokenizer and prompts
# --------------------------------------------------------------------------------------------

TOKENIZER = CharTokenizer()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TOKENIZER.tokens), max_size=80))
def test_tokenizer_round_trip(tokens: list[str]) -> None:
    text = "".join(tokens)
    ids = TOKENIZER.encode(text)
    assert len(ids) == len(tokens)
    assert TOKENIZER.decode(ids) == text


def test_tokenizer_special_ids() -> None:
    tok = TOKENIZER
    assert tok.pad_id == 0
    ids = tok.encode("<bos><sep><ans><eos><pad>")
    assert ids == [tok.bos_id, tok.sep_id, tok.ans_id, tok.eos_id, tok.pad_id]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    assert tok.vocab_size == len(tok.tokens) == len(set(tok.tokens))
    assert tok.decode(tok.encode("<ans>1+2<eos><pad>"), strip_special=True) == "1+2"
    assert tok.decode(torch.tensor(tok.encode("3*4"))) == "3*4"


@pytest.mark.parametrize(("text", "bad"), [("3+4?", "'?'"), ("3%4", "'%'"), ("<foo>", "'<'")])
def test_tokenizer_names_the_bad_character(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        TOKENIZER.encode(text)


def test_tokenizer_rejects_bad_ids() -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        TOKENIZER.decode([TOKENIZER.vocab_size])


def test_prompts_have_one_fixed_length(splits) -> None:
    train, _ = splits
    prompts = encode_prompts(train, SMALL, TOKENIZER)
    assert prompts.dtype == torch.long
    assert prompts.shape == (len(train), prompt_width(SMALL))
    assert format_prompt(Problem((3, 7, 12), 15), SMALL) == "<bos> 3  7 12= 15<sep>"
    assert TOKENIZER.decode(prompts[0]) == format_prompt(train[0], SMALL)
    wide = TaskConfig(n_numbers=4, high=999, max_target=5000, n_train=20, n_test=0)
    problems, _ = make_splits(wide)
    assert encode_prompts(problems, wide, TOKENIZER).shape == (20, prompt_width(wide))


def test_prompt_rejects_problems_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="n_numbers"):
        format_prompt(Problem((1, 2), 3), SMALL)
    with pytest.raises(ValueError, match="max_target"):
        format_prompt(Problem((1, 2, 3), 1000), SMALL)


# --------------------------------------------------------------------------------------------
# Answers and rewards
# --------------------------------------------------------------------------------------------


def test_extract_answer() -> None:
    assert extract_answer("7+3=10x;<ans>(12-7)*3<eos><pad><pad>") == "(12-7)*3"
    assert extract_answer("....<ans> 1+2 ") == "1+2"  # cut off before <eos>
    assert extract_answer("<ans>1<ans>2+3<eos>") == "2+3"  # the last marker counts
    assert extract_answer("1+2<eos>") is None
    assert extract_answer("<ans><eos>") is None
    assert extract_answer(None) is None  # type: ignore[arg-type]


def test_reward() -> None:
    problem = Problem((3, 7, 12), 15)
    assert reward("..<ans>(12-7)*3<eos>", problem) == 1.0
    assert reward("..<ans>(12-7)*3<eos>", problem, format_reward=0.1) == 1.0
    assert reward("..<ans>12+7-3<eos>", problem) == 0.0
    assert reward("..<ans>12+7-3<eos>", problem, format_reward=0.1) == 0.1
    assert reward("..<ans>12+*7<eos>", problem, format_reward=0.1) == 0.0
    assert reward("..<ans>-3+12<eos>", problem, format_reward=0.1) == 0.0
    assert reward("(12-7)*3<eos>", problem, format_reward=0.1) == 0.0


# --------------------------------------------------------------------------------------------
# Traces and warm-start data
# --------------------------------------------------------------------------------------------


def test_filler_with_one_symbol_is_dots(splits) -> None:
    cfg = TraceConfig(mode="filler", filler_symbols=1, length=FixedLengths(length=30))
    rng = np.random.default_rng(0)
    for problem in splits[0][:20]:
        text, correct = make_completion(problem, cfg, rng, 64)
        assert trace_of(text) == "." * 30 and correct


def test_filler_uses_at_most_k_symbols(splits) -> None:
    cfg = TraceConfig(mode="filler", filler_symbols=5, length=FixedLengths(length=40))
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    for problem in splits[0][:20]:
        seen |= set(trace_of(make_completion(problem, cfg, rng, 64)[0]))
    assert seen == set(FILLER_ALPHABET[:5])


@pytest.mark.parametrize("mode", ["search", "filler"])
def test_fixed_trace_length_is_exact(splits, mode: str) -> None:
    cfg = TraceConfig(mode=mode, length=FixedLengths(length=10), wrong_rate=0.5)
    rng = np.random.default_rng(0)
    for problem in splits[0][:50]:
        text, _ = make_completion(problem, cfg, rng, 64)
        assert len(TOKENIZER.encode(trace_of(text))) == 10


@pytest.mark.parametrize("mode", ["search", "filler"])
def test_completions_never_overflow(splits, mode: str) -> None:
    cfg = TraceConfig(mode=mode, length=LogNormalLengths(median=40, sigma=1.0), wrong_rate=0.3)
    rng = np.random.default_rng(0)
    for problem in splits[0][:100]:
        text, _ = make_completion(problem, cfg, rng, 32)
        ids = TOKENIZER.encode(text)
        assert len(ids) <= 32 and ids[-1] == TOKENIZER.eos_id


def test_too_small_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        make_completion(Problem((3, 7, 12), 15), TraceConfig(), np.random.default_rng(0), 8)


STEP = re.compile(r"(?<![\d/])(\d+)([-+*/])(\d+)=(\d+)(?=[,x]|$)")


def test_search_traces_show_real_steps(splits) -> None:
    cfg = TraceConfig(length=FixedLengths(length=80))
    rng = np.random.default_rng(0)
    for problem in splits[0][:30]:
        text, correct = make_completion(problem, cfg, rng, 120)
        trace = trace_of(text)
        steps = STEP.findall(re.split("[,;]", trace, maxsplit=1)[1])  # the first may be cut
        assert len(steps) >= 3 and "x;" in trace  # several steps and dead ends
        for a, op, b, result in steps:
            value = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__}.get(op)
            expected = Fraction(int(a), int(b)) if op == "/" else value(int(a), int(b))
            assert expected == int(result), (problem, trace)
        assert any(int(a) in problem.numbers for a, *_ in steps)
        assert correct and trace.endswith(f"={problem.target}")


def test_correct_completions_verify(splits) -> None:
    cfg = TraceConfig(wrong_rate=0.3)
    rng = np.random.default_rng(0)
    flags = []
    for problem in splits[0]:
        text, correct = make_completion(problem, cfg, rng, 64)
        answer = extract_answer(text)
        assert verify(answer, problem.numbers, problem.target) == correct
        assert reward(text, problem) == float(correct)
        assert reward(text, problem, format_reward=0.25) == (1.0 if correct else 0.25)
        flags.append(correct)
    assert 0.55 < np.mean(flags) < 0.85


def test_wrong_rate_zero_means_always_correct(splits) -> None:
    cfg = TraceConfig(mode="filler", wrong_rate=0.0, length_correctness_slope=5.0)
    rng = np.random.default_rng(0)
    assert all(make_completion(p, cfg, rng, 64)[1] for p in splits[0][:200])
    cfg = TraceConfig(mode="filler", wrong_rate=1.0)
    assert not any(make_completion(p, cfg, rng, 64)[1] for p in splits[0][:50])


@pytest.mark.parametrize(("slope", "sign"), [(2.0, 1), (0.0, 0), (-2.0, -1)])
def test_length_correctness_slope(splits, slope: float, sign: int) -> None:
    cfg = TraceConfig(mode="filler", wrong_rate=0.3, length_correctness_slope=slope)
    rng = np.random.default_rng(0)
    problems = splits[0] * 10
    samples = [make_completion(p, cfg, rng, 96) for p in problems]
    log_length = np.log([len(trace_of(text)) for text, _ in samples])
    wrong = np.array([not correct for _, correct in samples], dtype=float)
    corr = np.corrcoef(log_length, wrong)[0, 1]
    if sign == 0:
        assert abs(corr) < 0.06 and 0.26 < wrong.mean() < 0.34
    else:
        assert sign * corr > 0.25


def test_build_sft_batch(splits) -> None:
    problems = splits[0][:64]
    cfg = TraceConfig(wrong_rate=0.2)
    prompts, completions, lengths = build_sft_batch(
        problems, SMALL, cfg, TOKENIZER, 48, np.random.default_rng(5)
    )
    assert prompts.shape == (64, prompt_width(SMALL))
    assert completions.shape == (64, 48) and lengths.shape == (64,)
    assert prompts.dtype == completions.dtype == lengths.dtype == torch.long
    for row, length in enumerate(lengths.tolist()):
        assert completions[row, length - 1] == TOKENIZER.eos_id
        assert (completions[row, length:] == TOKENIZER.pad_id).all()
        assert ANS in TOKENIZER.decode(completions[row, :length])
    again = build_sft_batch(problems, SMALL, cfg, TOKENIZER, 48, np.random.default_rng(5))
    assert torch.equal(again[1], completions)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "essay"}, "mode"),
        ({"filler_symbols": 0}, "filler_symbols"),
        ({"filler_symbols": len(FILLER_ALPHABET) + 1}, "filler_symbols"),
        ({"wrong_rate": 1.5}, "wrong_rate"),
        ({"length_correctness_slope": 50}, "length_correctness_slope"),
        ({"length": {"kind": "fixed", "length": 0}}, "length"),
    ],
)
def test_trace_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        TraceConfig(**kwargs)


def test_trace_config_round_trips_through_json() -> None:
    cfg = TraceConfig(length={"kind": "fixed", "length": 7}, wrong_rate=0.1)
    assert cfg.length == FixedLengths(length=7)
    assert TraceConfig.model_validate_json(cfg.model_dump_json()) == cfg
