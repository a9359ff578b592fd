"""Confidence intervals of means, differences and ratios of per-seed values (Student t, Fieller).

A sweep has few seeds (3 to 10). A percentile bootstrap over 3 seeds covers the mean in only
about 75% of cases, so every interval here is a Student-t interval: exact for normal data at any
n >= 2 and robust enough for the bounded values of training runs (accuracies, steps). Unpaired
differences use Welch's interval; ratios use Fieller's interval, the t interval of a ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

LEVEL = 0.95
"""Default confidence level of every interval."""

MIN_N = 2
"""Fewest values (or pairs) behind an interval: one value says nothing about its spread."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval (NaN bounds: no interval could be formed).

    method names how the interval was formed ("Student t, 4 df"), or why there is none.
    """

    value: float
    low: float
    high: float
    n: int
    level: float = LEVEL
    method: str = ""

    @property
    def has_interval(self) -> bool:
        """True when both bounds are numbers (infinite bounds count)."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    def excludes(self, null: float) -> bool:
        """True when the interval lies entirely on one side of `null` (a clear difference)."""
        return self.has_interval and (self.low > null or self.high < null)

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain dict (for JSON and tables)."""
        return asdict(self)


def no_interval(
    value: float = math.nan, n: int = 0, level: float = LEVEL, why: str = ""
) -> Estimate:
    """An estimate without an interval; `why` says why (it becomes the method text)."""
    if not why:
        why = "no data" if n == 0 else f"no interval from {n} value{'s' if n != 1 else ''}"
    return Estimate(float(value), math.nan, math.nan, int(n), level, why)


def t_crit(df: float, level: float = LEVEL) -> float:
    """Two-sided critical value of Student's t: the (1 + level) / 2 quantile with df degrees."""
    return float(sps.t.ppf(0.5 + level / 2, df))


def _df_text(df: float) -> str:
    return f"{df:.0f} df" if abs(df - round(df)) < 1e-9 else f"{df:.1f} df"


def _clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=float).reshape(-1)
    return x[~np.isnan(x)]


def t_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Estimate:
    """Mean of the values (NaN dropped) with the Student-t interval mean +- t * sd / sqrt(n).

    No interval below MIN_N values; values without spread give the point itself.
    """
    x = _clean(values)
    n = int(x.size)
    if n == 0:
        return no_interval(level=level)
    mean = float(x.mean())
    if n < MIN_N:
        return no_interval(mean, n, level)
    df = n - 1
    half = t_crit(df, level) * float(x.std(ddof=1)) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n, level, f"Student t, {_df_text(df)}")


def welch_interval(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = LEVEL
) -> Estimate:
    """mean(b) - mean(a) with Welch's t interval (unequal variances, Satterthwaite df)."""
    xa, xb = _clean(a), _clean(b)
    n = int(min(xa.size, xb.size))
    if n == 0:
        return no_interval(level=level)
    value = float(xb.mean() - xa.mean())
    if n < MIN_N:
        return no_interval(value, n, level)
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    se2 = va + vb
    if se2 == 0:
        return Estimate(value, value, value, n, level, "Welch t, no spread")
    df = se2**2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1))
    half = t_crit(df, level) * math.sqrt(se2)
    return Estimate(value, value - half, value + half, n, level, f"Welch t, {_df_text(df)}")


