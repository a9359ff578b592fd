"""The Step Inspector's engine on synthetic sample records: groups, advantages, pushes."""

from __future__ import annotations

import numpy as np
import pytest

from vlsim.advantages import group_advantages
from vlsim.countdown import CharTokenizer
from vlsim.inspector import (
    answer_totals,
    groups_at,
    has_full_groups,
    push_strips,
    push_table,
    relative_weights,
    steps_with_groups,
    token_strings,
)

TOK = CharTokenizer()


def full_records(step: int = 10, with_advantage: bool = True) -> list[dict]:
    """Two groups of three answers in the new layout (group, index, advantage, token_ids)."""
    texts = [["1+2<eos>", "12+3=15<eos>", "x<eos>"], ["3*4<eos>", "4*3<eos>", "7-1=6;3*4<eos>"]]
    rewards = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
    out = []
    for g in range(2):
        adv = group_advantages(np.array([rewards[g]]), True)[0]
        for i in range(3):
            ids = TOK.encode(texts[g][i])
            record = {
                "numbers": [1, 2],
                "target": 3,
                "trace": "",
                "answer": texts[g][i],
                "reward": rewards[g][i],
                "length": len(ids),
                "truncated": False,
                "group": g,
                "index": i,
                "token_ids": ids,
                "step": step,
            }
            if with_advantage:
                record["advantage"] = float(adv[i]) * 2  # distinct from the recomputed ones
            out.append(record)
    return out


LEGACY = [
    {
        "numbers": [1, 2],
        "target": 3,
        "trace": "",
        "answer": "1+2",
        "reward": 1.0,
        "length": 4,
        "truncated": False,
        "step": 0,
    }
]


def test_legacy_records_have_no_full_groups():
    assert not has_full_groups(LEGACY)
    assert steps_with_groups(LEGACY) == []
    assert groups_at(LEGACY, 0) == []
    assert has_full_groups(full_records())


def test_token_strings_decode_each_id():
    ids = TOK.encode("12+3<eos>")
    assert token_strings(ids) == ["1", "2", "+", "3", "<eos>"]


def test_groups_read_back_in_order_with_stored_advantages():
    records = full_records()[::-1]  # any order
    groups = groups_at(records + LEGACY, 10)
    assert [g.group for g in groups] == [0, 1]
    assert [a.index for a in groups[0].answers] == [0, 1, 2]
    assert groups[0].answers[1].tokens[:3] == ["1", "2", "+"]
    assert groups[0].answers[1].text == "12+3=15<eos>"
    assert not groups[0].advantages_recomputed
    expected = 2 * group_advantages(np.array([[1.0, 0.0, 0.0]]), True)[0]
    assert np.allclose(groups[0].advantages, expected)


def test_missing_advantages_are_recomputed_from_rewards():
    groups = groups_at(full_records(with_advantage=False), 10, std_normalize=False)
    assert groups[1].advantages_recomputed
    assert np.allclose(groups[1].advantages, [1 / 3, 1 / 3, -2 / 3])


def test_relative_weights_dr_grpo_is_one_and_grpo_is_m_over_l():
    groups = groups_at(full_records(), 10)
    rel = relative_weights(groups, ["dr_grpo", "grpo", "vl_norm"], max_len=48, alpha=1.0)
    assert np.allclose(rel["dr_grpo"], 1.0)
    L = np.stack([g.lengths for g in groups])
    assert np.allclose(rel["grpo"], 48 / L)
    assert np.allclose(rel["vl_norm"].sum(axis=1), 3.0)  # G per group: the total of Dr. GRPO
    batch = relative_weights(groups, ["vl_norm"], 48, 1.0, "batch")["vl_norm"]
    assert batch.sum() == pytest.approx(6.0) and not np.allclose(batch.sum(axis=1), 3.0)


def test_push_strips_are_weight_times_advantage_and_nan_after_the_end():
    groups = groups_at(full_records(), 10)
    rel = relative_weights(groups, ["grpo", "dr_grpo"], max_len=48)
    strips = push_strips(groups[0], rel, 0)
    G, T = strips["grpo"].shape
    assert (3, max(len(a.tokens) for a in groups[0].answers)) == (G, T)
    a0 = groups[0].answers[0]
    assert np.allclose(strips["grpo"][0, : len(a0.tokens)], 48 / a0.length * a0.advantage)
    assert np.isnan(strips["grpo"][0, len(a0.tokens) :]).all()
    assert np.allclose(strips["dr_grpo"][2, :2], groups[0].answers[2].advantage)


def test_push_table_has_a_row_per_token_and_aggregator():
    groups = groups_at(full_records(), 10)
    rel = relative_weights(groups, ["grpo", "dapo"], max_len=48)
    rows = push_table(groups, rel)
    n_tokens = sum(len(a.tokens) for g in groups for a in g.answers)
    assert len(rows) == 2 * n_tokens
    row = next(
        r for r in rows if r["group"] == 1 and r["answer"] == 2 and r["aggregator"] == "dapo"
    )
    assert row["push"] == pytest.approx(row["weight"] * groups[1].answers[2].advantage)
    totals = answer_totals(rel, groups[1], 1)
    assert np.allclose(totals["grpo"], 48.0)  # M/L times L


def test_unequal_group_sizes_are_refused():
    records = full_records()[:-1]  # the second group lost an answer
    both = groups_at(records, 10, group_size=3) + groups_at(records, 10, group_size=2)
    with pytest.raises(ValueError, match="different sizes"):
        relative_weights(both, ["grpo"], 48)


def test_only_full_groups_are_read_beside_one_answer_of_each_other_group():
    """A run stores its first groups in full and one answer of every other prompt."""
    records = full_records()
    for g in (2, 3, 4):  # one answer of each further group, with every full-group key
        records.append({**records[0], "group": g, "index": 0})
    for group_size in (3, None):  # the run's G, or inferred from the largest group
        groups = groups_at(records, 10, group_size=group_size)
        assert [grp.group for grp in groups] == [0, 1]
        assert all(len(grp.answers) == 3 for grp in groups)
    rel = relative_weights(groups_at(records, 10, group_size=3), ["grpo", "vl_norm"], 48)
    assert rel["grpo"].shape == (2, 3)
