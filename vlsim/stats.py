"""Statistics across seeds: bootstrap intervals, curve bands, censored steps-to-threshold, verdicts.

One run per condition cannot say whether a difference is real; a sweep runs every condition
with several seeds, and this module turns those runs into estimates with intervals:

- `bootstrap_ci` / `mean_ci`: percentile bootstrap over seeds, *expanded* for small samples
  (Hesterberg 2015: the tail levels are widened so that the interval has about the coverage of
  Student's t; a plain percentile bootstrap over 3 seeds is far too narrow). Seeded: the same
  data and seed give the same interval.
- `curve_bands`: mean curve of a metric across seeds with a bootstrap band at every step.
- `threshold_times` / `threshold_summary` / `speedup`: steps until a metric reaches a
  threshold. Runs that never get there are *censored* at their last evaluation, never dropped:
  the Kaplan-Meier estimator gives the median and the restricted mean (the mean of
  min(steps, horizon), the area under the survival curve), and the speed-up between two
  conditions is the ratio of their restricted means up to a common horizon, with a bootstrap CI.
- `difference`: B - A of a per-seed value (final accuracy, say), paired over shared seeds when
  the seeds share data (same problems and initial policy), otherwise unpaired.
- `compare` and `Verdict`: all of the above for two conditions, and a line in plain words that
  says "inconclusive" whenever the interval includes no difference.
- `probe_summary`: gradient-probe statistics (variance and CV per aggregator, the
  length-variance slope) averaged over each run's probes, then summarised across seeds.

Pure numpy/pandas: nothing here touches the store or draws.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vlsim.analysis import smooth, steps_done

LEVEL = 0.95
"""Default confidence level of every interval."""

N_BOOT = 2000
"""Default number of bootstrap resamples."""

PROBE_SUMMARY_STATS = ("variance", "cv", "relative_variance", "scale", "efficiency")
"""Per-aggregator probe statistics that `probe_summary` collects when present."""


# ---------------------------------------------------------------- small-sample quantiles


def _t_cdf(x: float, df: float) -> float:
    """Student's t CDF by Simpson integration of the density (scipy is not a dependency)."""
    if x == 0:
        return 0.5
    n = 4000
    h = abs(x) / n
    t = np.linspace(0.0, abs(x), n + 1)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(t * t / df))
    area = h / 3 * (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum())
    return 0.5 + math.copysign(float(area), x)


@functools.lru_cache(maxsize=512)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (bisection on the CDF)."""
    if not 0 < p < 1 or df <= 0:
        return math.nan
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
        if hi > 1e8:
            return math.inf
    for _ in range(80):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


@functools.lru_cache(maxsize=512)
def expanded_tail(n: int, level: float = LEVEL) -> float:
    """Tail probability for an expanded percentile bootstrap of n units at this level.

    alpha'/2 = Phi(-sqrt(n / (n - 1)) * t_{1 - alpha/2, n - 1}) (Hesterberg 2015), so the
    percentile interval roughly matches the t interval's coverage for small n; for large n
    it tends to the plain (1 - level) / 2.
    """
    alpha = 1 - level
    if n < 2:
        return alpha / 2
    t = t_quantile(1 - alpha / 2, n - 1)
    return _normal_cdf(-math.sqrt(n / (n - 1)) * t)


# ---------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval (NaN bounds: no interval could be formed)."""

    value: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    @property
    def has_interval(self) -> bool:
        """True when both bounds are numbers (infinite bounds count)."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    def excludes(self, null: float) -> bool:
        """True when the interval lies entirely on one side of `null` (a clear difference)."""
        return self.has_interval and (self.low > null or self.high < null)

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict (for JSON and tables)."""
        return asdict(self)


def _nan_estimate(value: float = math.nan, n: int = 0, level: float = LEVEL) -> Estimate:
    return Estimate(float(value), math.nan, math.nan, int(n), level)


