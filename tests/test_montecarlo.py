"""The Length Lab Monte Carlo agrees with the closed forms and shows the paper's point."""

from __future__ import annotations

import pytest

from vlsim.config import LabConfig
from vlsim.montecarlo import OPTIMAL, best_alpha, run_lab, run_sweep, sweep_config

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
    cfg = LabConfig(lengths=family, max_len=2048, n_batches=4000, rho=rho, seed=1, length_slope=0.0)
    result = run_lab(cfg)
    for r in result.results:
        # dapo's closed form is second order in 1/N, hence a small relative allowance.
        assert close(
            r.scale, r.scale_se, r.scale_theory, rel=0.01 if r.name == "dapo" else 0.002
        ), r
        assert close(r.noise_variance, r.noise_variance_se, r.noise_variance_theory), r
        assert close(
            r.relative_scale,
            r.relative_scale_se,
            r.relative_scale_theory,
            rel=0.01 if r.name == "dapo" else 0.002,
        ), r
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
        length_slope=0.0,
    )
    exact = run_lab(LabConfig(**base, mode="exact", seed=5)).by_name()
    tokens = run_lab(LabConfig(**base, mode="tokens", seed=6)).by_name()
    for name, e in exact.items():
        t = tokens[name]
        se = (e.noise_variance_se**2 + t.noise_variance_se**2) ** 0.5
        assert abs(e.noise_variance - t.noise_variance) <= N_SE * se, name
        # tokens mode also matches the closed form on its own
        assert close(t.noise_variance, t.noise_variance_se, t.noise_variance_theory), name


def test_defaults_show_drift_direction_and_noise() -> None:
    """The default scenario (answers 4x longer than at the reference, long answers more often
    wrong) shows each face honestly: GRPO's and DAPO's step shrinks with the lengths, every
    length-dependent weighting tilts (VL Norm nearly as much as GRPO), only Dr. GRPO and the
    sequence sum keep the direction, and VL Norm has the least token noise but gains less in
    total variance, since the reward-sampling part favours equal weights."""
    r = run_lab(LabConfig(n_batches=5000)).by_name()
    for name in ("grpo", "dapo"):  # the step moved with the lengths: about 1/4 of the reference
        assert 0.2 < r[name].relative_scale < 0.3 and r[name].drift < -0.7
        assert r[name].efficiency is None and r[name].efficiency_theory is None
    for name in ("dr_grpo", "seq_sum", "vl_norm", OPTIMAL):
        assert r[name].relative_scale == pytest.approx(1.0, abs=1e-9)
        assert r[name].batch_drift == pytest.approx(0.0, abs=1e-9)
    assert r["grpo"].batch_drift > 0.02 and r["dapo"].batch_drift > 0.02
    # Direction: length-dependent weights tilt, length-free ones do not.
    assert r["grpo"].angle_deg > 5 and r["vl_norm"].angle_deg > 5
    assert r["vl_norm"].angle_deg > 0.6 * r["grpo"].angle_deg
    assert r["dr_grpo"].angle_deg < 0.05 and r["seq_sum"].angle_deg < 0.05
    # Noise: VL Norm near the oracle on token noise, Dr. GRPO well below it.
    assert r["vl_norm"].efficiency > 0.95 and r["dr_grpo"].efficiency < 0.7
    assert r["vl_norm"].noise_variance < 0.7 * r["dr_grpo"].noise_variance
    ratio_total = r["vl_norm"].variance / r["dr_grpo"].variance
    ratio_noise = r["vl_norm"].noise_variance / r["dr_grpo"].noise_variance
    assert ratio_noise < ratio_total < 1.0
    assert r[OPTIMAL].efficiency == pytest.approx(1.0)


def test_batch_scope_efficiency_is_at_most_one() -> None:
    """Batch scope: the oracle is x ~ 1/v over the batch, which batch VL Norm(1) equals."""
    res = run_lab(LabConfig(n_batches=4000, scope="batch", length_slope=0.0)).by_name()
    for name in ("dr_grpo", "seq_sum", "vl_norm"):
        r = res[name]
        assert r.efficiency <= 1 + N_SE * r.efficiency_se, r
        assert r.efficiency_theory <= 1 + 1e-9
    assert res["vl_norm"].efficiency_theory == pytest.approx(1.0, rel=1e-9)
    assert res["grpo"].efficiency is None


