"""Sweeps: one question, many runs. A spec, its deterministic expansion, executors and reports.

A sweep spec (`SweepSpec`, JSON or YAML) names a base config (a training config from a preset,
or a Length Lab config), the *conditions* to compare (a grid over any fields and/or a list of
variants) and the *seeds* every condition is run with. `expand` turns it into runs, always in
the same order (seed by seed, conditions in spec order), so the plan can be shown before
anything starts. In the store a sweep is a group of runs (`group_name = "sweep/<name>"`) plus
its spec in a small `sweeps` table; each run is recognised by a hash of its config, so running
a sweep again skips the runs that already finished and continues the others.

Executors:

- `local` (default): a process pool on this machine, workers x torch threads fitted to the
  cores. Each run writes its records to the SQLite store as it trains (and checkpoints), so a
  crash of the driver keeps every finished run and the progress of the others.
- `ray`: the same runs as Ray tasks on a cluster (`ray_address`, else $RAY_ADDRESS, else a
  local Ray instance). Workers elsewhere cannot write the driver's SQLite file, so each run's
  records come back to the driver when the run ends and the driver stores them at once. A task
  whose worker is lost is retried (`retries`); after that the run is marked failed with the
  error. Ray is optional: it is imported only here, with a clear message when missing.

`build_report` turns the stored runs into statistics across seeds (`vlsim.stats`): curves
with bands, final values and steps to a threshold with CIs, and a verdict per comparison.
This module never imports Streamlit.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlsim import stats
from vlsim.config import PRESETS, LabConfig, TrainConfig, format_errors, preset_config
from vlsim.scenario import parent_of
from vlsim.store import RunInfo, Store

GROUP_PREFIX = "sweep/"
"""Runs of sweep NAME have group_name 'sweep/NAME'."""

MAX_RUNS = 2000
"""A spec that expands to more runs than this is refused."""

EXECUTORS = ("local", "ray")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"

SWEEPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    executor TEXT,
    message TEXT
)
"""

CONFIG_KEY_EXCLUDE = ("name", "threads")
"""Config fields that do not enter a run's identity (a label, an execution detail)."""

WARMSTART_FIELDS = (
    "task", "trace", "model_size", "max_new_tokens", "sft_steps", "sft_batch_size", "sft_lr",
)  # fmt: skip
"""Fields that fix a training run's problems and initial policy (besides its seed)."""


class SweepError(ValueError):
    """A sweep that cannot be planned or run, with a message a student can act on."""


# ---------------------------------------------------------------- the spec


