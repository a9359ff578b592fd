"""In headless Chromium: a fresh, empty store offers the reference runs, and one click loads them.

A server of its own (the shared one of test_browser.py gets runs from other tests). Screenshots
go to test-artifacts/browser/.
"""

from __future__ import annotations

from browser_utils import (
    VIEWPORT,
    StreamlitServer,
    browser_marks,
    exceptions,
    launch_browser,
    open_page,
    screenshot,
    wait_idle,
)

from vlsim.run_archive import read_archive, reference_archive
from vlsim.store import Store

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the dev requirements install it
    expect = sync_playwright = None

pytestmark = browser_marks(timeout=240)


def test_fresh_store_loads_the_reference_runs_with_one_click(tmp_path):
    names = [b.run.name for b in read_archive(reference_archive()).runs]
    srv = StreamlitServer(data_dir=tmp_path / "data", log_path=tmp_path / "streamlit.log")
    srv.start(timeout=60)
    try:
        with sync_playwright() as pw:
            browser = launch_browser(pw)
            pg = browser.new_context(viewport=VIEWPORT).new_page()
            pg.set_default_timeout(30_000)
            errors: list[str] = []
            pg.on("pageerror", lambda err: errors.append(str(err)))
            open_page(pg, srv.url, heading="vlsim: loss aggregation in RLVR")
            button = pg.get_by_role("button", name="Load the reference runs")
            expect(button).to_be_visible()  # on Home
            expect(pg.get_by_text("docs/reference_runs/")).to_be_visible()
            screenshot(pg, "reference-runs-home-empty", full_page=False)

            open_page(pg, f"{srv.url}/runs", heading="Runs")
            pg.get_by_role("button", name="Load the reference runs").click()
            n = len(names)
            expect(pg.get_by_text(f"Loaded {n} reference run")).to_be_visible(timeout=60_000)
            wait_idle(pg)
            table = pg.locator('[data-testid="stDataFrame"]').first
            expect(table).to_be_visible()
            expect(pg.get_by_role("button", name="Load the reference runs")).to_have_count(0)
            pg.locator('[data-testid="stPlotlyChart"]').first.wait_for()  # the overlay draws
            assert exceptions(pg) == [] and errors == [], (exceptions(pg), errors)
            stored = Store(srv.data_dir).list_runs()
            assert sorted(r.name for r in stored) == sorted(names)
            screenshot(pg, "reference-runs-loaded")

            # a class sees results on Probes, Hypotheses and the Step Inspector, untrained
            for path, heading in (("probes", "Gradient probes"), ("hypotheses", "Hypotheses"),
                                  ("step_inspector", "Step Inspector")):  # fmt: skip
                open_page(pg, f"{srv.url}/{path}", heading=heading)
                wait_idle(pg)
                pg.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
                assert exceptions(pg) == [] and errors == [], (path, exceptions(pg), errors)
                screenshot(pg, f"reference-runs-{path}")
            browser.close()
    except Exception:
        print(f"----- streamlit log -----\n{srv.log()}")
        raise
    finally:
        srv.stop()
