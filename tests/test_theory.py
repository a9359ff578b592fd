"""Closed forms of DESIGN.md section 2, checked by hand and by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlsim.advantages import expected_squared_advantage, group_advantages
from vlsim.aggregators import weights
from vlsim.theory import (
    aggregator_figures,
    answer_variance,
    ar1_sum_variance,
    effective_beta,
    figures,
    optimal_weights,
)


def test_ar1_sum_variance_by_hand() -> None:
    rho = 0.5
    # Var(e1 + e2) = 2 + 2 rho; Var(e1 + e2 + e3) = 3 + 4 rho + 2 rho^2
    assert ar1_sum_variance(2, rho) == pytest.approx(2 + 2 * rho)
    assert ar1_sum_variance(3, rho) == pytest.approx(3 + 4 * rho + 2 * rho**2)
    np.testing.assert_allclose(ar1_sum_variance(np.arange(1, 50), 0.0), np.arange(1, 50))


def test_ar1_sum_variance_matches_simulation() -> None:
    rng = np.random.default_rng(0)
    rho, L, n = 0.8, 20, 200_000
    e = rng.standard_normal(n)
    total = e.copy()
    for _ in range(L - 1):
        e = rho * e + np.sqrt(1 - rho**2) * rng.standard_normal(n)
        total += e
    expected = ar1_sum_variance(L, rho)
    # The sample variance of n Gaussians has relative std sqrt(2/n) ~ 0.3%; allow 5 of those.
    assert total.var() == pytest.approx(expected, rel=5 * np.sqrt(2 / n))


def test_effective_beta_between_one_and_two() -> None:
    L = np.arange(1, 200)
    assert effective_beta(0.0, L) == pytest.approx(1.0)
    assert 1.0 < effective_beta(0.5, L) < effective_beta(0.9, L) < effective_beta(0.999, L) <= 2.0
    assert effective_beta(0.999, np.arange(1, 10)) == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError, match=r"rho must lie in \[0, 1\)"):
        ar1_sum_variance(3, 1.0)


def test_figures_single_group_by_hand() -> None:
    """One group [1, 3], M = 4, v = L: computed with fractions on paper."""
    L = np.array([[1, 3]])
    dr = aggregator_figures("dr_grpo", L, 4)
    # x = 1/8 each: sum x^2 L = 4/64, (sum x)^2 = 1/16 -> variance 1
    assert dr.variance == pytest.approx(1.0)
    assert dr.scale == pytest.approx(1.0)
    assert dr.ess == pytest.approx(2.0)
    vl = aggregator_figures("vl_norm", L, 4, alpha=1.0)
    # x = (3/16, 1/16): sum x^2 L = 12/256 -> variance 3/4; ESS = (1/16) / (10/256) = 1.6
    assert vl.variance == pytest.approx(0.75)
    assert vl.ess == pytest.approx(1.6)
    assert vl.efficiency == pytest.approx(1.0)
    assert dr.efficiency == pytest.approx(0.75)
    grpo = aggregator_figures("grpo", L, 4)
    # x = (1/2, 1/6): M sum x = 4 * 2/3
    assert grpo.scale == pytest.approx(8 / 3)
    assert grpo.cv == pytest.approx(np.sqrt(0.75))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=2, max_size=12))
def test_grpo_and_vl_norm_same_cv_inside_one_group(group: list[int]) -> None:
    L = np.array([group])
    g = aggregator_figures("grpo", L, 1000)
    v = aggregator_figures("vl_norm", L, 1000, alpha=1.0)
    assert g.cv == pytest.approx(v.cv, rel=1e-9)
    assert v.scale == pytest.approx(1.0)


def test_grpo_and_vl_norm_differ_across_groups_of_different_lengths() -> None:
    L = np.array([[10, 20], [100, 400]])
    g = aggregator_figures("grpo", L, 1000)
    v = aggregator_figures("vl_norm", L, 1000, alpha=1.0)
    assert abs(g.cv - v.cv) > 0.01
    assert v.efficiency == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 2000), min_size=4, max_size=4),
    st.floats(0.5, 2.0),
)
def test_optimal_alpha_equals_beta(lengths: list[int], beta: float) -> None:
    """With Var(g_i) = V L^beta, vl_norm is optimal exactly at alpha = beta."""
    L = np.array([lengths[:2], lengths[2:]])
    at_beta = aggregator_figures("vl_norm", L, 2000, alpha=beta, beta=beta)
    assert at_beta.efficiency == pytest.approx(1.0, rel=1e-9)
    for alpha in (0.0, beta / 2, min(beta + 0.5, 2.0)):
        other = aggregator_figures("vl_norm", L, 2000, alpha=alpha, beta=beta)
        assert other.variance >= at_beta.variance * (1 - 1e-9)


def test_optimal_weights_have_length_free_group_totals() -> None:
    v = answer_variance(np.array([[1, 4, 9], [2, 2, 50]]), rho=0.3)
    x = optimal_weights(v, 100)
    np.testing.assert_allclose(x.sum(axis=1), 1 / (2 * 100))


def test_scale_drift_counts_as_variance_over_length_draws() -> None:
    rng = np.random.default_rng(1)
    L = rng.integers(1, 100, size=(5000, 2, 4))
    for name in ("dr_grpo", "vl_norm"):
        assert aggregator_figures(name, L, 100).scale_drift == pytest.approx(0.0, abs=1e-12)
    dapo_free = figures(weights("dapo", L[0], 100), answer_variance(L[0]), 100)
    dapo = aggregator_figures("dapo", L, 100, grad_norm=1.0)
    noise_only = aggregator_figures("dapo", L, 100, grad_norm=0.0)
    assert dapo.scale_drift > 0 and dapo.variance > noise_only.variance
    assert np.isnan(noise_only.cv) and dapo_free.scale_drift == 0


@pytest.mark.parametrize("std_normalize", [True, False])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_expected_squared_advantage_matches_simulation(std_normalize: bool, p: float) -> None:
    rng = np.random.default_rng(2)
    r = (rng.random((200_000, 8)) < p).astype(float)
    mc = (group_advantages(r, std_normalize) ** 2).mean()
    assert mc == pytest.approx(expected_squared_advantage(p, 8, std_normalize), rel=0.01)


def test_batch_oracle_is_proportional_to_inverse_variance_over_the_batch() -> None:
    v = np.array([[1.0, 4.0], [2.0, 8.0]])
    x = optimal_weights(v, 10, scope="batch")
    # 1/v = (1, 1/4, 1/2, 1/8), sum 15/8 -> shares (8/15, 2/15, 4/15, 1/15), total 1/M
    np.testing.assert_allclose(x, np.array([[8, 2], [4, 1]]) / 15 / 10)
    with pytest.raises(ValueError, match="scope"):
        optimal_weights(v, 10, scope="prompt")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 2000), min_size=6, max_size=6), st.floats(0.0, 2.0))
def test_efficiency_is_at_most_one_for_length_free_steps(lengths: list[int], beta: float) -> None:
    """At either scope the oracle beats every weighting of its class; batch-scope VL Norm with
    alpha = beta is the batch oracle itself (efficiency 1, where a per-group oracle gave > 1)."""
    L = np.array([lengths[:3], lengths[3:]])
    for scope in ("group", "batch"):
        for name in ("dr_grpo", "seq_sum", "vl_norm"):
            for alpha in (0.0, 0.5, 1.0, 2.0):
                f = aggregator_figures(name, L, 2000, alpha=alpha, scope=scope, beta=beta)
                assert 0 < f.efficiency <= 1 + 1e-9, (scope, name, alpha)
        best = aggregator_figures("vl_norm", L, 2000, alpha=beta, scope=scope, beta=beta)
        assert best.efficiency == pytest.approx(1.0, rel=1e-9)
    for name in ("grpo", "dapo"):
        assert aggregator_figures(name, L, 2000, beta=beta).efficiency is None


def test_per_group_oracle_would_rate_batch_vl_norm_above_one() -> None:
    """Why the oracle's class follows the scope: batch VL Norm is not in the per-group class."""
    L = np.array([[10, 20], [300, 600]])
    x = weights("vl_norm", L, 1000, alpha=1.0, scope="batch")
    v = answer_variance(L)
    assert figures(x, v, 1000, scope="group").efficiency > 1.01
    assert figures(x, v, 1000, scope="batch").efficiency == pytest.approx(1.0)