class AnalysisSpec(BaseModel):
    """How a sweep's runs become an answer: the metric, the threshold and the comparisons."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(
        "",
        max_length=100,
        description="Metric compared across conditions (default: eval/mean_at_k for training, "
        "lab/vl_norm/cv for the Length Lab).",
    )
    threshold: float | None = Field(
        0.3, description="Steps-to-threshold of the metric (training only; null = no threshold)."
    )
    higher_is_better: bool = Field(True, description="The metric must rise to the threshold.")
    smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="EMA weight applied per run before thresholds."
    )
    final_last: int = Field(
        1, ge=1, le=100, description="Final value = mean of the metric's last N logged values."
    )
    baseline: str = Field(
        "", description="Condition the others are compared with (default: the first)."
    )
    compare: list[str] = Field(
        default_factory=list, description="Conditions compared with the baseline (default: all)."
    )
    pairs: list[tuple[str, str]] = Field(
        default_factory=list,
        description="Explicit comparisons [baseline, other]; when given, they replace "
        "baseline-vs-compare in the verdicts.",
    )
    paired: Literal["auto", "yes", "no"] = Field(
        "auto",
        description="Pair runs by seed: 'auto' pairs when the same seed gives the same problems "
        "and initial policy in both conditions.",
    )
    level: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence level of the intervals.")
    n_boot: int = Field(2000, ge=100, le=100_000, description="Bootstrap resamples.")
    seed: int = Field(0, ge=0, description="Seed of the bootstrap (same seed, same intervals).")


class SweepSpec(BaseModel):
    """A base config, the conditions to compare (grid and/or variants) and the seeds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "", description="Sweep name (letters, digits, _ . -); default: the file name."
    )
    question: str = Field("", max_length=500, description="The question, in words.")
    kind: Literal["train", "lab"] = Field(
        "train", description="'train': tiny-policy RL runs; 'lab': Length Lab evaluations."
    )
    preset: str = Field("quick", description="Training preset the base starts from (train only).")
    base: dict[str, Any] = Field(
        default_factory=dict,
        description="Config fields shared by every run (TrainConfig or LabConfig; dotted keys allowed).",
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Field -> values; every combination is a condition (dotted keys: trace.length).",
    )
    variants: list[dict[str, Any]] = Field(
        default_factory=list,
        description="A list of conditions, each a dict of field values (and an optional 'label'); "
        "combined with every grid point.",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        max_length=1000,
        description="Seeds every condition runs with (the replicates).",
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec, description="How to read the result."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not re.match(NAME_PATTERN, value):
            raise ValueError(
                "name may hold letters, digits, '_', '.' and '-' (at most 100, starting with a "
                f"letter or digit); got {value!r}"
            )
        return value

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; choose one of {', '.join(PRESETS)}")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if key == "seed":
                raise ValueError(
                    "put seeds in 'seeds', not in the grid: they are the replicates every "
                    "condition runs with"
                )
            if not values:
                raise ValueError(f"grid field {key!r} has no values")
        return grid

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for k, variant in enumerate(variants):
            if "seed" in variant:
                raise ValueError(f"variant {k + 1} sets 'seed'; list seeds in 'seeds' instead")
        return variants

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be 0 or more")
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must not repeat")
        return seeds

    def metric(self) -> str:
        """The metric the analysis compares (its default depends on the kind)."""
        if self.analysis.metric:
            return self.analysis.metric
        return "lab/vl_norm/cv" if self.kind == "lab" else "eval/mean_at_k"

    def group(self) -> str:
        """The store's group name of this sweep's runs."""
        return GROUP_PREFIX + self.name


def parse_spec(data: Mapping[str, Any], default_name: str = "") -> SweepSpec:
    """A SweepSpec from a dict (SweepError with one readable line per problem)."""
    try:
        spec = SweepSpec.model_validate(dict(data or {}))
    except ValidationError as err:
        raise SweepError(f"invalid sweep spec:\n{format_errors(err)}") from err
    if not spec.name:
        name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", default_name).strip("-.") or "sweep"
        spec = spec.model_copy(update={"name": name[:100]})
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    """Load a spec from a JSON or YAML file; its name defaults to the file's stem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SweepError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # noqa: BLE001 - YAML and JSON raise different errors
        raise SweepError(f"cannot parse {path}: {err}") from err
    if not isinstance(data, dict):
        raise SweepError(
            f"{path} must hold a mapping of spec fields (name, base, grid, seeds, ...)"
        )
    try:
        return parse_spec(data, default_name=path.stem)
    except SweepError as err:
        raise SweepError(f"{path}: {err}") from err


# ---------------------------------------------------------------- expansion


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its condition, seed, full config and identity key."""

    index: int
    condition: str
    seed: int
    overrides: dict[str, Any]
    config: dict[str, Any]
    key: str
    name: str


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted field; a dict merges into a dict of the same 'kind', anything else replaces."""
    parts = dotted.split(".")
    node = parent_of(data, parts)
    leaf = parts[-1]
    old = node.get(leaf)
    if (
        isinstance(value, Mapping)
        and isinstance(old, dict)
        and value.get("kind", old.get("kind")) == old.get("kind")
    ):
        merged = dict(old)
        for key, sub in value.items():
            _set_path(merged, key, sub)
        node[leaf] = merged
    else:
        node[leaf] = json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value


def _model(spec: SweepSpec) -> type[BaseModel]:
    return LabConfig if spec.kind == "lab" else TrainConfig


def _base_data(spec: SweepSpec) -> dict[str, Any]:
    """The base config as a dict: the preset (train) or LabConfig's defaults, then `base`."""
    if spec.kind == "lab":
        data = LabConfig().model_dump(mode="json")
    else:
        data = preset_config(spec.preset).model_dump(mode="json")
    for key, value in spec.base.items():
        _set_path(data, key, value)
    return data


def _check_keys(spec: SweepSpec, keys: Iterable[str]) -> None:
    """Top-level field names must exist: say which do not, with a suggestion."""
    fields = list(_model(spec).model_fields)
    bad = []
    for key in dict.fromkeys(keys):
        top = key.split(".")[0]
        if top in fields:
            continue
        near = difflib.get_close_matches(top, fields, n=1)
        bad.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    if bad:
        raise SweepError(
            f"not a field of {_model(spec).__name__}: {', '.join(bad)}. Fields: {', '.join(fields)}"
        )


def _short(value: Any) -> str:
    """A value as a label piece: numbers compact, length specs as kind(param=value, ...)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        kind = value.get("kind")
        inner = ",".join(f"{k}={_short(v)}" for k, v in value.items() if k != "kind")
        return f"{kind}({inner})" if kind else "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return (
            "[" + ",".join(_short(v) for v in value[:6]) + (",..." if len(value) > 6 else "") + "]"
        )
    return str(value)


def _label_piece(key: str, value: Any) -> str:
    last = key.split(".")[-1]
    if last == "aggregator":
        return str(value)
    return f"{last}={_short(value)}"


def conditions(spec: SweepSpec) -> list[tuple[str, dict[str, Any]]]:
    """(label, field overrides) of every condition: variants x grid, in spec order.

    Labels name only the fields that differ between conditions ('vl_norm · alpha=0.5');
    a variant's own 'label' wins. Repeated labels are refused.
    """
    variants = spec.variants or [{}]
    grid_keys = list(spec.grid)
    combos = list(itertools.product(*(spec.grid[k] for k in grid_keys))) or [()]
    conds: list[tuple[str | None, dict[str, Any]]] = []
    for variant in variants:
        own = variant.get("label")
        fields = {k: v for k, v in variant.items() if k != "label"}
        for combo in combos:
            overrides = {**fields, **dict(zip(grid_keys, combo, strict=True))}
            conds.append((str(own) if own else None, overrides))
    keys = list(dict.fromkeys([k for v in variants for k in v if k != "label"] + grid_keys))
    varying = [
        k
        for k in keys
        if len({json.dumps(o.get(k, "<unset>"), sort_keys=True) for _, o in conds}) > 1
    ]
    out = []
    for own, overrides in conds:
        pieces = [_label_piece(k, overrides[k]) for k in varying if k in overrides]
        label = own or " · ".join(pieces) or "base"
        if own and len(variants) > 1 and spec.grid:
            label = " · ".join(
                [own, *[_label_piece(k, overrides[k]) for k in grid_keys if k in varying]]
            )
        out.append((label, overrides))
    labels = [label for label, _ in out]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise SweepError(
            f"several conditions are called {', '.join(repr(r) for r in repeated)}; give the "
            "variants distinct 'label's"
        )
    return out


def config_key(kind: str, config: Mapping[str, Any]) -> str:
    """A run's identity: a hash of its kind and config (without the name and thread count)."""
    data = {k: v for k, v in config.items() if k not in CONFIG_KEY_EXCLUDE}
    text = json.dumps({"kind": kind, "config": data}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def expand(spec: SweepSpec) -> list[PlannedRun]:
    """Every run of the sweep, seed by seed and condition by condition (always the same order)."""
    conds = conditions(spec)
    _check_keys(spec, [*spec.base, *(k for _, o in conds for k in o)])
    total = len(conds) * len(spec.seeds)
    if total > MAX_RUNS:
        raise SweepError(
            f"the sweep has {len(conds)} conditions x {len(spec.seeds)} seeds = {total} runs; "
            f"at most {MAX_RUNS}: use fewer grid values or seeds"
        )
    model = _model(spec)
    base = _base_data(spec)
    configs: dict[str, dict[str, Any]] = {}
    for label, overrides in conds:
        data = json.loads(json.dumps(base))
        for key, value in overrides.items():
            _set_path(data, key, value)
        try:
            configs[label] = model.model_validate(data).model_dump(mode="json")
        except ValidationError as err:
            raise SweepError(
                f"condition {label!r} is not a valid {model.__name__}:\n{format_errors(err)}"
            ) from err
    _check_labels(spec, [label for label, _ in conds])
    plan: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for seed in spec.seeds:
        for label, overrides in conds:
            config = dict(configs[label], seed=seed)
            name = f"{spec.name}: {label} · seed {seed}"[:200]
            if spec.kind == "train":
                config["name"] = name
            key = config_key(spec.kind, config)
            if key in seen:
                raise SweepError(
                    f"conditions {seen[key]!r} and {label!r} give the same config; drop one"
                )
            seen[key] = label
            plan.append(PlannedRun(len(plan), label, seed, overrides, config, key, name))
    return plan


def _check_labels(spec: SweepSpec, labels: list[str]) -> None:
    wanted = [spec.analysis.baseline] if spec.analysis.baseline else []
    wanted += spec.analysis.compare
    wanted += [label for pair in spec.analysis.pairs for label in pair]
    unknown = [w for w in wanted if w not in labels]
    if unknown:
        raise SweepError(
            f"analysis names condition(s) {', '.join(map(repr, unknown))}, which the sweep does "
            f"not have; its conditions are: {', '.join(map(repr, labels))}"
        )


def plan_table(plan: list[PlannedRun], status: Mapping[str, RunInfo] | None = None) -> pd.DataFrame:
    """The expansion as a table: #, condition, seed, and (given stored runs) run id and status."""
    rows = []
    for p in plan:
        info = (status or {}).get(p.key)
        rows.append(
            {"#": p.index + 1, "condition": p.condition, "seed": p.seed,
             "run": info.id if info else None, "status": info.status if info else "to run"}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["#", "condition", "seed", "run", "status"])


# ---------------------------------------------------------------- the store


@dataclass
class SweepRecord:
    """A sweep as stored: its spec and the state of its last driver."""

    name: str
    spec: SweepSpec
    created: float
    updated: float
    status: str
    pid: int | None
    executor: str | None
    message: str | None

    @property
    def active(self) -> bool:
        """True while a driver process of this sweep is alive."""
        from vlsim.jobs import worker_alive

        return self.status in ("starting", "running") and worker_alive(self.pid)


def _ensure_table(store: Store) -> None:
    """Create the sweeps table once per Store object (a write transaction, so only once)."""
    if getattr(store, "_sweeps_table", False):
        return
    with store._transaction() as conn:  # the store's own short write transaction
        conn.execute(SWEEPS_SCHEMA)
    store._sweeps_table = True


def save_sweep(store: Store, spec: SweepSpec) -> None:
    """Record (or update) a sweep's spec in the store."""
    _ensure_table(store)
    now = time.time()
    with store._transaction() as conn:
        conn.execute(
            "INSERT INTO sweeps (name, spec, created, updated, status) VALUES (?, ?, ?, ?, 'new')"
            " ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated = excluded.updated",
            (spec.name, spec.model_dump_json(), now, now),
        )


def set_sweep_state(
    store: Store,
    name: str,
    status: str,
    pid: int | None = None,
    executor: str | None = None,
    message: str | None = None,
) -> None:
    """Record what a sweep's driver is doing ('starting', 'running', 'done', 'incomplete', ...)."""
    _ensure_table(store)
    with store._transaction() as conn:
        conn.execute(
            "UPDATE sweeps SET status = ?, pid = COALESCE(?, pid), executor = COALESCE(?, executor),"
            " message = ?, updated = ? WHERE name = ?",
            (status, pid, executor, message, time.time(), name),
        )


def _record(row: Any) -> SweepRecord:
    return SweepRecord(
        name=row["name"],
        spec=SweepSpec.model_validate_json(row["spec"]),
        created=row["created"],
        updated=row["updated"],
        status=row["status"],
        pid=row["pid"],
        executor=row["executor"],
        message=row["message"],
    )


def get_sweep(store: Store, name: str) -> SweepRecord | None:
    """The stored sweep of this name (or group name 'sweep/NAME'), or None."""
    _ensure_table(store)
    name = name.removeprefix(GROUP_PREFIX)
    row = store._conn().execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
    return _record(row) if row is not None else None


def list_sweeps(store: Store) -> list[SweepRecord]:
    """Every stored sweep, most recently updated first."""
    _ensure_table(store)
    rows = store._conn().execute("SELECT * FROM sweeps ORDER BY updated DESC").fetchall()
    return [_record(row) for row in rows]


def stored_runs(store: Store, spec: SweepSpec) -> dict[str, RunInfo]:
    """{config key: stored run} for this sweep's runs (a finished run wins over a repeat)."""
    out: dict[str, RunInfo] = {}
    for info in sorted(store.list_runs(group_name=spec.group()), key=lambda r: r.id):
        key = config_key(info.kind, info.config)
        old = out.get(key)
        if old is None or old.status != "finished":
            out[key] = info
    return out


# ---------------------------------------------------------------- running one run


def fit_workers(workers: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads each) that fill the cores: by default 1 thread each."""
    cores = max(1, int(cores or os.cpu_count() or 1))
    workers = max(1, int(workers or cores))
    return workers, max(1, cores // workers)


def lab_records(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the Length Lab once: (metrics record, probe-style record) for the store."""
    from vlsim.montecarlo import run_lab

    result = run_lab(LabConfig.model_validate(dict(config)))
    metrics: dict[str, Any] = {
        "lab/mean_length": result.mean_length,
        "lab/std_length": result.std_length,
        "lab/mean_accuracy": result.mean_accuracy,
        "lab/grad_norm": result.grad_norm,
    }
    aggs = {}
    for r in result.results:
        row = {
            k: getattr(r, k)
            for k in ("scale", "variance", "cv", "efficiency", "cosine", "direction_bias")
        }
        aggs[r.name] = row
        metrics.update({f"lab/{r.name}/{k}": v for k, v in row.items()})
    return metrics, {"aggregators": aggs}


def _execute_lab(store: Store, run_id: int) -> str:
    """A stored Length Lab run: evaluate and record it; returns its final status."""
    info = store.get_run(run_id)
    store.set_status(run_id, "running")
    store.heartbeat(run_id, pid=os.getpid())
    try:
        metrics, probe = lab_records(info.config)
    except Exception as err:  # noqa: BLE001 - the run fails, the sweep goes on
        store.set_status(run_id, "failed", error=f"{type(err).__name__}: {err}")
        return "failed"
    store.log_metrics(run_id, 0, metrics)
    store.log_probe(run_id, 0, probe)
    store.set_status(run_id, "finished")
    return "finished"


_TERM_REQUESTED = False


def _on_term(signum: int, frame: Any) -> None:
    global _TERM_REQUESTED
    _TERM_REQUESTED = True


def _pool_init(threads: int, kind: str) -> None:
    """Pool process set-up: torch threads; Ctrl-C is the driver's, SIGTERM stops the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    if kind == "train":
        from vlsim.worker import _set_threads

        _set_threads(threads)


def _pool_run(data_dir: str, run_id: int, kind: str) -> str:
    """Execute one stored run in a pool process (records go to the store as they are made)."""
    global _TERM_REQUESTED
    from vlsim.worker import _warmstart_lock, stop_file

    _TERM_REQUESTED = False
    store = Store(data_dir)
    stop = stop_file(data_dir, run_id)

    def should_stop() -> bool:
        """A SIGTERM to this process, or the run's stop file."""
        return _TERM_REQUESTED or stop.exists()

    try:
        if kind == "lab":
            return _execute_lab(store, run_id)
        from vlsim.runner import execute_run

        lock = _warmstart_lock(store, run_id)

        def on_warmstart(step: int, total: int, loss: float) -> None:
            """Leave the warm start at once when a stop is asked for."""
            if should_stop():
                raise KeyboardInterrupt("stop requested during the warm start")

        try:
            lock.acquire(should_stop)
            if should_stop():
                store.set_status(run_id, "stopped")
                return "stopped"
            return execute_run(
                store,
                run_id,
                should_stop=should_stop,
                on_step=lambda step, record: lock.release(),
                on_warmstart=on_warmstart,
            )
        except KeyboardInterrupt:
            return "stopped"  # execute_run recorded it
        except Exception:  # noqa: BLE001 - execute_run recorded the error
            return "failed"
        finally:
            lock.release()
    finally:
        stop.unlink(missing_ok=True)
        store.close()


def run_in_memory(
    kind: str, config: Mapping[str, Any], threads: int = 1, cache_dir: str | None = None
) -> dict[str, Any]:
    """Run one config with no store; return its records (what a Ray worker sends back)."""
    import socket

    out: dict[str, Any] = {"metrics": [], "probes": [], "samples": [], "status": "finished",
                           "error": None, "host": socket.gethostname()}  # fmt: skip
    try:
        if kind == "lab":
            metrics, probe = lab_records(config)
            out["metrics"], out["probes"] = [{"step": 0, **metrics}], [{"step": 0, **probe}]
            return out
        from vlsim.train import MemorySink, Trainer, run_training
        from vlsim.worker import WarmstartLock, _set_threads

        _set_threads(threads)
        cfg = TrainConfig.model_validate(dict(config))
        cache = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "vlsim-warmstart"
        sink = MemorySink()
        out["metrics"], out["probes"], out["samples"] = sink.metrics, sink.probes, sink.samples
        from vlsim.train import warmstart_key

        lock = WarmstartLock(cache / f"lock-{warmstart_key(cfg)}")
        try:
            lock.acquire(lambda: False)
            trainer = Trainer(cfg, cache_dir=cache)
        finally:
            lock.release()
        from vlsim.probes import probe_policy

        run_training(trainer, sink, probe_fn=probe_policy)
    except Exception as err:  # noqa: BLE001 - sent back; the driver marks the run failed
        out["status"] = "failed"
        out["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
    return out


def store_records(store: Store, run_id: int, result: Mapping[str, Any]) -> str:
    """Write a run's records sent back by a remote worker, then its final status."""
    for record in result.get("metrics", []):
        record = dict(record)
        store.log_metrics(run_id, int(record.pop("step")), record)
    for record in result.get("probes", []):
        record = dict(record)
        store.log_probe(run_id, int(record.pop("step")), record)
    by_step: dict[int, list[dict[str, Any]]] = {}
    for sample in result.get("samples", []):
        sample = dict(sample)
        by_step.setdefault(int(sample.pop("step")), []).append(sample)
    for step, samples in by_step.items():
        store.log_samples(run_id, step, samples)
    status = str(result.get("status", "failed"))
    store.set_status(run_id, status, error=result.get("error"))
    return status


# ---------------------------------------------------------------- the driver


Event = Callable[[str, PlannedRun, "int | None", str], None]
"""on_event(what, run, run id, status): what is 'skip', 'start' or 'end'."""


@dataclass
class SweepOutcome:
    """What one call of `run_sweep` did."""

    name: str
    total: int
    skipped: int = 0
    busy: int = 0
    statuses: dict[int, str] = field(default_factory=dict)
    interrupted: bool = False

    def count(self, status: str) -> int:
        """Runs of this call that ended with this status."""
        return sum(1 for s in self.statuses.values() if s == status)

    def summary(self) -> str:
        """One line: what ran, what was skipped, what failed."""
        parts = [f"{self.count('finished')} finished"]
        for status in ("failed", "stopped"):
            if self.count(status):
                parts.append(f"{self.count(status)} {status}")
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.busy:
            parts.append(f"{self.busy} running elsewhere")
        tail = " (interrupted; run the sweep again to continue)" if self.interrupted else ""
        return f"sweep {self.name}: {self.total} runs: " + ", ".join(parts) + tail


def _claim(store: Store, spec: SweepSpec, p: PlannedRun, info: RunInfo | None) -> int:
    """Create the run (or take over its stored row) as 'running' under this driver's pid."""
    if info is None:
        run_id = store.create_run(
            name=p.name,
            kind=spec.kind,
            config=p.config,
            seed=p.seed,
            group_name=spec.group(),
            total_steps=int(p.config.get("steps", 1)) if spec.kind == "train" else 1,
            status="running",
        )
    else:
        run_id = info.id
        store.set_status(run_id, "running")
    store.heartbeat(run_id, pid=os.getpid())
    return run_id


def _todo(
    store: Store,
    spec: SweepSpec,
    plan: list[PlannedRun],
    outcome: SweepOutcome,
    on_event: Event | None,
) -> list[tuple[PlannedRun, RunInfo | None]]:
    """The runs still to do; finished ones (and ones another live process runs) are skipped."""
    from vlsim.jobs import worker_alive

    stored = stored_runs(store, spec)
    todo = []
    for p in plan:
        info = stored.get(p.key)
        if info is not None and info.status == "finished":
            outcome.skipped += 1
            if on_event:
                on_event("skip", p, info.id, "finished")
        elif (
            info is not None
            and info.status == "running"
            and info.pid not in (None, os.getpid())
            and worker_alive(info.pid)
        ):
            outcome.busy += 1
            if on_event:
                on_event("skip", p, info.id, "running")
        else:
            todo.append((p, info))
    return todo


def run_sweep(
    spec: SweepSpec,
    store: Store,
    executor: Literal["local", "ray"] = "local",
    workers: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    retries: int = 2,
    on_event: Event | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SweepOutcome:
    """Run every unfinished run of the sweep; records land in the store as runs finish.

    A first Ctrl-C (or should_stop()) stops launching and asks the running runs to stop after
    their step (they end 'stopped' and continue from their checkpoint next time); a second one
    ends them at once. Finished runs are never touched again.
    """
    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    plan = expand(spec)
    save_sweep(store, spec)
    outcome = SweepOutcome(spec.name, len(plan))
    todo = _todo(store, spec, plan, outcome, on_event)
    set_sweep_state(store, spec.name, "running", pid=os.getpid(), executor=executor)
    try:
        if todo:
            runner = _run_local if executor == "local" else _run_ray
            runner(
                spec,
                store,
                todo,
                outcome,
                workers,
                threads,
                ray_address,
                retries,
                on_event,
                should_stop,
            )
    except BaseException as err:
        outcome.interrupted = True
        state = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
        with contextlib.suppress(Exception):
            set_sweep_state(store, spec.name, state, message=f"{type(err).__name__}: {err}"[:2000])
        raise
    done = all(s == "finished" for s in outcome.statuses.values()) and not outcome.busy
    state = "stopped" if outcome.interrupted else ("done" if done else "incomplete")
    set_sweep_state(store, spec.name, state, message=outcome.summary())
    return outcome


def warm_group(config: Mapping[str, Any]) -> str:
    """Runs with the same warm-start fields and seed share one warm start (train configs)."""
    parts = {k: config.get(k) for k in (*WARMSTART_FIELDS, "seed")}
    return json.dumps(parts, sort_keys=True)


def _next_index(
    queue: list[tuple[PlannedRun, RunInfo | None]], inflight: Iterable[tuple[PlannedRun, int]]
) -> int:
    """The next run to start: the first in plan order whose warm start no running run shares.

    Runs that share a warm start wait for each other (the first trains it, the others load
    it), so starting a run of another seed instead keeps every worker busy; the plan order is
    kept otherwise.
    """
    busy = {warm_group(p.config) for p, _ in inflight}
    for k, (p, _) in enumerate(queue):
        if warm_group(p.config) not in busy:
            return k
    return 0


class _Stopper:
    """Turns the first Ctrl-C into a graceful stop; remembers whether a second one came."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop
        self.interrupts = 0

    def __call__(self) -> bool:
        return self.interrupts > 0 or self.should_stop()


def _end(
    store: Store,
    outcome: SweepOutcome,
    p: PlannedRun,
    run_id: int,
    status: str,
    on_event: Event | None,
) -> None:
    outcome.statuses[run_id] = status
    if on_event:
        on_event("end", p, run_id, status)


def _run_local(
    spec: SweepSpec,
    store: Store,
    todo: list[tuple[PlannedRun, RunInfo | None]],
    outcome: SweepOutcome,
    workers: int | None,
    threads: int | None,
    ray_address: str | None,
    retries: int,
    on_event: Event | None,
    should_stop: Callable[[], bool],
) -> None:
    """A process pool on this machine; each run writes to the store itself."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from vlsim.jobs import transition
    from vlsim.worker import stop_file

    n_workers, n_threads = fit_workers(workers)
    n_workers = min(n_workers, len(todo))
    if threads:
        n_threads = int(threads)
    data_dir = str(store.data_dir)
    stopper = _Stopper(should_stop)
    queue = list(todo)
    inflight: dict[Any, tuple[PlannedRun, int]] = {}
    pool = ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_pool_init,
        initargs=(n_threads, spec.kind),
    )
    asked = False
    try:
        while queue or inflight:
            try:
                while queue and len(inflight) < n_workers and not stopper():
                    p, info = queue.pop(_next_index(queue, inflight.values()))
                    run_id = _claim(store, spec, p, info)
                    with _no_main_reimport():  # submit may start a pool process
                        fut = pool.submit(_pool_run, data_dir, run_id, spec.kind)
                    inflight[fut] = (p, run_id)
                    if on_event:
                        on_event("start", p, run_id, "running")
                if stopper() and not asked:
                    asked = True
                    outcome.interrupted = True
                    queue.clear()
                    for _, run_id in inflight.values():
                        path = stop_file(data_dir, run_id)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.touch()
                if not inflight:
                    break
                done, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    p, run_id = inflight.pop(fut)
                    try:
                        status = fut.result()
                    except BrokenProcessPool as err:
                        status = "failed"
                        transition(
                            store, run_id, ["running"], "failed", f"worker process died: {err}"
                        )
                    except Exception as err:  # noqa: BLE001 - the run fails, the sweep goes on
                        status = "failed"
                        transition(
                            store, run_id, ["running"], "failed", f"{type(err).__name__}: {err}"
                        )
                    _end(store, outcome, p, run_id, status, on_event)
            except KeyboardInterrupt:
                stopper.interrupts += 1
                if stopper.interrupts >= 2:
                    raise
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                proc.kill()
        for p, run_id in inflight.values():
            transition(store, run_id, ["running"], "stopped", "sweep interrupted")
            _end(store, outcome, p, run_id, "stopped", on_event)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _no_main_reimport() -> Iterator[None]:
    """Start pool processes without re-running the caller's __main__ in them.

    A spawned process re-imports the parent's main script; when the caller is a Streamlit
    page, a notebook or a test runner that ran one, that script is no place to start from.
    The pool's work lives in this module, so the children need nothing from __main__.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _import_ray():
    """Ray, or a SweepError that says how to get it."""
    try:
        import ray
    except ImportError as err:
        raise SweepError(
            "the 'ray' executor needs Ray, which is not installed here: pip install 'ray>=2.40' "
            "(or run the sweep with --executor local)"
        ) from err
    return ray


def _ray_runtime_env(address: str | None) -> dict[str, Any]:
    """How Ray workers import vlsim: ship the package to a cluster, or point at it locally."""
    package = Path(__file__).resolve().parent
    if address:
        return {"py_modules": [str(package)]}
    root = str(package.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def _run_ray(
    spec: SweepSpec,
    store: Store,
    todo: list[tuple[PlannedRun, RunInfo | None]],
    outcome: SweepOutcome,
    workers: int | None,
    threads: int | None,
    ray_address: str | None,
    retries: int,
    on_event: Event | None,
    should_stop: Callable[[], bool],
) -> None:
    """Ray tasks; each returns its run's records, which the driver stores as they arrive."""
    ray = _import_ray()
    from vlsim.jobs import transition

    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    local_workers, local_threads = fit_workers(workers)
    n_threads = int(threads) if threads else local_threads
    owned = not ray.is_initialized()
    if owned:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING}  # fmt: skip
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=local_workers * n_threads, **kwargs)
    try:
        cpus = int(ray.cluster_resources().get("CPU", local_workers * n_threads))
        n_workers = max(1, int(workers) if workers else cpus // n_threads)
        cache_dir = None if address else str(store.data_dir / "warmstart")
        remote = ray.remote(run_in_memory).options(
            num_cpus=n_threads,
            max_retries=max(0, int(retries)),
            retry_exceptions=False,
            runtime_env=_ray_runtime_env(address),
        )
        stopper = _Stopper(should_stop)
        queue = list(todo)
        inflight: dict[Any, tuple[PlannedRun, int]] = {}
        try:
            while queue or inflight:
                try:
                    while queue and len(inflight) < n_workers and not stopper():
                        p, info = queue.pop(_next_index(queue, inflight.values()))
                        run_id = _claim(store, spec, p, info)
                        config = info.config if info is not None else p.config
                        ref = remote.remote(spec.kind, config, n_threads, cache_dir)
                        inflight[ref] = (p, run_id)
                        if on_event:
                            on_event("start", p, run_id, "running")
                    if stopper() and queue:
                        outcome.interrupted = True
                        queue.clear()
                    if not inflight:
                        break
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                    for ref in ready:
                        p, run_id = inflight.pop(ref)
                        try:
                            status = store_records(store, run_id, ray.get(ref))
                        except Exception as err:  # noqa: BLE001 - a lost worker, after retries
                            status = "failed"
                            transition(
                                store, run_id, ["running"], "failed",
                                f"Ray task failed after {retries} retries: {type(err).__name__}: {err}"[:4000],
                            )  # fmt: skip
                        _end(store, outcome, p, run_id, status, on_event)
                except KeyboardInterrupt:
                    stopper.interrupts += 1
                    if stopper.interrupts >= 2:
                        raise
        except BaseException:
            for ref, (p, run_id) in inflight.items():
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
                transition(store, run_id, ["running"], "stopped", "sweep interrupted")
                _end(store, outcome, p, run_id, "stopped", on_event)
            raise
    finally:
        if owned:
            ray.shutdown()


# ---------------------------------------------------------------- background launch (the app)


_LAUNCHED: dict[str, subprocess.Popen] = {}


def spec_path(store: Store, name: str) -> Path:
    """Where a launched sweep's spec file is written: data_dir/sweeps/NAME.json."""
    return store.data_dir / "sweeps" / f"{name}.json"


def log_path(store: Store, name: str) -> Path:
    """The output of a background sweep driver."""
    return store.data_dir / "logs" / f"sweep-{name}.log"


def launch(
    spec: SweepSpec,
    store: Store,
    executor: Literal["local", "ray"] = "local",
    workers: int | None = None,
    python: str | None = None,
) -> int:
    """Start `python -m vlsim sweep SPEC` in the background (own session); returns its pid."""
    expand(spec)  # refuse a bad spec here, not in a log file
    save_sweep(store, spec)
    path = spec_path(store, spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(spec.model_dump_json(indent=2))
    tmp.replace(path)
    log = log_path(store, spec.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python or sys.executable, "-m", "vlsim", "sweep", str(path), "--data-dir",
           str(store.data_dir), "--executor", executor, "--quiet"]  # fmt: skip
    if workers:
        cmd += ["--workers", str(int(workers))]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
    _LAUNCHED[spec.name] = proc
    set_sweep_state(store, spec.name, "starting", pid=proc.pid, executor=executor)
    return proc.pid


def reap() -> None:
    """Collect background drivers that ended (so they leave no zombie processes)."""
    for name, proc in list(_LAUNCHED.items()):
        if proc.poll() is not None:
            del _LAUNCHED[name]


def stop(store: Store, name: str) -> bool:
    """Ask a sweep's driver to stop (its running runs end 'stopped'); False if none runs."""
    reap()
    record = get_sweep(store, name)
    if record is None or not record.active or not record.pid:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(record.pid, signal.SIGTERM)
    return True


# ---------------------------------------------------------------- reports


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
            c: stats.curve_bands(self.frames[c], self.metric, weight, a.level, a.n_boot, a.seed)
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
        final = stats.mean_ci(
            list(stats.final_values(fin, metric, a.final_last).values()), a.level, a.n_boot, a.seed
        )
        row: dict[str, Any] = {
            "condition": c,
            "runs": f"{len(fin)}/{len(spec.seeds)}",
            "final": final.value,
            "final_low": final.low,
            "final_high": final.high,
        }
        if threshold is not None:
            times = stats.threshold_times(fin, metric, threshold, a.smoothing, a.higher_is_better)
            summ = stats.threshold_summary(times, None, a.level, a.n_boot, a.seed)
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
                    a.n_boot,
                    a.seed,
                )
                row.update({"speedup": sp.value, "speedup_low": sp.low, "speedup_high": sp.high})
        rows.append(row)
    summary = pd.DataFrame(rows)
    pairs = list(a.pairs) or [(baseline, c) for c in (a.compare or labels) if c != baseline]
    verdicts = [
        stats.compare(
            base,
            c,
            finished[base],
            finished[c],
            metric,
            threshold,
            _paired(spec, configs, base, c),
            a.smoothing,
            a.higher_is_better,
            a.final_last,
            a.level,
            a.n_boot,
            a.seed,
            final_label=metric if spec.kind == "lab" else "",
        )
        for base, c in pairs
        if c != base
    ]
    probe_tables = []
    for c in labels:
        if probes[c]:
            table = stats.probe_summary(probes[c], a.level, a.n_boot, a.seed)
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


def slope_sentences(probes: pd.DataFrame) -> list[str]:
    """One line per condition: its length-variance slope (Figure 4) with a CI across seeds."""
    slopes = probes[probes["stat"] == "length_variance_slope"]
    return [
        f"length-variance slope ({r['condition']}): {_ci(r['mean'], r['low'], r['high'])}"
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
    final_header = report.metric if spec.kind == "lab" else f"final {report.metric}"
    rows = []
    has_threshold = "reached" in report.summary
    for r in report.summary.to_dict("records"):
        row = {
            "condition": r["condition"],
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
            row[f"speed-up vs {baseline}"] = (
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


def format_report(report: SweepReport) -> str:
    """The report as plain text: the table of conditions, the verdicts, the probe summary."""
    from vlsim.cli import format_table

    spec, a = report.spec, report.spec.analysis
    lines = [f"sweep {spec.name} ({spec.kind}): {spec.question}".rstrip(": ")]
    done = int((report.plan["status"] == "finished").sum()) if len(report.plan) else 0
    lines.append(
        f"{done}/{len(report.plan)} runs finished; {len(report.conditions)} conditions x "
        f"{len(spec.seeds)} seeds; metric {report.metric}; {100 * a.level:g}% CIs by bootstrap over seeds"
    )
    lines.append("")
    table = summary_text(report)
    lines.append(format_table(table.to_dict("records"), [(c, c, "") for c in table.columns]))
    if report.verdicts:
        lines += ["", "Verdicts:"]
        lines += [f"- {v.text}" for v in report.verdicts]
        for v in report.verdicts:
            lines += [f"  note: {n}" for n in v.notes]
    if len(report.probes):
        title = "Length Lab" if spec.kind == "lab" else "Gradient probes"
        lines += ["", f"{title}: variance and CV per aggregator, mean [CI] across seeds:"]
        lines.append(format_table(probe_rows(report.probes), [
            ("condition", "condition", ""), ("aggregator", "aggregator", ""),
            ("variance", "variance", ""), ("cv", "CV", ""), ("n", "seeds", ""),
        ]))  # fmt: skip
        lines += slope_sentences(report.probes)
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def probe_rows(probes: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per condition and aggregator with variance and CV as 'mean [low, high]'."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in probes.to_dict("records"):
        if r["stat"] not in ("variance", "cv") or not r["aggregator"]:
            continue
        row = rows.setdefault(
            (r["condition"], r["aggregator"]),
            {"condition": r["condition"], "aggregator": r["aggregator"], "variance": "",
             "cv": "", "n": r["n"]},
        )  # fmt: skip
        row[r["stat"]] = _ci(r["mean"], r["low"], r["high"])
    return list(rows.values())


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


__all__ = [
    "EXECUTORS",
    "GROUP_PREFIX",
    "AnalysisSpec",
    "PlannedRun",
    "SweepError",
    "SweepOutcome",
    "SweepRecord",
    "SweepReport",
    "SweepSpec",
    "build_report",
    "conditions",
    "config_key",
    "expand",
    "fit_workers",
    "format_report",
    "get_sweep",
    "lab_records",
    "launch",
    "list_sweeps",
    "load_spec",
    "parse_spec",
    "plan_table",
    "probe_rows",
    "reap",
    "resolve",
    "run_in_memory",
    "run_sweep",
    "save_sweep",
    "set_sweep_state",
    "stop",
    "store_records",
    "stored_runs",
    "summary_text",
]
