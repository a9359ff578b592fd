"""A sweep's plan: its conditions and runs in a fixed order, each with an identity key.

`expand` turns a spec into runs, always in the same order (seed by seed, conditions in spec
order), so the plan can be shown before anything starts. In the store a sweep is a group of
runs (`group_name = "sweep/<name>"`); each run is recognised by a hash of its config, so running
a sweep again skips the runs that already finished and continues the others.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError

from vlsim.aggregators import AGGREGATORS
from vlsim.config import (
    RECIPE_DISPLAY_NAMES,
    RECIPES,
    LabConfig,
    TrainConfig,
    format_errors,
    parent_of,
    preset_config,
)
from vlsim.liveness import check_runs
from vlsim.store import RunInfo, Store
from vlsim.sweeps.spec import (
    CONFIG_KEY_EXCLUDE,
    MAX_RUNS,
    WARMSTART_FIELDS,
    SweepError,
    SweepSpec,
)

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


def _model(kind: str) -> type[BaseModel]:
    """The config model of a run kind: LabConfig for 'lab', else TrainConfig."""
    return LabConfig if kind == "lab" else TrainConfig


def _base_data(spec: SweepSpec) -> dict[str, Any]:
    """The base config as a dict: the preset (train) or LabConfig's defaults, then `base`."""
    if spec.kind == "lab":
        data = LabConfig().model_dump(mode="json")
    else:
        data = preset_config(spec.preset).model_dump(mode="json")
    for key, value in spec.base.items():
        _set_path(data, key, value)
    return data


def _apply_recipe(data: dict[str, Any], given: Iterable[str]) -> None:
    """A condition naming a recipe gets the recipe's fields, except those the spec itself sets.

    The preset's own values of those fields (e.g. aggregator 'grpo') give way, as in the Arena;
    a field the spec sets explicitly stays, and TrainConfig refuses it if it contradicts the
    recipe, with a message naming it.
    """
    given = set(given)
    for key, value in RECIPES.get(str(data.get("recipe")), {}).items():
        if key not in given:
            data[key] = value


def _check_keys(spec: SweepSpec, keys: Iterable[str]) -> None:
    """Top-level field names must exist: say which do not, with a suggestion."""
    fields = list(_model(spec.kind).model_fields)
    bad = []
    for key in dict.fromkeys(keys):
        top = key.split(".")[0]
        if top in fields:
            continue
        near = difflib.get_close_matches(top, fields, n=1)
        bad.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    if bad:
        raise SweepError(
            f"not a field of {_model(spec.kind).__name__}: {', '.join(bad)}. Fields: {', '.join(fields)}"
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
    if last in ("aggregator", "recipe"):
        return str(value)
    return f"{last}={_short(value)}"


def condition_display(label: str) -> str:
    """A condition label as a reader sees it: aggregator names shown as their display names.

    Labels stay the keys of a sweep (specs name them in 'baseline', 'compare' and 'pairs');
    this only rewrites the pieces between ' · ' that are aggregator or recipe names ('vl_norm · alpha=0.5'
    reads 'VL Norm · alpha=0.5').
    """
    names = {**{k: v for k, v in RECIPE_DISPLAY_NAMES.items() if k != "none"},
             **{k: a.display_name for k, a in AGGREGATORS.items()}}  # fmt: skip
    return " · ".join(names.get(piece, piece) for piece in label.split(" · "))


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
    model = _model(spec.kind)
    base = _base_data(spec)
    configs: dict[str, dict[str, Any]] = {}
    for label, overrides in conds:
        data = json.loads(json.dumps(base))
        for key, value in overrides.items():
            _set_path(data, key, value)
        if spec.kind == "train":
            _apply_recipe(data, given=[*spec.base, *overrides])
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
            {"#": p.index + 1, "condition": condition_display(p.condition), "seed": p.seed,
             "run": info.id if info else None, "status": info.status if info else "to run"}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["#", "condition", "seed", "run", "status"])


def current_form(kind: str, config: Mapping[str, Any]) -> Mapping[str, Any]:
    """A stored config as today's model writes it: fields added since get their defaults.

    A field is only ever added with a default that keeps the old behaviour, so a run stored
    before it existed still matches its plan. A config today's model refuses stays as stored.
    """
    try:
        return _model(kind).model_validate(dict(config)).model_dump(mode="json")
    except ValidationError:
        return config


def stored_runs(store: Store, spec: SweepSpec) -> dict[str, RunInfo]:
    """{config key: stored run} for this sweep's runs (a finished run wins over a repeat).

    The runs pass the liveness check first: a dead 'running' run reads 'stopped'. Each stored
    config is read in its current form (`current_form`) before its key is taken.
    """
    out: dict[str, RunInfo] = {}
    runs = check_runs(store, store.list_runs(group_name=spec.group()))
    for info in sorted(runs, key=lambda r: r.id):
        key = config_key(info.kind, current_form(info.kind, info.config))
        old = out.get(key)
        if old is None or old.status != "finished":
            out[key] = info
    return out


def warm_group(config: Mapping[str, Any]) -> str:
    """Runs with the same warm-start fields and seed share one warm start (train configs)."""
    parts = {k: config.get(k) for k in (*WARMSTART_FIELDS, "seed")}
    return json.dumps(parts, sort_keys=True)
