"""Statistics across seeds: intervals, curve bands, censored steps-to-threshold, verdicts.

One run per condition cannot say whether a difference is real; a sweep runs every condition
with several seeds, and this package turns those runs into estimates with intervals. All
inference across runs lives here; `vlsim.analysis` shapes one run's metrics.

- `intervals`: `Estimate` (value, low, high, n, level, method); `mean_ci` (Student t),
  `difference` (paired t or Welch), `fieller_ratio` (ratio of means), `geometric_mean_ci`
  (t interval on logarithms, for ratios). Every interval is a t interval: the percentile
  bootstrap covers a mean over 3 seeds only about 75% of the time.
- `curves`: seeds as columns, the mean curve with a pointwise t band, final values.
- `censored`: steps until a metric reaches a threshold, with runs that never get there
  censored, never dropped; restricted mean, Kaplan-Meier median and the speed-up
  RMST_A / RMST_B with Fieller's interval.
- `verdicts`: `rule` (B faster / A faster / no difference shown), `Verdict`, `compare`.
- `probe_stats`: gradient-probe statistics across seeds.
- `single_runs`: the same speed-up for single runs against a baseline run (Runs page).

Pure numpy/pandas/scipy: nothing here touches the store or draws.
"""

from __future__ import annotations

from vlsim.stats.censored import (
    MIN_N_SPEEDUP,
    MIN_REACHED_SHARE,
    TOO_CENSORED,
    Censored,
    ThresholdSummary,
    common_horizon,
    kaplan_meier,
    km_median,
    median_interval,
    restricted_mean,
    restricted_times,
    speedup,
    threshold_summary,
    threshold_times,
)
from vlsim.stats.curves import curve_bands, final_values, seed_matrix
from vlsim.stats.intervals import (
    LEVEL,
    MIN_N,
    Estimate,
    difference,
    fieller_ratio,
    geometric_mean_ci,
    mean_ci,
    no_interval,
    t_crit,
    t_interval,
    welch_interval,
)
from vlsim.stats.probe_stats import PROBE_SUMMARY_STATS, probe_summary
from vlsim.stats.single_runs import run_speedups
from vlsim.stats.verdicts import (
    INCONCLUSIVE,
    METHODS,
    Ruling,
    Verdict,
    compare,
    inconclusive_meaning,
    rule,
)

__all__ = [
    "INCONCLUSIVE",
    "LEVEL",
    "METHODS",
    "MIN_N",
    "MIN_N_SPEEDUP",
    "MIN_REACHED_SHARE",
    "PROBE_SUMMARY_STATS",
    "TOO_CENSORED",
    "Censored",
    "Estimate",
    "Ruling",
    "ThresholdSummary",
    "Verdict",
    "common_horizon",
    "compare",
    "curve_bands",
    "difference",
    "fieller_ratio",
    "final_values",
    "geometric_mean_ci",
    "inconclusive_meaning",
    "kaplan_meier",
    "km_median",
    "mean_ci",
    "median_interval",
    "no_interval",
    "probe_summary",
    "restricted_mean",
    "restricted_times",
    "rule",
    "run_speedups",
    "seed_matrix",
    "speedup",
    "t_crit",
    "t_interval",
    "threshold_summary",
    "threshold_times",
    "welch_interval",
]
