"""A sweep's report: its stored runs summarised across seeds, with CIs and verdicts.

`build_report` turns the stored runs into statistics across seeds (every number comes from
`vlsim.stats`): curves with bands, final values and steps to a threshold with CIs, and a
verdict per comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vlsim import stats
from vlsim.analysis import metric_label
from vlsim.store import Store
from vlsim.sweeps.plan import condition_display, expand, plan_table, stored_runs
from vlsim.sweeps.spec import WARMSTART_FIELDS, SweepError, SweepSpec, load_spec
from vlsim.sweeps.state import get_sweep, list_sweeps


@dataclass
class SweepReport:
    """A sweep's runs read back from the store and summarised across seeds."""

    spec: SweepSpec
    plan: pd.DataFrame
    conditions: list[str]
    frames: dict[str, dict[int, pd.DataFrame]]
    finished: dict[str, dict[int, pd.DataFrame]]
    summary: pd.DataFrame
    verdicts: list[stats.Verdict]
    probes: pd.DataFrame
    notes: list[str]

    @property
    def metric(self) -> str:
        """The compared metric."""
        return self.spec.metric()

    def bands(self, smoothing: float | None = None) -> dict[str, pd.DataFrame]:
        """Mean curve and band of the metric per condition (every run with data counts)."""
        a = self.spec.analysis
        weight = a.smoothing if smoothing is None else smoothing
        return {
            c: stats.curve_bands(self.frames[c], self.metric, weight, a.level)
            for c in self.conditions
            if self.frames[c]
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything as strict-JSON data (the CLI's --json): NaN -> null, inf -> 'inf'."""
        return _json_safe(
            {
                "name": self.spec.name,
                "question": self.spec.question,
                "kind": self.spec.kind,
                "metric": self.metric,
                "threshold": self.spec.analysis.threshold if self.spec.kind == "train" else None,
                "level": self.spec.analysis.level,
                "runs": _records(self.plan),
                "conditions": _records(self.summary),
                "verdicts": [v.to_dict() for v in self.verdicts],
                "probes": _records(self.probes),
                "notes": list(self.notes),
            }
        )


def _json_safe(obj: Any) -> Any:
    """obj with numpy scalars as Python numbers, NaN as None and infinities as 'inf'/'-inf'."""
    if hasattr(obj, "item") and not isinstance(obj, (list, dict)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [_json_safe(row) for row in df.to_dict("records")]


def _paired(spec: SweepSpec, configs: Mapping[str, Mapping[str, Any]], a: str, b: str) -> bool:
    """Whether seeds share data between two conditions (the analysis's 'paired' setting)."""
    if spec.analysis.paired != "auto":
        return spec.analysis.paired == "yes"
    if spec.kind == "lab":
        return True
    ca, cb = configs.get(a), configs.get(b)
    if ca is None or cb is None:
        return False
    return all(ca.get(k) == cb.get(k) for k in WARMSTART_FIELDS)


def build_report(store: Store, spec: SweepSpec) -> SweepReport:
    """Read a sweep's runs from the store and compute its statistics and verdicts."""
    plan = expand(spec)
    stored = stored_runs(store, spec)
    labels = list(dict.fromkeys(p.condition for p in plan))
    frames: dict[str, dict[int, pd.DataFrame]] = {c: {} for c in labels}
    finished: dict[str, dict[int, pd.DataFrame]] = {c: {} for c in labels}
    probes: dict[str, dict[int, list[dict[str, Any]]]] = {c: {} for c in labels}
    configs: dict[str, dict[str, Any]] = {}
    for p in plan:
        configs.setdefault(p.condition, p.config)
        info = stored.get(p.key)
        if info is None:
            continue
        df = store.metrics(info.id)
        df = df.drop(columns=[c for c in df.columns if c.startswith("dist/")])
        if len(df):
            frames[p.condition][p.seed] = df
        if info.status == "finished":
            finished[p.condition][p.seed] = df
            recs = store.probes(info.id)
            if recs:
                probes[p.condition][p.seed] = recs
    a = spec.analysis
    metric = spec.metric()
    threshold = a.threshold if spec.kind == "train" else None
    notes = []
    unfinished = sum(
        1 for p in plan if (stored.get(p.key) is None or stored[p.key].status != "finished")
    )
    if unfinished:
        notes.append(
            f"{unfinished} of {len(plan)} runs have not finished; the tables and verdicts use "
            "finished runs only (the curves show every run with data)"
        )
    rows = []
    baseline = a.baseline or labels[0]
    base_times = None
    if threshold is not None:
        base_times = stats.threshold_times(
            finished[baseline], metric, threshold, a.smoothing, a.higher_is_better
        )
    for c in labels:
        fin = finished[c]
        final = stats.mean_ci(list(stats.final_values(fin, metric, a.final_last).values()), a.level)
        row: dict[str, Any] = {
            "condition": c,
            "runs": f"{len(fin)}/{len(spec.seeds)}",
            "final": final.value,
            "final_low": final.low,
            "final_high": final.high,
        }
        if threshold is not None:
            times = stats.threshold_times(fin, metric, threshold, a.smoothing, a.higher_is_better)
            summ = stats.threshold_summary(times, None, a.level)
            row.update(
                {
                    "reached": f"{summ.reached}/{summ.n}",
                    "median_steps": summ.median.value,
                    "median_low": summ.median.low,
                    "median_high": summ.median.high,
                    "mean_steps": summ.restricted_mean.value,
                    "mean_low": summ.restricted_mean.low,
                    "mean_high": summ.restricted_mean.high,
                    "horizon": summ.horizon,
                }
            )
            if c != baseline and base_times is not None:
                sp = stats.speedup(
                    base_times,
                    times,
                    _paired(spec, configs, baseline, c),
                    a.level,
                )
                row.update({"speedup": sp.value, "speedup_low": sp.low, "speedup_high": sp.high})
        rows.append(row)
    summary = pd.DataFrame(rows)
    pairs = list(a.pairs) or [(baseline, c) for c in (a.compare or labels) if c != baseline]
    verdicts = [
        stats.compare(
            condition_display(base),  # names in the verdict's words
            condition_display(c),
            finished[base],
            finished[c],
            metric,
            threshold,
            _paired(spec, configs, base, c),
            a.smoothing,
            a.higher_is_better,
            a.final_last,
            a.level,
            final_label=metric if spec.kind == "lab" else "",
            metric_label=metric_label(metric),
        )
        for base, c in pairs
        if c != base
    ]
    probe_tables = []
    for c in labels:
        if probes[c]:
            table = stats.probe_summary(probes[c], a.level)
            table.insert(0, "condition", c)
            probe_tables.append(table)
    probe_df = (
        pd.concat(probe_tables, ignore_index=True)
        if probe_tables
        else pd.DataFrame(columns=["condition", "aggregator", "stat", "mean", "low", "high", "n"])
    )
    return SweepReport(
        spec, plan_table(plan, stored), labels, frames, finished, summary, verdicts, probe_df, notes
    )


def resolve(store: Store, target: str) -> SweepSpec:
    """A spec from a file path, or from the store by sweep name (SweepError if neither)."""
    path = Path(target)
    if path.suffix.lower() in (".json", ".yaml", ".yml") or path.exists():
        if not path.exists():
            raise SweepError(f"no spec file {target}")
        return load_spec(path)
    record = get_sweep(store, target)
    if record is None:
        names = [r.name for r in list_sweeps(store)[:20]]
        known = f"; stored sweeps: {', '.join(names)}" if names else "; the store has no sweeps"
        raise SweepError(f"no sweep called {target!r} in {store.data_dir}{known}")
    return record.spec
