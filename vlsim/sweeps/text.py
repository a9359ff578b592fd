"""A sweep report's numbers as text cells ('value [low, high]'), for the CLI and the app."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from vlsim.analysis import metric_label
from vlsim.sweeps.plan import condition_display
from vlsim.sweeps.report import SweepReport


def slope_sentences(probes: pd.DataFrame) -> list[str]:
    """One line per condition: its length-variance slope (Figure 4) with a CI across seeds."""
    slopes = probes[probes["stat"] == "length_variance_slope"]
    return [
        f"length-variance slope ({condition_display(r['condition'])}): {_ci(r['mean'], r['low'], r['high'])}"
        f" over {r['n']} seeds (1 = Var(g) grows like L)"
        for r in slopes.to_dict("records")
    ]


def _ci(
    value: float,
    low: float,
    high: float,
    fmt: str = ".3g",
    unit: str = "",
    cap: float | None = None,
) -> str:
    """'value [low, high]'; infinite steps read '>cap' (not reached within cap steps)."""

    def f(x: float) -> str:
        """One bound or value as text."""
        if isinstance(x, float) and math.isnan(x):
            return "n/a"
        if isinstance(x, float) and math.isinf(x):
            if cap is not None and x > 0:
                return f">{cap:g}"
            return "inf" if x > 0 else "-inf"
        return format(x, fmt) + unit

    if isinstance(low, float) and math.isnan(low):
        return f(value)
    return f"{f(value)} [{f(low)}, {f(high)}]"


def summary_text(report: SweepReport) -> pd.DataFrame:
    """The per-condition table with 'value [low, high]' cells and readable column names."""
    spec, a = report.spec, report.spec.analysis
    baseline = a.baseline or report.conditions[0]
    final_header = report.metric if spec.kind == "lab" else f"final {metric_label(report.metric)}"
    rows = []
    has_threshold = "reached" in report.summary
    for r in report.summary.to_dict("records"):
        row = {
            "condition": condition_display(r["condition"]),
            "finished": r["runs"],
            final_header: _ci(r["final"], r["final_low"], r["final_high"]),
        }
        if has_threshold:
            row[f"reached {a.threshold:g}"] = r["reached"]
            row["median steps"] = _ci(
                r["median_steps"], r["median_low"], r["median_high"], ".0f", cap=r["horizon"]
            )
            row["mean steps (censored at horizon)"] = _ci(
                r["mean_steps"], r["mean_low"], r["mean_high"], ".1f"
            )
            row[f"speed-up vs {condition_display(baseline)}"] = (
                "baseline"
                if r["condition"] == baseline
                else _ci(
                    r.get("speedup", math.nan),
                    r.get("speedup_low", math.nan),
                    r.get("speedup_high", math.nan),
                    ".2f",
                    "x",
                )
            )
        rows.append(row)
    return pd.DataFrame(rows)


def probe_rows(probes: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per condition and aggregator with variance and CV as 'mean [low, high]'."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in probes.to_dict("records"):
        if r["stat"] not in ("variance", "cv") or not r["aggregator"]:
            continue
        row = rows.setdefault(
            (r["condition"], r["aggregator"]),
            {"condition": condition_display(r["condition"]),
             "aggregator": condition_display(r["aggregator"]), "variance": "",
             "cv": "", "n": r["n"]},
        )  # fmt: skip
        row[r["stat"]] = _ci(r["mean"], r["low"], r["high"])
    return list(rows.values())
