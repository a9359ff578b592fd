"""The reproduction report as markdown: verdicts first, then each claim's numbers, then cost."""

from __future__ import annotations

import math
from typing import Any

from vlsim.reproduce.estimate import MEASURED_NOTE, quiet_range
from vlsim.reproduce.lengths import LENGTHS_INTRO, display_rows, narrow_note, window_of
from vlsim.reproduce.machine import machine_text
from vlsim.reproduce.verdict import breakdown, ci_text, num_text

PAPER = (
    "“VL Norm: Rethink Loss Aggregation in RLVR” (He, Luo, Zhang, Yang and Qiu; arXiv 2509.07558)"
)


def _minutes(seconds: Any) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "n/a"
    return f"{seconds / 60:.1f} min"


def _steps(per_sweep: dict[str, list[int]]) -> str:
    """'RL steps per run: 20 (reproduce-quick-probes), 120 (reproduce-quick-speed)'."""
    parts = [f"{'/'.join(map(str, steps))} ({name})" for name, steps in per_sweep.items() if steps]
    return "RL steps per run: " + ", ".join(parts) if parts else "no runs"


def _estimate(seconds: float) -> str:
    """'100 min at that load, about 40-67 min on a quiet machine'."""
    low, high = quiet_range(seconds)
    return (
        f"{seconds / 60:.0f} min at that load, about {low / 60:.0f}-{high / 60:.0f} min on a "
        "quiet machine"
    )


def _this_command(comp: dict[str, Any]) -> str:
    """What the command that wrote the report did: trained runs, or only rebuilt the report."""
    runs = comp.get("command_runs")
    if runs is None:
        return ""
    if runs == 0:
        return "The command that wrote this report trained nothing (every run had finished)."
    return f"The command that wrote this report trained {runs} of these runs in {_minutes(comp.get('command_seconds'))}."


