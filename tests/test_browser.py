"""End-to-end tests in headless Chromium against `streamlit run app.py`.

One server per module (fresh SQLite store in a temp dir), one browser context per test.
Screenshots go to test-artifacts/browser/. Without /usr/bin/chromium the module is skipped,
unless VLSIM_REQUIRE_BROWSER=1 (as in CI), where it runs and fails.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_utils import (
    CHROMIUM,
    ROOT,
    VIEWPORT,
    StreamlitServer,
    app_pages,
    browser_marks,
    by_key,
    chart_traces,
    exceptions,
    launch_browser,
    open_page,
    screenshot,
    wait_chart,
    wait_chart_change,
    wait_idle,
)

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the dev requirements install it
    expect = sync_playwright = None

pytestmark = browser_marks(timeout=360)

PAGES = app_pages()
PAGE_IDS = [p.url_path or "home" for p in PAGES]
LAB = next(p for p in PAGES if p.file == "pages/length_lab.py")
ARENA = next(p for p in PAGES if p.file == "pages/training_arena.py")
HOME = next(p for p in PAGES if p.url_path == "")  # the default page (the lessons come first)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    srv = StreamlitServer(
        data_dir=tmp / "data",
        log_path=tmp / "streamlit.log",
        env={"VLSIM_MAX_CONCURRENT": "2"},
    )
    srv.start(timeout=60)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser():
    assert sync_playwright is not None, "the playwright package is not installed"
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as pw:
        b = launch_browser(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh browser context (a new Streamlit session); the server log is printed on failure."""
    log_start = len(server.log())
    failed_before = request.session.testsfailed
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    page_errors: list[str] = []
    pg.on("pageerror", lambda err: page_errors.append(str(err)))
    pg.page_errors = page_errors
    try:
        yield pg
    finally:
        context.close()
        if request.session.testsfailed > failed_before:
            print(f"----- streamlit log ({server.url}) -----\n{server.log()[log_start:]}")
            if page_errors:
                print("----- browser page errors -----\n" + "\n".join(page_errors))


def assert_clean(pg) -> None:
    """No Streamlit exception box, no dialog (e.g. 'Page not found'), no uncaught JS error."""
    assert exceptions(pg) == [], exceptions(pg)
    dialogs = pg.locator('[role="dialog"]').all_inner_texts()
    assert dialogs == [], dialogs
    assert pg.page_errors == [], pg.page_errors


def url_params(pg) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(pg.url).query).items()}


def number_input(pg, key: str):
    """The <input> of a number_input (or text_input) with this key."""
    return by_key(pg, key).locator("input")


def select_input(pg, key: str):
    """The combobox <input> of a selectbox with this key (its value is the shown option)."""
    return by_key(pg, key).locator('input[role="combobox"]')


def slider_input(pg, key: str):
    """The range <input> of a one-thumb slider with this key."""
    return by_key(pg, key).locator('input[type="range"]')


def choose(pg, key: str, option: str) -> None:
    """Pick an option of the selectbox with this key, and wait for the rerun."""
    select_input(pg, key).click()
    pg.get_by_role("option", name=option, exact=True).click()
    wait_idle(pg)