def test_dr_grpo_beats_vl_norm_in_total_variance_when_answer_noise_dominates() -> None:
    """'Least variance' holds for the token-noise term only: when the per-answer signal noise
    (which does not grow with length) dominates, equal weights (Dr. GRPO) give less total
    variance than VL Norm(1), although VL Norm still has less token noise."""
    cfg = LabConfig(n_batches=4000, token_noise=0.002, length_drive=0.0, length_slope=0.0)
    r = run_lab(cfg).by_name()
    dr, vl = r["dr_grpo"], r["vl_norm"]
    se = (dr.variance_se**2 + vl.variance_se**2) ** 0.5
    assert dr.variance < vl.variance - N_SE * se
    assert vl.noise_variance < dr.noise_variance


def test_total_variance_favours_a_smaller_alpha_than_token_noise() -> None:
    """At the defaults the token-noise part is least at alpha = beta = 1; the total (with the
    reward-sampling part) is least at a smaller alpha."""
    cfg = LabConfig(n_batches=1500, aggregators=["vl_norm"])
    points = run_sweep(cfg, "alpha", [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
    assert best_alpha(points, "noise_variance_theory") == 1.0
    assert best_alpha(points, "variance") < 1.0


def test_direction_bias_appears_only_when_length_and_correctness_correlate() -> None:
    neutral = run_lab(LabConfig(n_batches=3000, length_slope=0.0)).by_name()
    for r in neutral.values():
        assert r.cosine > 0.999
    tied = run_lab(
        LabConfig(
            n_batches=3000,
            length_slope=-2.0,
            length_drive=2.0,
            lengths={"kind": "pareto", "minimum": 50, "shape": 1.1},
        )
    ).by_name()
    # Constant weights follow the true gradient; 1/L-type weights tilt it.
    assert tied["dr_grpo"].cosine > 0.999 and tied["seq_sum"].cosine > 0.999
    assert tied["grpo"].direction_bias > 10 * tied["dr_grpo"].direction_bias
    # Long-tailed lengths, long answers more often wrong: the true gradient shortens answers.
    # Weights ~ 1/L mute the long wrong answers and shorten them less: a tilt toward 'longer'
    # (Dr. GRPO's length-bias argument), for GRPO and for VL Norm alike. (The sign depends on
    # the length distribution: on the default log-normal lengths both tilt toward shorter.)
    assert result_tilts_longer(tied["grpo"]) and result_tilts_longer(tied["vl_norm"])
    assert tied["dr_grpo"].length_tilt_deg == pytest.approx(0, abs=0.3)


def result_tilts_longer(r) -> bool:
    return r.length_tilt_deg > N_SE * r.length_tilt_se


def test_sweep_over_mean_length_shows_scale_drift() -> None:
    cfg = LabConfig(n_batches=1000, lengths={"kind": "lognormal", "median": 100, "sigma": 0.5})
    points = run_sweep(cfg, "length_scale", [0.5, 1.0, 2.0, 4.0])
    lengths = [p.mean_length for p in points]
    assert lengths == sorted(lengths)
    grpo = [p.result.by_name()["grpo"].relative_scale for p in points]
    dr = [p.result.by_name()["dr_grpo"].relative_scale for p in points]
    assert grpo == sorted(grpo, reverse=True) and grpo[0] > 3 * grpo[-1]
    assert dr == pytest.approx([1.0] * 4)
    # The reference stays put while the lengths stretch: 1/L weights drift like 1/stretch.
    refs = [p.result.reference_mean_length for p in points]
    assert max(refs) / min(refs) < 1.02
    assert grpo[1] / grpo[2] == pytest.approx(2.0, rel=0.05)


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


def test_overflowing_sweep_is_a_readable_error() -> None:
    """A stretch past what a length family allows is a ValueError with a sentence, not a
    pydantic traceback; a huge typed median is refused by the config itself."""
    from pydantic import ValidationError

    cfg = LabConfig(lengths={"kind": "lognormal", "median": 5e8, "sigma": 0.8})
    with pytest.raises(ValueError, match="length_scale = 100 gives settings") as info:
        sweep_config(cfg, "length_scale", 100.0)
    assert not isinstance(info.value, ValidationError)
    assert "less than or equal to 1000000000" in str(info.value)
    with pytest.raises(ValueError, match="not a finite number"):
        sweep_config(cfg, "alpha", float("inf"))
    with pytest.raises(ValidationError, match="less than or equal"):
        LabConfig(lengths={"kind": "lognormal", "median": 1e308})
