"""The offer an empty store makes on Home and Runs: load the reference runs with one button.

UI only: the import is vlsim.run_archive.load_reference_runs (one transaction; runs the store
already holds are skipped).
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from pages.training_common import get_store
from vlsim.run_archive import ArchiveError, ImportResult, load_reference_runs, reference_archive

_MESSAGE = "_reference_runs_loaded"
_REQUEST = "_reference_runs_requested"
DESCRIPTION = (
    "The reference runs are runs recorded with vlsim that ship with it in "
    "`docs/reference_runs/` (its README says how they were made)."
)


def show_loaded_message() -> None:
    """After a load: a success message with the counts (once)."""
    message = st.session_state.pop(_MESSAGE, None)
    if message:
        st.success(message, icon=":material/check_circle:")


def reference_runs_button(
    key: str, on_loaded: Callable[[ImportResult], None] | None = None
) -> None:
    """One line on what the reference runs are and a button that imports them, then reruns."""
    if reference_archive() is None:  # this copy of vlsim ships none
        return
    st.markdown(DESCRIPTION)
    st.button(
        "Load the reference runs",
        key=key,
        type="primary",
        icon=":material/download:",
        on_click=st.session_state.__setitem__,  # a flag: the load runs here, under its spinner
        args=(_REQUEST, key),
    )
    if st.session_state.pop(_REQUEST, None) != key:
        return
    try:
        with st.spinner("Loading the reference runs..."):
            result = load_reference_runs(get_store())
    except ArchiveError as err:
        st.error(f"The reference runs could not be loaded: {err}", icon=":material/error:")
        return
    skipped = (
        f" ({result.skipped_duplicates} were already in the store)"
        if result.skipped_duplicates
        else ""
    )
    recorded = f", recorded {result.written[:10]}" if result.written else ""
    st.session_state[_MESSAGE] = (
        f"Loaded {result.imported} reference run{'' if result.imported == 1 else 's'}{skipped}"
        f"{recorded}."
    )
    if on_loaded is not None:
        on_loaded(result)
    st.rerun()
