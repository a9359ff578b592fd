"""Shared UI helpers of the pages: navigation, URL and Session State primitives (the binder,
pages/binder.py, builds on them), cached engine calls and formatting. UI only: the mathematics
lives in vlsim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import streamlit as st

from vlsim.lengths import length_summary, parse_length_spec, sample_lengths
from vlsim.montecarlo import OPTIMAL, LabResult, run_lab

DEFINITIONS = "/definitions"
"""URL path of the Definitions page; anchors: scale, drift, direction-bias, variance, cv,
efficiency, slope, interval, verdict, speed-up, length-spread, step-size-spread, variance-ratio,
reproduction-verdict."""


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
