"""Paper check: the VL Norm paper's four claims tested at toy scale, from a reproduction report.

Reads the newest report `python -m vlsim reproduce` wrote in the data directory, else the one
shipped in docs/reference_runs/; draws each claim's verdict, numbers and charts
(pages/paper_charts.py), the machine and compute, and the command that reruns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from pages.common import definition, ensure_app_navigation
from pages.paper_charts import (
    aggregator_figure,
    curves_figure,
    figure4_figure,
    slopes_figure,
    speedup_figure,
)
from pages.training_common import data_dir
from vlsim.reproduce.claim_speed import PAPER_SPEEDUP
from vlsim.reproduce.estimate import MEASURED_NOTE, quiet_range
from vlsim.reproduce.lengths import LENGTHS_INTRO, display_rows, narrow_note, window_of
from vlsim.reproduce.markdown import PAPER
from vlsim.reproduce.report import latest_report, read_json
from vlsim.reproduce.verdict import NOT_REPRODUCED, REPRODUCED, breakdown, ci_text

ensure_app_navigation()

SHIPPED = Path(__file__).resolve().parents[1] / "docs" / "reference_runs" / "reproduction.json"
BOXES = {REPRODUCED: st.success, NOT_REPRODUCED: st.error}
COLORS = {REPRODUCED: "green", NOT_REPRODUCED: "red"}  # inconclusive: orange


def load() -> tuple[dict[str, Any] | None, str]:
    """(report, where it came from): the data dir's newest, else the shipped one, else None."""
    found = latest_report(data_dir())
    for path, origin in ((found, "this data directory"), (SHIPPED, "the shipped reference")):
        if path is not None and path.exists():
            try:
                return read_json(path), f"{origin} ({path})"
            except ValueError as err:
                st.warning(f"Skipped {path}: {err}")
    return None, ""


def verdict_box(claim: dict[str, Any]) -> None:
    """The claim's verdict in a green (reproduced), red (not) or amber box.

    One preset or comparison: its whole sentence. Several: the verdict with where it comes from,
    a table with one line of why per preset (or comparison), and the sentence in an expander.
    """
    box = BOXES.get(claim["verdict"], st.warning)
    parts = parts_table(claim)
    if len(parts) < 2:
        box(claim["sentence"])
        return
    box(f"**{claim['verdict'].capitalize()}** overall: {breakdown(claim)}.")
    st.dataframe(parts, hide_index=True, width="stretch")
    with st.expander("The report's sentence, with every number"):
        st.markdown(claim["sentence"])


def parts_table(claim: dict[str, Any]) -> list[dict[str, str]]:
    """One row per preset (claims 1-3) or comparison (claim 4): its verdict and why."""
    rows = []
    for p in claim.get("presets", []):
        row = {"preset": p["preset"], "verdict": p["verdict"], "why": p.get("why", "")}
        if "paper" in p:  # claim 1: the two slopes, mean over seeds
            row["paper's slope"] = ci_text(p["paper"]["mean"], ".2f")
            row["advantage-free slope"] = ci_text(p["free"]["mean"], ".2f")
        rows.append(row)
    rows += [{"comparison": f"{p['other']} vs {p['base']}", "verdict": p["verdict"],
              "why": p.get("why", "")} for p in claim.get("pairs", [])]  # fmt: skip
    return rows


def show(fig, caption: str) -> None:
    """A chart with its one-line definition underneath."""
    st.plotly_chart(fig, width="stretch")
    st.caption(caption)


st.title("Paper check")
st.markdown(
    f"Does {PAPER} hold up on the tiny policies vlsim trains itself? One command trains them "
    "on CountDown, tests the paper's four claims and writes this report. Verdicts are "
    "*reproduced*, *not reproduced* or *inconclusive at this scale*, read from 95% intervals "
    f"({definition('reproduction-verdict', 'what they mean')})."
)
report, origin = load()
if report is None:
    st.info(
        "No reproduction report yet. Produce one (about 5 minutes on 2 cores) with\n\n"
        "`python -m vlsim reproduce --quick`\n\n"
        f"(the full scale, about an hour: `python -m vlsim reproduce`); it is written to "
        f"`{Path(data_dir()) / 'reproductions'}`, where this page finds it."
    )
    st.stop()

st.caption(
    f"Report of the **{report['scale']}** scale, written {report['created']}, from {origin}."
)
if not report.get("complete", True):
    for note in report.get("notes", []):
        st.warning(note)
claims = {c["id"]: c for c in report["claims"]}
cols = st.columns(len(claims))
for col, (i, c) in zip(cols, sorted(claims.items()), strict=True):
    col.markdown(
        f"**Claim {i}** · {c['title']}  \n:{COLORS.get(c['verdict'], 'orange')}[**{c['verdict']}**]"
    )
    if parts := breakdown(c):
        col.caption(parts[0].upper() + parts[1:])

