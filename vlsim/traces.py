"""Reasoning traces of the supervised warm start: their content, length and correctness.

A warm-start completion is trace + "<ans>" + expression + "<eos>". In a 'search' trace, ','
separates steps, 'x;' ends a failed attempt, and the last attempt is the path to the answer; a
trace cut to its sampled length loses its oldest characters first. The trace length follows a
`vlsim.lengths` spec, so answer length (and how it relates to correctness) becomes a knob.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from vlsim.countdown import (
    ANS,
    EOS,
    FILLER_ALPHABET,
    CharTokenizer,
    Problem,
    TaskConfig,
    _apply,
    _evaluate,
    _format_value,
    _parse,
    encode_prompts,
    verify,
)
from vlsim.countdown_solver import Expr, atom, combine, solve
from vlsim.lengths import LengthSpec, LogNormalLengths, parse_length_spec


class TraceConfig(BaseModel):
    """How warm-start completions reason before the answer: content, length and correctness."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["search", "filler"] = Field(
        "search",
        description=(
            "'search' writes out tried steps of the solver's search (content about the problem); "
            "'filler' writes symbols that carry no content."
        ),
    )
    filler_symbols: int = Field(
        1,
        ge=1,
        le=len(FILLER_ALPHABET),
        description=(
            "Filler mode: how many symbols each filler token is drawn from, uniformly. "
            "1 gives deterministic dots; more symbols raise the per-token entropy."
        ),
    )
    length: LengthSpec = Field(
        default_factory=lambda: LogNormalLengths(median=16.0, sigma=0.6),
        description="Distribution of the trace length in tokens (cut to fit max_new_tokens).",
    )
    length_per_step: bool = Field(
        False,
        description=(
            "Read the length as tokens per combination step: a problem of n numbers gets n - 1 "
            "times the drawn length, as its search has more steps (mixed tasks: lengths follow "
            "problem size). P(wrong) still uses the drawn length, i.e. thoroughness per step."
        ),
    )
    keep_path: bool = Field(
        False,
        description=(
            "Never cut into the written path to the answer: a drawn length shorter than it "
            "gets the whole path (so every trace writes each combination step)."
        ),
    )
    wrong_rate: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Typical fraction of examples whose final expression is wrong. "
            "0 makes every example correct whatever the slope; 1 makes every example wrong."
        ),
    )
    length_correctness_slope: float = Field(
        0.0,
        ge=-10.0,
        le=10.0,
        description=(
            "How trace length changes the chance of a wrong answer: P(wrong) = "
            "sigmoid(logit(wrong_rate) + slope * z), z the standardised log length. "
            "Positive: longer traces are more often wrong."
        ),
    )


def _search_paths(
    numbers: Sequence[int], rng: np.random.Generator
) -> Iterator[tuple[list[str], Fraction, str]]:
    """Every full combination path (steps, value, expression) in a random depth-first order.

    Like a person playing CountDown, steps keep intermediate results non-negative integers.
    """

    def walk(items: list[tuple[Fraction, Expr]]) -> Iterator[tuple[list[str], Fraction, str]]:
        if len(items) == 1:
            yield [], items[0][0], items[0][1].text
            return
        n = len(items)
        moves = [
            (i, j, op)
            for i in range(n)
            for j in range(n)
            for op in "+-*/"
            if i != j and not (op in "+*" and i > j)
        ]
        for k in rng.permutation(len(moves)):
            i, j, op = moves[k]
            (a, expr_a), (b, expr_b) = items[i], items[j]
            value = _apply(a, op, b)
            if value is None or value < 0 or value.denominator != 1:
                continue
            rest = [item for t, item in enumerate(items) if t not in (i, j)]
            rest.append((value, combine(expr_a, op, expr_b)))
            step = f"{_format_value(a)}{op}{_format_value(b)}={_format_value(value)}"
            for steps, final, expression in walk(rest):
                yield [step, *steps], final, expression

    yield from walk([(Fraction(x), atom(str(x))) for x in numbers])


def _dead_ends(problem: Problem, rng: np.random.Generator, need: int) -> str:
    """Exactly `need` characters of failed attempts from a random search, oldest cut first."""
    parts: list[str] = []
    total = 0
    while total < need:
        before = total
        for steps, value, _ in _search_paths(problem.numbers, rng):
            if value != problem.target:
                parts.append(",".join(steps) + "x;")
                total += len(parts[-1])
                if total >= need:
                    break
        if total == before:  # no failed path exists (cannot happen for targets >= 1)
            break
    return "".join(parts)[-need:].rjust(need, ";")


