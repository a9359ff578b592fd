"""Where the framework view's code paths come from: trainer settings, versions and sources.

Each text names the repository, file, function and commit the simulation in
vlsim.frameworks follows, so a reader can check it against the trainer they run.

verl has two worker paths and two behaviours of seq-mean-token-sum-norm:

- worker path: `trainer.use_legacy_worker_impl` is "auto" by default, and "auto" (like "enable")
  selects the legacy worker (verl/trainer/main_ppo.py: only "disable" selects the new engine).
  The legacy worker (verl/workers/actor/dp_actor.py) multiplies each micro-batch loss by
  1/GA and never fills `config.global_batch_info`, so agg_loss sees only the micro-batch and
  never receives `actor.loss_scale_factor`. The new engine (verl/workers/utils/losses.py
  ppo_loss) passes dp_size, the step's token count, its answer count and loss_scale_factor.
- version: up to verl 0.7, seq-mean-token-sum-norm was `torch.sum(seq_losses) / C`, a *sum*
  over the micro-batch's answers; verl PR #5417 (Feb 2026, in 0.8) made it a mean over the
  batch's answers, divided by C, like seq-mean-token-sum.
"""

from __future__ import annotations

from typing import Literal

Framework = Literal["trl", "verl"]

FRAMEWORK_VERSIONS: dict[str, str] = {
    "trl": "TRL 1.x (2026)",
    "verl": "verl 0.7 and 0.8 (legacy worker and new engine, 2026)",
}
"""Which trainer versions the mapping below was read from (the UI shows it)."""

VerlEngine = Literal["legacy", "new"]
VerlVersion = Literal["0.8", "0.7"]

VERL_SOURCES: dict[tuple[str, str], str] = {
    ("legacy", "0.8"): (
        "verl 0.8 (main, 2026), legacy worker: verl-project/verl dp_actor.py update_policy "
        "(commit addf805: loss * 1/GA, global_batch_info left empty) and core_algos.py agg_loss "
        "(commit 018f23b: seq-mean modes divide by the answers they see, then "
        "seq-mean-token-sum-norm by loss_mask.shape[-1])."
    ),
    ("legacy", "0.7"): (
        "verl 0.7, legacy worker: dp_actor.py update_policy (loss * 1/GA, global_batch_info "
        "left empty) and core_algos.py agg_loss as in verl-project/verl commit 5b98636 "
        "(seq-mean-token-sum-norm: torch.sum(seq_losses) / loss_mask.shape[-1])."
    ),
    ("new", "0.8"): (
        "verl 0.8 (main, 2026), new engine: verl-project/verl workers/utils/losses.py ppo_loss "
        "(commit ca00776: global_batch_info = dp_size, batch_num_tokens, global_batch_size, "
        "loss_scale_factor) and core_algos.py agg_loss (commit 018f23b: sums / global counts "
        "* dp_size; seq-mean-token-sum-norm then / C)."
    ),
    ("new", "0.7"): (
        "verl 0.7, new engine: losses.py ppo_loss passes the global counts and "
        "loss_scale_factor; core_algos.py agg_loss as in commit 5b98636 "
        "(seq-mean-token-sum-norm: torch.sum(seq_losses) / C, no global count, no dp_size)."
    ),
}
"""(verl engine, verl version) -> which verl source the simulated code path follows."""

TRL_SOURCE = (
    "TRL 1.x GRPOTrainer._compute_loss (huggingface/trl trl/trainer/grpo_trainer.py): grpo, "
    "bnpo and dr_grpo normalise each micro-batch and divide by GA; dapo divides by "
    "num_items_in_batch / num_processes."
)
"""Which TRL source the simulated code path follows."""

FRAMEWORK_MODES: dict[str, dict[str, str]] = {
    "trl": {
        "grpo": (
            "Per micro-batch: each answer's token losses averaged over its own tokens, then "
            "averaged over the micro-batch's answers, then divided by GA."
        ),
        "bnpo": (
            "Per micro-batch: sum of token losses divided by the micro-batch's own token count, "
            "then divided by GA."
        ),
        "dr_grpo": (
            "Per micro-batch: sum of token losses divided by b * max_completion_length, then "
            "divided by GA."
        ),
        "dapo": (
            "Per micro-batch: sum of token losses divided by (tokens of the whole step / P); "
            "no division by GA, the divisor already covers the step."
        ),
    },
    "verl": {
        "token-mean": (
            "Legacy worker (verl's default): sum of the micro-batch's token losses divided by "
            "its own token count, then by GA. New engine: divided by the token count of the "
            "whole step."
        ),
        "seq-mean-token-mean": (
            "Each answer's token losses averaged over its own tokens, then averaged over the "
            "answers (of the micro-batch, then / GA, in the legacy worker; of the step in the "
            "new engine)."
        ),
        "seq-mean-token-sum": (
            "Each answer's token losses summed, then averaged over the answers (of the "
            "micro-batch, then / GA, in the legacy worker; of the step in the new engine)."
        ),
        "seq-mean-token-sum-norm": (
            "verl 0.8: as seq-mean-token-sum, then divided by C. verl 0.7: the answers' token "
            "sums are summed (not averaged) over the micro-batch, then divided by C. C is the "
            "width of the loss mask; the new engine uses loss_scale_factor instead when set."
        ),
    },
}
"""Per framework: loss mode -> what the trainer's code does with one micro-batch."""
