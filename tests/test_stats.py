"""vlsim.stats on synthetic data with known answers: coverage, censoring, pairing, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vlsim.stats import (
    Censored,
    bootstrap_ci,
    compare,
    curve_bands,
    difference,
    expanded_tail,
    final_values,
    km_median,
    mean_ci,
    probe_summary,
    restricted_mean,
    speedup,
    t_quantile,
    threshold_summary,
    threshold_times,
)

METRIC = "eval/mean_at_k"


def eval_frame(values: list[float], every: int = 10) -> pd.DataFrame:
    """Evaluation before RL (step -1) and after every `every` updates, like the trainer logs."""
    steps = [-1] + [k * every - 1 for k in range(1, len(values))]
    return pd.DataFrame({"step": steps, METRIC: values, "time/elapsed": np.arange(len(values))})


def censored(steps: list[float], reached: list[bool]) -> Censored:
    return Censored(tuple(range(len(steps))), tuple(steps), tuple(reached))


# ----------------------------------------------------------------------------- intervals


def test_t_quantile_matches_tables() -> None:
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.975, 4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(0.95, 10) == pytest.approx(1.812, abs=1e-3)
    assert t_quantile(0.025, 4) == pytest.approx(-2.776, abs=1e-3)
    # the expanded bootstrap's tails shrink for small samples and tend to 2.5%
    assert expanded_tail(3) < expanded_tail(10) < expanded_tail(1000) < 0.025
    assert expanded_tail(100_000) == pytest.approx(0.025, abs=2e-4)


def test_bootstrap_ci_of_the_mean_has_about_nominal_coverage() -> None:
    rng = np.random.default_rng(1)
    reps, n = 400, 12
    covered = plain = 0
    for rep in range(reps):
        x = rng.normal(0.3, 1.0, size=n)
        est = mean_ci(x, n_boot=1000, seed=rep)
        covered += est.low <= 0.3 <= est.high
        lo, hi = bootstrap_ci(x, n_boot=1000, seed=rep, expand=False)
        plain += lo <= 0.3 <= hi
    assert 0.91 <= covered / reps <= 0.985
    assert plain <= covered  # the plain percentile interval is narrower for small n


def test_bootstrap_is_seeded_and_needs_two_samples() -> None:
    x = [0.1, 0.4, 0.35, 0.2]
    assert mean_ci(x, seed=3) == mean_ci(x, seed=3)
    one = mean_ci([0.5])
    assert one.value == 0.5 and math.isnan(one.low) and not one.has_interval
    assert not one.excludes(0.0)  # no interval, no claim


def test_paired_difference_removes_the_seed_effect() -> None:
    rng = np.random.default_rng(0)
    seeds = range(8)
    offset = {s: rng.normal(0, 5) for s in seeds}  # each seed is much easier or harder
    a = {s: offset[s] + rng.normal(0, 0.05) for s in seeds}
    b = {s: offset[s] + 0.5 + rng.normal(0, 0.05) for s in seeds}
    paired = difference(a, b, paired=True)
    unpaired = difference(a, b, paired=False)
    assert paired.value == pytest.approx(unpaired.value)
    assert paired.excludes(0.0) and paired.low > 0.3
    assert not unpaired.excludes(0.0)  # the seed noise swamps 0.5 without pairing
    assert paired.n == 8


def test_curve_bands_mean_and_band() -> None:
    frames = {s: eval_frame([0.1, 0.2 + 0.01 * s, 0.3 + 0.02 * s]) for s in range(5)}
    bands = curve_bands(frames, METRIC)
    assert list(bands["step"]) == [-1, 9, 19]
    assert bands["n"].tolist() == [5, 5, 5]
    assert bands["mean"].tolist() == pytest.approx([0.1, 0.22, 0.34])
    assert bands["low"].iloc[0] == pytest.approx(0.1) and bands["high"].iloc[0] == pytest.approx(
        0.1
    )
    assert (bands["low"] <= bands["mean"] + 1e-12).all() and (
        bands["mean"] <= bands["high"] + 1e-12
    ).all()
    assert bands["high"].iloc[2] > bands["low"].iloc[2]
    # a seed that stopped early only counts where it logged
    frames[9] = eval_frame([0.1, 0.2])
    assert curve_bands(frames, METRIC)["n"].tolist() == [6, 6, 5]
    assert final_values(frames, METRIC)[9] == pytest.approx(0.2)


# ----------------------------------------------------------------------------- censoring


def test_threshold_times_censor_runs_that_never_get_there() -> None:
    frames = {
        0: eval_frame([0.1, 0.4, 0.5]),
        1: eval_frame([0.1, 0.2, 0.25]),
        2: eval_frame([0.6, 0.7, 0.8]),
    }
    data = threshold_times(frames, METRIC, 0.3)
    assert data.seeds == (0, 1, 2)
    assert data.steps == (10.0, 20.0, 0.0)  # seed 1 censored after its last evaluation
    assert data.reached == (True, False, True)


def test_kaplan_meier_with_censoring() -> None:
    # reached at 10 and 30, censored at 20 (1 run), reached at 20 (1 run)
    steps, reached = [10, 20, 20, 30], [True, False, True, True]
    # S: after 10 -> 3/4; at 20 one event among 3 at risk -> 1/2; after 30 -> 0
    assert km_median(steps, reached) == 20
    assert restricted_mean(steps, reached, 30) == pytest.approx(10 * 1 + 10 * 0.75 + 10 * 0.5)
    # no censoring before the horizon: the mean of min(steps, horizon); censored runs count in full
    assert restricted_mean([10, 20, 30], [True, True, False], 30) == pytest.approx(20.0)
    assert km_median([10, 30, 30], [True, False, False]) == math.inf  # most never get there


def test_threshold_summary_counts_censored_runs() -> None:
    data = censored([10, 20, 50, 50], [True, True, False, False])
    summary = threshold_summary(data)
    assert (summary.n, summary.reached, summary.horizon) == (4, 2, 50)
    assert summary.restricted_mean.value == pytest.approx(
        32.5
    )  # not 15: the mean of those that made it
    assert summary.median.value == pytest.approx(20)
    assert summary.restricted_mean.low <= 32.5 <= summary.restricted_mean.high


def test_speedup_ratio_of_restricted_means() -> None:
    slow = censored([50] * 5, [False] * 5)  # never reaches it in 50 steps
    fast = censored([10, 10, 12, 8, 10], [True] * 5)
    est = speedup(slow, fast, paired=True)
    assert est.value == pytest.approx(50 / 10)
    assert est.excludes(1.0) and est.low > 3
    # neither reaches it: exactly no difference, and no claim
    never = speedup(slow, slow, paired=True)
    assert never.value == pytest.approx(1.0) and not never.excludes(1.0)


def test_speedup_ci_coverage_on_known_ratio() -> None:
    # T_base ~ U(10, 50), T_other ~ U(5, 25), every run reaches it: mean 30 vs 15, ratio 2
    rng = np.random.default_rng(7)
    reps, n, covered = 300, 10, 0
    for rep in range(reps):
        base = censored(list(rng.uniform(10, 50, n)), [True] * n)
        other = censored(list(rng.uniform(5, 25, n)), [True] * n)
        est = speedup(base, other, paired=False, n_boot=800, seed=rep)
        covered += est.low <= 2.0 <= est.high
    assert 0.88 <= covered / reps <= 0.995


# ----------------------------------------------------------------------------- verdicts


def test_verdict_inconclusive_when_conditions_are_alike() -> None:
    rng = np.random.default_rng(3)

    def curve() -> pd.DataFrame:
        acc = np.clip(np.cumsum(rng.uniform(0.0, 0.1, 6)), 0, 1)
        return eval_frame(list(acc))

    a = {s: curve() for s in range(5)}
    b = {s: curve() for s in range(5)}
    v = compare("dapo", "vl_norm", a, b, METRIC, threshold=0.2)
    assert not v.conclusive and not v.final_conclusive
    assert v.text.count("inconclusive") == 2
    assert "includes 1x" in v.text and "includes 0" in v.text
    assert v.to_dict()["conclusive"] is False


def test_verdict_says_faster_when_it_is() -> None:
    a = {s: eval_frame([0.1, 0.12, 0.15, 0.2 + 0.01 * s, 0.25]) for s in range(4)}
    b = {s: eval_frame([0.1, 0.35 + 0.01 * s, 0.5, 0.55, 0.6]) for s in range(4)}
    v = compare("dapo", "vl_norm", a, b, METRIC, threshold=0.3)
    assert v.conclusive and v.speed_conclusive and v.final_conclusive
    assert v.speedup.value == pytest.approx(40 / 10)  # dapo censored at 40 steps
    assert v.reached == (0, 4, 4, 4)
    assert v.text.startswith("vl_norm vs dapo (4 paired seeds): vl_norm reaches")
    assert "4.00x faster" in v.text and "has a higher final" in v.text


def test_verdict_with_one_seed_makes_no_claim() -> None:
    v = compare("a", "b", {0: eval_frame([0.1, 0.2])}, {0: eval_frame([0.1, 0.9])}, METRIC, 0.5)
    assert not v.conclusive
    assert "unpaired" in v.text and "give no interval" in v.text
    assert v.notes and "shared seed" in v.notes[0]


def test_probe_summary_across_seeds() -> None:
    def record(var: float, slope: float) -> dict:
        return {
            "aggregators": {
                "grpo": {"variance": var, "cv": 1.0},
                "vl_norm": {"variance": var / 2, "cv": 0.5},
            },
            "length_noise": {"slope": slope},
        }

    probes = {s: [record(2.0 + s, 1.0 + 0.1 * s), record(4.0 + s, 1.2)] for s in range(3)}
    table = probe_summary(probes).set_index(["aggregator", "stat"])
    assert table.loc[("grpo", "variance"), "mean"] == pytest.approx(4.0)  # run means 3, 4, 5
    assert table.loc[("vl_norm", "cv"), "mean"] == pytest.approx(0.5)
    assert table.loc[("", "length_variance_slope"), "n"] == 3
    assert table.loc[("grpo", "variance"), "low"] <= 4.0 <= table.loc[("grpo", "variance"), "high"]
