"""The framework view: what a real trainer's settings do to the per-answer weights of one step.

docs/design.md gives each aggregator as a formula over a whole batch. Real trainers do
not see the whole batch at once: one optimizer step is split over P data-parallel processes,
each running GA gradient-accumulation micro-batches of b answers, and every micro-batch is
normalised on its own before the gradients are summed (accumulation) and averaged (data
parallelism). Whether the result still equals the textbook formula depends on *which tokens the
divisor counts* and *which width* a Dr. GRPO divisor uses. This module simulates that code path
and returns the effective weight x_i of every answer, so a user sees, for example, that a
per-micro-batch token mean is not the batch token mean.

Layout of one optimizer step (the same for both trainers)::

    B = P * GA * b answers, given in order;
    process p (0 <= p < P) holds answers [p*GA*b, (p+1)*GA*b);
    inside process p, micro-batch a (0 <= a < GA) holds the next b answers,
    i.e. answers [p*GA*b + a*b, p*GA*b + (a+1)*b).

Settings names: TRL's b is `per_device_train_batch_size`, GA `gradient_accumulation_steps`
(generation once per step, `steps_per_generation` = GA, TRL's default), P the number of
processes and M `max_completion_length`. verl's b is `ppo_micro_batch_size_per_gpu`, GA the
per-GPU mini-batch divided by b, P the data-parallel size and M `data.max_response_length`.

The mapping was read from the trainers' sources (vlsim.framework_sources); versions drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlsim.aggregators import check_lengths
from vlsim.aggregators import weights as aggregator_weights
from vlsim.framework_sources import (
    FRAMEWORK_MODES,
    FRAMEWORK_VERSIONS,
    TRL_SOURCE,
    VERL_SOURCES,
    Framework,
    VerlEngine,
    VerlVersion,
)

__all__ = [
    "FRAMEWORK_MODES",
    "FRAMEWORK_VERSIONS",
    "TRL_SOURCE",
    "VERL_SOURCES",
    "FrameworkView",
    "TrainerSetup",
    "answer_layout",
    "check_step_lengths",
    "effective_weights",
    "framework_view",
]

_EPS = 1e-9  # relative tolerance for "the same weights"


def _positive_int(value: object, name: str, meaning: str) -> int:
    """Accept a whole number >= 1 (not a bool), else raise a ValueError naming the field."""
    whole = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer()
    )
    if isinstance(value, bool) or not whole:
        raise ValueError(f"{name} ({meaning}) must be a whole number, got {value!r}")
    number = int(value)
    if number < 1:
        raise ValueError(f"{name} ({meaning}) must be at least 1, got {number}")
    return number


class TrainerSetup(BaseModel):
    """A trainer's settings that decide how one optimizer step weighs its answers.

    One step has B = P * GA * b answers. Answers are laid out process by process: process p
    holds answers [p*GA*b, (p+1)*GA*b), and within a process micro-batch a holds the next b
    answers. Each micro-batch is normalised as the trainer's code does, gradients are summed
    over the GA micro-batches and averaged over the P processes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    framework: Framework = Field(
        description="Which trainer: 'trl' (Hugging Face TRL GRPOTrainer) or 'verl'."
    )
    loss_mode: str = Field(
        description=(
            "TRL's loss_type (grpo, bnpo, dr_grpo, dapo) or verl's loss_agg_mode (token-mean, "
            "seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm)."
        )
    )
    micro_batch_size: int = Field(
        description="b: answers per micro-batch on each process (at least 1).",
        json_schema_extra={"minimum": 1},
    )
    grad_accum_steps: int = Field(
        description="GA: micro-batches accumulated per optimizer step on each process.",
        json_schema_extra={"minimum": 1},
    )
    num_processes: int = Field(
        description="P: data-parallel processes (GPUs) whose gradients are averaged.",
        json_schema_extra={"minimum": 1},
    )
    max_len: int = Field(
        description=(
            "M: the configured maximum completion length (TRL max_completion_length, "
            "verl max_response_length)."
        ),
        json_schema_extra={"minimum": 1},
    )
    verl_engine: VerlEngine = Field(
        "legacy",
        description=(
            "verl only: the worker path. 'legacy' is what verl runs by default "
            "(trainer.use_legacy_worker_impl: auto or enable): each micro-batch is normalised "
            "on its own, then divided by GA. 'new' (use_legacy_worker_impl: disable): "
            "normalised by the token and answer counts of the whole step."
        ),
    )
    verl_version: VerlVersion = Field(
        "0.8",
        description=(
            "verl only: '0.8' (PR #5417 onward): seq-mean-token-sum-norm averages the answers' "
            "token sums, then divides by C. '0.7' and older: it sums them over the "
            "micro-batch, then divides by C (b times Dr. GRPO's weight in the legacy worker)."
        ),
    )
    norm_width: Literal["configured", "padded"] = Field(
        "configured",
        description=(
            "verl seq-mean-token-sum-norm only, when no loss_scale_factor applies: the loss "
            "mask is as wide as the configured max length ('configured') or as the "
            "micro-batch's longest answer ('padded')."
        ),
    )
    loss_scale_factor: float | None = Field(
        None,
        description=(
            "verl only: actor.loss_scale_factor, the constant C that seq-mean-token-sum-norm "
            "divides by. Only the new engine passes it to the loss; the legacy worker ignores "
            "it and divides by the mask width."
        ),
        json_schema_extra={"exclusiveMinimum": 0},
    )

    @field_validator("micro_batch_size", mode="before")
    @classmethod
    def _check_b(cls, value: object) -> int:
        return _positive_int(value, "micro_batch_size", "b, answers per micro-batch")

    @field_validator("grad_accum_steps", mode="before")
    @classmethod
    def _check_ga(cls, value: object) -> int:
        return _positive_int(value, "grad_accum_steps", "GA, gradient-accumulation steps")

    @field_validator("num_processes", mode="before")
    @classmethod
    def _check_p(cls, value: object) -> int:
        return _positive_int(value, "num_processes", "P, data-parallel processes")

    @field_validator("max_len", mode="before")
    @classmethod
    def _check_m(cls, value: object) -> int:
        return _positive_int(value, "max_len", "M, the maximum completion length")

    @field_validator("loss_scale_factor", mode="before")
    @classmethod
    def _check_c(cls, value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"loss_scale_factor must be a positive number or None, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"loss_scale_factor must be a positive number or None, got {value!r}")
        return number

    @model_validator(mode="after")
    def _check_mode_and_options(self) -> TrainerSetup:
        modes = FRAMEWORK_MODES[self.framework]
        if self.loss_mode not in modes:
            setting = "loss_type" if self.framework == "trl" else "loss_agg_mode"
            raise ValueError(
                f"loss_mode {self.loss_mode!r} is not a {self.framework} {setting}; for "
                f"framework={self.framework!r} choose one of: {', '.join(modes)}"
            )
        if self.framework == "trl":
            if self.loss_scale_factor is not None:
                raise ValueError(
                    "loss_scale_factor is a verl setting; TRL's dr_grpo always divides by "
                    "max_completion_length (max_len). Leave loss_scale_factor as None for TRL."
                )
            if self.norm_width != "configured":
                raise ValueError(
                    "norm_width='padded' is a verl option; TRL's dr_grpo always divides by the "
                    "configured max_completion_length. Use norm_width='configured' for TRL."
                )
            if self.verl_engine != "legacy" or self.verl_version != "0.8":
                raise ValueError(
                    "verl_engine and verl_version are verl options and mean nothing for TRL; "
                    "leave them at their defaults ('legacy', '0.8') for TRL."
                )
        return self

    @property
    def num_answers(self) -> int:
        """B = P * GA * b, the answers in one optimizer step."""
        return self.num_processes * self.grad_accum_steps * self.micro_batch_size

    @property
    def num_micro_batches(self) -> int:
        """P * GA micro-batches in one optimizer step."""
        return self.num_processes * self.grad_accum_steps


TRL_EXAMPLE = TrainerSetup(
    framework="trl",
    loss_mode="bnpo",
    micro_batch_size=4,
    grad_accum_steps=2,
    num_processes=1,
    max_len=4096,
)
"""The setup the Aggregators page starts from: TRL's bnpo loss, 2 micro-batches of 4 answers."""


def answer_layout(setup: TrainerSetup) -> tuple[np.ndarray, np.ndarray]:
    """Process index and global micro-batch index (p * GA + a) of every answer, each shape (B,)."""
    idx = np.arange(setup.num_answers)
    per_process = setup.grad_accum_steps * setup.micro_batch_size
    return idx // per_process, idx // setup.micro_batch_size


def check_step_lengths(setup: TrainerSetup, lengths: object) -> np.ndarray:
    """Validate the B = P * GA * b lengths of one step: a flat integer array, 1 <= L <= M."""
    try:
        arr = np.asarray(lengths)
    except ValueError as err:  # ragged nested lists
        raise ValueError(
            "lengths must be a flat list of the step's answer lengths (integers)"
        ) from err
    if arr.dtype == object or arr.ndim != 1:
        raise ValueError(
            "lengths must be a flat (1-D) list of the step's answer lengths, got shape "
            f"{arr.shape}; flatten a (groups, G) array row by row first"
        )
    expected = setup.num_answers
    if arr.size != expected:
        raise ValueError(
            f"expected {expected} lengths (P * GA * b = {setup.num_processes} * "
            f"{setup.grad_accum_steps} * {setup.micro_batch_size}), got {arr.size}"
        )
    return check_lengths(arr.reshape(1, -1), setup.max_len)[0]


def _micro_batch_loss(
    setup: TrainerSetup, mb_lengths: np.ndarray, step_tokens: int
) -> tuple[np.ndarray, bool]:
    """Coefficient c_i of sum_t l_{i,t} in one micro-batch's loss, and whether it is / GA.

    This mirrors the trainer's loss code for one micro-batch of b answers. step_tokens is the
    token count of the whole step (all processes, all micro-batches), the number that TRL
    gathers as num_items_in_batch and verl's new engine as batch_num_tokens.
    """
    if setup.framework == "trl":
        return _trl_micro_batch_loss(setup, mb_lengths, step_tokens)
    if setup.verl_engine == "legacy":
        return _verl_legacy_micro_batch_loss(setup, mb_lengths)
    return _verl_new_micro_batch_loss(setup, mb_lengths, step_tokens)


def _trl_micro_batch_loss(
    setup: TrainerSetup, mb_lengths: np.ndarray, step_tokens: int
) -> tuple[np.ndarray, bool]:
    """TRL GRPOTrainer._compute_loss for one micro-batch (see TRL_SOURCE)."""
    L = mb_lengths.astype(np.float64)  # (b,)
    b = L.size
    mode = setup.loss_mode
    if mode == "grpo":  # ((l*m).sum(-1) / m.sum(-1)).mean() / GA
        return 1.0 / (b * L), True
    if mode == "bnpo":  # (l*m).sum() / m.sum() / GA
        return np.full(b, 1.0 / L.sum()), True
    if mode == "dr_grpo":  # (l*m).sum() / (b * max_completion_length) / GA
        return np.full(b, 1.0 / (b * setup.max_len)), True
    if mode == "dapo":  # (l*m).sum() / (num_items_in_batch / P), no / GA
        return np.full(b, 1.0 / (step_tokens / setup.num_processes)), False
    raise ValueError(f"unknown TRL loss_type {mode!r}")


def _verl_legacy_micro_batch_loss(
    setup: TrainerSetup, mb_lengths: np.ndarray
) -> tuple[np.ndarray, bool]:
    """verl's legacy worker: agg_loss on the micro-batch alone, then * 1/GA (VERL_SOURCES).

    global_batch_info is empty here, so agg_loss falls back to the micro-batch's own token
    and answer counts, dp_size = 1 and C = loss_mask.shape[-1] (loss_scale_factor unused).
    """
    L = mb_lengths.astype(np.float64)  # (b,)
    b = L.size
    mode = setup.loss_mode
    if mode == "token-mean":  # masked_sum / loss_mask.sum()
        return np.full(b, 1.0 / L.sum()), True
    if mode == "seq-mean-token-mean":  # sum_i (sum_t l m / sum_t m) / b
        return 1.0 / (b * L), True
    if mode == "seq-mean-token-sum":  # sum_i sum_t l m / b
        return np.full(b, 1.0 / b), True
    if mode == "seq-mean-token-sum-norm":
        width = _mask_width(setup, mb_lengths)
        if setup.verl_version == "0.7":  # torch.sum(seq_losses) / C
            return np.full(b, 1.0 / width), True
        return np.full(b, 1.0 / (b * width)), True  # seq-mean, then / C
    raise ValueError(f"unknown verl loss_agg_mode {mode!r}")


def _verl_new_micro_batch_loss(
    setup: TrainerSetup, mb_lengths: np.ndarray, step_tokens: int
) -> tuple[np.ndarray, bool]:
    """verl's new engine: agg_loss with the step's global counts and dp_size, no / GA."""
    L = mb_lengths.astype(np.float64)  # (b,)
    b = L.size
    P, B = setup.num_processes, setup.num_answers
    mode = setup.loss_mode
    if mode == "token-mean":  # masked_sum / batch_num_tokens * dp_size
        return np.full(b, P / step_tokens), False
    if mode == "seq-mean-token-mean":  # sum_i token-mean_i / global_batch_size * dp_size
        return P / (B * L), False
    if mode == "seq-mean-token-sum":  # sum_i token-sum_i / global_batch_size * dp_size
        return np.full(b, P / B), False
    if mode == "seq-mean-token-sum-norm":
        c = _norm_divisor(setup, mb_lengths)
        if setup.verl_version == "0.7":  # torch.sum(seq_losses) / C: no global count
            return np.full(b, 1.0 / c), False
        return np.full(b, P / (B * c)), False  # seq-mean over the step, then / C
    raise ValueError(f"unknown verl loss_agg_mode {mode!r}")


def _mask_width(setup: TrainerSetup, mb_lengths: np.ndarray) -> float:
    """loss_mask.shape[-1] of one micro-batch: the configured max length or its longest answer."""
    if setup.norm_width == "padded":
        return float(mb_lengths.max())
    return float(setup.max_len)


def _norm_divisor(setup: TrainerSetup, mb_lengths: np.ndarray) -> float:
    """C of seq-mean-token-sum-norm in the new engine: loss_scale_factor, else the mask width."""
    if setup.loss_scale_factor is not None:
        return setup.loss_scale_factor
    return _mask_width(setup, mb_lengths)


def _simulate(setup: TrainerSetup, L: np.ndarray) -> np.ndarray:
    """Run the step's code path on validated lengths and return x, shape (B,)."""
    P, GA, b = setup.num_processes, setup.grad_accum_steps, setup.micro_batch_size
    step_tokens = int(L.sum())
    x = np.zeros(L.size, dtype=np.float64)
    for p in range(P):
        grad_of_process = np.zeros(L.size, dtype=np.float64)
        for a in range(GA):
            start = (p * GA + a) * b
            sl = slice(start, start + b)
            coef, divided_by_ga = _micro_batch_loss(setup, L[sl], step_tokens)
            if divided_by_ga:
                coef = coef / GA
            grad_of_process[sl] += coef  # backward() adds into .grad across micro-batches
        x += grad_of_process / P  # data parallelism averages the processes' gradients
    return x


def effective_weights(setup: TrainerSetup, lengths: object) -> np.ndarray:
    """Per-answer weight x_i of one optimizer step's loss gradient, shape (B,).

    The step's gradient is sum_i x_i * sum_t grad l_{i,t}. lengths holds the B = P * GA * b
    answers of the step in layout order (see TrainerSetup). The weights are derived by running
    the trainer's normalisation micro-batch by micro-batch, including the / GA of gradient
    accumulation (where the code applies it) and the / P of data-parallel gradient averaging.
    """
    L = check_step_lengths(setup, lengths)
    return _simulate(setup, L)


def _equivalent_name(setup: TrainerSetup) -> str | None:
    """The closest vlsim aggregator, or None when no batch-level formula describes the mode."""
    single_micro_batch = setup.num_micro_batches == 1
    mode = setup.loss_mode
    if setup.framework == "trl":
        if mode == "bnpo":
            return "dapo" if single_micro_batch else None
        return {"grpo": "grpo", "dr_grpo": "dr_grpo", "dapo": "dapo"}[mode]
    if mode == "token-mean":
        if setup.verl_engine == "new" or single_micro_batch:
            return "dapo"
        return None
    return {
        "seq-mean-token-mean": "grpo",
        "seq-mean-token-sum": "seq_sum",
        "seq-mean-token-sum-norm": "dr_grpo",
    }[mode]


def _ratio_to(setup: TrainerSetup, name: str, L: np.ndarray, group_size: int) -> float:
    """sum(x) / sum(equivalent x) for lengths L of one step."""
    x = _simulate(setup, L)
    ref = aggregator_weights(name, L.reshape(-1, group_size), setup.max_len).reshape(-1)
    return float(x.sum() / ref.sum())


def _constant_factor(
    setup: TrainerSetup, name: str, L: np.ndarray, group_size: int
) -> float | None:
    """The factor x / equivalent x if it is the same on these lengths and on probe batches.

    Probes: every answer 1 token, every answer M tokens, and 1 and M alternating. A factor that
    differs between them depends on the lengths (a padded width, say) and is not reported.
    """
    B, M = L.size, setup.max_len
    probes = [
        np.ones(B, dtype=np.int64),
        np.full(B, M, dtype=np.int64),
        np.where(np.arange(B) % 2 == 0, 1, M).astype(np.int64),
    ]
    factor = _ratio_to(setup, name, L, group_size)
    for probe in probes:
        other = _ratio_to(setup, name, probe, group_size)
        if abs(other - factor) > _EPS * abs(factor):
            return None
    return factor


def _max_rel_diff(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(x - ref) / np.abs(ref)))