# ---------------------------------------------------------------- claim 1
c1 = claims[1]
st.header(f"1 · {c1['title']}", divider="gray")
st.caption(f"Paper: {c1['paper']}")
verdict_box(c1)
left, right = st.columns(2)
with left:
    f4 = report.get("figure4") or {}
    show(figure4_figure(f4),
         "Deviation ‖v_i − mean of the other answers‖² of one probe prompt's answers against "
         f"their length, log-log, with the fitted c·L^β ({definition('slope')}); preset "
         f"{f4.get('preset')}, seed {f4.get('seed')}, prompt {f4.get('prompt')}, probe step "
         f"{f4.get('step')}.")  # fmt: skip
with right:
    show(slopes_figure(c1["presets"], c1["band"]),
         "β of Var ∝ L^β per preset: open markers one seed (last probe), filled the mean with "
         f"its t interval over seeds; 1 = linear ({definition('slope')}).")  # fmt: skip

# ---------------------------------------------------------------- claims 2 and 3
c2, c3 = claims[2], claims[3]
st.header(f"2 · {c2['title']}", divider="gray")
st.caption(f"Paper: {c2['paper']}")
verdict_box(c2)
st.header(f"3 · {c3['title']}", divider="gray")
st.caption(f"Paper: {c3['paper']}")
verdict_box(c3)
tables = {t["preset"]: t for t in report.get("aggregators", [])}
if tables:
    preset = (
        st.selectbox("preset", list(tables), key="paper.preset")
        if len(tables) > 1
        else next(iter(tables))
    )
    t = tables[preset]
    a, b, c = st.columns(3)
    with a:
        show(aggregator_figure(t["aggregators"], "spread"),
             "Spread of the step size over the probe's resampled batches, sd/mean of M·Σx: "
             f"0 = the expected step ignores the lengths ({definition('step-size-spread')}).")  # fmt: skip
    with b:
        show(aggregator_figure(t["aggregators"], "bias"),
             "Calibrated relative bias |E ĝ/EΣx − ∇J|/|∇J|, answer noise removed: 0 = no tilt "
             f"({definition('direction-bias')}).")  # fmt: skip
    with c:
        show(aggregator_figure(t["aggregators"], "variance_ratio", t["prediction"]),
             "Variance per unit scale over Dr. GRPO's on the same rollouts (geometric mean, "
             f"log axis); black: the closed form ({definition('variance-ratio')}).")  # fmt: skip

# ---------------------------------------------------------------- claim 4
c4 = claims[4]
st.header(f"4 · {c4['title']}", divider="gray")
st.caption(f"Paper: {c4['paper']}")
verdict_box(c4)
left, right = st.columns([3, 2])
with left:
    show(curves_figure(c4["conditions"], c4["threshold"]),
         "Held-out accuracy (mean@k) per condition, mean over seeds with a pointwise t band "
         f"({definition('interval')}).")  # fmt: skip
with right:
    show(speedup_figure(c4["pairs"], PAPER_SPEEDUP),
         "Restricted mean steps to the threshold, baseline over VL Norm, with Fieller's "
         f"interval ({definition('speed-up')}).")  # fmt: skip
st.dataframe(
    [{"condition": r["condition"], "reached": f"{r['reached']}/{r['runs']}",
      "steps to threshold": ci_text(r["steps"], ".1f"), "final accuracy": ci_text(r["final"], ".3f")}
     for r in c4["conditions"]],
    hide_index=True, width="stretch",
)  # fmt: skip

# ---------------------------------------------------------------- answer lengths
if rows := display_rows(lengths := report.get("lengths", {})):
    st.header("Answer lengths in these runs", divider="gray")
    st.markdown(LENGTHS_INTRO.format(window=window_of(lengths)))
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption(f"p90/p10: the step's length spread ({definition('length-spread')}).")
    if note := narrow_note(lengths, report.get("config", {})):
        st.info(note)

# ---------------------------------------------------------------- cost and rerun
st.header("Machine, compute, rerun", divider="gray")
comp, m, est = report["compute"], report["machine"], report["estimate"]
quiet_low, quiet_high = quiet_range(est["full_seconds"])
st.markdown(
    f"- **Runs** {comp['runs']} of {comp['runs_planned']} finished: {comp['policy_steps']:,} "
    f"RL policy-steps, {comp['warm_starts']} warm starts, {comp['probes']} gradient probes.\n"
    f"- **Time** {(comp.get('elapsed_seconds') or 0) / 60:.1f} min with runs training, "
    f"{(comp.get('worker_seconds') or 0) / 60:.1f} worker-minutes; the full scale is "
    f"estimated at {quiet_low / 60:.0f}-{quiet_high / 60:.0f} min on a quiet machine with "
    f"{est['workers']} workers ({MEASURED_NOTE}).\n"
    f"- **Machine** {m['cpu']}, {m['cores']} cores, torch {m['torch']} on {m['device']}, "
    f"{m['workers']} workers x {m['threads_per_worker']} thread(s).\n"
    f"- **Seeds** probed runs {report['seeds']['probes']}, claim-4 runs {report['seeds']['speed']}."
)
st.markdown("Rerun it (finished runs are skipped; the same seeds give the same numbers):")
st.code(report["command"], language="bash")
