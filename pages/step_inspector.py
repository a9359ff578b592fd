"""Step Inspector."""

import streamlit as st

from pages.common import ensure_app_navigation

ensure_app_navigation()

st.title("Step Inspector")