@dataclass
class FrameworkView:
    """What one optimizer step of a configured trainer does to its answers.

    weights: x_i per answer, shape (B,), in the step's layout order.
    equivalent: the closest vlsim aggregator (vlsim.aggregators.AGGREGATORS), or None.
    matches_equivalent: the weights equal the equivalent's on these lengths (relative
        difference below 1e-9), after multiplying the equivalent by constant_factor.
    constant_factor: x = constant_factor * equivalent x, a factor that does not depend on the
        lengths (1.0 for an exact match); None when there is no equivalent or no such factor.
    total_weight: sum_i x_i.
    scale: max_len * sum_i x_i (1 for the unbiased weightings with a constant total 1/M).
    notes: plain-English warnings about this setup.
    process, micro_batch: each answer's process and global micro-batch index, shape (B,).
    """

    setup: TrainerSetup
    weights: np.ndarray
    equivalent: str | None
    matches_equivalent: bool
    constant_factor: float | None
    total_weight: float
    scale: float
    notes: list[str] = field(default_factory=list)
    process: np.ndarray | None = None
    micro_batch: np.ndarray | None = None


def _notes(setup: TrainerSetup, L: np.ndarray) -> list[str]:
    """Plain-English warnings for this setup and these lengths."""
    mode, fw = setup.loss_mode, setup.framework
    source = TRL_SOURCE if fw == "trl" else VERL_SOURCES[(setup.verl_engine, setup.verl_version)]
    notes: list[str] = [f"Code path read from {source}"]
    b = setup.micro_batch_size
    n_mb = setup.num_micro_batches
    mb_tokens = L.reshape(n_mb, b).sum(axis=1)
    per_micro_batch_mean = (fw == "trl" and mode == "bnpo") or (
        fw == "verl" and mode == "token-mean" and setup.verl_engine == "legacy"
    )
    if per_micro_batch_mean:
        if n_mb == 1:
            notes.append(
                "With a single micro-batch per step the per-micro-batch token mean is the "
                "batch token mean (DAPO)."
            )
        else:
            notes.append(
                "The token mean is taken per micro-batch: answers in a micro-batch of short "
                "answers weigh more than the same answers in a long one."
            )
            notes.append(
                "The weights change with micro_batch_size, grad_accum_steps and num_processes, "
                "and with how answers are spread over micro-batches."
            )
            if mb_tokens.min() != mb_tokens.max():
                notes.append(
                    f"Here micro-batches hold between {int(mb_tokens.min())} and "
                    f"{int(mb_tokens.max())} tokens, so a token weighs up to "
                    f"{mb_tokens.max() / mb_tokens.min():.3g} times more in one micro-batch "
                    "than in another."
                )
    if (fw == "trl" and mode == "grpo") or (fw == "verl" and mode == "seq-mean-token-mean"):
        notes.append(
            "Each answer is averaged over its own tokens first, so a token of a short answer "
            "weighs more than a token of a long one (x_i = 1/(B L_i)): the step size depends "
            "on lengths, tilted toward short answers."
        )
    if (fw == "trl" and mode == "dapo") or (
        fw == "verl" and mode == "token-mean" and setup.verl_engine == "new"
    ):
        notes.append(
            "Every token of the step weighs the same, 1/(all tokens of the step), whatever the "
            "layout; the update shrinks when answers get longer."
        )
    if fw == "trl" and mode == "dr_grpo":
        notes.append(
            "The divisor b * max_completion_length is a constant: the step size does not "
            "depend on lengths, and the weights are the same for every layout."
        )
    if fw == "verl" and mode == "seq-mean-token-sum":
        notes.append(
            "No division by a length: the weights are M times Dr. GRPO's, so the learning rate "
            "must be about M times smaller for the same step size."
        )
    if fw == "verl" and mode == "seq-mean-token-sum-norm":
        notes.extend(_sum_norm_notes(setup, L))
    return notes


