"""Steps until a metric reaches a threshold, across seeds, with runs that never get there.

A run that never reaches the threshold is *censored* at its last evaluation, never dropped.
The summary statistic is the restricted mean: the mean of min(steps, horizon), i.e. the area
under the Kaplan-Meier curve up to a horizon, so a run that never got there counts with the
whole horizon (a lower bound on its time). The speed-up of B over A is the ratio of their
restricted means up to a common horizon, RMST_A / RMST_B (2 = B needs half the steps), with
Fieller's interval on the per-run restricted times (`vlsim.stats.intervals.fieller_ratio`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from vlsim.analysis import first_crossing
from vlsim.stats.intervals import (
    LEVEL,
    Estimate,
    _ratio,
    fieller_ratio,
    no_interval,
    t_interval,
)

MIN_REACHED_SHARE = 0.5
"""A speed-up gets an interval only when, in at least one of the two conditions, at least this
share of the runs reached the threshold (see `speedup`; measured in tests/test_stats.py)."""

TOO_CENSORED = "too many runs never reached the threshold"

MIN_N_SPEEDUP = 3
"""Fewest runs per side behind a speed-up interval: at 2 seeds the ratio's interval covered
the true speed-up in only about 90% of simulated sweeps (censored log-normal steps), so none."""


@dataclass(frozen=True)
class Censored:
    """Steps until an event for several seeds: reached=False means censored at `steps`."""

    seeds: tuple[int, ...]
    steps: tuple[float, ...]
    reached: tuple[bool, ...]

    @property
    def n(self) -> int:
        """Number of runs."""
        return len(self.seeds)

    @property
    def n_reached(self) -> int:
        """Runs that reached the threshold."""
        return int(sum(self.reached))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, reached) as numpy arrays."""
        return np.array(self.steps, dtype=float), np.array(self.reached, dtype=bool)

    def subset(self, seeds: Sequence[int]) -> Censored:
        """The same data restricted to these seeds (in this order)."""
        pos = {s: i for i, s in enumerate(self.seeds)}
        keep = [pos[s] for s in seeds if s in pos]
        return Censored(
            tuple(self.seeds[i] for i in keep),
            tuple(self.steps[i] for i in keep),
            tuple(self.reached[i] for i in keep),
        )


def threshold_times(
    frames: Mapping[int, pd.DataFrame],
    metric: str,
    threshold: float,
    smoothing: float = 0.0,
    higher_is_better: bool = True,
) -> Censored:
    """Per seed (or run): RL steps until the metric first reaches the threshold, or censoring.

    One run's crossing is `vlsim.analysis.first_crossing`: a run that never reaches the
    threshold is censored at the updates behind its last logged value; a run that never
    logged the metric is left out.
    """
    seeds, steps, reached = [], [], []
    for seed, df in frames.items():
        hit = first_crossing(df, metric, threshold, smoothing, higher_is_better)
        if hit is None:
            continue
        seeds.append(seed)
        steps.append(hit.steps)
        reached.append(hit.reached)
    return Censored(tuple(seeds), tuple(steps), tuple(reached))


