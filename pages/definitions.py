"""Definitions: every figure the app reports, defined once (renders docs/definitions.md)."""

from pathlib import Path

import streamlit as st

from pages.common import ensure_app_navigation

ensure_app_navigation()

st.title("Definitions")
DOC = Path(__file__).resolve().parents[1] / "docs" / "definitions.md"
if DOC.exists():
    st.markdown(DOC.read_text())
else:
    st.markdown("The definitions of the figures are in `docs/definitions.md`.")
