"""vlsim.stats on synthetic data with known answers: coverage, censoring, pairing, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vlsim.stats import (
    INCONCLUSIVE,
    TOO_CENSORED,
    Censored,
    compare,
    curve_bands,
    difference,
    fieller_ratio,
    final_values,
    inconclusive_meaning,
    km_median,
    mean_ci,
    median_interval,
    probe_summary,
    restricted_mean,
    restricted_times,
    rule,
    run_speedups,
    speedup,
    t_crit,
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


def test_t_interval_of_one_two_three_by_hand() -> None:
    # mean 2, sd 1, se 1/sqrt(3); t_{0.975, 2} = 4.302653 (tables)
    est = mean_ci([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert (est.value, est.n) == (2.0, 3)
    assert est.low == pytest.approx(2 - half, abs=1e-5)
    assert est.high == pytest.approx(2 + half, abs=1e-5)
    assert est.method == "Student t, 2 df"
    assert t_crit(4) == pytest.approx(2.776445, abs=1e-6)
    assert t_crit(10, 0.90) == pytest.approx(1.812461, abs=1e-6)


def test_paired_and_welch_differences_by_hand() -> None:
    a = {0: 1.0, 1: 2.0, 2: 4.0}
    b = {0: 2.0, 1: 4.0, 2: 5.0}  # differences 1, 2, 1: mean 4/3, sd 1/sqrt(3)
    paired = difference(a, b, paired=True)
    half = 4.302653 * (1 / math.sqrt(3)) / math.sqrt(3)
    assert paired.value == pytest.approx(4 / 3)
    assert (paired.low, paired.high) == pytest.approx((4 / 3 - half, 4 / 3 + half), abs=1e-5)
    assert paired.method == "paired Student t, 2 df"
    # Welch: var(a) = 7/3, var(b) = 7/3, se^2 = 14/9, df = (14/9)^2 / (2 (7/9)^2 / 2) = 4
    welch = difference(a, b, paired=False)
    half = 2.776445 * math.sqrt(14 / 9)
    assert (welch.low, welch.high) == pytest.approx((4 / 3 - half, 4 / 3 + half), abs=1e-5)
    assert welch.method == "Welch t, 4 df"


def test_fieller_ratio_by_hand() -> None:
    # unpaired, denominator without spread: the interval is mean(x) / 10 with x's t interval
    x = [18.0, 20.0, 22.0]
    est = fieller_ratio(x, [10.0, 10.0, 10.0], paired=False)
    half = 4.302653 * 2 / math.sqrt(3)
    assert est.value == pytest.approx(2.0)
    assert (est.low, est.high) == pytest.approx(((20 - half) / 10, (20 + half) / 10), abs=1e-5)
    # a denominator that could be 0 gives no interval (the Fieller set is unbounded)
    wild = fieller_ratio([10.0, 11.0, 12.0], [0.1, 5.0, 0.2], paired=True)
    assert not wild.has_interval and "denominator" in wild.method


def test_no_interval_below_two_values_and_no_claim() -> None:
    one = mean_ci([0.5])
    assert one.value == 0.5 and math.isnan(one.low) and not one.has_interval
    assert not one.excludes(0.0)  # no interval, no claim
    assert rule(one, 0.0, "A", "B").headline == INCONCLUSIVE
    assert mean_ci([]).n == 0 and difference({0: 1.0}, {0: 2.0}, paired=True).n == 1


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
    last = mean_ci([0.3 + 0.02 * s for s in range(5)])  # the band is mean_ci at each step
    assert (bands["low"].iloc[2], bands["high"].iloc[2]) == pytest.approx((last.low, last.high))
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
    assert summary.restricted_mean.value == pytest.approx(32.5)  # not 15: censored runs count
    rm = mean_ci([10, 20, 50, 50])  # no censoring before the horizon: the t interval of min(T, 50)
    assert (summary.restricted_mean.low, summary.restricted_mean.high) == pytest.approx(
        (rm.low, rm.high)
    )
    assert summary.median.value == pytest.approx(20)
    assert not summary.median.has_interval  # 4 runs: no distribution-free 95% interval


def test_median_interval_by_order_statistics() -> None:
    # n = 6: P(B <= 0) = 1/64 <= 0.025 < P(B <= 1), so [x_(1), x_(6)], coverage 1 - 2/64
    steps = np.array([30.0, 10, 20, 40, 50, 60])
    est = median_interval(steps, np.ones(6, bool), 60)
    assert (est.low, est.high) == (10.0, 60.0)
    # n = 10: rank 2, [x_(2), x_(9)]; a largest value that never got there: infinite bound
    steps = np.array([10.0, 20, 30, 40, 50, 60, 70, 80, 100, 100])
    reached = np.array([True] * 8 + [False] * 2)  # two runs ran all 100 steps without it
    est = median_interval(steps, reached, 100)
    assert (est.low, est.high) == (20.0, math.inf)


def test_restricted_times_are_jackknife_pseudo_values_under_early_censoring() -> None:
    steps, reached = np.array([10.0, 20, 25, 40]), np.array([True, True, False, False])
    plain = restricted_times(steps, reached, 40)  # run 3 stopped at 25 without reaching it
    assert plain.mean() == pytest.approx(restricted_mean(steps, reached, 40))
    full = restricted_times(steps, np.array([True, True, True, False]), 40)
    assert full.tolist() == [10, 20, 25, 40]  # no early censoring: min(steps, horizon)


def test_speedup_ratio_of_restricted_means() -> None:
    slow = censored([50] * 5, [False] * 5)  # never reaches it in 50 steps
    fast = censored([10, 10, 12, 8, 10], [True] * 5)
    est = speedup(slow, fast, paired=True)
    assert est.value == pytest.approx(50 / 10)
    assert est.excludes(1.0) and est.low > 3 and est.method.startswith("Fieller, paired t")
    never = speedup(slow, slow, paired=True)  # neither reaches it: no speed-up at all
    assert math.isnan(never.value) and not never.excludes(1.0)


def test_speedup_gives_no_interval_when_most_runs_never_reach_it() -> None:
    base = censored([100, 100, 100, 100], [False, False, False, False])
    other = censored([60, 100, 100, 100], [True, False, False, False])
    est = speedup(base, other, paired=True)
    assert est.value == pytest.approx(100 / 90)
    assert not est.has_interval and est.method == TOO_CENSORED


def test_run_speedups_single_runs_share_the_estimator() -> None:
    runs = {
        "GRPO": eval_frame([0.1, 0.2, 0.3, 0.4, 0.5]),  # 0.4 after 30 updates
        "VL Norm": eval_frame([0.1, 0.4, 0.5, 0.6, 0.6]),  # after 10
        "DAPO": eval_frame([0.1, 0.1, 0.2, 0.2, 0.3]),  # never, 40 updates run
        "short": eval_frame([0.1, 0.2]),  # stopped after 10 updates
        "both0": eval_frame([0.5, 0.6]),
    }
    table = run_speedups(runs, METRIC, 0.4, baseline="GRPO").set_index("run")
    assert table.loc["VL Norm", "speedup"] == pytest.approx(3.0)
    assert table.loc["VL Norm", "bound"] == "="
    assert table.loc["DAPO", "speedup"] == pytest.approx(30 / 40)  # at most: it never got there
    assert (
        table.loc["DAPO", "bound"] == "<="
        and "not reached in 40 steps" in table.loc["DAPO", "note"]
    )
    assert (
        math.isnan(table.loc["short", "speedup"])
        and "before the baseline" in table.loc["short", "note"]
    )
    assert math.isinf(table.loc["both0", "speedup"])  # at it before RL: 0 steps vs 30
    by_dapo = run_speedups(runs, METRIC, 0.4, baseline="DAPO").set_index("run")
    assert by_dapo.loc["VL Norm", "speedup"] == pytest.approx(4.0)
    assert by_dapo.loc["VL Norm", "bound"] == ">="
    same = run_speedups(
        {"a": eval_frame([0.5, 0.6]), "b": eval_frame([0.5, 0.7])}, METRIC, 0.4, "a"
    )
    assert math.isnan(same.set_index("run").loc["b", "speedup"])  # 0 / 0: no ratio, not 1
    # the same single-run pair through speedup(): one estimator
    pair = speedup(censored([30], [True]), censored([10], [True]), paired=False)
    assert pair.value == pytest.approx(3.0) and not pair.has_interval


# ----------------------------------------------------------------------------- verdicts


def test_rule_has_three_answers() -> None:
    est = mean_ci([1.5, 1.7, 1.6, 1.8])
    assert rule(est, 1.0, "DAPO", "VL Norm").headline == "VL Norm faster"
    low = mean_ci([0.5, 0.6, 0.55])
    assert rule(low, 1.0, "DAPO", "VL Norm").headline == "DAPO faster"
    wide = mean_ci([0.5, 1.6, 1.1])
    ruling = rule(wide, 1.0, "DAPO", "VL Norm")
    assert ruling.headline == INCONCLUSIVE and not ruling.conclusive
    assert ruling.details() == "n = 3, Student t, 2 df"


def test_verdict_inconclusive_when_conditions_are_alike() -> None:
    rng = np.random.default_rng(3)

    def curve() -> pd.DataFrame:
        acc = np.clip(np.cumsum(rng.uniform(0.0, 0.1, 6)), 0, 1)
        return eval_frame(list(acc))

    a = {s: curve() for s in range(5)}
    b = {s: curve() for s in range(5)}
    v = compare("dapo", "vl_norm", a, b, METRIC, threshold=0.2)
    assert not v.conclusive and not v.final_conclusive
    assert v.headline == INCONCLUSIVE
    assert "includes 1x" in v.text and "includes 0" in v.text
    assert "n = 5, Fieller, paired t, 4 df;" in v.text and "n = 5, paired Student t, 4 df" in v.text
    assert inconclusive_meaning() in v.text  # says what inconclusive means
    assert v.to_dict()["conclusive"] is False


def test_verdict_says_faster_when_it_is() -> None:
    a = {s: eval_frame([0.1, 0.12, 0.15, 0.2 + 0.01 * s, 0.25]) for s in range(4)}
    b = {s: eval_frame([0.1, 0.35 + 0.01 * s, 0.5, 0.55, 0.6]) for s in range(4)}
    v = compare("dapo", "vl_norm", a, b, METRIC, threshold=0.3)
    assert v.conclusive and v.speed_conclusive and v.final_conclusive
    assert v.headline == "vl_norm faster"
    assert v.speedup.value == pytest.approx(40 / 10)  # dapo censored at 40 steps
    assert v.reached == (0, 4, 4, 4)
    assert v.text.startswith("vl_norm vs dapo (4 paired seeds): vl_norm reaches")
    assert "4.00x faster" in v.text and "has a higher final" in v.text
    assert "Inconclusive means" not in v.text
    named = compare("DAPO", "VL Norm", a, b, METRIC, 0.3, metric_label="held-out accuracy")
    assert "reaches held-out accuracy 0.3" in named.text and METRIC not in named.text


def test_verdict_with_one_seed_makes_no_claim() -> None:
    v = compare("a", "b", {0: eval_frame([0.1, 0.2])}, {0: eval_frame([0.1, 0.9])}, METRIC, 0.5)
    assert not v.conclusive and v.headline == INCONCLUSIVE
    assert "unpaired" in v.text and "gives no interval" in v.text and "n = 1" in v.text
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
    est = mean_ci([3.0, 4.0, 5.0])
    assert table.loc[("grpo", "variance"), "low"] == pytest.approx(est.low)
    assert table.loc[("grpo", "variance"), "method"] == "Student t, 2 df"
