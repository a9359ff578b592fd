"""The reproduction report: the claims' numbers from the store, as JSON and as markdown.

`build_report` reads the finished runs of the plan (`collect`), computes each claim
(`claim_noise`, `claim_bias`, `claim_speed`) and adds what it cost and where it ran. The
claim numbers depend only on the stored records, so the same seeds give the same numbers;
times, the machine and the date are reported beside them, outside `claims`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vlsim.record_json import dumps, loads
from vlsim.reproduce.claim_bias import claims23
from vlsim.reproduce.claim_noise import claim1, figure4
from vlsim.reproduce.claim_speed import claim4
from vlsim.reproduce.collect import collect, compute, metric_frames, probe_records
from vlsim.reproduce.estimate import estimate_seconds
from vlsim.reproduce.lengths import length_rows
from vlsim.reproduce.machine import describe
from vlsim.reproduce.plan import probe_spec, speed_spec
from vlsim.reproduce.spec import ReproduceConfig, scale_config
from vlsim.store import Store

FORMAT = 1
"""Version of the report's JSON layout."""

REPORT_DIR = "reproductions"
"""Where `reproduce` keeps its reports inside the data directory."""

CLAIMS: dict[int, tuple[str, str]] = {
    1: (
        "Gradient variance grows with length",
        "An answer's gradient variance grows with its length, about linearly (Figure 4: "
        "||g_i - E g_i||^2 of one prompt's 128 rollouts, last layer's QKV projection).",
    ),
    2: (
        "GRPO and DAPO are biased; Dr. GRPO is unbiased but noisy",
        "GRPO's and DAPO's normalisations make the expected update depend on the answer "
        "lengths; Dr. GRPO's constant divisor is unbiased but keeps long answers' noise.",
    ),
    3: (
        "VL Norm is unbiased with the least variance",
        "VL Norm is the minimum-variance unbiased estimator: its expected step is free of the "
        "lengths and its variance the least.",
    ),
    4: (
        "DAPO + VL Norm converges faster",
        "Integrated into DAPO, VL Norm converges up to 2.67x faster on CountDown.",
    ),
}
"""Each claim's short title and the paper's statement of it."""


def claim_numbers(
    cfg: ReproduceConfig, store: Store, collected: tuple[Any, Any] | None = None
) -> dict[str, Any]:
    """Everything that depends on the stored records: the claims, Figure 4, the tables.

    collected: the probe and speed sweeps' `collect` results, when the caller has them."""
    speed = speed_spec(cfg)
    probes_run, speed_run = collected or (collect(store, probe_spec(cfg)), collect(store, speed))
    probes = probe_records(store, probes_run)
    tables, c2, c3 = claims23(probes, cfg.level, cfg.prediction_draws)
    c1 = claim1(probes, cfg.linear_band, cfg.level)
    pairs = [tuple(p) for p in speed.analysis.pairs]
    speed_frames = metric_frames(store, speed_run)
    c4 = claim4(speed_frames, pairs, cfg.threshold, cfg.smoothing, cfg.level)
    claims = [c1, c2, c3, c4]
    for claim in claims:
        claim["title"], claim["paper"] = CLAIMS[claim["id"]]
    first = cfg.presets[0]
    return {
        "claims": claims,
        "figure4": figure4(probes.get(first, {}), first),
        "aggregators": tables,
        "lengths": {
            "probes": length_rows(metric_frames(store, probes_run)),
            "speed": length_rows(speed_frames),
        },
        "runs": {"probes": _counts(probes_run), "speed": _counts(speed_run)},
    }


def _counts(c) -> dict[str, Any]:
    return {"sweep": c.spec.name, "finished": c.finished, "planned": c.planned}


def build_report(
    cfg: ReproduceConfig,
    store: Store,
    command: str,
    seconds: float | None = None,
    workers: int = 1,
    threads: int = 1,
    trained: int | None = None,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (claims, compute, machine, command, seeds).

    seconds and trained: this command's wall time and the runs it trained (the others had
    finished before: a rerun that trains nothing only rebuilds the report)."""
    collected = (collect(store, probe_spec(cfg)), collect(store, speed_spec(cfg)))
    numbers = claim_numbers(cfg, store, collected)
    comp = compute(store, list(collected))
    comp["command_seconds"] = seconds
    comp["command_runs"] = trained
    full = scale_config("full")
    notes = []
    missing = [
        f"{r['sweep']}: {r['planned'] - r['finished']} of {r['planned']}"
        for r in numbers["runs"].values()
        if r["finished"] < r["planned"]
    ]
    if missing:
        notes.append(
            "Not every run has finished (" + "; ".join(missing) + "): the claims use the "
            "finished runs only. Run the same command again to finish them."
        )
    return {
        "format": FORMAT,
        "scale": cfg.scale,
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": command,
        "complete": not missing,
        "config": cfg.model_dump(mode="json"),
        "seeds": {"probes": cfg.probe_seeds, "speed": cfg.speed_seeds},
        "machine": describe(workers, threads),
        "compute": comp,
        "estimate": {
            "this_scale_seconds": estimate_seconds(cfg, workers),
            "full_seconds": estimate_seconds(full, workers),
            "workers": workers,
        },
        "notes": notes,
        **numbers,
    }


def report_paths(data_dir: str | Path, scale: str) -> tuple[Path, Path]:
    """(markdown, JSON) paths of a scale's report inside the data directory."""
    folder = Path(data_dir) / REPORT_DIR
    return folder / f"reproduction-{scale}.md", folder / f"reproduction-{scale}.json"


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as strict JSON (NaN and inf as strings; see vlsim.record_json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(report) + "\n", encoding="utf-8")
    tmp.replace(path)  # nothing half-written
    return path


def read_json(path: str | Path) -> dict[str, Any]:
    """A report written by `write_json` (ValueError if it is not one)."""
    data = loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT or "claims" not in data:
        raise ValueError(f"{path} is not a vlsim reproduction report (format {FORMAT})")
    return data


def latest_report(data_dir: str | Path) -> Path | None:
    """The newest report JSON that `reproduce` wrote in this data directory, if any."""
    folder = Path(data_dir) / REPORT_DIR
    found = sorted(folder.glob("reproduction-*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
