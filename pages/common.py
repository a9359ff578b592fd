"""Shared UI helpers of the pages: URL-state glue, widgets built from pydantic fields,
cached engine calls and formatting. UI only: the mathematics lives in vlsim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import annotated_types
import numpy as np
import streamlit as st
from pydantic import BaseModel

from vlsim.lengths import length_summary, parse_length_spec, sample_lengths
from vlsim.montecarlo import OPTIMAL, LabResult, run_lab
from vlsim.numfmt import format_number

MAX_WIDGET_INT = 2**53 - 1  # the largest integer a browser number widget holds exactly

DEFINITIONS = "/definitions"
"""URL path of the Definitions page; anchors: scale, drift, direction-bias, variance, cv,
efficiency, slope, interval, verdict, speed-up."""


def definition(anchor: str, text: str = "Definition") -> str:
    """A markdown link to one figure's definition, for help texts and captions."""
    return f"[{text}]({DEFINITIONS}#{anchor})"


# ----------------------------------------------------------------------------- navigation


def ensure_app_navigation() -> None:
    """Run this page through app.py's navigation, also on a fresh server's first request.

    Streamlit treats an app with a `pages/` folder as a legacy multipage app until the main
    script has called st.navigation once; a link straight to a page on a fresh server would
    run the page alone (no page config, every file of pages/ in the menu). Switch that legacy
    mode off and rerun, so app.py takes over. Call at the top of every page.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without this class
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


# ----------------------------------------------------------------------------- URL state


def query_dict() -> dict[str, str]:
    """The page's URL parameters as {key: text} (the last value of a repeated key)."""
    return {key: st.query_params[key] for key in st.query_params}


def new_url_params(page: str) -> dict[str, str] | None:
    """The URL's parameters if this page has not applied or written them yet, else None.

    True on the first load of a shared link; false on the page's own reruns (it writes its
    settings to the URL each run) and when the URL is empty.
    """
    params = query_dict()
    if params and params != st.session_state.get(f"_{page}_url"):
        return params
    return None


def write_url(page: str, params: Mapping[str, str]) -> None:
    """Make the URL hold exactly these parameters (the current settings of the page)."""
    params = dict(params)
    if params != query_dict():
        st.query_params.from_dict(params)
    st.session_state[f"_{page}_url"] = params


def show_notices(notices: Iterable[str]) -> None:
    """One warning listing the URL parameters that were not used."""
    notices = list(notices)
    if notices:
        st.warning(
            "Some settings in the link were not used; the defaults stand in for them:\n\n"
            + "\n".join(f"- {n}" for n in notices),
            icon=":material/link_off:",
        )


def seed_widgets(values: Mapping[str, Any], force: bool = False) -> None:
    """Give widgets their starting values through Session State (before they are drawn).

    force=True overwrites (a link was opened); otherwise only keys without a value are set.
    """
    for key, value in values.items():
        if force or key not in st.session_state:
            st.session_state[key] = value


def remember_widgets(page: str, prefix: str | tuple[str, ...]) -> None:
    """Keep this page's widget values, so they survive a visit to another page.

    Streamlit forgets the state of widgets that a run does not draw; `restore_widgets` puts the
    remembered values back when the page is drawn again.
    """
    st.session_state[f"_{page}_memory"] = {
        key: value
        for key, value in st.session_state.items()
        if isinstance(key, str) and key.startswith(prefix) and "editor" not in key
    }


def restore_widgets(page: str) -> None:
    """Put back the widget values `remember_widgets` kept (only where none is set)."""
    seed_widgets(st.session_state.get(f"_{page}_memory", {}))


