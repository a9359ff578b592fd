"""Question templates become sweep specs, without any page."""

from __future__ import annotations

import pytest

from vlsim.sweeps import SweepError, conditions, expand
from vlsim.sweeps.questions import Question, question_spec


def test_a_vs_b_compares_two_aggregators_with_every_seed() -> None:
    spec = question_spec(Question(template="ab", a="dapo", b="vl_norm", seeds=3, steps=50), "q")
    assert spec.name == "q" and spec.seeds == [0, 1, 2]
    assert [label for label, _ in conditions(spec)] == ["dapo", "vl_norm"]
    assert spec.question.startswith("Does VL Norm reach held-out accuracy (sampled mean@k) 0.25")
    assert "than DAPO" in spec.question
    plan = expand(spec)
    assert len(plan) == 6 and {p.config["steps"] for p in plan} == {50}
    assert {p.config["eval_every"] for p in plan} == {5}  # a tenth of the budget


def test_the_same_aggregator_twice_is_refused() -> None:
    with pytest.raises(SweepError, match="two different aggregators"):
        question_spec(Question(template="ab", a="grpo", b="grpo"))


def test_group_size_question_compares_b_with_a_at_each_g() -> None:
    spec = question_spec(Question(template="group_size", a="grpo", b="vl_norm", sizes=[4, 8]))
    assert spec.analysis.pairs == [
        ("grpo · group_size=4", "vl_norm · group_size=4"),
        ("grpo · group_size=8", "vl_norm · group_size=8"),
    ]
    assert "change with G" in spec.question


def test_alpha_question_sweeps_vl_norm_against_a_baseline() -> None:
    spec = question_spec(Question(template="alpha", a="dapo", alphas=[0.0, 1.0]))
    assert [label for label, _ in conditions(spec)] == [
        "dapo",
        "vl_norm · alpha=0",
        "vl_norm · alpha=1",
    ]


def test_grid_box_errors_name_the_problem() -> None:
    with pytest.raises(SweepError, match="did you mean 'lr'"):
        question_spec(Question(template="grid", grid="grid:\n  lrr: [0.1, 0.2]\n"))
    with pytest.raises(SweepError, match="may set"):
        question_spec(Question(template="grid", grid="seeds: [1]\n"))
    lab = question_spec(
        Question(template="grid", grid="kind: lab\nbase: {n_batches: 100}\ngrid: {alpha: [0, 1]}\n")
    )
    assert lab.kind == "lab" and lab.analysis.threshold is None