def fieller_ratio(
    num: Sequence[float] | np.ndarray,
    den: Sequence[float] | np.ndarray,
    paired: bool,
    level: float = LEVEL,
) -> Estimate:
    """mean(num) / mean(den) with Fieller's interval (the t interval of a ratio of means).

    The interval is every r for which mean(num) - r * mean(den) = 0 passes a t test:
    (m_x - r m_y)^2 <= t^2 (s_xx - 2 r s_xy + r^2 s_yy), with s the (co)variances of the means
    (s_xy = 0 unpaired; paired values are NaN-free pairs in the same order). It is exact for
    normal data; no interval when the denominator could be 0 (the set is unbounded). When
    neither side varies, the interval is the point itself, as for `t_interval`.
    """
    x, y = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if paired:
        keep = ~(np.isnan(x) | np.isnan(y))
        x, y = x[keep], y[keep]
    else:
        x, y = _clean(x), _clean(y)
    n = int(min(x.size, y.size))
    if n == 0:
        return no_interval(level=level)
    mx, my = float(x.mean()), float(y.mean())
    value = _ratio(mx, my)
    if n < MIN_N or math.isnan(value):
        return no_interval(value, n, level)
    sxx, syy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if paired:
        sxy = float(np.cov(x, y, ddof=1)[0, 1]) / n
        df = n - 1.0
        name = "Fieller, paired t"
    else:
        sxy = 0.0
        r = value if math.isfinite(value) else 0.0
        var = sxx + r * r * syy
        df = (
            var**2 / (sxx**2 / (x.size - 1) + r**4 * syy**2 / (y.size - 1))
            if var > 0
            else x.size + y.size - 2.0
        )
        name = "Fieller, Welch t"
    if sxx == 0 and syy == 0:  # every run of each side gives the same value: a point
        return Estimate(value, value, value, n, level, f"{name}, no spread")
    t2 = t_crit(df, level) ** 2
    qa = my * my - t2 * syy
    qb = -2.0 * (mx * my - t2 * sxy)
    qc = mx * mx - t2 * sxx
    disc = qb * qb - 4 * qa * qc
    if qa <= 0 or disc < 0:
        return no_interval(
            value, n, level, "no interval: the denominator is not clearly above 0 (Fieller)"
        )
    root = math.sqrt(disc)
    low, high = (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)
    return Estimate(value, low, high, n, level, f"{name}, {_df_text(df)}")


def _ratio(num: float, den: float) -> float:
    """num / den; inf for x / 0 with x > 0, NaN for 0 / 0."""
    if math.isnan(num) or math.isnan(den):
        return math.nan
    if den == 0:
        return math.nan if num == 0 else math.inf
    return num / den


def mean_ci(
    samples: Sequence[float] | np.ndarray,
    level: float = LEVEL,
) -> Estimate:
    """Mean of the samples (NaN ignored) with a Student-t interval (none below 2 samples)."""
    return t_interval(samples, level)


def geometric_mean_ci(
    values: Sequence[float] | np.ndarray,
    level: float = LEVEL,
) -> Estimate:
    """Geometric mean of positive values (e.g. per-seed variance ratios) with a t interval.

    The Student-t interval of mean(log v), exponentiated: exact for log-normal values, and the
    natural scale for ratios (a ratio r and 1/r are equally far from 1). NaN values are
    ignored; a value <= 0 gives no interval (its logarithm does not exist).
    """
    x = _clean(values)
    if x.size and np.any(x <= 0):
        return no_interval(
            math.nan, int(x.size), level, "no interval: a value is not positive (geometric mean)"
        )
    est = t_interval(np.log(x), level)
    return Estimate(
        math.exp(est.value) if x.size else math.nan,
        math.exp(est.low) if est.has_interval else math.nan,
        math.exp(est.high) if est.has_interval else math.nan,
        est.n,
        level,
        f"{est.method} on logarithms" if est.has_interval else est.method,
    )


def difference(
    a: Mapping[int, float],
    b: Mapping[int, float],
    paired: bool,
    level: float = LEVEL,
) -> Estimate:
    """Mean of b minus mean of a with a t interval; `a` and `b` map seed -> value.

    paired=True uses only the seeds both have and the t interval of the differences b_s - a_s,
    which removes what the seed itself contributes; otherwise Welch's interval. n is the number
    of seeds (pairs) behind the estimate, the smaller side when unpaired.
    """
    a = {s: float(v) for s, v in a.items() if not math.isnan(float(v))}
    b = {s: float(v) for s, v in b.items() if not math.isnan(float(v))}
    if paired:
        shared = sorted(set(a) & set(b))
        est = t_interval([b[s] - a[s] for s in shared], level)
        if est.method.startswith("Student t"):
            return Estimate(est.value, est.low, est.high, est.n, level, "paired " + est.method)
        return est
    return welch_interval(list(a.values()), list(b.values()), level)
