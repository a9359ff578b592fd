"""Lesson 2 · Bias and variance."""

import streamlit as st

from pages.common import ensure_app_navigation

ensure_app_navigation()

st.title("Lesson 2 · Bias and variance")
