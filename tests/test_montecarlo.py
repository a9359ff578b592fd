"""The Length Lab Monte Carlo agrees with the closed forms and shows the paper's point."""

from __future__ import annotations

import pytest

from vlsim.config import LabConfig
from vlsim.montecarlo import OPTIMAL, run_lab, run_sweep

FAMILIES = [
    {"kind": "fixed", "length": 300},
    {"kind": "uniform", "low": 20, "high": 1500},
    {"kind": "normal", "mean": 400, "std": 150},
    {"kind": "lognormal", "median": 300, "sigma": 0.8},
    {"kind": "mixture"},
    {"kind": "pareto", "minimum": 50, "shape": 1.1},
    {"kind": "empirical", "lengths": [5, 17, 60, 61, 300, 1200, 2048]},
]
N_SE = 4.0  # Monte Carlo estimates must lie within 4 standard errors of the closed form


def close(mc: float, se: float, theory: float, rel: float = 0.0) -> bool:
    return abs(mc - theory) <= N_SE * se + rel * abs(theory) + 1e-12


@pytest.mark.parametrize("rho", [0.0, 0.9], ids=["independent", "correlated"])
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f["kind"])
def test_monte_carlo_agrees_with_closed_forms(family: dict, rho: float) -> None:
    cfg = LabConfig(lengths=family, max_len=2048, n_batches=4000, rho=rho, seed=1)
    result = run_lab(cfg)
    for r in result.results:
        # dapo's closed form is second order in 1/N, hence a small relative allowance.
        assert close(
            r.scale, r.scale_se, r.scale_theory, rel=0.01 if r.name == "dapo" else 0.002
        ), r
        assert close(r.noise_variance, r.noise_variance_se, r.noise_variance_theory), r
    assert result.theory_exact


@pytest.mark.parametrize("rho", [0.0, 0.7])
def test_token_mode_agrees_with_exact_mode(rho: float) -> None:
    base = dict(
        lengths={"kind": "uniform", "low": 1, "high": 48},
        max_len=48,
        n_groups=2,
        group_size=4,
        dim=4,
        n_batches=3000,
        rho=rho,
        token_noise=0.3,
    )
    exact = run_lab(LabConfig(**base, mode="exact", seed=5)).by_name()
    tokens = run_lab(LabConfig(**base, mode="tokens", seed=6)).by_name()
    for name, e in exact.items():
        t = tokens[name]
        se = (e.noise_variance_se**2 + t.noise_variance_se**2) ** 0.5
        assert abs(e.noise_variance - t.noise_variance) <= N_SE * se, name
        # tokens mode also matches the closed form on its own
        assert close(t.noise_variance, t.noise_variance_se, t.noise_variance_theory), name


def test_defaults_show_the_papers_point() -> None:
    """Long-tailed lengths: grpo/dapo biased in scale, dr_grpo noisy, vl_norm unbiased and best."""
    r = run_lab(LabConfig(n_batches=5000)).by_name()
    assert r["grpo"].scale > 2 and r["dapo"].scale > 2
    assert r["dr_grpo"].scale == pytest.approx(1) and r["vl_norm"].scale == pytest.approx(1)
    assert r["dr_grpo"].efficiency < 0.6
    assert r["vl_norm"].efficiency > 0.95
    assert r["vl_norm"].variance < 0.6 * r["dr_grpo"].variance
    assert r[OPTIMAL].efficiency == pytest.approx(1.0)


def test_direction_bias_appears_only_when_length_and_correctness_correlate() -> None:
    neutral = run_lab(LabConfig(n_batches=3000, length_slope=0.0)).by_name()
    for r in neutral.values():
        assert r.cosine > 0.999
    tied = run_lab(LabConfig(n_batches=3000, length_slope=-2.0, length_drive=2.0)).by_name()
    # Constant weights follow the true gradient; 1/L-type weights tilt it.
    assert tied["dr_grpo"].cosine > 0.999 and tied["seq_sum"].cosine > 0.999
    assert tied["grpo"].direction_bias > 10 * tied["dr_grpo"].direction_bias
    # Long answers are more often wrong, so the true gradient shortens answers. Weights ~ 1/L
    # mute the long wrong answers and shorten them less: a tilt toward 'longer' (Dr. GRPO's
    # length-bias argument), for GRPO and for VL Norm alike.
    assert result_tilts_longer(tied["grpo"]) and result_tilts_longer(tied["vl_norm"])
    assert tied["dr_grpo"].length_tilt_deg == pytest.approx(0, abs=0.3)


def result_tilts_longer(r) -> bool:
    return r.length_tilt_deg > N_SE * r.length_tilt_se


def test_sweep_over_mean_length_shows_scale_drift() -> None:
    cfg = LabConfig(n_batches=1000, lengths={"kind": "lognormal", "median": 100, "sigma": 0.5})
    points = run_sweep(cfg, "length_scale", [0.5, 1.0, 2.0, 4.0])
    lengths = [p.mean_length for p in points]
    assert lengths == sorted(lengths)
    grpo = [p.result.by_name()["grpo"].scale for p in points]
    dr = [p.result.by_name()["dr_grpo"].scale for p in points]
    assert grpo == sorted(grpo, reverse=True) and grpo[0] > 3 * grpo[-1]
    assert dr == pytest.approx([1.0] * 4)


def test_best_alpha_tracks_token_correlation() -> None:
    """Sweeping alpha: the least token-noise variance is near 1 for rho = 0, higher for rho > 0."""

    def best_alpha(rho: float) -> float:
        cfg = LabConfig(n_batches=500, rho=rho, aggregators=["vl_norm"])
        alphas = [0.0, 0.5, 1.0, 1.5, 2.0]
        pts = run_sweep(cfg, "alpha", alphas)
        noise = [p.result.by_name()["vl_norm"].noise_variance_theory for p in pts]
        return alphas[noise.index(min(noise))]

    assert best_alpha(0.0) == 1.0
    assert best_alpha(0.99) > 1.0


def test_same_seed_same_numbers() -> None:
    cfg = LabConfig(n_batches=500, seed=9)
    assert run_lab(cfg).results == run_lab(cfg).results


def test_bad_config_is_rejected_with_field_names() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="alpha"):
        LabConfig(alpha=3)
    with pytest.raises(ValidationError, match="unknown aggregator"):
        LabConfig(aggregators=["grpo", "ppo"])
    with pytest.raises(ValidationError, match="group_size"):
        LabConfig(group_size=1)


def test_oversized_lab_is_refused_before_it_runs() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="simulated answers"):
        LabConfig(n_batches=1_000_000, n_groups=100)