def kaplan_meier(steps: np.ndarray, reached: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival P(not reached after t): (event times, survival just after each)."""
    steps = np.asarray(steps, dtype=float)
    reached = np.asarray(reached, dtype=bool)
    times = np.unique(steps[reached])
    at_risk = (steps[None, :] >= times[:, None]).sum(axis=1)  # (times,)
    events = (steps[None, :] == times[:, None]) & reached[None, :]
    return times, np.cumprod(1.0 - events.sum(axis=1) / at_risk)


def km_median(steps: np.ndarray, reached: np.ndarray) -> float:
    """Median steps to the threshold (Kaplan-Meier); inf when half of the runs never get there."""
    times, surv = kaplan_meier(steps, reached)
    below = np.nonzero(surv <= 0.5 + 1e-12)[0]
    return float(times[below[0]]) if below.size else math.inf


def _censored_early(steps: np.ndarray, reached: np.ndarray, horizon: float) -> bool:
    """True when some run stopped without reaching the threshold before the horizon."""
    return bool(np.any(~reached & (steps < horizon)))


def restricted_mean(steps: np.ndarray, reached: np.ndarray, horizon: float) -> float:
    """Restricted mean steps to the threshold: the area under the KM curve from 0 to horizon.

    Equals mean(min(steps, horizon)) when nothing is censored before the horizon, so a run
    that never reaches the threshold counts as taking the whole horizon: a lower bound on its
    true time, never a dropped run.
    """
    steps = np.asarray(steps, dtype=float)
    reached = np.asarray(reached, dtype=bool)
    if steps.size == 0 or not math.isfinite(horizon):
        return math.nan
    if not _censored_early(steps, reached, horizon):
        return float(np.minimum(steps, horizon).mean())
    times, surv = kaplan_meier(steps, reached)
    edges = np.concatenate([[0.0], times[times < horizon], [horizon]])
    levels = np.concatenate([[1.0], surv[times < horizon]])
    return float(np.sum(levels * np.diff(edges)))


def restricted_times(steps: np.ndarray, reached: np.ndarray, horizon: float) -> np.ndarray:
    """Per-run restricted times whose mean is the restricted mean: min(steps, horizon).

    When a run stopped early without reaching the threshold, its own time is unknown; then the
    jackknife pseudo-values n * RMST - (n - 1) * RMST(without run i) take their place (Andersen,
    Hansen and Klein 2004): they reduce to min(steps, horizon) without early censoring.
    """
    steps = np.asarray(steps, dtype=float)
    reached = np.asarray(reached, dtype=bool)
    n = steps.size
    if not _censored_early(steps, reached, horizon) or n < 2:
        return np.minimum(steps, horizon)
    full = restricted_mean(steps, reached, horizon)
    keep = ~np.eye(n, dtype=bool)
    loo = np.array([restricted_mean(steps[k], reached[k], horizon) for k in keep])
    return n * full - (n - 1) * loo


def common_horizon(*groups: Censored) -> float:
    """The common horizon of several groups: as far as every group's KM curve is known.

    A group whose longest run is censored is known up to that run's steps; a group whose
    longest run reached the threshold is known everywhere (its curve is 0 after it). When
    every group is known everywhere, the horizon is the longest time of all.
    """
    groups = tuple(g for g in groups if g.n)
    if not groups:
        return math.nan
    limits = []
    for g in groups:
        steps, reached = g.arrays()
        last = steps.max()
        limits.append(math.inf if reached[steps == last].all() else float(last))
    tau = min(limits)
    return tau if math.isfinite(tau) else float(max(max(g.steps) for g in groups))


@dataclass(frozen=True)
class ThresholdSummary:
    """Steps to a threshold in one condition: counts, KM median and restricted mean with CIs."""

    n: int
    reached: int
    horizon: float
    median: Estimate
    restricted_mean: Estimate

    def to_dict(self) -> dict[str, Any]:
        """Flat dict for tables and JSON."""
        return {
            "n": self.n,
            "reached": self.reached,
            "horizon": self.horizon,
            "median": self.median.value,
            "median_low": self.median.low,
            "median_high": self.median.high,
            "restricted_mean": self.restricted_mean.value,
            "restricted_mean_low": self.restricted_mean.low,
            "restricted_mean_high": self.restricted_mean.high,
        }


def median_interval(
    steps: np.ndarray, reached: np.ndarray, horizon: float, level: float = LEVEL
) -> Estimate:
    """KM median with the distribution-free order-statistic interval [x_(k), x_(n+1-k)].

    k is the largest rank with P(Binomial(n, 1/2) < k) <= (1 - level) / 2, so the interval
    covers the true median with at least the level for any continuous distribution. No
    interval below 6 runs at 95% (k would be 0) or when a run stopped early without reaching
    the threshold; an upper order statistic that never reached it gives an infinite bound.
    """
    steps = np.asarray(steps, dtype=float)
    reached = np.asarray(reached, dtype=bool)
    n = steps.size
    med = km_median(steps, reached) if n else math.nan
    if n == 0:
        return no_interval(level=level)
    tail = (1 - level) / 2
    j = int(sps.binom.ppf(tail, n, 0.5))  # smallest j with P(B <= j) >= tail
    if sps.binom.cdf(j, n, 0.5) > tail:
        j -= 1  # largest j with P(B <= j) <= tail
    rank = j + 1  # 1-based rank of the lower bound
    if rank < 1:
        return no_interval(med, n, level, f"no interval for a median from {n} runs")
    if _censored_early(steps, reached, horizon):
        return no_interval(med, n, level, "no interval: a run stopped early")
    order = np.argsort(steps, kind="stable")
    x, r = steps[order], reached[order]
    low = float(x[rank - 1])  # a run that never reached it: its time is at least this
    high = float(x[n - rank]) if r[n - rank] else math.inf
    return Estimate(med, low, high, n, level, "order statistics (binomial)")


def threshold_summary(
    data: Censored,
    horizon: float | None = None,
    level: float = LEVEL,
) -> ThresholdSummary:
    """How many seeds reach the threshold, the KM median and the restricted mean, with CIs.

    horizon defaults to the longest follow-up of these runs. The restricted mean's interval is
    the t interval of the per-run restricted times; the median's is `median_interval`.
    """
    if data.n == 0:
        nan = no_interval(level=level)
        return ThresholdSummary(0, 0, math.nan, nan, nan)
    steps, reached = data.arrays()
    tau = float(steps.max()) if horizon is None else float(horizon)
    med = median_interval(steps, reached, tau, level)
    rm = t_interval(restricted_times(steps, reached, tau), level)
    rmst = restricted_mean(steps, reached, tau)
    rm = Estimate(rmst, rm.low, rm.high, data.n, level, rm.method)
    return ThresholdSummary(data.n, data.n_reached, tau, med, rm)


def speedup(
    base: Censored,
    other: Censored,
    paired: bool,
    level: float = LEVEL,
) -> Estimate:
    """How many times faster `other` reaches the threshold than `base`, with Fieller's CI.

    speed-up = RMST_base / RMST_other, the ratio of restricted mean steps up to the common
    horizon (`common_horizon`): 2 means twice as fast. Censored runs count with the whole
    horizon, so a condition whose runs rarely get there cannot look fast. paired=True keeps the
    seeds both conditions share. No interval with fewer than MIN_N_SPEEDUP runs per side, or when in both
    conditions fewer than MIN_REACHED_SHARE of the runs reached the threshold (method text
    TOO_CENSORED). NaN when no run reaches the threshold or every run reaches it at step 0
    (choose another threshold).
    """
    if paired:
        shared = [s for s in base.seeds if s in set(other.seeds)]
        base, other = base.subset(shared), other.subset(shared)
    if base.n == 0 or other.n == 0:
        return no_interval(level=level)
    if base.n_reached == 0 and other.n_reached == 0:
        return no_interval(
            math.nan,
            min(base.n, other.n),
            level,
            "no run of either condition reached the threshold",
        )
    tau = common_horizon(base, other)
    bs, br = base.arrays()
    os_, or_ = other.arrays()
    value = _ratio(restricted_mean(bs, br, tau), restricted_mean(os_, or_, tau))
    n = min(base.n, other.n)
    if n < MIN_N_SPEEDUP:
        return no_interval(value, n, level, f"no speed-up interval from {n} run(s) per side")
    share = max(base.n_reached / base.n, other.n_reached / other.n)
    if share < MIN_REACHED_SHARE:
        return no_interval(value, n, level, TOO_CENSORED)
    est = fieller_ratio(
        restricted_times(bs, br, tau), restricted_times(os_, or_, tau), paired, level
    )
    return Estimate(value, est.low, est.high, n, level, est.method)