def _sum_norm_notes(setup: TrainerSetup, L: np.ndarray) -> list[str]:
    """Notes on verl's seq-mean-token-sum-norm: which divisor C applies, and the 0.7 sum."""
    notes: list[str] = []
    b, M, GA = setup.micro_batch_size, setup.max_len, setup.grad_accum_steps
    legacy = setup.verl_engine == "legacy"
    scale_factor = setup.loss_scale_factor
    if legacy and scale_factor is not None:
        notes.append(
            f"loss_scale_factor = {scale_factor:g} never reaches the policy loss in the legacy "
            "worker: dp_actor.py leaves config.global_batch_info empty, so agg_loss divides by "
            "the mask width instead. Set trainer.use_legacy_worker_impl=disable (new engine) "
            "for the constant to apply."
        )
    if scale_factor is not None and not legacy:
        notes.append(
            f"The divisor is loss_scale_factor = {scale_factor:g}, a constant; the weights "
            f"are M/C = {M / scale_factor:.4g} times Dr. GRPO's."
        )
    elif setup.norm_width == "padded":
        widths = L.reshape(setup.num_micro_batches, b).max(axis=1)
        notes.append(
            "The divisor is the padded width, so it changes with the micro-batch's longest "
            "answer: not a constant, so not Dr. GRPO's length-independent weighting."
        )
        if widths.min() != widths.max():
            fix = (
                "pad every micro-batch to the max length"
                if legacy
                else "set loss_scale_factor to a constant (e.g. the max length)"
            )
            notes.append(
                f"Here the padded width ranges from {int(widths.min())} to "
                f"{int(widths.max())} tokens across micro-batches; {fix} to fix it."
            )
    else:
        notes.append("The divisor is the configured max length M, a constant: this is Dr. GRPO.")
    if setup.verl_version == "0.7":
        factor, what = (b, "b") if legacy else (GA * b, "GA * b")
        notes.append(
            "verl 0.7 sums the answers' token sums over the micro-batch instead of averaging "
            f"them: every weight is {what} = {factor} times Dr. GRPO's, so the step grows with "
            "the micro-batch size (verl 0.8 averages them)."
        )
    return notes


