"""Test cost markers: page tests (AppTest) and browser tests count as slow.

`pytest -m "not slow"` is the engine's quick loop (about a minute on 2 cores); the page tests
take about a second each (every one runs a Streamlit script) and run in the full suite, or alone
with `pytest -m app`.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _runs_pages(item: pytest.Item) -> bool:
    """Tests in test_app*.py, or in any module importing streamlit's AppTest, run pages."""
    module = getattr(item, "module", None)
    named = Path(str(item.fspath)).name.startswith("test_app")
    return named or (module is not None and hasattr(module, "AppTest"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark page tests 'app', and page and browser tests 'slow'."""
    for item in items:
        if _runs_pages(item):
            item.add_marker(pytest.mark.app)
        if item.get_closest_marker("app") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
