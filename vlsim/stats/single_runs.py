"""Speed-ups of single runs against a baseline run: the Runs page's "x faster" column.

The same estimator as a sweep's (`vlsim.stats.censored.speedup`): restricted mean steps up to
the common horizon, base / run. With one run per side there is no interval, and a run that
never reached the threshold makes the ratio a bound: "at least" when the baseline never got
there (it would have needed more steps), "at most" when the run itself never got there.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import pandas as pd

from vlsim.analysis import Crossing, first_crossing
from vlsim.stats.censored import Censored, speedup

COLUMNS = ["run", "reached", "steps", "seconds", "speedup", "bound", "note"]


def run_speedups(
    runs: Mapping[Hashable, pd.DataFrame],
    metric: str,
    threshold: float,
    baseline: Hashable | None = None,
    smoothing: float = 0.0,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """One row per run: when it reached the threshold and how many times faster than baseline.

    Columns: run; reached (bool); steps (RL updates to the threshold, or the updates it got
    through without reaching it); seconds (NaN if not reached); speedup (the baseline's
    restricted steps / the run's, NaN when undefined); bound ('=', '>=' or '<=': whether the
    speed-up is exact or a bound because one side never reached the threshold); note.
    """
    hits = {
        name: first_crossing(df, metric, threshold, smoothing, higher_is_better)
        for name, df in runs.items()
    }
    base = hits.get(baseline) if baseline is not None else None
    rows = []
    for name, hit in hits.items():
        row = {
            "run": name, "reached": bool(hit and hit.reached),
            "steps": hit.steps if hit else math.nan,
            "seconds": hit.seconds if hit and hit.reached else math.nan,
            "speedup": math.nan, "bound": "", "note": "",
        }  # fmt: skip
        if hit is None:
            row["note"] = "no data for this metric"
        elif not hit.reached:
            row["note"] = f"not reached in {hit.steps:.0f} steps"
        if baseline is not None and name == baseline:
            row["note"] = (row["note"] + "; " if row["note"] else "") + "baseline"
        elif hit is not None and base is not None:
            row.update(_pair(base, hit))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _one(hit: Crossing) -> Censored:
    """One run's crossing as censored data of a single run."""
    return Censored((0,), (hit.steps,), (hit.reached,))


def _pair(base: Crossing, hit: Crossing) -> dict[str, float | str]:
    """speedup, bound and note of one run against the baseline run."""
    est = speedup(_one(base), _one(hit), paired=False)
    note = ""
    if not base.reached and not hit.reached:
        note = "neither reached the threshold"
    elif math.isnan(est.value):
        note = "both at the threshold before RL"
    elif not hit.reached and base.steps >= hit.steps:
        note = f"stopped at {hit.steps:.0f} steps, before the baseline reached it"
    elif not base.reached and hit.steps >= base.steps:
        note = f"the baseline stopped at {base.steps:.0f} steps, before this run reached it"
    if note:
        return {"speedup": math.nan, "bound": "", "note": note}
    bound = "="
    if not base.reached:
        bound, note = ">=", f"baseline not reached in {base.steps:.0f} steps: at least this"
    elif not hit.reached:
        bound = "<="
        note = f"not reached in {hit.steps:.0f} steps: at most this"
    return {"speedup": est.value, "bound": bound, "note": note}