def poll(fn, timeout: float, interval: float = 1.0, what: str = "condition"):
    """Call fn until it returns something truthy; bounded by timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ----------------------------------------------------------------------------- every page


def test_navigation_lists_every_page():
    """app.py registers (at least) these pages; every registered page is visited below."""
    titles = [p.nav_title for p in PAGES]
    expected = ["Home", "Aggregators", "Length Lab", "Training Arena", "Runs", "Probes",
                "Hypotheses", "Paper check"]  # fmt: skip
    assert [t for t in titles if t in expected] == expected, titles
    assert ARENA.url_path == "arena"
    # A new server's first request is looked up among the file names of pages/ (see
    # pages/arena.py): every URL path needs a file of that name there.
    for app_page in PAGES:
        if app_page.url_path:
            assert (ROOT / "pages" / f"{app_page.url_path}.py").exists(), (
                f"{app_page.file} is served at /{app_page.url_path}: add "
                f"pages/{app_page.url_path}.py like pages/arena.py"
            )


def test_fresh_server_opens_a_link_to_the_arena(browser, tmp_path):
    """The first request of a new server may be a deep link (e.g. a reload after a restart).

    Streamlit first treats the app as a legacy pages/ app; no page may show 'Page not found'.
    """
    srv = StreamlitServer(data_dir=tmp_path / "data", log_path=tmp_path / "streamlit.log")
    srv.start(timeout=60)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        pg = context.new_page()
        pg.page_errors = []
        pg.on("pageerror", lambda err: pg.page_errors.append(str(err)))
        open_page(pg, f"{srv.url}/{ARENA.url_path}?steps=7", heading=ARENA.heading)
        assert_clean(pg)
        expect(number_input(pg, "arena.steps")).to_have_value("7")
        nav = pg.locator('[data-testid="stSidebarNav"]')
        expect(nav.locator("a")).to_have_count(len(PAGES))  # app.py's menu, not the folder's
        screenshot(pg, "fresh-server-arena-link")
    except Exception:
        print(f"----- streamlit log -----\n{srv.log()}")
        raise
    finally:
        context.close()
        srv.stop()


@pytest.mark.parametrize("app_page", PAGES, ids=PAGE_IDS)
def test_page_renders(page, server, app_page):
    open_page(page, f"{server.url}/{app_page.url_path}", heading=app_page.heading)
    assert_clean(page)
    nav = page.locator('[data-testid="stSidebarNav"]')
    for other in PAGES:
        assert nav.get_by_text(other.nav_title, exact=True).count() == 1, other.nav_title
    screenshot(page, f"page-{app_page.url_path or 'home'}")


def test_sidebar_navigation_in_one_session(page, server):
    """Clicking through the menu in one session: every page draws, none raises."""
    open_page(page, server.url, heading=HOME.heading)
    nav = page.locator('[data-testid="stSidebarNav"]')
    for app_page in [*(p for p in PAGES if p is not HOME), HOME, LAB]:
        nav.get_by_text(app_page.nav_title, exact=True).click()
        page.get_by_role("heading", name=app_page.heading, level=1).wait_for()
        wait_idle(page)
        assert_clean(page)
        assert urlsplit(page.url).path == f"/{app_page.url_path}"


# ----------------------------------------------------------------------------- Length Lab


def test_length_lab_controls_change_the_charts(page, server):
    open_page(page, f"{server.url}/{LAB.url_path}", heading=LAB.heading)
    before_var = wait_chart(page, "variance_chart")
    before_hist = wait_chart(page, "length_hist")
    screenshot(page, "lab-before")

    # G (answers): 16 -> 4
    g = number_input(page, "lab.group_size")
    expect(g).to_have_value("16")
    g.fill("4")
    g.press("Enter")
    wait_idle(page)
    assert_clean(page)
    expect(g).to_have_value("4")
    expect(page).to_have_url(re.compile(r"[?&]group_size=4(&|$)"))
    wait_chart_change(page, "variance_chart", before_var)
    expect(page.get_by_text("G = 4 answers")).to_be_visible()

    # length family: log-normal -> Pareto; the histogram is redrawn from other lengths
    expect(select_input(page, "lab.kind")).to_have_value("Log-normal")
    choose(page, "lab.kind", "Pareto (long tail)")
    assert_clean(page)
    expect(select_input(page, "lab.kind")).to_have_value("Pareto (long tail)")
    expect(page).to_have_url(re.compile(r"[?&]lengths\.kind=pareto(&|$)"))
    assert by_key(page, "lab.pareto.shape").count() == 1  # the family's own parameters
    wait_chart_change(page, "length_hist", before_hist)
    screenshot(page, "lab-after")


# ----------------------------------------------------------------------------- shared links


def test_length_lab_link_sets_the_widgets(page, server):
    query = (
        "group_size=8&n_groups=4&lengths.kind=lognormal&lengths.sigma=1.2&alpha=0.5&n_batches=2000"
    )
    open_page(page, f"{server.url}/{LAB.url_path}?{query}", heading=LAB.heading)
    assert_clean(page)
    expect(number_input(page, "lab.group_size")).to_have_value("8")
    expect(number_input(page, "lab.n_groups")).to_have_value("4")
    expect(number_input(page, "lab.n_batches")).to_have_value("2000")
    expect(select_input(page, "lab.kind")).to_have_value("Log-normal")
    expect(number_input(page, "lab.lognormal.sigma")).to_have_value("1.2")
    expect(slider_input(page, "lab.alpha")).to_have_value("0.5")
    assert page.locator('[data-testid="stAlertContentWarning"]').count() == 0
    params = url_params(page)
    assert params["group_size"] == "8" and params["lengths.sigma"] == "1.2"
    assert "lengths.kind" not in params  # log-normal is the default family: a clean URL
    expect(page.get_by_text("G = 8 answers")).to_be_visible()
    screenshot(page, "lab-shared-link")


def test_length_lab_tampered_link_shows_a_notice(page, server):
    query = "group_size=abc&alpha=99&lengths.kind=nonsense&bogus=1&n_batches=2000"
    open_page(page, f"{server.url}/{LAB.url_path}?{query}", heading=LAB.heading)
    assert_clean(page)
    notice = page.locator('[data-testid="stAlertContentWarning"]')
    expect(notice).to_have_count(1)
    expect(notice).to_contain_text("Some settings in the link were not used")
    for name in ("group_size", "alpha", "lengths.kind", "bogus"):
        expect(notice).to_contain_text(name)
    expect(number_input(page, "lab.group_size")).to_have_value("16")  # the default stands in
    expect(number_input(page, "lab.n_batches")).to_have_value("2000")  # the valid parameter is kept
    screenshot(page, "lab-tampered-link")


def test_arena_link_sets_the_widgets(page, server):
    query = "aggregators=grpo,vl_norm&steps=7&alpha=0.5&group_size=4"
    open_page(page, f"{server.url}/{ARENA.url_path}?{query}", heading=ARENA.heading)
    assert_clean(page)
    expect(number_input(page, "arena.steps")).to_have_value("7")
    expect(number_input(page, "arena.group_size")).to_have_value("4")
    chosen = by_key(page, "arena.aggregators")
    expect(chosen).to_contain_text("GRPO")
    expect(chosen).to_contain_text("VL Norm")
    expect(chosen).not_to_contain_text("DAPO")
    expect(page.get_by_text("7 RL steps of B=16 prompts × G=4 answers")).to_be_visible()
    assert page.locator('[data-testid="stAlertContentWarning"]').count() == 0
    screenshot(page, "arena-shared-link")


def test_arena_tampered_link_shows_a_notice(page, server):
    query = "preset=turbo&aggregators=grpo,nope&steps=-3&group=no-such-group"
    open_page(page, f"{server.url}/{ARENA.url_path}?{query}", heading=ARENA.heading)
    assert_clean(page)
    alerts = page.locator('[data-testid="stAlert"]')
    notice = alerts.filter(has_text="Some settings in the link were not used")
    expect(notice).to_have_count(1)
    for text in ("preset='turbo'", "nope", "steps"):
        expect(notice).to_contain_text(text)
    # the watched group does not exist in this data directory
    expect(alerts.filter(has_text="no-such-group")).to_have_count(1)
    # the defaults stand in: the quick preset, its steps, every default aggregator
    expect(select_input(page, "arena.preset")).to_have_value("quick")
    expect(number_input(page, "arena.steps")).to_have_value("200")
    expect(by_key(page, "arena.aggregators")).to_contain_text("DAPO")
    screenshot(page, "arena-tampered-link")


# ----------------------------------------------------------------------------- training


def test_arena_quick_training_draws_live_curves(page, server):
    """A quick run of two aggregators (its own warm start, 10 RL steps): the charts fill live.

    Then the Runs and Probes pages show the two runs.
    """
    steps = 10
    query = f"aggregators=grpo,vl_norm&steps={steps}&probe.every=5"
    open_page(page, f"{server.url}/{ARENA.url_path}?{query}", heading=ARENA.heading)
    assert_clean(page)
    expect(select_input(page, "arena.preset")).to_have_value("quick")
    expect(page.get_by_text(f"then {steps} RL steps")).to_be_visible()
    screenshot(page, "arena-before-start")

    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_role("heading", name="Curves")).to_be_visible(timeout=60_000)
    expect(page).to_have_url(re.compile(r"[?&]group=arena-"))
    page.mouse.move(0, 0)  # no tooltip over the screenshots

    def reward_points() -> int:
        traces = chart_traces(page, "arena.chart.reward")
        return sum(len(t["x"] or []) for t in traces if t["type"] == "scatter")

    # the warm start (shared by both runs) comes first: a minute or two on two cores
    first = poll(reward_points, timeout=240, what="the first points of the reward chart")
    screenshot(page, "arena-training-live")
    poll(lambda: reward_points() > first, timeout=60, what="more points on the reward chart")

    progress = page.locator('[data-testid="stProgress"]')
    poll(
        lambda: (
            progress.all_inner_texts()
            and all(t.startswith("finished at step") for t in progress.all_inner_texts())
        ),
        timeout=120,
        what="both runs to finish",
    )
    expect(progress).to_have_count(2)
    wait_idle(page, timeout=30)
    assert_clean(page)
    traces = [t for t in chart_traces(page, "arena.chart.reward") if t["type"] == "scatter"]
    names = [t["name"] for t in traces]
    assert len(traces) == 2 and "GRPO" in names[0] and "VL Norm" in names[1], names
    assert all(len(t["x"]) == steps for t in traces), [len(t["x"]) for t in traces]
    bands = [t for t in chart_traces(page, "arena.chart.length") if t["fill"] == "toself"]
    assert len(bands) == 2 and all(t["mode"] == "lines" for t in bands), bands  # no markers
    assert len(wait_chart(page, "arena.probe.var")) >= 4  # one line per aggregator
    expect(page.get_by_role("button", name="Stop all")).to_be_disabled()
    screenshot(page, "arena-training-finished")

    # the Runs page lists the group's runs and overlays their curves
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Runs", exact=True).click()
    page.get_by_role("heading", name="Runs", level=1).wait_for()
    wait_idle(page)
    assert_clean(page)
    overlay = [t for t in wait_chart(page, "runs.overlay") if t["type"] == "scatter"]
    assert len(overlay) == 2, [t["name"] for t in overlay]
    screenshot(page, "runs-after-training")

    # the Probes page draws the probe records of a run
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Probes", exact=True).click()
    page.get_by_role("heading", name="Gradient probes", level=1).wait_for()
    wait_idle(page)
    assert_clean(page)
    assert len(wait_chart(page, "probes.variance")) >= 4
    wait_chart(page, "probes.scatter")
    screenshot(page, "probes-after-training")


# ----------------------------------------------------------------------------- lessons

LESSONS = [p for p in PAGES if p.file.startswith("pages/lesson_")]
LESSON_CHARTS = {
    "pages/lesson_1_why_length.py": ["l1.loss", "l1.weights", "l1.push", "l1.steps"],
    "pages/lesson_2_bias_variance.py": ["l2.drift", "l2.noise", "l2.tilt"],
    "pages/lesson_3_deriving_vl_norm.py": ["l3.fig_check", "l3.fig_alpha"],
}


def test_lessons_come_first_in_the_menu(page, server):
    open_page(page, server.url, heading=HOME.heading)
    nav = page.locator('[data-testid="stSidebarNav"]')
    texts = nav.inner_text()
    assert len(LESSONS) == 3
    assert texts.index("Lessons") < texts.index(LESSONS[0].nav_title) < texts.index("Explore")
    assert texts.index(LESSONS[-1].nav_title) < texts.index("Home")


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.url_path for p in LESSONS])
def test_lesson_renders_with_its_charts(page, server, lesson):
    open_page(page, f"{server.url}/{lesson.url_path}", heading=lesson.heading)
    assert_clean(page)
    for key in LESSON_CHARTS[lesson.file]:
        wait_chart(page, key)
    expect(page.get_by_text("What to notice.").first).to_be_visible()
    expect(page.get_by_role("button", name="Show the answer")).to_have_count(3)
    page.mouse.move(0, 0)
    screenshot(page, f"lesson-{lesson.url_path}")


def test_lesson_scenario_link_changes_the_chart_and_a_question_reveals_its_answer(page, server):
    lesson = LESSONS[0]
    open_page(page, f"{server.url}/{lesson.url_path}", heading=lesson.heading)
    before = wait_chart(page, "l1.push")
    expect(slider_input(page, "l1.stretch")).to_have_value("1")
    page.get_by_role("link", name="Open this scenario").click()
    wait_idle(page)
    assert_clean(page)
    expect(slider_input(page, "l1.stretch")).to_have_value("4")
    expect(page).to_have_url(re.compile(r"[?&]stretch=4(&|$)"))
    wait_chart_change(page, "l1.push", before)

    answer = page.get_by_text("GRPO's step M·mean(1/L) halves")
    expect(answer).to_have_count(0)
    page.get_by_role("button", name="Show the answer").first.click()
    wait_idle(page)
    expect(answer).to_be_visible()
    page.mouse.move(0, 0)
    screenshot(page, "lesson-1-scenario-and-answer")


def test_lesson_exports_all_its_charts_as_one_file(page, server):
    lesson = LESSONS[1]
    open_page(page, f"{server.url}/{lesson.url_path}", heading=lesson.heading)
    wait_chart(page, "l2.tilt")
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Export all 3 charts").click()
    download = info.value
    target = ROOT / "test-artifacts" / "browser" / download.suggested_filename
    target.parent.mkdir(parents=True, exist_ok=True)
    download.save_as(target)
    text = target.read_text()
    assert download.suggested_filename == "lesson-2-bias-and-variance-charts.html"
    assert target.stat().st_size > 1_000_000  # plotly.js inside: it opens offline
    assert text.count("<section>") == 3 and "Plotly.downloadImage" in text
    # each chart's camera button is set to save at slide resolution
    options = by_key(page, "l2.tilt").evaluate(
        "(box) => box.querySelector('.js-plotly-plot')._context.toImageButtonOptions"
    )
    assert options["format"] == "png" and options["scale"] == 3


# ----------------------------------------------------------------------------- inspector

INSPECTOR = next(p for p in PAGES if p.file == "pages/step_inspector.py")


def _store_full_groups(data_dir: Path) -> int:
    """A run in the server's store whose sample step 0 holds two full groups of four answers."""
    from vlsim.countdown import CharTokenizer
    from vlsim.store import Store

    tok = CharTokenizer()
    texts = [
        "7+5=12;12*4=48<ans>7+5<eos>",
        "4*12<ans>4*12<eos>",
        "48<ans>48<eos>",
        "12*4=48;48-7=41;41+7=48<ans>12*4<eos>",
    ]
    records = []
    for g in range(2):
        for i, text in enumerate(texts):
            ids = tok.encode(text)
            records.append(
                {
                    "numbers": [4, 12],
                    "target": 48,
                    "trace": "",
                    "answer": "",
                    "reward": float(i % 2 == g),
                    "length": len(ids),
                    "truncated": False,
                    "group": g,
                    "index": i,
                    "advantage": 1.0 if i % 2 == g else -1.0,
                    "token_ids": ids,
                }
            )
    store = Store(data_dir)
    run_id = store.create_run("inspected", "train", {"max_new_tokens": 48, "alpha": 1.0})
    store.log_samples(run_id, 0, records)
    store.close()
    return run_id


def test_inspector_draws_a_stored_group(page, server):
    run_id = _store_full_groups(server.data_dir)
    open_page(
        page, f"{server.url}/{INSPECTOR.url_path}?run={run_id}&step=0", heading=INSPECTOR.heading
    )
    assert_clean(page)
    strips = wait_chart(page, "insp.strips")
    assert [t["type"] for t in strips] == ["heatmap"] * 4
    wait_chart(page, "insp.totals")
    # the table is drawn on a canvas; its cells stay in the DOM for screen readers
    expect(page.get_by_text("7+5=12;12*4=48<ans>7+5<eos>").first).to_be_attached()
    page.mouse.move(0, 0)
    screenshot(page, "inspector-group")