def _runs_line(cfg: dict[str, Any]) -> str:
    """What was trained: the probed runs (claims 1-3) and the claim-4 runs, in one sentence."""
    if not cfg:
        return ""
    recipe = {"none": "each preset's own aggregator", "dapo": "the DAPO recipe",
              "dapo_vl_norm": "the DAPO + VL Norm recipe"}.get(cfg.get("probe_recipe"), "?")  # fmt: skip
    probe = cfg.get("probe", {})
    return (
        f"Claims 1-3: on each of the presets {', '.join(cfg.get('presets', []))}, runs trained "
        f"with {recipe} for {cfg.get('probe_steps')} RL steps, each probed after its first and "
        f"last step ({probe.get('prompts')} prompts x {probe.get('rollouts')} answers); every "
        "aggregator is measured on the same probed rollouts. Claim 4: the "
        f"{cfg.get('speed_preset')} preset trained {cfg.get('speed_steps')} RL steps under "
        f"each condition, held-out accuracy every {cfg.get('eval_every')} steps."
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _claim1(c: dict[str, Any]) -> list[str]:
    rows = []
    for p in c["presets"]:
        free = {s["seed"]: s for s in p["free"]["seeds"]}
        for s in p["paper"]["seeds"]:
            f = free.get(s["seed"], {})
            rows.append(
                [p["preset"], str(s["seed"]),
                 ci_text({"value": s["slope"], "low": s["ci_low"], "high": s["ci_high"]}, ".2f"),
                 ci_text({"value": f.get("slope"), "low": f.get("ci_low"),
                          "high": f.get("ci_high")}, ".2f"),
                 str(s["prompts"])]
            )  # fmt: skip
        rows.append(
            [f"**{p['preset']}**", f"mean of {p['n_seeds']}", ci_text(p["paper"]["mean"], ".2f"),
             ci_text(p["free"]["mean"], ".2f"), p["verdict"]]
        )  # fmt: skip
    header = ["preset", "seed", "paper's slope (A_i s_i)", "advantage-free slope (s_i)",
              "prompts / verdict"]  # fmt: skip
    return [
        "Per seed: the last probe's fitted slope with its 95% cluster-bootstrap interval over "
        "prompts; per preset: the mean over seeds with its Student-t interval.",
        "",
        *_table(header, rows),
    ]


def _fig4(f: dict[str, Any] | None) -> list[str]:
    if not f:
        return []
    p = f["paper"]
    return [
        "",
        f"Figure-4 data (in the JSON): preset {f['preset']}, seed {f['seed']}, probe step "
        f"{f['step']}, probe prompt {f['prompt']}: {len(p['length'])} of its {f['rollouts']} "
        f"answers (lengths {min(p['length'], default=0)}-{max(p['length'], default=0)}), "
        f"deviation against length with the curve c L^{num_text(p['slope'], '.2f')}.",
    ]


def _aggregators(tables: list[dict[str, Any]]) -> list[str]:
    out = []
    for t in tables:
        rows = []
        for a in t["aggregators"].values():
            rows.append(
                [a["display_name"], ci_text(a["spread"], ".2g"), ci_text(a["drift"], "+.2g"),
                 ci_text(a["bias"], ".2g"), ci_text(a["variance_ratio"], ".3g")]
            )  # fmt: skip
        pred = t["prediction"]
        out += [
            "",
            f"**{t['preset']}** (last probe of each seed; intervals over seeds):",
            "",
            *_table(
                [
                    "aggregator",
                    "step-size spread",
                    "step-size drift since the first probe",
                    "direction bias",
                    "variance / Dr. GRPO's",
                ],
                rows,
            ),  # fmt: skip
            "",
            f"Closed form for VL Norm / Dr. GRPO on the observed lengths: "
            f"{num_text(pred['beta1'])} at beta = 1, {num_text(pred['fitted'])} at the fitted "
            f"beta = {num_text(pred['beta'], '.2f')}.",
        ]
    return out


def _claim4(c: dict[str, Any]) -> list[str]:
    rows = []
    for r in c["conditions"]:
        rows.append(
            [r["condition"], str(r["runs"]), f"{r['reached']}/{r['runs']}",
             ci_text(r["steps"], ".1f"), ci_text(r["final"], ".3f")]
        )  # fmt: skip
    pairs = []
    for p in c["pairs"]:
        pairs.append(
            [f"{p['other']} vs {p['base']}", ci_text(p["speedup"], ".2f", "x"),
             ci_text(p["final_difference"], "+.3f"), str(p["n"]), p["verdict"]]
        )  # fmt: skip
    return [
        f"Held-out accuracy (mean@k) threshold {c['threshold']:g}; steps to it are restricted "
        "means (a run that never gets there counts with the whole horizon).",
        "",
        *_table(["condition", "runs", "reached", "steps to threshold", "final accuracy"], rows),
        "",
        *_table(
            [
                "comparison",
                "speed-up (Fieller)",
                "final accuracy difference (paired t)",
                "paired seeds",
                "verdict",
            ],
            pairs,
        ),  # fmt: skip
    ]


def _lengths(lengths: dict[str, list[dict[str, Any]]], cfg: dict[str, Any]) -> list[str]:
    """The answer-length section: each condition's spread (p90/p10) and mean length start/end."""
    rows = display_rows(lengths)
    if not rows:
        return []
    note = narrow_note(lengths, cfg)
    return [
        "",
        "## Answer lengths in these runs",
        "",
        LENGTHS_INTRO.format(window=window_of(lengths)),
        "",
        *_table(list(rows[0]), [list(r.values()) for r in rows]),
        *(["", note] if note else []),
    ]


def markdown(report: dict[str, Any]) -> str:
    """The whole report as a markdown document."""
    claims = {c["id"]: c for c in report["claims"]}
    comp, m, est = report["compute"], report["machine"], report["estimate"]
    lines = [
        f"# Paper check: VL Norm's four claims at toy scale ({report['scale']} scale)",
        "",
        f"vlsim trains tiny policies on CountDown and tests the claims of {PAPER} on them. "
        "Every interval is a 95% confidence interval; every figure is defined in "
        "[definitions.md](definitions.md). Generated by:",
        "",
        f"    {report['command']}",
        "",
        f"Seeds: probed runs {report['seeds']['probes']}, claim-4 runs {report['seeds']['speed']}"
        f" (same seed, same problems and warm start). Written {report['created']}.",
        "",
        _runs_line(report.get("config", {})),
        "",
        *_table(
            ["#", "claim", "verdict", "by preset or comparison"],
            [
                [str(i), claims[i]["title"], f"**{claims[i]['verdict']}**", breakdown(claims[i])]
                for i in sorted(claims)
            ],
        ),  # fmt: skip
    ]
    for note in report.get("notes", []):
        lines += ["", f"> {note}"]
    for i in sorted(claims):
        c = claims[i]
        lines += ["", f"## Claim {i}: {c['title']}", "", f"*Paper:* {c['paper']}", "",
                  c["sentence"], ""]  # fmt: skip
        if i == 1:
            lines += _claim1(c) + _fig4(report.get("figure4"))
        elif i == 2:
            lines += [
                "Step-size spread: sd / mean of M Σx over the probe's resampled batches (0: the "
                "expected step is free of the lengths). Drift: step size at the last probe / at "
                "the first - 1. Direction bias: the calibrated relative bias (0: no tilt). "
                "Variance per unit scale, relative to Dr. GRPO's on the same rollouts "
                "(geometric mean over seeds). The same tables serve claim 3.",
                *_aggregators(report.get("aggregators", [])),
            ]
        elif i == 4:
            lines += _claim4(c)
    lines += _lengths(report.get("lengths", {}), report.get("config", {}))
    lines += [
        "",
        "## Compute and machine",
        "",
        f"- {comp['runs']} of {comp['runs_planned']} runs finished: {comp['policy_steps']:,} RL "
        f"policy-steps ({_steps(comp.get('steps_per_run', {}))}), {comp['warm_starts']} warm "
        f"starts ({comp['sft_steps']:,} supervised steps), {comp['probes']} gradient probes.",
        f"- Wall time {_minutes(comp['elapsed_seconds'])} with runs training (the first run's "
        f"start to the last run's end, less any gap with none running); worker time "
        f"{_minutes(comp['worker_seconds'])} (summed over jobs). "
        f"{_this_command(comp)}",
        f"- Estimated wall time with {est['workers']} worker(s), from {MEASURED_NOTE}: "
        + (
            f"{_estimate(est['full_seconds'])}."
            if report["scale"] == "full"
            else f"this scale {_estimate(est['this_scale_seconds'])}, the full scale "
            f"(`python -m vlsim reproduce`) {_estimate(est['full_seconds'])}."
        ),
        f"- Machine: {machine_text(m)}.",
        "",
        "## Run it again",
        "",
        f"    {report['command']}",
        "",
        "Running the same command again skips the runs that finished (Ctrl-C keeps what is "
        "done; the next run continues). With the same seeds, worker threads and machine the "
        "claim numbers come out the same.",
    ]
    return "\n".join(lines) + "\n"
