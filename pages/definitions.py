"""Definitions: every figure the app shows, rendered from docs/definitions.md.

Each '## Heading' becomes a header whose anchor is the heading's GitHub-style slug, so the
pages' help texts can link /definitions#scale, /definitions#direction-bias and so on.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from pages.common import ensure_app_navigation

ensure_app_navigation()

DOC = Path(__file__).resolve().parents[1] / "docs" / "definitions.md"


def slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", title.strip().lower()).replace(" ", "-")


def sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The text before the first '## ' heading, and (heading, body) for each section."""
    parts = re.split(r"^## +(.+?)\s*$", text, flags=re.MULTILINE)
    intro = re.sub(r"^# .*$", "", parts[0], count=1, flags=re.MULTILINE).strip()
    return intro, [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]


st.title("Definitions")
intro, body = sections(DOC.read_text(encoding="utf-8"))
st.markdown(intro)
for title, text in body:
    st.header(title, anchor=slug(title), divider="gray")
    st.markdown(text)
