"""vlsim: loss aggregation in RLVR, made visible and testable.

The engine (this package) never imports Streamlit; the app's pages and the CLI call it.
"""

__version__ = "0.1.0"
