"""Verdicts: is B faster or better than A? One of three answers, with n, method and meaning.

`rule` turns one interval into "B faster / A faster / no difference shown (inconclusive)";
`Verdict` and `compare` apply it to a sweep's two conditions (speed-up to a threshold and the
difference of final values) and write the line the CLI and the Hypotheses page print.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from vlsim.stats.censored import TOO_CENSORED, speedup, threshold_times
from vlsim.stats.curves import final_values
from vlsim.stats.intervals import LEVEL, Estimate, difference

INCONCLUSIVE = "no difference shown (inconclusive)"

METHODS = (
    "Student t over seeds (paired t for paired differences, Welch t unpaired); speed-ups: "
    "Fieller's interval of the ratio of restricted mean steps; medians: order statistics"
)
"""How the intervals of a sweep report are formed, in one line for captions and reports."""


def inconclusive_meaning(level: float = LEVEL) -> str:
    """What "inconclusive" means, in one sentence."""
    return (
        f"Inconclusive means the {100 * level:g}% interval includes no difference (or there is "
        "no interval): these runs cannot tell the two apart, which is not evidence that they "
        "are equal; more seeds narrow the interval."
    )


@dataclass(frozen=True)
class Ruling:
    """One comparison's answer: which side the interval points to, and in words."""

    outcome: Literal["other", "base", "none"]
    """'other': B is faster/higher; 'base': A is; 'none': no difference shown."""
    headline: str
    """'B faster', 'A faster' or 'no difference shown (inconclusive)'."""
    estimate: Estimate

    @property
    def conclusive(self) -> bool:
        """True when the interval excludes no difference."""
        return self.outcome != "none"

    def details(self) -> str:
        """'n = 5, Student t, 4 df' (or why there is no interval)."""
        est = self.estimate
        method = est.method or "no interval"
        return f"n = {est.n}, {method}"


def rule(est: Estimate, null: float, base: str, other: str, better: str = "faster") -> Ruling:
    """The verdict of one interval against `null` (1 for a speed-up, 0 for a difference).

    B (other) is `better` when the whole interval lies above null, A (base) when below; any
    other case, and no interval at all, is "no difference shown (inconclusive)".
    """
    if est.excludes(null) and est.low > null:
        return Ruling("other", f"{other} {better}", est)
    if est.excludes(null):
        return Ruling("base", f"{base} {better}", est)
    return Ruling("none", INCONCLUSIVE, est)


def _num(x: float, fmt: str = ".3g") -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return format(x, fmt)


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.3g}"


def _ci_text(est: Estimate, unit: str = "", signed: bool = False) -> str:
    """'95% CI 1.2x to 3.4x; n = 5, Fieller, paired t, 4 df'."""
    f = _signed if signed else _num
    return (
        f"{100 * est.level:g}% CI {f(est.low)}{unit} to {f(est.high)}{unit}; "
        f"n = {est.n}, {est.method}"
    )


