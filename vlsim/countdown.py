"""CountDown: problems, safe verifier, rewards and tokenizer (solver: countdown_solver; traces: traces).

A problem is a few numbers and a target; an answer is an arithmetic expression (+ - * / and
parentheses) that uses each number exactly once and equals the target. The supervised warm start
teaches the format with reasoning traces whose length follows a `vlsim.lengths` spec, so answer
length becomes a knob of the experiments.

Text formats (one character is one token, except the special tokens such as "<eos>"):

    prompt      "<bos>" + numbers right-aligned and joined by spaces + "=" + target + "<sep>"
                (in a task mixing sizes, smaller problems are padded on the left with spaces)
    completion  trace + "<ans>" + expression + "<eos>"

e.g. with 3 numbers in [1, 20] (width 2) and targets <= 100 (width 3): "<bos> 3  7 12= 15<sep>"
(14 tokens) and "7+3=10,10*12=120x;12-7=5,5*3=15<ans>(12-7)*3<eos>". In a trace, ',' separates
steps, 'x;' ends a failed attempt, and the last attempt is the path to the answer; a trace cut to
its sampled length loses its oldest characters first.
"""

from __future__ import annotations

import ast
import math
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlsim.countdown_solver import atom, combine, solve

__all__ = ["solve", "verify"]  # solve stays importable from here

# ---------------------------------------------------------------------------------------------
# Task configuration and problems
# ---------------------------------------------------------------------------------------------


