"""Sweeps: one question, many runs.

- `spec`: the spec models (base config, conditions, seeds, analysis) and loading them;
- `plan`: the deterministic expansion into runs, each with an identity key;
- `state`: a sweep's spec and driver state in the store;
- `execute`: running the unfinished runs as jobs (local worker processes or Ray);
- `launch`: starting a sweep in the background (the app);
- `report`: statistics across seeds and verdicts (numbers from `vlsim.stats`);
- `text`: the report's cells as 'value [low, high]' text;
- `questions`: the Hypotheses page's question templates as sweep specs.

This package never imports Streamlit.
"""

from vlsim.sweeps.execute import (
    SweepOutcome,
    fit_workers,
    lab_records,
    run_in_memory,
    run_sweep,
    store_records,
)
from vlsim.sweeps.launch import launch, reap, stop
from vlsim.sweeps.plan import (
    PlannedRun,
    condition_display,
    conditions,
    config_key,
    expand,
    plan_table,
    stored_runs,
)
from vlsim.sweeps.report import SweepReport, build_report, resolve
from vlsim.sweeps.spec import (
    EXECUTORS,
    GROUP_PREFIX,
    AnalysisSpec,
    SweepError,
    SweepSpec,
    load_spec,
    parse_spec,
)
from vlsim.sweeps.state import SweepRecord, get_sweep, list_sweeps, save_sweep
from vlsim.sweeps.text import probe_rows, slope_sentences, summary_text

__all__ = [
    "EXECUTORS", "GROUP_PREFIX", "AnalysisSpec", "PlannedRun", "SweepError", "SweepOutcome",
    "SweepRecord", "SweepReport", "SweepSpec", "build_report", "condition_display", "conditions", "config_key",
    "expand", "fit_workers", "get_sweep", "lab_records", "launch", "list_sweeps", "load_spec",
    "parse_spec", "plan_table", "probe_rows", "reap", "resolve", "run_in_memory", "run_sweep",
    "save_sweep", "slope_sentences", "stop", "store_records", "stored_runs",
    "summary_text",
]  # fmt: skip