@dataclass
class Verdict:
    """The answer to "is B different from A?" for one comparison, in numbers and in words."""

    base: str
    other: str
    metric: str
    paired: bool
    n_pairs: int
    final: Estimate
    speedup: Estimate | None = None
    threshold: float | None = None
    reached: tuple[int, int, int, int] | None = None  # base reached, base n, other reached, other n
    notes: list[str] = field(default_factory=list)
    final_label: str = ""  # how to name the final value (default 'final <metric>')
    seeds: tuple[int, int] | None = None  # runs behind the base and the other condition
    metric_label: str = ""  # how to name the metric in words (default: its key)

    @property
    def speed_ruling(self) -> Ruling | None:
        """The speed-up's verdict (None without a threshold)."""
        if self.speedup is None:
            return None
        return rule(self.speedup, 1.0, self.base, self.other, "faster")

    @property
    def final_ruling(self) -> Ruling:
        """The final value's verdict."""
        return rule(self.final, 0.0, self.base, self.other, "higher")

    @property
    def speed_conclusive(self) -> bool:
        """True when the speed-up interval excludes 1 (no difference)."""
        ruling = self.speed_ruling
        return ruling is not None and ruling.conclusive

    @property
    def final_conclusive(self) -> bool:
        """True when the final-value interval excludes 0."""
        return self.final_ruling.conclusive

    @property
    def conclusive(self) -> bool:
        """True when the headline statistic's interval excludes no difference."""
        if self.speedup is not None and not math.isnan(self.speedup.value):
            return self.speed_conclusive
        return self.final_conclusive

    @property
    def headline(self) -> str:
        """'vl_norm faster', 'dapo faster' or 'no difference shown (inconclusive)'."""
        if self.speedup is not None and not math.isnan(self.speedup.value):
            ruling = self.speed_ruling
        else:
            ruling = self.final_ruling
        return ruling.headline if ruling is not None else INCONCLUSIVE

    def speed_text(self) -> str:
        """The speed-up in words ('' when no threshold was set)."""
        if self.speedup is None or self.threshold is None:
            return ""
        s = self.speedup
        what = f"{self.metric_label or self.metric} {self.threshold:g}"
        counts = ""
        if self.reached is not None:
            br, bn, orr, on = self.reached
            counts = f"; reached by {orr}/{on} {self.other} vs {br}/{bn} {self.base} runs"
        if self.reached is not None and self.reached[0] == 0 and self.reached[2] == 0:
            return f"inconclusive: no run of either condition reaches {what}{counts}"
        if math.isnan(s.value):
            return f"speed to {what}: no comparison possible{counts}"
        if s.method == TOO_CENSORED:
            return (
                f"inconclusive: {TOO_CENSORED} ({self.other} reaches {what} "
                f"{_num(s.value, '.2f')}x as fast as {self.base} in restricted mean steps, "
                f"n = {s.n}, no interval){counts}"
            )
        if not s.has_interval:
            return (
                f"inconclusive: {self.other} reaches {what} {_num(s.value, '.2f')}x as fast as "
                f"{self.base}, but n = {s.n} gives no interval ({s.method}){counts}"
            )
        ci = _ci_text(s, "x")
        ruling = self.speed_ruling
        if ruling is not None and ruling.outcome == "other":
            return f"{self.other} reaches {what} {_num(s.value, '.2f')}x faster than {self.base} ({ci}{counts})"
        if ruling is not None and ruling.outcome == "base":
            return (
                f"{self.other} reaches {what} slower than {self.base}: {self.base} is "
                f"{_num(1 / s.value, '.2f')}x faster ({ci} for {self.other}'s speed-up{counts})"
            )
        return (
            f"inconclusive: {self.other} reaches {what} {_num(s.value, '.2f')}x as fast as "
            f"{self.base}, but the interval includes 1x, no difference ({ci}{counts})"
        )

    def final_text(self) -> str:
        """The final-value difference in words."""
        f = self.final
        what = self.final_label or f"final {self.metric_label or self.metric}"
        if math.isnan(f.value):
            return f"{what}: no data"
        if not f.has_interval:
            return (
                f"inconclusive: {what} differs by {_signed(f.value)} ({self.other} - {self.base}), "
                f"but n = {f.n} gives no interval ({f.method})"
            )
        ci = _ci_text(f, signed=True)
        outcome = self.final_ruling.outcome
        if outcome == "other":
            return f"{self.other} has a higher {what}: {_signed(f.value)} ({ci})"
        if outcome == "base":
            return f"{self.other} has a lower {what}: {_signed(f.value)} ({ci})"
        return (
            f"inconclusive: {what} differs by {_signed(f.value)} ({self.other} - {self.base}), "
            f"but the interval includes 0 ({ci})"
        )

    @property
    def text(self) -> str:
        """'<B> vs <A> (<how compared>): <speed>; <final>.' plus what inconclusive means."""
        if self.paired:
            how = f"{self.n_pairs} paired seeds"
        else:
            nb, no = self.seeds if self.seeds is not None else (self.n_pairs, self.n_pairs)
            how = f"{no} vs {nb} seeds, unpaired"
        parts = [p for p in (self.speed_text(), self.final_text()) if p]
        line = f"{self.other} vs {self.base} ({how}): " + "; ".join(parts) + "."
        if any(p.startswith("inconclusive") for p in parts):
            line += " " + inconclusive_meaning(self.final.level)
        return line

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {
            "base": self.base,
            "other": self.other,
            "metric": self.metric,
            "threshold": self.threshold,
            "paired": self.paired,
            "n_pairs": self.n_pairs,
            "final_difference": self.final.to_dict(),
            "speedup": self.speedup.to_dict() if self.speedup is not None else None,
            "reached": list(self.reached) if self.reached is not None else None,
            "conclusive": self.conclusive,
            "headline": self.headline,
            "text": self.text,
            "notes": list(self.notes),
        }


def compare(
    base: str,
    other: str,
    base_frames: Mapping[int, pd.DataFrame],
    other_frames: Mapping[int, pd.DataFrame],
    metric: str,
    threshold: float | None = None,
    paired: bool = True,
    smoothing: float = 0.0,
    higher_is_better: bool = True,
    final_last: int = 1,
    level: float = LEVEL,
    final_label: str = "",
    metric_label: str = "",
) -> Verdict:
    """Compare two conditions (seed -> metrics DataFrame each): final value and speed-up.

    paired=True pairs runs by seed (use it when the same seed means the same problems and
    initial policy); it falls back to unpaired with a note when fewer than 2 seeds are shared.
    metric_label names the metric in the verdict's words (e.g. "held-out accuracy").
    """
    notes = []
    shared = sorted(set(base_frames) & set(other_frames))
    if paired and len(shared) < 2:
        notes.append(f"only {len(shared)} shared seed(s): compared unpaired")
        paired = False
    fa = final_values(base_frames, metric, final_last)
    fb = final_values(other_frames, metric, final_last)
    final = difference(fa, fb, paired, level)
    n_pairs = final.n if paired else min(len(fa), len(fb))
    verdict = Verdict(
        base,
        other,
        metric,
        paired,
        n_pairs,
        final,
        notes=notes,
        final_label=final_label,
        seeds=(len(base_frames), len(other_frames)),
        metric_label=metric_label,
    )
    if threshold is not None:
        ta = threshold_times(base_frames, metric, threshold, smoothing, higher_is_better)
        tb = threshold_times(other_frames, metric, threshold, smoothing, higher_is_better)
        verdict.threshold = threshold
        verdict.speedup = speedup(ta, tb, paired, level)
        verdict.reached = (ta.n_reached, ta.n, tb.n_reached, tb.n)
        if ta.n and tb.n and max(ta.steps + tb.steps) == 0:
            notes.append("every run is at the threshold before RL: choose a higher threshold")
    return verdict