class TaskConfig(BaseModel):
    """Which CountDown problems to generate, and how many for training and testing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Two numbers by default: the small policy then starts near 20% held-out sampled accuracy,
    # so most groups carry a learning signal; with three it stays near chance.
    n_numbers: int = Field(
        2,
        ge=2,
        le=5,
        description="How many numbers each problem gives (2-5); with sizes, the most any gives.",
    )
    low: int = Field(1, ge=1, le=999, description="Smallest number a problem may give.")
    high: int = Field(20, ge=1, le=999, description="Largest number a problem may give.")
    max_target: int = Field(
        100, ge=1, le=99_999, description="Largest target; targets are integers in [1, max_target]."
    )
    n_train: int = Field(400, ge=1, le=1_000_000, description="Number of training problems.")
    n_test: int = Field(96, ge=0, le=1_000_000, description="Number of held-out test problems.")
    sizes: tuple[int, ...] = Field(
        (),
        max_length=4,
        description=(
            "A mixed task: the number counts its problems give, e.g. (2, 3, 4); empty: every "
            "problem gives n_numbers. Bigger problems need longer searches, so a mix keeps "
            "answer lengths spread. n_numbers (the prompt width) defaults to the largest size."
        ),
    )
    size_weights: tuple[float, ...] = Field(
        (),
        description="Share of problems of each entry of sizes (normalised); empty: equal shares.",
    )
    final_size_weights: tuple[float, ...] = Field(
        (),
        description=(
            "A curriculum: the training prompts' mix of sizes moves linearly from size_weights "
            "at the first RL step to these weights at the last (one weight per size); empty: "
            "the mix stays. The train and test problems hold the average of the two mixes."
        ),
    )
    seed: int = Field(0, ge=0, description="Random seed; the same seed gives the same problems.")

    @model_validator(mode="before")
    @classmethod
    def _width_from_sizes(cls, data: Any) -> Any:
        """A mixed task without n_numbers gets the largest size as its prompt width."""
        if isinstance(data, dict) and data.get("sizes") and "n_numbers" not in data:
            try:
                largest = max(int(k) for k in data["sizes"])
            except (TypeError, ValueError):
                return data  # field validation names the bad entry
            if 2 <= largest <= 5:  # else the size check below names the bad size
                return {**data, "n_numbers": largest}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be at least low ({self.low})")
        if any(not 2 <= k <= 5 for k in self.sizes) or len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"sizes {self.sizes} must be distinct number counts from 2 to 5")
        if self.sizes and max(self.sizes) > self.n_numbers:
            raise ValueError(
                f"sizes {self.sizes} include {max(self.sizes)} numbers, but prompts hold "
                f"n_numbers={self.n_numbers}: raise n_numbers or leave it unset"
            )
        _check_weights("size_weights", self.size_weights, self.sizes, "")
        _check_weights(
            "final_size_weights", self.final_size_weights, self.sizes, " (a curriculum needs sizes)"
        )
        needed = self.n_train + self.n_test
        most = self.max_distinct_problems()
        if needed > most:
            raise ValueError(
                f"n_train + n_test = {needed}, but at most {most} distinct problems exist with "
                f"n_numbers={self.n_numbers}, low={self.low}, high={self.high}, "
                f"max_target={self.max_target}: ask for fewer or widen the ranges"
            )
        return self

    def max_distinct_problems(self) -> int:
        """An upper bound on distinct problems: multisets of numbers times possible targets."""
        choices = self.high - self.low + 1
        return sum(math.comb(choices + k - 1, k) for k in self.counts()) * self.max_target

    def counts(self) -> tuple[int, ...]:
        """The number counts problems may give: sizes, or (n_numbers,) for a single-size task."""
        return self.sizes or (self.n_numbers,)

    def _start_shares(self) -> np.ndarray:
        w = np.asarray(self.size_weights or [1.0] * len(self.counts()), dtype=float)
        return w / w.sum()

    def _final_shares(self) -> np.ndarray:
        if not self.final_size_weights:
            return self._start_shares()
        w = np.asarray(self.final_size_weights, dtype=float)
        return w / w.sum()

    def shares(self) -> np.ndarray:
        """Share of the train and test problems of each entry of counts(), summing to 1."""
        return (self._start_shares() + self._final_shares()) / 2

    def training_shares(self, progress: float) -> np.ndarray:
        """The mix of sizes drawn for training at this fraction of the run (0 = first step)."""
        t = min(max(progress, 0.0), 1.0)
        return (1 - t) * self._start_shares() + t * self._final_shares()

    def draw_training_problems(
        self, problems: Sequence[Problem], count: int, progress: float, rng: np.random.Generator
    ) -> list[Problem]:
        """`count` distinct training problems; a mixed task fixes how many of each size (quota).

        A single-size task draws uniformly without replacement. A mixed one gives each size its
        count from training_shares(progress) by largest remainder (so every step holds each
        size in its share, and a step's length spread does not hang on the luck of the draw),
        and draws each size's problems uniformly from that size's training problems.
        """
        if not self.sizes:
            idx = rng.choice(len(problems), size=count, replace=False)
            return [problems[i] for i in idx]
        chosen: list[Problem] = []
        for size, n in zip(
            self.counts(), _quota(count, self.training_shares(progress)), strict=True
        ):
            pool = [p for p in problems if len(p.numbers) == size]
            if n > len(pool):
                raise ValueError(
                    f"the curriculum asks for {n} problems of {size} numbers in one step but "
                    f"the training split has {len(pool)}: raise n_train"
                )
            chosen.extend(pool[i] for i in rng.choice(len(pool), size=int(n), replace=False))
        return chosen


@dataclass(frozen=True)
class Problem:
    """Numbers to combine (each used exactly once) and the target to reach."""

    numbers: tuple[int, ...]
    target: int

    @property
    def key(self) -> tuple[tuple[int, ...], int]:
        """Identity of a problem regardless of number order (sorted numbers, target)."""
        return tuple(sorted(self.numbers)), self.target


def _check_weights(
    name: str, weights: tuple[float, ...], sizes: tuple[int, ...], hint: str
) -> None:
    """Refuse a non-empty weights field without one finite, >= 0 weight per size (not all 0)."""
    if not weights:
        return
    if len(weights) != len(sizes):
        raise ValueError(
            f"{name} has {len(weights)} entries but sizes has {len(sizes)}: give one weight "
            f"per size{hint}"
        )
    if any(not (w >= 0 and math.isfinite(w)) for w in weights) or not sum(weights):
        raise ValueError(f"{name} must be finite, >= 0 and not all 0")


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    """a op b in exact arithmetic; None for division by zero."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else None


def _random_problem(
    cfg: TaskConfig, rng: np.random.Generator, n_numbers: int | None = None
) -> tuple[Problem, str] | None:
    """Numbers combined in a random tree; (problem, its expression) if the value is a valid target."""
    size = cfg.n_numbers if n_numbers is None else n_numbers
    numbers = tuple(int(x) for x in rng.integers(cfg.low, cfg.high + 1, size=size))
    items = [(Fraction(x), atom(str(x))) for x in numbers]
    while len(items) > 1:
        i, j = (int(k) for k in rng.choice(len(items), size=2, replace=False))
        op = "+-*/"[int(rng.integers(4))]
        value = _apply(items[i][0], op, items[j][0])
        if value is None:
            return None
        rest = [item for k, item in enumerate(items) if k not in (i, j)]
        items = [*rest, (value, combine(items[i][1], op, items[j][1]))]
    value, expression = items[0]
    if value.denominator != 1 or not 1 <= value <= cfg.max_target:
        return None
    return Problem(numbers, int(value)), expression.text


def make_splits(cfg: TaskConfig) -> tuple[list[Problem], list[Problem]]:
    """Deterministic train and test problems for cfg.seed, with no problem in both.

    Each problem is built from an expression over its numbers, and that expression is checked
    with `verify`, so every problem is solvable (`solve` finds it too; the tests check this).
    """
    rng = np.random.default_rng(cfg.seed)
    needed = cfg.n_train + cfg.n_test
    plan = _size_plan(cfg, rng) if cfg.sizes else None
    seen: set[tuple[tuple[int, ...], int]] = set()
    problems: list[Problem] = []
    misses = 0
    while len(problems) < needed:
        drawn = _random_problem(cfg, rng, None if plan is None else plan[len(problems)])
        if drawn is None or drawn[0].key in seen:
            misses += 1
            if misses > 50_000:
                raise ValueError(
                    f"found only {len(problems)} distinct problems, but n_train + n_test = "
                    f"{needed}: ask for fewer or widen low/high/max_target"
                )
            continue
        misses = 0
        problem, expression = drawn
        if not verify(expression, problem.numbers, problem.target):  # pragma: no cover - a bug
            raise RuntimeError(f"generated {problem} from {expression!r}, which does not verify")
        seen.add(problem.key)
        problems.append(problem)
    return problems[: cfg.n_train], problems[cfg.n_train :]


def _quota(n: int, shares: np.ndarray) -> np.ndarray:
    """n split in proportion to shares, rounded by largest remainder (sums to n)."""
    raw = n * shares
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def _size_plan(cfg: TaskConfig, rng: np.random.Generator) -> list[int]:
    """The number count of each problem of a mixed task: train then test, each split in shares."""
    plan: list[int] = []
    for n in (cfg.n_train, cfg.n_test):
        part = np.repeat(np.asarray(cfg.counts()), _quota(n, cfg.shares()))
        plan.extend(int(k) for k in rng.permutation(part))
    return plan


# ---------------------------------------------------------------------------------------------
# The safe verifier
# ---------------------------------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 200
"""Longest answer the verifier looks at, in characters."""
MAX_PAREN_DEPTH = 20
"""Deepest bracket nesting the verifier accepts."""
MAX_LITERAL_DIGITS = 9
"""Longest integer literal the verifier accepts, in digits."""
_DIGITS = frozenset("0123456789")
_EXPRESSION_CHARS = _DIGITS | frozenset("+-*/() \t")
_AST_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class _Rejected(Exception):
    """The expression uses something the verifier does not allow."""


def _checked_text(expression: object) -> tuple[str, int] | None:
    """Stripped text and its literal count if it passes the cheap pre-parse bounds, else None."""
    if not isinstance(expression, str) or len(expression) > MAX_EXPRESSION_CHARS:
        return None
    text = expression.strip()
    depth = digits = literals = 0
    for ch in text:
        if ch not in _EXPRESSION_CHARS:
            return None
        if ch in _DIGITS:
            literals += digits == 0
            digits += 1
            if digits > MAX_LITERAL_DIGITS:
                return None
            continue
        digits = 0
        if ch == "(":
            depth += 1
            if depth > MAX_PAREN_DEPTH:
                return None
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
    return (text, literals) if text and depth == 0 else None


def _parse(text: str) -> ast.expr | None:
    """The expression tree of pre-checked text, or None if Python cannot parse it."""
    try:
        return ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _format_value(value: Fraction) -> str:
    """An intermediate result as trace text: '12', '-3' or '3/4'."""
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


def _evaluate(node: ast.AST, literals: list[int], steps: list[str] | None = None) -> Fraction:
    """Exact value of a whitelisted tree, collecting its literals (and the steps, if asked)."""
    if type(node) is ast.Constant and type(node.value) is int:
        literals.append(node.value)
        return Fraction(node.value)
    if type(node) is ast.BinOp and type(node.op) in _AST_OPS:
        op = _AST_OPS[type(node.op)]
        a = _evaluate(node.left, literals, steps)
        b = _evaluate(node.right, literals, steps)
        value = _apply(a, op, b)
        if value is None:
            raise _Rejected("division by zero")
        if steps is not None:
            steps.append(f"{_format_value(a)}{op}{_format_value(b)}={_format_value(value)}")
        return value
    raise _Rejected(type(node).__name__)


def is_well_formed(expression: object) -> bool:
    """True if the text is an arithmetic expression the verifier can read (any numbers, value)."""
    checked = _checked_text(expression)
    tree = _parse(checked[0]) if checked else None
    if tree is None:
        return False
    try:
        _evaluate(tree, [])
    except _Rejected as err:
        return str(err) == "division by zero"
    return True


def verify(expression: str, numbers: Sequence[int], target: int) -> bool:
    """True iff expression uses + - * / ( ) over the given numbers, each once, and equals target.

    Never raises: anything unexpected (wrong types, unary minus, other operators, names, calls,
    concatenated digits, division by zero, input over the size bounds) gives False.
    """
    try:
        given = list(numbers)
        if isinstance(target, bool) or any(isinstance(x, bool) for x in given):
            return False
        wanted = Counter(operator.index(x) for x in given)
        goal = operator.index(target)
        checked = _checked_text(expression)
        if checked is None or checked[1] != sum(wanted.values()):
            return False
        tree = _parse(checked[0])
        if tree is None:
            return False
        literals: list[int] = []
        value = _evaluate(tree, literals)
        return value == goal and Counter(literals) == wanted
    except Exception:  # noqa: BLE001 - the verifier's contract is to never raise
        return False


# ---------------------------------------------------------------------------------------------
# Answers and rewards
# ---------------------------------------------------------------------------------------------

PAD, BOS, SEP, ANS, EOS = "<pad>", "<bos>", "<sep>", "<ans>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, SEP, ANS, EOS)
"""Special tokens, each one id; <pad> is id 0."""


def extract_answer(completion: str) -> str | None:
    """The expression after the last <ans> marker, up to <eos> or <pad>; None if there is none."""
    if not isinstance(completion, str) or ANS not in completion:
        return None
    answer = completion.rsplit(ANS, 1)[1]
    for stop in (EOS, PAD):
        answer = answer.split(stop, 1)[0]
    answer = answer.strip()
    return answer or None


def reward(completion: str, problem: Problem, format_reward: float = 0.0) -> float:
    """1 for a correct answer; format_reward for a well-formed wrong one; else 0."""
    answer = extract_answer(completion)
    if answer is not None and verify(answer, problem.numbers, problem.target):
        return 1.0
    return float(format_reward) if is_well_formed(answer) else 0.0


# ---------------------------------------------------------------------------------------------
# Tokenizer and prompts
# ---------------------------------------------------------------------------------------------

FILLER_ALPHABET = ".abcdefghijklmno"
"""Filler symbols; filler traces with k symbols draw from the first k (k=1: dots only)."""
TRACE_CHARS = ",;x"
"""Trace punctuation: ',' between steps, 'x' marks a dead end, ';' ends an attempt."""
_CHARS = "0123456789" + "+-*/()= " + TRACE_CHARS + FILLER_ALPHABET


class CharTokenizer:
    """Character-level tokenizer over a fixed vocabulary; special tokens are single ids."""

    def __init__(self) -> None:
        self.tokens: list[str] = [*SPECIAL_TOKENS, *_CHARS]
        self._ids = {token: i for i, token in enumerate(self.tokens)}
        assert len(self._ids) == len(self.tokens), "duplicate token in the vocabulary"

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        """Id of <pad> (always 0)."""
        return self._ids[PAD]

    @property
    def bos_id(self) -> int:
        """Id of <bos>, the start of a prompt."""
        return self._ids[BOS]

    @property
    def sep_id(self) -> int:
        """Id of <sep>, the end of a prompt."""
        return self._ids[SEP]

    @property
    def ans_id(self) -> int:
        """Id of <ans>, the marker before the final expression."""
        return self._ids[ANS]

    @property
    def eos_id(self) -> int:
        """Id of <eos>, the end of a completion."""
        return self._ids[EOS]

    def encode(self, text: str) -> list[int]:
        """Token ids of text; raises ValueError naming any character outside the vocabulary."""
        ids: list[int] = []
        i = 0
        while i < len(text):
            if text[i] == "<":
                end = text.find(">", i)
                special = text[i : end + 1] if end >= 0 else ""
                if special not in SPECIAL_TOKENS:
                    raise ValueError(
                        f"character '<' at position {i} is not in the vocabulary "
                        f"(it may only start one of {', '.join(SPECIAL_TOKENS)})"
                    )
                ids.append(self._ids[special])
                i = end + 1
                continue
            token_id = self._ids.get(text[i])
            if token_id is None:
                raise ValueError(f"character {text[i]!r} at position {i} is not in the vocabulary")
            ids.append(token_id)
            i += 1
        return ids

    def decode(self, ids: Iterable[int], strip_special: bool = False) -> str:
        """Text of token ids (a list, array or tensor); strip_special drops <pad>, <eos> etc."""
        parts = []
        for raw in ids:
            i = int(raw)
            if not 0 <= i < len(self.tokens):
                raise ValueError(
                    f"token id {i} is outside the vocabulary (0..{len(self.tokens) - 1})"
                )
            if not (strip_special and i < len(SPECIAL_TOKENS)):
                parts.append(self.tokens[i])
        return "".join(parts)


def _widths(cfg: TaskConfig) -> tuple[int, int]:
    """Characters reserved for each number and for the target."""
    return len(str(cfg.high)), len(str(cfg.max_target))


def prompt_width(cfg: TaskConfig) -> int:
    """Token length of every prompt of the task (fixed, so prompts batch without padding)."""
    number_width, target_width = _widths(cfg)
    return 1 + cfg.n_numbers * number_width + (cfg.n_numbers - 1) + 1 + target_width + 1


def format_prompt(problem: Problem, cfg: TaskConfig) -> str:
    """Prompt text: <bos>, numbers and target right-aligned to the task's widths, <sep>."""
    number_width, target_width = _widths(cfg)
    if len(problem.numbers) not in cfg.counts():
        allowed = f"sizes={cfg.sizes}" if cfg.sizes else f"n_numbers={cfg.n_numbers}"
        raise ValueError(f"problem has {len(problem.numbers)} numbers, the task {allowed}")
    if (
        not all(0 <= x <= cfg.high for x in problem.numbers)
        or not 0 <= problem.target <= cfg.max_target
    ):
        raise ValueError(
            f"{problem} does not fit the task (high={cfg.high}, max_target={cfg.max_target})"
        )
    numbers = " ".join(f"{x:>{number_width}}" for x in problem.numbers)
    field = cfg.n_numbers * number_width + cfg.n_numbers - 1  # fewer numbers: padded on the left
    return f"{BOS}{numbers:>{field}}={problem.target:>{target_width}}{SEP}"


def encode_prompts(
    problems: Sequence[Problem], task_cfg: TaskConfig, tokenizer: CharTokenizer
) -> torch.Tensor:
    """Prompt ids, shape (N, prompt_width(task_cfg)), dtype long."""
    rows = [tokenizer.encode(format_prompt(p, task_cfg)) for p in problems]
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), prompt_width(task_cfg))