@lru_cache(maxsize=4096)
def _solutions(numbers: tuple[int, ...], target: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Up to 64 short solutions with their steps; those with non-negative integer steps if any."""
    found = []
    for expression in solve(numbers, target, limit=64):
        steps: list[str] = []
        _evaluate(_parse(expression), [], steps)
        found.append((expression, tuple(steps)))
    plain = [(e, s) for e, s in found if all(_is_plain_step(step) for step in s)]
    return tuple(plain or found)


def _is_plain_step(step: str) -> bool:
    """True if a step's result is a non-negative integer."""
    result = step.rsplit("=", 1)[1]
    return result.isdigit()


@lru_cache(maxsize=256)
def _log_length_moments(spec_json: str, max_len: int) -> tuple[float, float]:
    """Mean and std of log trace length under a spec (fixed-seed estimate, for z-scores)."""
    spec = parse_length_spec(json.loads(spec_json))
    logs = np.log(spec.sample(np.random.default_rng(20_240_601), 4096, max_len))
    return float(logs.mean()), float(logs.std())


def wrong_probability(trace_cfg: TraceConfig, length: int, max_len: int) -> float:
    """P(wrong answer) for a trace of this length: sigmoid(logit(wrong_rate) + slope * z)."""
    rate = trace_cfg.wrong_rate
    if rate <= 0.0 or rate >= 1.0:
        return float(rate >= 1.0)
    mean, std = _log_length_moments(trace_cfg.length.model_dump_json(), max_len)
    z = (math.log(length) - mean) / std if std > 0 else 0.0
    logit = math.log(rate / (1.0 - rate)) + trace_cfg.length_correctness_slope * z
    return 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0


def make_completion(
    problem: Problem, trace_cfg: TraceConfig, rng: np.random.Generator, max_new_tokens: int
) -> tuple[str, bool]:
    """One warm-start completion (trace + <ans> + expression + <eos>) and whether it is correct.

    The trace length is drawn from trace_cfg.length (clipped to max_new_tokens, which sets z for
    the wrong-answer probability), times n - 1 if trace_cfg.length_per_step, and then cut so the
    whole completion fits max_new_tokens.
    """
    length = int(trace_cfg.length.sample(rng, 1, max_new_tokens)[0])
    wrong = rng.random() < wrong_probability(trace_cfg, length, max_new_tokens)
    if trace_cfg.length_per_step:
        length *= len(problem.numbers) - 1
    solutions = _solutions(tuple(problem.numbers), problem.target)
    if not solutions:
        raise ValueError(f"{problem} has no solution")
    expression, final_steps = solutions[int(rng.integers(len(solutions)))]
    if wrong:
        failed = next(
            (p for p in _search_paths(problem.numbers, rng) if p[1] != problem.target), None
        )
        if failed is not None:  # a failed path always exists for targets >= 1
            final_steps, expression = tuple(failed[0]), failed[2]
    budget = max_new_tokens - len(expression) - 2
    if budget < 1:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} leaves no room for a trace before "
            f"'<ans>{expression}<eos>'; raise max_new_tokens"
        )
    length = min(length, budget)
    if trace_cfg.mode == "filler":
        symbols = np.array(list(FILLER_ALPHABET[: trace_cfg.filler_symbols]))
        trace = "".join(rng.choice(symbols, size=length))
    else:
        final = ",".join(final_steps)
        if trace_cfg.keep_path:
            length = max(length, min(len(final), budget))
        if length <= len(final):
            trace = final[len(final) - length :]
        else:
            trace = _dead_ends(problem, rng, length - len(final)) + final
    correct = verify(expression, problem.numbers, problem.target)
    return f"{trace}{ANS}{expression}{EOS}", correct


def build_sft_batch(
    problems: Sequence[Problem],
    task_cfg: TaskConfig,
    trace_cfg: TraceConfig,
    tokenizer: CharTokenizer,
    max_new_tokens: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warm-start tensors: prompts (N, Tp), completions (N, max_new_tokens) padded, lengths (N,).

    Lengths count completion tokens including <eos>.
    """
    prompts = encode_prompts(problems, task_cfg, tokenizer)
    completions = torch.full((len(problems), max_new_tokens), tokenizer.pad_id, dtype=torch.long)
    lengths = torch.zeros(len(problems), dtype=torch.long)
    for row, problem in enumerate(problems):
        text, _ = make_completion(problem, trace_cfg, rng, max_new_tokens)
        ids = tokenizer.encode(text)
        completions[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        lengths[row] = len(ids)
    return prompts, completions, lengths
