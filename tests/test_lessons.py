"""The lessons' mathematics: closed forms against direct sums, the numeric minimiser against the
Lagrange solution, and slopes read from probe records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlsim import lessons
from vlsim.lessons import (
    alpha_from_slope,
    closed_form_weights,
    example_group,
    lagrange_multiplier,
    numeric_minimiser,
    probe_slopes,
    reference_slopes,
    step_size,
    step_size_closed_form,
    stretch_curve,
    stretch_lengths,
    token_push,
    variance_by_alpha,
    weighted_variance,
)

NAMES = ["grpo", "dapo", "dr_grpo", "seq_sum", "vl_norm"]


def test_example_group_advantages_by_hand():
    g = example_group((8, 16, 24, 48), (1, 1, 0, 0))
    # mean 0.5, centred +-0.5, Bessel std sqrt(4 * 0.25 / 3) = 0.57735
    assert np.allclose(g.advantages, np.array([1, 1, -1, -1]) * 0.5 / (np.sqrt(1 / 3) + 1e-4))


def test_example_group_rejects_mismatched_input():
    with pytest.raises(ValueError, match="one reward each"):
        example_group((8, 16), (1, 0, 1))


def test_step_sizes_by_hand():
    L, M = [10, 20, 40, 80], 100
    assert step_size(L, M, "grpo") == pytest.approx(100 * np.mean([0.1, 0.05, 0.025, 0.0125]))
    assert step_size(L, M, "dapo") == pytest.approx(100 / 37.5)
    assert step_size(L, M, "dr_grpo") == pytest.approx(1.0)
    assert step_size(L, M, "seq_sum") == pytest.approx(100.0)
    assert step_size(L, M, "vl_norm", alpha=0.7) == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 200), min_size=2, max_size=12),
    st.sampled_from(NAMES),
)
def test_step_size_equals_closed_form(lengths, name):
    assert step_size(lengths, 4096, name) == pytest.approx(
        step_size_closed_form(lengths, 4096, name)
    )


def test_stretching_by_an_integer_divides_biased_steps_exactly():
    L, M = [3, 7, 12, 30], 4096
    for s in (2, 3, 5):
        stretched = stretch_lengths(L, s, M)
        assert stretched.tolist() == [v * s for v in L]
        for name in ("grpo", "dapo"):
            assert step_size(stretched, M, name) == pytest.approx(step_size(L, M, name) / s)
        for name in ("dr_grpo", "vl_norm", "seq_sum"):
            assert step_size(stretched, M, name) == pytest.approx(step_size(L, M, name))
    curve = stretch_curve(L, [1, 2, 4], M, NAMES)
    assert np.allclose(curve["grpo"], [1, 0.5, 0.25])
    assert np.allclose(curve["dapo"], [1, 0.5, 0.25])
    assert np.allclose(curve["vl_norm"], 1) and np.allclose(curve["dr_grpo"], 1)


def test_stretch_keeps_lengths_in_range():
    assert stretch_lengths([1, 50, 90], 3, 100).tolist() == [3, 100, 100]
    assert stretch_lengths([1, 5], 0.01, 100).tolist() == [1, 1]
    with pytest.raises(ValueError, match="positive"):
        stretch_lengths([1], 0, 100)


def test_token_push_is_weight_times_advantage_and_nan_past_the_end():
    g = example_group((2, 4), (1, 0))
    push = token_push(g, 10, ["grpo", "dr_grpo"])
    assert push["grpo"].shape == (2, 4)
    assert np.isnan(push["grpo"][0, 2:]).all() and not np.isnan(push["grpo"][1]).any()
    # grpo: x = 1/(G L) = 1/4 and 1/8; M x A
    assert push["grpo"][0, 0] == pytest.approx(10 * 0.25 * g.advantages[0])
    assert push["dr_grpo"][1, 3] == pytest.approx(10 * (1 / 20) * g.advantages[1])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 500), min_size=2, max_size=10),
    st.floats(0.0, 2.0),
)
def test_numeric_minimiser_matches_lagrange(lengths, beta):
    check = numeric_minimiser(lengths, beta, total=1 / 64)
    assert check.success, check.message
    assert check.max_abs_diff < 1e-5
    assert check.numeric.sum() == pytest.approx(1 / 64)
    assert check.numeric_variance == pytest.approx(check.closed_variance, rel=1e-6)


def test_lagrange_stationarity_and_optimality():
    L = np.array([5, 20, 80, 300])
    beta, total = 1.3, 2.0
    x = closed_form_weights(L, beta, total)
    lam = lagrange_multiplier(L, beta, total)
    assert np.allclose(2 * x * L**beta, lam)  # d/dx_i (sum x^2 L^beta - lam sum x) = 0
    assert x.sum() == pytest.approx(total)
    rng = np.random.default_rng(0)
    for _ in range(200):  # every other feasible x has more variance
        d = rng.normal(size=L.size)
        d -= d.mean()
        assert weighted_variance(x + 0.01 * d, L, beta) > weighted_variance(x, L, beta)


def test_variance_by_alpha_is_least_at_beta():
    L = [4, 9, 30, 120, 400]
    alphas = np.round(np.arange(0, 2.01, 0.05), 2)
    for beta in (0.5, 1.0, 1.5):
        ratio = variance_by_alpha(L, beta, alphas)
        assert ratio.min() == pytest.approx(1.0)
        assert alphas[int(np.argmin(ratio))] == pytest.approx(beta)
        assert (ratio >= 1 - 1e-12).all()


def test_probe_slopes_prefer_the_advantage_free_fit():
    probes = [
        {"step": 0, "length_noise": {"slope": 1.4, "ci_low": 1.0, "ci_high": 1.8}},
        {
            "step": 10,
            "length_noise": {"slope": 1.4},
            "length_noise_free": {"slope": 1.1, "ci_low": 0.9, "ci_high": None},
        },
        {"step": 20, "length_noise": {"slope": None}},
        {"step": 30},
    ]
    out = probe_slopes(probes, "run 1")
    assert [(s.step, s.slope, s.key) for s in out] == [
        (0, 1.4, "length_noise"),
        (10, 1.1, "length_noise_free"),
    ]
    assert out[1].ci_high is None


def test_alpha_from_slope_clips_and_rounds():
    assert alpha_from_slope(1.137) == pytest.approx(1.15)
    assert alpha_from_slope(-0.3) == 0.0
    assert alpha_from_slope(3.2) == 2.0


def test_reference_slopes_reads_an_export_list(tmp_path):
    doc = {
        "run": {"name": "r"},
        "metrics": [],
        "probes": [{"step": 5, "length_noise": {"slope": 0.9}}],
    }
    path = tmp_path / "runs.json"
    path.write_text(json.dumps([doc]))
    out = reference_slopes(path)
    assert [(s.source, s.step, s.slope) for s in out] == [("reference: r", 5, 0.9)]
    assert reference_slopes(tmp_path / "missing.json") == []


def test_bundled_reference_runs_have_slopes():
    assert lessons.REFERENCE_RUNS.exists(), "docs/reference_runs/runs.json is missing"
    assert lessons.REFERENCE_RUNS.stat().st_size < 2_000_000
    slopes = reference_slopes()
    assert slopes and all(np.isfinite(s.slope) for s in slopes)


def test_lesson2_drift_grpo_shrinks_vl_norm_stays():
    from vlsim.montecarlo import run_lab

    start = run_lab(lessons.lesson2_config(n_batches=200))
    grown = run_lab(lessons.lesson2_config(stretch=2.0, n_batches=200))
    rows = {r["name"]: r for r in lessons.drift_rows(start, grown)}
    assert rows["vl_norm"]["ratio"] == pytest.approx(1.0)
    assert rows["dr_grpo"]["ratio"] == pytest.approx(1.0)
    assert rows["grpo"]["ratio"] == pytest.approx(0.5, rel=0.05)
    assert rows["dapo"]["ratio"] == pytest.approx(0.5, rel=0.05)


def test_parse_group_lengths():
    assert lessons.parse_group_lengths("10, 30 60") == [10, 30, 60]
    for bad, message in (
        ("10", "between 2 and"),
        ("10 2.5", "whole numbers"),
        ("10 abc", "not a number"),
        ("0 5", "whole numbers"),
    ):
        with pytest.raises(ValueError, match=message):
            lessons.parse_group_lengths(bad)