def framework_view(setup: TrainerSetup, lengths: object, group_size: int) -> FrameworkView:
    """Effective weights of one step and how they compare with the closest vlsim aggregator.

    lengths: the step's B = P * GA * b answer lengths in layout order; consecutive runs of
    group_size answers form one group (prompt), so group_size must divide B.
    """
    L = check_step_lengths(setup, lengths)
    B = L.size
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise ValueError(f"group_size (G) must be a whole number, got {group_size!r}")
    if group_size < 1 or B % group_size != 0:
        raise ValueError(
            f"group_size (G) = {group_size} must divide the step's {B} answers "
            f"(B = P * GA * b); choose a divisor of {B}"
        )
    group_size = int(group_size)
    x = _simulate(setup, L)
    name = _equivalent_name(setup)
    matches, factor = False, None
    if name is not None:
        ref = aggregator_weights(name, L.reshape(-1, group_size), setup.max_len).reshape(-1)
        factor = _constant_factor(setup, name, L, group_size)
        if factor is not None and abs(factor - 1.0) < _EPS:
            factor = 1.0
        matches = _max_rel_diff(x, (factor if factor is not None else 1.0) * ref) < _EPS
        if not matches:
            factor = None
    total = float(x.sum())
    process, micro_batch = answer_layout(setup)
    return FrameworkView(
        setup=setup,
        weights=x,
        equivalent=name,
        matches_equivalent=bool(matches),
        constant_factor=factor,
        total_weight=total,
        scale=setup.max_len * total,
        notes=_notes(setup, L),
        process=process,
        micro_batch=micro_batch,
    )
