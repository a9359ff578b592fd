"""The three answers a claim can get, how per-preset answers combine, and estimates as JSON."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from vlsim.stats import Estimate

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


def combine(verdicts: Iterable[str]) -> str:
    """One answer from several (e.g. one per preset): any 'not reproduced' wins, then any
    'inconclusive'; 'reproduced' only when every part is (nothing at all: inconclusive)."""
    found = list(verdicts)
    if NOT_REPRODUCED in found:
        return NOT_REPRODUCED
    if not found or INCONCLUSIVE in found:
        return INCONCLUSIVE
    return REPRODUCED


def breakdown(claim: dict[str, Any]) -> str:
    """Where a combined verdict comes from: 'reproduced on default; inconclusive at this scale
    on quick, long' (claims 1-3, by preset) or by comparison (claim 4); '' when single."""
    parts = [(p["preset"], p["verdict"]) for p in claim.get("presets", [])]
    parts += [(f"{p['other']} vs {p['base']}", p["verdict"]) for p in claim.get("pairs", [])]
    if len(parts) < 2:
        return ""
    by_verdict: dict[str, list[str]] = {}
    for name, verdict in parts:
        by_verdict.setdefault(verdict, []).append(name)
    return "; ".join(f"{v} on {', '.join(names)}" for v, names in by_verdict.items())


def est_dict(est: Estimate) -> dict[str, Any]:
    """An Estimate as a plain dict (the report's JSON keeps NaN and inf; see vlsim.record_json)."""
    return est.to_dict()


def ci_text(est: Estimate | dict[str, Any], fmt: str = ".3g", unit: str = "") -> str:
    """'0.93 [0.71, 1.15]' (or '0.93, no interval' / 'n/a')."""
    d = est.to_dict() if isinstance(est, Estimate) else est
    value, low, high = (_num(d.get(k)) for k in ("value", "low", "high"))
    if math.isnan(value):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{_fmt(value, fmt)}{unit} (no interval)"
    return f"{_fmt(value, fmt)}{unit} [{_fmt(low, fmt)}, {_fmt(high, fmt)}]"


def num_text(x: Any, fmt: str = ".3g") -> str:
    """A number as text, 'n/a' when missing or NaN."""
    value = _num(x)
    return "n/a" if math.isnan(value) else _fmt(value, fmt)


def _num(x: Any) -> float:
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _fmt(x: float, fmt: str) -> str:
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return format(x, fmt)