def clamp_notices(values: dict[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """Integers too large for a browser widget go back to their defaults (with a notice)."""
    notices = []
    for key, value in list(values.items()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDGET_INT:
            values[key] = defaults.get(key)
            notices.append(
                f"{key.split('.')[-1]} = {format_number(value)} is too large for this page"
            )
    return notices


# ----------------------------------------------------------------------------- widgets


def _bounds(field) -> dict[str, float | None]:
    """Inclusive bounds of a pydantic field (exclusive ones are left to validation)."""
    out: dict[str, float | None] = {"ge": None, "le": None}
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            out["ge"] = meta.ge
        elif isinstance(meta, annotated_types.Le):
            out["le"] = meta.le
    return out


def field_default(model_cls: type[BaseModel], name: str) -> Any:
    """A field's default value (None when it is required)."""
    field = model_cls.model_fields[name]
    return None if field.is_required() else field.get_default(call_default_factory=True)


def number_field(
    model_cls: type[BaseModel],
    name: str,
    key: str,
    label: str | None = None,
    widget_bounds: bool = True,
) -> Any:
    """A number_input built from a pydantic field: its type, inclusive bounds and description.

    widget_bounds=False leaves the field's bounds to the page's validation: a browser widget
    with bounds silently keeps its old value when an out-of-range number is typed, whereas
    without them the value reaches the page, which can block the action and say what is
    allowed (the description then names the range).
    """
    field = model_cls.model_fields[name]
    bounds = _bounds(field)
    is_int = field.annotation is int
    default = field_default(model_cls, name)
    seed_widgets({key: default})
    big = abs(default or 0) >= 10
    kwargs: dict[str, Any] = {
        "key": key,
        "help": field.description,
        "step": (10 if big else 1) if is_int else (10.0 if big else 0.05),
    }
    if not widget_bounds:
        allowed = allowed_range(field)
        if allowed:
            kwargs["help"] = f"{field.description or ''} Allowed: {allowed}."
        bounds = {"ge": -MAX_WIDGET_INT if is_int else None, "le": None}
    if bounds["ge"] is not None:
        kwargs["min_value"] = int(bounds["ge"]) if is_int else float(bounds["ge"])
    if bounds["le"] is not None:
        kwargs["max_value"] = int(bounds["le"]) if is_int else float(bounds["le"])
    elif is_int:
        kwargs["max_value"] = MAX_WIDGET_INT
    if not is_int:
        kwargs["format"] = "%g"
    return st.number_input(label or name.replace("_", " "), **kwargs)


def allowed_range(field) -> str:
    """A field's allowed values in words: '2 to 1024', 'at least 0 and less than 1', or ''."""
    low = high = None
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = ("at least", meta.ge)
        elif isinstance(meta, annotated_types.Gt):
            low = ("more than", meta.gt)
        elif isinstance(meta, annotated_types.Le):
            high = ("at most", meta.le)
        elif isinstance(meta, annotated_types.Lt):
            high = ("less than", meta.lt)
    if low and high and low[0] == "at least" and high[0] == "at most":
        return f"{format_number(low[1])} to {format_number(high[1])}"
    return " and ".join(
        f"{word} {format_number(value)}" for word, value in filter(None, (low, high))
    )


# ----------------------------------------------------------------------------- engine calls


@st.cache_data(max_entries=64, show_spinner=False)
def cached_lab(config_json: str) -> LabResult:
    """run_lab for a LabConfig given as JSON (the cache key), memoised across reruns."""
    from vlsim.config import LabConfig

    return run_lab(LabConfig.model_validate_json(config_json))


@st.cache_data(max_entries=32, show_spinner=False)
def cached_length_sample(
    spec_json: str, max_len: int, n: int = 20_000, seed: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Sampled lengths of a spec and their summary (the same draws: same seed and n)."""
    import json

    spec = parse_length_spec(json.loads(spec_json))
    return sample_lengths(spec, n, max_len, seed), length_summary(spec, max_len, n, seed)


# ----------------------------------------------------------------------------- formatting


def fmt(value: float, digits: int = 3) -> str:
    """A number for prose: 3 significant digits, no scientific notation for ordinary sizes."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def lab_headline(result: LabResult) -> str:
    """The Length Lab's main message, in words, from the numbers of this result: the step-size
    drift since the reference lengths, the direction, then the noise."""
    by = result.by_name()
    cfg = result.config
    lines = []
    moving = [r for r in result.results if r.name != OPTIMAL and not r.length_free_step]
    steady = [r for r in result.results if r.name != OPTIMAL and r.length_free_step]
    shift = (
        f"Answers are {cfg.length_growth:g}× as long as at the reference (mean "
        f"{result.reference_mean_length:.0f} → {result.mean_length:.0f} tokens). "
    )
    if moving:
        said = ", ".join(
            f"**{r.display_name}** ×{r.relative_scale:.2f} ({r.drift:+.0%})" for r in moving
        )
        lines.append(
            shift + f"Step size now vs then: {said}: a learning rate tuned at the reference "
            "is off by that factor now. "
            + (
                ", ".join(r.display_name for r in steady) + " keep their step size."
                if steady
                else ""
            )
        )
    elif steady:
        lines.append(shift + "Every aggregator shown keeps its step size whatever the lengths.")
    kept = [r for r in result.results if r.name != OPTIMAL and r.length_free_direction]
    tilted = [r for r in result.results if r.name != OPTIMAL and not r.length_free_direction]
    if cfg.length_slope == 0:
        lines.append(
            "κ = 0: correctness does not depend on length, so no aggregator tilts the update. "
            "Set the length-correctness slope κ to see which weightings do."
        )
    elif tilted:
        lines.append(
            f"κ = {cfg.length_slope:g} links length and correctness, and every length-dependent "
            "weighting tilts the update: "
            + ", ".join(f"**{r.display_name}** {r.angle_deg:.1f}°" for r in tilted)
            + (
                "; " + " and ".join(r.display_name for r in kept) + " keep the direction (0°)."
                if kept
                else "."
            )
        )
    dr, vl = by.get("dr_grpo"), by.get("vl_norm")
    if dr is not None and vl is not None and dr.noise_variance > 0 and dr.variance > 0:
        noise = vl.noise_variance / dr.noise_variance
        total = vl.variance / dr.variance
        text = (
            f"Noise: **{vl.display_name}** has {noise:.0%} of Dr. GRPO's token-noise variance "
            f"(efficiency {vl.efficiency:.2f} vs {dr.efficiency:.2f})"
            f" and {total:.0%} of its total variance, which adds per-answer reward noise that "
            "equal weights handle best."
        )
        if total > 1:
            text += " Here the total favours **Dr. GRPO**."
        lines.append(text)
    return "\n".join(f"- {line}" for line in lines)