def _quantiles(draws: np.ndarray, tail: float) -> tuple[float, float]:
    """Lower and upper percentile of bootstrap draws; infinite draws allowed, NaN ones dropped."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(draws, [tail, 1 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def bootstrap_ci(
    samples: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
    expand: bool = True,
) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(samples) (NaN, NaN with fewer than 2 samples).

    statistic maps an (n_boot, n) array to (n_boot,) values; the default is the mean along
    axis 1. expand=True widens the tails for small n (see `expanded_tail`).
    """
    x = np.asarray(samples, dtype=float).reshape(-1)
    x = x[~np.isnan(x)]
    n = x.size
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(n_boot), n))
    draws = statistic(x[idx]) if statistic is not None else x[idx].mean(axis=1)
    tail = expanded_tail(n, level) if expand else (1 - level) / 2
    return _quantiles(draws, tail)


def mean_ci(
    samples: Sequence[float] | np.ndarray,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Estimate:
    """Mean of the samples (NaN ignored) with an expanded percentile bootstrap interval."""
    x = np.asarray(samples, dtype=float).reshape(-1)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return _nan_estimate(level=level)
    low, high = bootstrap_ci(x, level=level, n_boot=n_boot, seed=seed)
    return Estimate(float(x.mean()), low, high, int(x.size), level)


def difference(
    a: Mapping[int, float],
    b: Mapping[int, float],
    paired: bool,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Estimate:
    """Mean of b minus mean of a, with a bootstrap CI; `a` and `b` map seed -> value.

    paired=True uses only the seeds both have and resamples them jointly (the differences
    b_s - a_s), which removes what the seed itself contributes; otherwise each side is resampled
    on its own. n is the number of seeds (pairs) behind the estimate.
    """
    a = {s: float(v) for s, v in a.items() if not math.isnan(float(v))}
    b = {s: float(v) for s, v in b.items() if not math.isnan(float(v))}
    if paired:
        shared = sorted(set(a) & set(b))
        d = np.array([b[s] - a[s] for s in shared])
        if d.size == 0:
            return _nan_estimate(level=level)
        low, high = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
        return Estimate(float(d.mean()), low, high, int(d.size), level)
    xa, xb = np.array(list(a.values())), np.array(list(b.values()))
    if xa.size == 0 or xb.size == 0:
        return _nan_estimate(level=level)
    value = float(xb.mean() - xa.mean())
    n = min(xa.size, xb.size)
    if n < 2:
        return _nan_estimate(value, n, level)
    rng = np.random.default_rng(seed)
    da = xa[rng.integers(0, xa.size, size=(n_boot, xa.size))].mean(axis=1)
    db = xb[rng.integers(0, xb.size, size=(n_boot, xb.size))].mean(axis=1)
    low, high = _quantiles(db - da, expanded_tail(n, level))
    return Estimate(value, low, high, n, level)


# ---------------------------------------------------------------- curves


def seed_matrix(
    frames: Mapping[int, pd.DataFrame], metric: str, smoothing: float = 0.0
) -> pd.DataFrame:
    """One column per seed, one row per step: the metric's logged values (smoothed per run).

    Only rows that log the metric count; steps a run did not log are NaN.
    """
    columns = {}
    for seed, df in frames.items():
        if df is None or metric not in df or "step" not in df:
            continue
        rows = df[["step", metric]].copy()
        rows[metric] = pd.to_numeric(rows[metric], errors="coerce")
        rows = rows[np.isfinite(rows[metric].astype(float))].sort_values("step")
        if not len(rows):
            continue
        values = smooth(rows[metric], smoothing) if smoothing else rows[metric]
        columns[seed] = pd.Series(values.to_numpy(dtype=float), index=rows["step"].to_numpy())
    if not columns:
        return pd.DataFrame(index=pd.Index([], name="step", dtype="int64"))
    out = pd.DataFrame(columns).sort_index()
    out.index.name = "step"
    return out


def curve_bands(
    frames: Mapping[int, pd.DataFrame],
    metric: str,
    smoothing: float = 0.0,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean curve across seeds with a bootstrap band: columns step, mean, low, high, n.

    At each step the seeds that logged the metric are resampled (the same resampled seeds at
    every step, so the band is a band of curves). low/high are NaN where fewer than 2 seeds
    logged the step.
    """
    mat = seed_matrix(frames, metric, smoothing)
    columns = ["step", "mean", "low", "high", "n"]
    if mat.shape[1] == 0:
        return pd.DataFrame(columns=columns)
    y = mat.to_numpy(dtype=float)  # (steps, seeds)
    n_seeds = y.shape[1]
    count = np.isfinite(y).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps no seed logged: NaN
        mean = np.nanmean(y, axis=1)
    low = np.full(len(mat), np.nan)
    high = np.full(len(mat), np.nan)
    if n_seeds >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n_seeds, size=(int(n_boot), n_seeds))
        boot = y[:, idx]  # (steps, n_boot, seeds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # resamples of only missing seeds
            draws = np.nanmean(boot, axis=2)  # (steps, n_boot)
        for k in np.unique(count):
            if k < 2:
                continue
            rows = count == k
            tail = expanded_tail(int(k), level)
            qs = np.nanquantile(draws[rows], [tail, 1 - tail], axis=1, method="inverted_cdf")
            low[rows], high[rows] = qs[0], qs[1]
    return pd.DataFrame(
        {"step": mat.index.to_numpy(), "mean": mean, "low": low, "high": high, "n": count},
        columns=columns,
    )


def final_values(
    frames: Mapping[int, pd.DataFrame], metric: str, last: int = 1
) -> dict[int, float]:
    """seed -> mean of the metric's last `last` logged values (NaN when never logged)."""
    mat = seed_matrix(frames, metric)
    out = {}
    for seed in frames:
        if seed not in mat:
            out[seed] = math.nan
            continue
        values = mat[seed].dropna()
        out[seed] = float(values.iloc[-max(1, int(last)) :].mean()) if len(values) else math.nan
    return out


# ---------------------------------------------------------------- steps to a threshold


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
    """Per seed: RL steps until the metric first reaches the threshold, or censoring.

    A run that never reaches it is censored at the updates behind its last logged value
    (it got at least that far without reaching it); a run that never logged the metric is
    left out. Steps are counted as in `vlsim.analysis.steps_done`.
    """
    mat = seed_matrix(frames, metric, smoothing)
    seeds, steps, reached = [], [], []
    for seed in frames:
        if seed not in mat:
            continue
        values = mat[seed].dropna()
        if not len(values):
            continue
        hit = values >= threshold if higher_is_better else values <= threshold
        if hit.any():
            step = int(values.index[np.argmax(hit.to_numpy())])
            steps.append(float(steps_done(step, metric)))
            reached.append(True)
        else:
            steps.append(float(steps_done(int(values.index[-1]), metric)))
            reached.append(False)
        seeds.append(seed)
    return Censored(tuple(seeds), tuple(steps), tuple(reached))


def kaplan_meier(steps: np.ndarray, reached: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival P(not reached after t): (event times, survival just after each)."""
    steps = np.asarray(steps, dtype=float)
    reached = np.asarray(reached, dtype=bool)
    times = np.unique(steps[reached])
    surv = np.empty(times.size)
    s = 1.0
    for k, t in enumerate(times):
        at_risk = np.count_nonzero(steps >= t)
        events = np.count_nonzero((steps == t) & reached)
        s *= 1.0 - events / at_risk
        surv[k] = s
    return times, surv


def km_median(steps: np.ndarray, reached: np.ndarray) -> float:
    """Median steps to the threshold (Kaplan-Meier); inf when half of the runs never get there."""
    times, surv = kaplan_meier(steps, reached)
    below = np.nonzero(surv <= 0.5 + 1e-12)[0]
    return float(times[below[0]]) if below.size else math.inf


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
    if np.all(reached | (steps >= horizon)):  # no censoring before the horizon
        return float(np.minimum(steps, horizon).mean())
    times, surv = kaplan_meier(steps, reached)
    edges = np.concatenate([[0.0], times[times < horizon], [horizon]])
    levels = np.concatenate([[1.0], surv[times < horizon]])
    return float(np.sum(levels * np.diff(edges)))


def _horizon(*groups: Censored) -> float:
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


def _boot_censored(
    data: Censored,
    fn: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int,
    seed: int,
) -> np.ndarray:
    steps, reached = data.arrays()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.n, size=(int(n_boot), data.n))
    return np.array([fn(steps[i], reached[i]) for i in idx])


def _boot_rmst(
    steps: np.ndarray, reached: np.ndarray, horizon: float, idx: np.ndarray
) -> np.ndarray:
    """Restricted means of the resamples idx (n_boot, n); vectorised when censoring is late."""
    if np.all(reached | (steps >= horizon)):
        return np.minimum(steps, horizon)[idx].mean(axis=1)
    return np.array([restricted_mean(steps[i], reached[i], horizon) for i in idx])


def threshold_summary(
    data: Censored,
    horizon: float | None = None,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> ThresholdSummary:
    """How many seeds reach the threshold, the KM median and the restricted mean, with CIs.

    horizon defaults to the longest follow-up of these runs. The median is inf (and its upper
    bound inf) when half of the runs, or more, never reach the threshold.
    """
    if data.n == 0:
        nan = _nan_estimate(level=level)
        return ThresholdSummary(0, 0, math.nan, nan, nan)
    steps, reached = data.arrays()
    tau = float(steps.max()) if horizon is None else float(horizon)
    med = km_median(steps, reached)
    rmst = restricted_mean(steps, reached, tau)
    if data.n < 2:
        return ThresholdSummary(
            data.n, data.n_reached, tau, _nan_estimate(med, 1, level), _nan_estimate(rmst, 1, level)
        )
    tail = expanded_tail(data.n, level)
    med_lo, med_hi = _quantiles(_boot_censored(data, km_median, n_boot, seed), tail)
    rng = np.random.default_rng(seed)
    rm_draws = _boot_rmst(steps, reached, tau, rng.integers(0, data.n, size=(int(n_boot), data.n)))
    rm_lo, rm_hi = _quantiles(rm_draws, tail)
    return ThresholdSummary(
        data.n,
        data.n_reached,
        tau,
        Estimate(med, med_lo, med_hi, data.n, level),
        Estimate(rmst, rm_lo, rm_hi, data.n, level),
    )


def _ratio(num: float, den: float) -> float:
    if math.isnan(num) or math.isnan(den):
        return math.nan
    if den == 0:
        return math.nan if num == 0 else math.inf
    return num / den


def speedup(
    base: Censored,
    other: Censored,
    paired: bool,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Estimate:
    """How many times faster `other` reaches the threshold than `base`, with a bootstrap CI.

    The ratio of restricted mean steps (base / other) up to the common horizon (the shorter of
    the two conditions' longest follow-ups): 2 means twice as fast. Censored runs count with
    the whole horizon, so a condition whose runs rarely get there cannot look fast. paired=True
    keeps the seeds both conditions share and resamples them jointly. NaN when both reach the
    threshold at step 0 (nothing to compare: choose a higher threshold).
    """
    if paired:
        shared = [s for s in base.seeds if s in set(other.seeds)]
        base, other = base.subset(shared), other.subset(shared)
    if base.n == 0 or other.n == 0:
        return _nan_estimate(level=level)
    tau = _horizon(base, other)
    bs, br = base.arrays()
    os_, or_ = other.arrays()
    value = _ratio(restricted_mean(bs, br, tau), restricted_mean(os_, or_, tau))
    n = min(base.n, other.n)
    if n < 2:
        return _nan_estimate(value, n, level)
    rng = np.random.default_rng(seed)
    if paired:
        ib = io = rng.integers(0, n, size=(int(n_boot), n))
    else:
        ib = rng.integers(0, base.n, size=(int(n_boot), base.n))
        io = rng.integers(0, other.n, size=(int(n_boot), other.n))
    num, den = _boot_rmst(bs, br, tau, ib), _boot_rmst(os_, or_, tau, io)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.where(
            den == 0, np.where(num == 0, np.nan, np.inf), num / np.where(den == 0, 1, den)
        )
    low, high = _quantiles(draws, expanded_tail(n, level))
    return Estimate(value, low, high, n, level)


# ---------------------------------------------------------------- comparisons and verdicts


def _num(x: float, fmt: str = ".3g") -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return format(x, fmt)


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.3g}"


def _ci_text(est: Estimate, unit: str = "", signed: bool = False) -> str:
    f = _signed if signed else _num
    pct = f"{100 * est.level:g}%"
    return f"{pct} CI {f(est.low)}{unit} to {f(est.high)}{unit}"


@dataclass
class Verdict:
    """The answer to "is B different from A?" for one comparison, in numbers and in words."""

    base: str
    other: str
    metric: str
    paired: bool
    n_pairs: int
    final: Estimate
    speedup: Estimate | None = None
    threshold: float | None = None
    reached: tuple[int, int, int, int] | None = None  # base reached, base n, other reached, other n
    notes: list[str] = field(default_factory=list)
    final_label: str = ""  # how to name the final value (default 'final <metric>')
    seeds: tuple[int, int] | None = None  # runs behind the base and the other condition

    @property
    def speed_conclusive(self) -> bool:
        """True when the speed-up interval excludes 1 (no difference)."""
        return self.speedup is not None and self.speedup.excludes(1.0)

    @property
    def final_conclusive(self) -> bool:
        """True when the final-value interval excludes 0."""
        return self.final.excludes(0.0)

    @property
    def conclusive(self) -> bool:
        """True when the headline statistic's interval excludes no difference."""
        if self.speedup is not None and not math.isnan(self.speedup.value):
            return self.speed_conclusive
        return self.final_conclusive

    def speed_text(self) -> str:
        """The speed-up in words ('' when no threshold was set)."""
        if self.speedup is None or self.threshold is None:
            return ""
        s = self.speedup
        what = f"{self.metric} {self.threshold:g}"
        counts = ""
        if self.reached is not None:
            br, bn, orr, on = self.reached
            counts = f"; reached by {orr}/{on} {self.other} vs {br}/{bn} {self.base} runs"
        if self.reached is not None and self.reached[0] == 0 and self.reached[2] == 0:
            return f"inconclusive: no run of either condition reaches {what}{counts}"
        if math.isnan(s.value):
            return f"speed to {what}: no comparison possible{counts}"
        if not s.has_interval:
            return (
                f"inconclusive: {self.other} reaches {what} {_num(s.value, '.2f')}x as fast as "
                f"{self.base}, but {s.n} seed(s) give no interval{counts}"
            )
        ci = _ci_text(s, "x")
        if s.low > 1:
            return f"{self.other} reaches {what} {_num(s.value, '.2f')}x faster than {self.base} ({ci}{counts})"
        if s.high < 1:
            return (
                f"{self.other} reaches {what} slower than {self.base}: {self.base} is "
                f"{_num(1 / s.value, '.2f')}x faster ({ci} for {self.other}'s speed-up{counts})"
            )
        return (
            f"inconclusive: {self.other} reaches {what} {_num(s.value, '.2f')}x as fast as "
            f"{self.base}, and the {ci} includes 1x (no difference){counts}"
        )

    def final_text(self) -> str:
        """The final-value difference in words."""
        f = self.final
        what = self.final_label or f"final {self.metric}"
        if math.isnan(f.value):
            return f"{what}: no data"
        if not f.has_interval:
            return (
                f"inconclusive: {what} differs by {_signed(f.value)} ({self.other} - {self.base}), "
                f"but {f.n} seed(s) give no interval"
            )
        ci = _ci_text(f, signed=True)
        if f.low > 0:
            return f"{self.other} has a higher {what}: {_signed(f.value)} ({ci})"
        if f.high < 0:
            return f"{self.other} has a lower {what}: {_signed(f.value)} ({ci})"
        return (
            f"inconclusive: {what} differs by {_signed(f.value)} ({self.other} - {self.base}), "
            f"and the {ci} includes 0"
        )

    @property
    def text(self) -> str:
        """The verdict line: '<B> vs <A> (<how compared>): <speed>; <final>.'"""
        if self.paired:
            how = f"{self.n_pairs} paired seeds"
        else:
            nb, no = self.seeds if self.seeds is not None else (self.n_pairs, self.n_pairs)
            how = f"{no} vs {nb} seeds, unpaired"
        parts = [p for p in (self.speed_text(), self.final_text()) if p]
        return f"{self.other} vs {self.base} ({how}): " + "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {
            "base": self.base,
            "other": self.other,
            "metric": self.metric,
            "threshold": self.threshold,
            "paired": self.paired,
            "n_pairs": self.n_pairs,
            "final_difference": self.final.to_dict(),
            "speedup": self.speedup.to_dict() if self.speedup is not None else None,
            "reached": list(self.reached) if self.reached is not None else None,
            "conclusive": self.conclusive,
            "text": self.text,
            "notes": list(self.notes),
        }


def compare(
    base: str,
    other: str,
    base_frames: Mapping[int, pd.DataFrame],
    other_frames: Mapping[int, pd.DataFrame],
    metric: str,
    threshold: float | None = None,
    paired: bool = True,
    smoothing: float = 0.0,
    higher_is_better: bool = True,
    final_last: int = 1,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
    final_label: str = "",
) -> Verdict:
    """Compare two conditions (seed -> metrics DataFrame each): final value and speed-up.

    paired=True pairs runs by seed (use it when the same seed means the same problems and
    initial policy); it falls back to unpaired with a note when fewer than 2 seeds are shared.
    """
    notes = []
    shared = sorted(set(base_frames) & set(other_frames))
    if paired and len(shared) < 2:
        notes.append(f"only {len(shared)} shared seed(s): compared unpaired")
        paired = False
    fa = final_values(base_frames, metric, final_last)
    fb = final_values(other_frames, metric, final_last)
    final = difference(fa, fb, paired, level, n_boot, seed)
    n_pairs = final.n if paired else min(len(fa), len(fb))
    verdict = Verdict(
        base,
        other,
        metric,
        paired,
        n_pairs,
        final,
        notes=notes,
        final_label=final_label,
        seeds=(len(base_frames), len(other_frames)),
    )
    if threshold is not None:
        ta = threshold_times(base_frames, metric, threshold, smoothing, higher_is_better)
        tb = threshold_times(other_frames, metric, threshold, smoothing, higher_is_better)
        verdict.threshold = threshold
        verdict.speedup = speedup(ta, tb, paired, level, n_boot, seed)
        verdict.reached = (ta.n_reached, ta.n, tb.n_reached, tb.n)
        if ta.n and tb.n and max(ta.steps + tb.steps) == 0:
            notes.append("every run is at the threshold before RL: choose a higher threshold")
    return verdict


# ---------------------------------------------------------------- probes across seeds


def _run_probe_means(probes: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """Average over one run's probe records: {(aggregator or '', stat): mean}."""
    sums: dict[tuple[str, str], list[float]] = {}
    for record in probes:
        aggs = record.get("aggregators") if isinstance(record, Mapping) else None
        if isinstance(aggs, Mapping):
            for name, stats in aggs.items():
                if not isinstance(stats, Mapping):
                    continue
                for stat in PROBE_SUMMARY_STATS:
                    x = _float(stats.get(stat))
                    if math.isfinite(x):
                        sums.setdefault((str(name), stat), []).append(x)
        noise = record.get("length_noise") if isinstance(record, Mapping) else None
        if isinstance(noise, Mapping):
            x = _float(noise.get("slope"))
            if math.isfinite(x):
                sums.setdefault(("", "length_variance_slope"), []).append(x)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def probe_summary(
    probes: Mapping[int, Sequence[Mapping[str, Any]]],
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Probe statistics of one condition across seeds (seed -> that run's probe records).

    Each run's records are averaged over its probe steps first (one number per run and
    statistic), then the seeds give a mean with a bootstrap CI. Rows: aggregator ('' for the
    length-variance slope), stat, mean, low, high, n.
    """
    per_run = {s: _run_probe_means(records) for s, records in probes.items()}
    keys = sorted({k for m in per_run.values() for k in m})
    rows = []
    for agg, stat in keys:
        values = [m[(agg, stat)] for m in per_run.values() if (agg, stat) in m]
        est = mean_ci(values, level, n_boot, seed)
        rows.append(
            {"aggregator": agg, "stat": stat, "mean": est.value, "low": est.low,
             "high": est.high, "n": est.n}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["aggregator", "stat", "mean", "low", "high", "n"])


__all__ = [
    "LEVEL",
    "N_BOOT",
    "PROBE_SUMMARY_STATS",
    "Censored",
    "Estimate",
    "ThresholdSummary",
    "Verdict",
    "bootstrap_ci",
    "compare",
    "curve_bands",
    "difference",
    "expanded_tail",
    "final_values",
    "kaplan_meier",
    "km_median",
    "mean_ci",
    "probe_summary",
    "restricted_mean",
    "seed_matrix",
    "speedup",
    "t_quantile",
    "threshold_summary",
    "threshold_times",
]
