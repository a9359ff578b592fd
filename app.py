"""vlsim's Streamlit app: page navigation and the shared sidebar; the pages do the work.

Run with `streamlit run app.py`. To add a page, append an st.Page to LESSONS or PAGES; a url_path other
than the file's name also needs a pages/<url_path>.py that hands over (see pages/arena.py).
"""

import streamlit as st

import vlsim

st.set_page_config(page_title="vlsim", layout="wide", page_icon=":material/functions:")

# The app's pages, in menu order: the lessons first, then the tools.
LESSONS = [
    st.Page(
        "pages/lesson_1_why_length.py", title="1 · Why length matters", icon=":material/school:"
    ),
    st.Page(
        "pages/lesson_2_bias_variance.py", title="2 · Bias and variance", icon=":material/school:"
    ),
    st.Page(
        "pages/lesson_3_deriving_vl_norm.py", title="3 · Deriving VL Norm", icon=":material/school:"
    ),
]
PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/aggregators.py", title="Aggregators", icon=":material/function:"),
    st.Page("pages/length_lab.py", title="Length Lab", icon=":material/science:"),
    st.Page(
        "pages/training_arena.py",
        title="Training Arena",
        icon=":material/model_training:",
        url_path="arena",
    ),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_chart:"),
    st.Page("pages/probes.py", title="Probes", icon=":material/troubleshoot:"),
    st.Page("pages/step_inspector.py", title="Step Inspector", icon=":material/grid_on:"),
    st.Page("pages/hypotheses.py", title="Hypotheses", icon=":material/lab_research:"),
    st.Page("pages/paper_check.py", title="Paper check", icon=":material/fact_check:"),
    st.Page(
        "pages/definitions.py",
        title="Definitions",
        icon=":material/menu_book:",
        url_path="definitions",
    ),
]

page = st.navigation({"Lessons": LESSONS, "Explore": PAGES}, expanded=True)
with st.sidebar:
    st.caption(
        f"vlsim {vlsim.__version__} · loss aggregation in RLVR · after "
        "[VL Norm (arXiv 2509.07558)](https://arxiv.org/abs/2509.07558)"
    )
page.run()
