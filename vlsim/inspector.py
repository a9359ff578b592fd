"""The Step Inspector's data: full groups of answers read back from a run's sample records, and
how hard each of their tokens is pushed under each aggregator.

At sample steps a training run stores the first groups of the step in full: every answer with
`group` (int), `index` (its place in the group), `advantage` (float), `token_ids` (list[int]),
beside `numbers`, `target`, `trace`, `answer`, `reward`, `length`, `truncated`. Storage stays
bounded because only a few groups of every `sample_log_every`-th step are kept. Records written
before full groups were stored (one answer per prompt, no `group`) cannot be inspected.

A token's push is its weight x_i times its advantage A_i (its loss is -A_i log pi, so its
gradient is -A_i times its score, scaled by x_i). Weights are shown relative to Dr. GRPO's:
B G M x_i, so under Dr. GRPO every answer weighs 1 and a token's push is its advantage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlsim.advantages import group_advantages
from vlsim.aggregators import weights
from vlsim.countdown import CharTokenizer

FULL_GROUP_KEYS = ("group", "token_ids")
"""Keys a sample record needs to take part in a full group."""

NOT_FULL_GROUPS = (
    "this run was recorded before full groups were stored: its sample records hold one answer "
    "per prompt (no group, advantage or token ids), so there is no group to inspect"
)


@dataclass(frozen=True)
class Answer:
    """One answer of an inspected group."""

    index: int  # place in its group
    tokens: list[str]  # one text per generated token
    text: str  # the whole completion as text
    reward: float
    length: int  # tokens the trainer counted (what the weights use)
    advantage: float
    truncated: bool


@dataclass(frozen=True)
class Group:
    """The G answers of one prompt at one step."""

    step: int
    group: int
    prompt: str  # numbers and target, in words
    answers: list[Answer]
    advantages_recomputed: bool  # True when the records had no advantage (GRPO's, from rewards)

    @property
    def lengths(self) -> np.ndarray:
        """Lengths of the answers, shape (G,)."""
        return np.array([a.length for a in self.answers], dtype=np.int64)

    @property
    def advantages(self) -> np.ndarray:
        """Advantages of the answers, shape (G,)."""
        return np.array([a.advantage for a in self.answers], dtype=np.float64)


def is_full(record: Mapping[str, Any]) -> bool:
    """Whether a sample record belongs to a stored full group."""
    return all(key in record for key in FULL_GROUP_KEYS)


def has_full_groups(records: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any record is part of a full group (False for runs recorded before they were)."""
    return any(is_full(r) for r in records)


def steps_with_groups(records: Iterable[Mapping[str, Any]]) -> list[int]:
    """The steps at which full groups were stored, in order."""
    return sorted({int(r["step"]) for r in records if is_full(r) and "step" in r})


def token_strings(token_ids: Sequence[int], tokenizer: CharTokenizer | None = None) -> list[str]:
    """The text of each token id (special tokens such as <eos> keep their names)."""
    tok = tokenizer or CharTokenizer()
    return [tok.decode([int(i)]) for i in token_ids]


def groups_at(
    records: Iterable[Mapping[str, Any]],
    step: int,
    std_normalize: bool = True,
    group_size: int | None = None,
) -> list[Group]:
    """The full groups stored at a step, ordered by group number, answers by index.

    A run stores its first groups in full and one answer of every other group; only groups
    with all `group_size` answers (the run's G; None: the largest stored group) are returned.
    Advantages come from the records; when a group's records lack them they are recomputed from
    the rewards within the group, as the trainer does (std_normalize as in the run's config).
    """
    by_group: dict[int, list[Mapping[str, Any]]] = {}
    for r in records:
        if is_full(r) and int(r.get("step", step)) == step:
            by_group.setdefault(int(r["group"]), []).append(r)
    size = group_size or max((len(rows) for rows in by_group.values()), default=0)
    tok = CharTokenizer()
    out = []
    for g, rows in sorted(by_group.items()):
        if len(rows) != size:  # one answer of a group (or a damaged one): not a full group
            continue
        rows = sorted(rows, key=lambda r: int(r.get("index", 0)))
        rewards = np.array([float(r.get("reward", 0.0)) for r in rows])  # (G,)
        given = all(isinstance(r.get("advantage"), (int, float)) for r in rows)
        adv = (
            np.array([float(r["advantage"]) for r in rows])
            if given
            else group_advantages(rewards[None, :], std_normalize)[0]
        )
        answers = []
        for i, (r, a) in enumerate(zip(rows, adv, strict=True)):
            tokens = token_strings(r["token_ids"], tok)
            answers.append(
                Answer(
                    index=int(r.get("index", i)),
                    tokens=tokens,
                    text="".join(tokens),
                    reward=float(r.get("reward", 0.0)),
                    length=int(r.get("length", len(tokens))),
                    advantage=float(a),
                    truncated=bool(r.get("truncated", False)),
                )
            )
        first = rows[0]
        prompt = f"numbers {first.get('numbers', '?')}, target {first.get('target', '?')}"
        out.append(Group(step, g, prompt, answers, advantages_recomputed=not given))
    return out


def relative_weights(
    groups: Sequence[Group],
    names: Sequence[str],
    max_len: int,
    alpha: float = 1.0,
    scope: str = "group",
) -> dict[str, np.ndarray]:
    """Each aggregator's weights B G M x for the groups taken as one batch, shape (B, G).

    The batch is the stored groups (a part of the step's batch): DAPO's token total and VL
    Norm's batch scope then run over these groups only.
    """
    sizes = {len(g.answers) for g in groups}
    if len(sizes) != 1:
        raise ValueError(f"the stored groups have different sizes {sorted(sizes)}; G must be equal")
    L = np.stack([g.lengths for g in groups])  # (B, G)
    B, G = L.shape
    return {n: B * G * max_len * weights(n, L, max_len, alpha, scope) for n in names}


def push_strips(group: Group, rel: Mapping[str, np.ndarray], row: int) -> dict[str, np.ndarray]:
    """Per aggregator a (G, T) array: each token's push (relative weight times advantage), NaN
    past the answer's end. rel is relative_weights(...); row is the group's row in it."""
    width = max(len(a.tokens) for a in group.answers)
    n_tokens = np.array([len(a.tokens) for a in group.answers])
    present = np.arange(width)[None, :] < n_tokens[:, None]  # (G, T)
    adv = group.advantages  # (G,)
    return {name: np.where(present, (w[row] * adv)[:, None], np.nan) for name, w in rel.items()}


def push_table(groups: Sequence[Group], rel: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per token and aggregator: group, answer, position, token, weight, push."""
    rows = []
    for b, group in enumerate(groups):
        for i, answer in enumerate(group.answers):
            for t, token in enumerate(answer.tokens):
                for name, w in rel.items():
                    rows.append(
                        {
                            "group": group.group,
                            "answer": answer.index,
                            "position": t,
                            "token": token,
                            "aggregator": name,
                            "weight": float(w[b, i]),
                            "push": float(w[b, i] * answer.advantage),
                        }
                    )
    return rows


def answer_totals(rel: Mapping[str, np.ndarray], group: Group, row: int) -> dict[str, np.ndarray]:
    """Each answer's total weight (relative weight times its length), shape (G,) per aggregator."""
    return {name: w[row] * group.lengths for name, w in rel.items()}
