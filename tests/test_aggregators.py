"""Weights and aggregation of every aggregator: hand-computed cases, invariants, bad input."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vlsim.aggregators import AGGREGATORS, aggregate, group_sums, weights

# Two groups (B = 2) of two answers (G = 2), M = 8.
LENGTHS = [[1, 3], [2, 6]]
M = 8


def as_float(rows: list[list[Fraction]]) -> np.ndarray:
    return np.array([[float(v) for v in row] for row in rows])


def test_grpo_by_hand() -> None:
    # x = 1 / (B G L)
    expected = [[Fraction(1, 4 * 1), Fraction(1, 4 * 3)], [Fraction(1, 4 * 2), Fraction(1, 4 * 6)]]
    np.testing.assert_allclose(weights("grpo", LENGTHS, M), as_float(expected), rtol=1e-12)


def test_dapo_by_hand() -> None:
    # x = 1 / (all tokens) = 1 / 12
    np.testing.assert_allclose(weights("dapo", LENGTHS, M), np.full((2, 2), 1 / 12), rtol=1e-12)


def test_dr_grpo_and_seq_sum_by_hand() -> None:
    np.testing.assert_allclose(weights("dr_grpo", LENGTHS, M), np.full((2, 2), 1 / 32))
    np.testing.assert_allclose(weights("seq_sum", LENGTHS, M), np.full((2, 2), 1 / 4))


def test_vl_norm_group_by_hand() -> None:
    # alpha = 1: group 1 has 1/L = (1, 1/3), share (3/4, 1/4); group 2 (1/2, 1/6) -> (3/4, 1/4).
    # Each group's total is 1/(B M) = 1/16.
    expected = [[Fraction(3, 64), Fraction(1, 64)], [Fraction(3, 64), Fraction(1, 64)]]
    np.testing.assert_allclose(
        weights("vl_norm", LENGTHS, M, alpha=1.0), as_float(expected), rtol=1e-12
    )


def test_vl_norm_batch_by_hand() -> None:
    # alpha = 1 over all four answers: 1/L = (1, 1/3, 1/2, 1/6), sum 2; total 1/M = 1/8.
    expected = [[Fraction(1, 16), Fraction(1, 48)], [Fraction(1, 32), Fraction(1, 96)]]
    np.testing.assert_allclose(
        weights("vl_norm", LENGTHS, M, alpha=1.0, scope="batch"), as_float(expected), rtol=1e-12
    )


def test_vl_norm_alpha_two_by_hand() -> None:
    # alpha = 2, one group [1, 2]: 1/L^2 = (1, 1/4) -> shares (4/5, 1/5), total 1/M.
    np.testing.assert_allclose(
        weights("vl_norm", [[1, 2]], 10, alpha=2.0), [[0.8 / 10, 0.2 / 10]], rtol=1e-12
    )


def test_registry_is_complete() -> None:
    assert set(AGGREGATORS) == {"grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm"}
    for info in AGGREGATORS.values():
        assert info.latex.startswith("x_{k,i}") and info.description and info.display_name
    step = {n for n, i in AGGREGATORS.items() if i.length_free_step}
    direction = {n for n, i in AGGREGATORS.items() if i.length_free_direction}
    assert step == {"dr_grpo", "seq_sum", "vl_norm"}
    assert direction == {"dr_grpo", "seq_sum"}
    assert direction <= step  # weights that ignore lengths have a length-free total too


@pytest.mark.parametrize("scope", ["group", "batch"])
@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_registry_flags_match_the_weights(name: str, scope: str) -> None:
    """length_free_step: the batch total is the same for any lengths; length_free_direction:
    the weights themselves ignore the lengths (checked on random batches, VL Norm at alpha 1)."""
    rng = np.random.default_rng(3)
    batches = rng.integers(1, 501, size=(20, 3, 4))
    x = np.stack([weights(name, L, 500, alpha=1.0, scope=scope) for L in batches])  # (20, 3, 4)
    totals = x.sum(axis=(1, 2))
    assert np.allclose(totals, totals[0], rtol=1e-12) == AGGREGATORS[name].length_free_step
    assert np.allclose(x, x[0], rtol=1e-12) == AGGREGATORS[name].length_free_direction


@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_aggregate_equals_weighted_sum_and_its_gradient(name: str) -> None:
    """aggregate() is sum_i x_i sum_t loss m, and its gradient is sum_i x_i grad(per-answer sum)."""
    torch.manual_seed(0)
    group_size, T = 3, 7
    lengths = torch.tensor([1, 4, 7, 2, 2, 5])  # (N,), N = 2 groups of 3
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (N, T)
    theta = torch.randn(5, requires_grad=True)
    features = torch.randn(6, T, 5)  # (N, T, D)
    token_loss = (features * theta).sum(-1) ** 2  # (N, T), depends on theta
    loss = aggregate(name, token_loss, mask, group_size, max_len=T, alpha=1.0)
    x = weights(name, lengths.reshape(2, 3).numpy(), T).reshape(-1)
    per_answer = (token_loss * mask).sum(1)  # (N,)
    weighted = float((torch.as_tensor(x) * per_answer.detach()).sum())
    assert loss.item() == pytest.approx(weighted, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, theta, retain_graph=True)
    expected = torch.zeros(5)
    for i in range(6):
        (g_i,) = torch.autograd.grad(per_answer[i], theta, retain_graph=True)
        expected += float(x[i]) * g_i
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)


def test_aggregate_ignores_masked_tokens() -> None:
    token_loss = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    # grpo, one group of two: x = 1/(2 L): 3/(2*2) + 3/(2*1) = 0.75 + 1.5
    assert aggregate("grpo", token_loss, mask, 2, 3).item() == pytest.approx(2.25)


# ---------------------------------------------------------------- properties

lengths_strategy = st.integers(1, 4).flatmap(
    lambda b: st.integers(2, 6).flatmap(
        lambda g: arrays(np.int64, (b, g), elements=st.integers(1, 500))
    )
)
alphas = st.floats(0.0, 2.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(lengths_strategy, st.sampled_from(["group", "batch"]))
def test_alpha_zero_equals_dr_grpo(L: np.ndarray, scope: str) -> None:
    np.testing.assert_allclose(
        weights("vl_norm", L, 500, alpha=0.0, scope=scope), weights("dr_grpo", L, 500), rtol=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(lengths_strategy, lengths_strategy, alphas)
def test_length_free_group_sums_do_not_depend_on_lengths(
    L1: np.ndarray, L2: np.ndarray, alpha: float
) -> None:
    """dr_grpo, seq_sum and vl_norm(group) give every group the same total, whatever the lengths."""
    L2 = np.resize(L2, L1.shape)
    for name in ("dr_grpo", "seq_sum", "vl_norm"):
        s1 = group_sums(name, L1, 500, alpha=alpha)
        s2 = group_sums(name, L2, 500, alpha=alpha)
        np.testing.assert_allclose(s1, s2, rtol=1e-10)
        np.testing.assert_allclose(s1, s1[0], rtol=1e-10)
    B = L1.shape[0]
    np.testing.assert_allclose(group_sums("vl_norm", L1, 500, alpha), 1 / (B * 500), rtol=1e-10)
    total = weights("vl_norm", L1, 500, alpha, scope="batch").sum()
    assert total == pytest.approx(1 / 500, rel=1e-10)


@settings(max_examples=60, deadline=None)
@given(lengths_strategy, st.integers(1, 200))
def test_grpo_and_dapo_shrink_when_every_length_grows(L: np.ndarray, extra: int) -> None:
    longer = L + extra
    for name in ("grpo", "dapo"):
        assert weights(name, longer, 1000).sum() < weights(name, L, 1000).sum()


@settings(max_examples=60, deadline=None)
@given(
    lengths_strategy,
    st.lists(st.floats(0.01, 10.0), min_size=1, max_size=30),
)
def test_vl_norm_alpha_one_has_the_least_variance(L: np.ndarray, noise: list[float]) -> None:
    """Among weights with the same group sums, x ~ 1/L minimises sum x^2 L (Lagrange)."""
    x_vl = weights("vl_norm", L, 500, alpha=1.0)
    best = (x_vl**2 * L).sum()
    B, G = L.shape
    # Any other weighting with the same group sums: perturb by a zero-sum direction per group.
    direction = np.resize(np.asarray(noise), L.shape)
    direction = direction - direction.mean(axis=1, keepdims=True)
    for step in (-1e-3, 1e-3, 1e-2):
        other = x_vl + step * direction / (B * 500)
        np.testing.assert_allclose(other.sum(axis=1), x_vl.sum(axis=1), rtol=1e-9, atol=1e-15)
        assert (other**2 * L).sum() >= best * (1 - 1e-12)
    for name in ("grpo", "dr_grpo", "dapo"):
        x = weights(name, L, 500)
        x = x * (x_vl.sum(axis=1, keepdims=True) / x.sum(axis=1, keepdims=True))
        assert (x**2 * L).sum() >= best * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(lengths_strategy, alphas)
def test_vl_norm_is_proportional_to_inverse_power_within_groups(
    L: np.ndarray, alpha: float
) -> None:
    x = weights("vl_norm", L, 500, alpha=alpha)
    ratio = x * L.astype(float) ** alpha
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-9)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lengths": [[0, 3]]}, "at least 1 token"),
        ({"lengths": [[-2, 3]]}, "at least 1 token"),
        ({"lengths": [[3, 9]]}, "exceeds max_len"),
        ({"lengths": [[1, 2], [3]]}, "rectangular"),
        ({"lengths": [1, 2, 3]}, "shape (B, G)"),
        ({"lengths": [[1.5, 2]]}, "whole numbers"),
        ({"lengths": [["a", "b"]]}, "integers"),
        ({"name": "ppo"}, "unknown aggregator 'ppo'"),
        ({"alpha": 2.5}, "alpha must be between 0 and 2"),
        ({"alpha": -0.1}, "alpha must be between 0 and 2"),
        ({"alpha": float("nan")}, "alpha must be between"),
        ({"scope": "global"}, "scope must be 'group' or 'batch'"),
        ({"max_len": 0}, "max_len (M) must be a positive integer"),
    ],
)
def test_bad_input_raises_clear_value_error(kwargs: dict, message: str) -> None:
    args = {"name": "vl_norm", "lengths": [[1, 2]], "max_len": 8, "alpha": 1.0, "scope": "group"}
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        weights(**args)
    assert message in str(info.value)


def test_aggregate_rejects_rows_not_divisible_by_group_size() -> None:
    with pytest.raises(ValueError, match="multiple of G"):
        aggregate("grpo", torch.ones(5, 4), torch.ones(5, 4, dtype=torch.bool), 2, 4)


def test_aggregate_rejects_empty_answers() -> None:
    mask = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match="at least 1 token"):
        aggregate("grpo", torch.ones(2, 2), mask, 2, 4)
