"""Lesson 3 · Deriving VL Norm."""

import streamlit as st

from pages.common import ensure_app_navigation

ensure_app_navigation()

st.title("Lesson 3 · Deriving VL Norm")
