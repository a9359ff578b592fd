"""Helpers of the browser tests: a `streamlit run app.py` server, headless Chromium, and waits.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright's sync API; Playwright's own
browser downloads are never used.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("VLSIM_REQUIRE_BROWSER") == "1"  # CI: a missing browser fails

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
VIEWPORT = {"width": 1400, "height": 900}


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run app.py` on a free port, in its own process group, logging to a file."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> StreamlitServer:
        env = {**os.environ, "VLSIM_DATA_DIR": str(self.data_dir), **self.extra_env}
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as a whole
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with code {self.proc.returncode}:\n{self.log()}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp,
            ):
                if resp.status == 200 and resp.read().strip() == b"ok":
                    return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"streamlit did not answer its health check in {timeout:g} s:\n{self.log()}"
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server's process group, then its training workers; kill if needed."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
        # workers may outlive the server a moment: make sure none of the group is left
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._stop_workers(grace)
        self._log.close()

    def worker_pids(self) -> list[int]:
        """Training workers of this server: they run in sessions of their own, with this data dir."""
        pids = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            text = [a.decode(errors="replace") for a in args]
            if "vlsim.worker" in text and str(self.data_dir) in text:
                pids.append(int(entry.name))
        return pids

    def _stop_workers(self, grace: float) -> None:
        pids = self.worker_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
            time.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- app pages


@dataclass(frozen=True)
class AppPage:
    """One page of app.py's navigation: its URL path and the title it shows."""

    file: str
    nav_title: str
    url_path: str
    heading: str


def _literal_kw(call: ast.Call, name: str) -> str | None:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def _first_title(page_file: Path) -> str:
    """The text of the page's first st.title("...") call."""
    for node in ast.walk(ast.parse(page_file.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "title"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            return node.args[0].value
    raise AssertionError(f"{page_file} has no st.title")


def app_pages() -> list[AppPage]:
    """The pages app.py registers with st.Page, in menu order (read from its source)."""
    pages = []
    for node in ast.walk(ast.parse((ROOT / "app.py").read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "Page"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            file = node.args[0].value
            default = any(
                kw.arg == "default" and getattr(kw.value, "value", False) for kw in node.keywords
            )
            url_path = "" if default else (_literal_kw(node, "url_path") or Path(file).stem)
            pages.append(
                AppPage(
                    file=file,
                    nav_title=_literal_kw(node, "title") or Path(file).stem,
                    url_path=url_path,
                    heading=_first_title(ROOT / file),
                )
            )
    return pages


# ----------------------------------------------------------------------------- browser


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_idle(page, timeout: float = 60.0, settle_ms: int = 500) -> None:
    """Wait until the app has finished its script run and the page has stopped changing.

    Streamlit marks its root element with data-test-script-state ('notRunning' once a run is
    over) and removes the running status widget; the elements of a run are drawn a little
    later, so the page also has to keep the same elements for settle_ms.
    """
    state_js = """() => {
        const app = document.querySelector('[data-testid="stApp"]');
        const idle = !!app && app.dataset.testScriptState === 'notRunning'
            && !document.querySelector('[data-testid="stStatusWidget"]');
        return [idle, document.querySelectorAll('[data-testid]').length];
    }"""
    deadline = time.monotonic() + timeout
    stable_since, last = None, None
    while True:
        idle, count = page.evaluate(state_js)
        now = time.monotonic()
        if not idle or count != last:
            stable_since = now if idle else None
        elif stable_since is None:
            stable_since = now
        elif (now - stable_since) * 1000 >= settle_ms:
            return
        last = count
        if now > deadline:
            raise TimeoutError(f"the app kept running or changing for more than {timeout:g} s")
        page.wait_for_timeout(100)


def open_page(page, url: str, heading: str | None = None, timeout: float = 60.0) -> None:
    """Go to a URL of the app and wait until its script has run (and its title is shown)."""
    page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
    if heading is not None:
        page.get_by_role("heading", name=heading, level=1).wait_for(timeout=timeout * 1000)
    wait_idle(page, timeout)


def exceptions(page) -> list[str]:
    """Texts of the Streamlit exception boxes on the page."""
    return page.locator('[data-testid="stException"]').all_inner_texts()


def by_key(page, key: str):
    """The element container of the widget or chart with this key.

    Streamlit gives it the class st-key-<key>, with characters outside [a-zA-Z0-9_-] as '-';
    a copy it keeps hidden while a fragment redraws (data-retained) is left out.
    """
    css_class = "st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())
    return page.locator(f'.{css_class}:not([data-retained="true"])')


def chart_traces(page, key: str) -> list[dict]:
    """The traces (name, type, mode, fill, x, y) of the plotly chart with this key ([] if none).

    Read from plotly's full data, where arrays sent as binary are already decoded.
    """
    return by_key(page, key).evaluate(
        """(box) => {
        const el = box.querySelector('.js-plotly-plot');
        const plain = (v) => (v && ArrayBuffer.isView(v)) ? Array.from(v)
            : Array.isArray(v) ? v.map(plain) : v;
        const traces = el && (el._fullData || el.data);
        return traces ? traces.map(t => ({
            name: t.name ?? null, type: t.type ?? null,
            mode: t.mode ?? null, fill: t.fill ?? null,
            x: plain(t.x) ?? null, y: plain(t.y) ?? null,
        })) : [];
    }"""
    )


def wait_chart(page, key: str, timeout: float = 30.0) -> list[dict]:
    """Wait until the plotly chart with this key is drawn with data; its traces."""
    by_key(page, key).locator(".js-plotly-plot").wait_for(timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    while not (traces := chart_traces(page, key)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the chart {key!r} has no data after {timeout:g} s")
        page.wait_for_timeout(200)
    return traces


def wait_chart_change(page, key: str, before: list[dict], timeout: float = 30.0) -> list[dict]:
    """Wait until the chart with this key shows other data than `before`; its traces."""
    deadline = time.monotonic() + timeout
    while (traces := chart_traces(page, key)) == before or not traces:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the chart {key!r} did not change in {timeout:g} s")
        page.wait_for_timeout(200)
    return traces


def screenshot(page, name: str, full_page: bool = True, max_height: int = 6000) -> Path:
    """Save test-artifacts/browser/<name>.png.

    Streamlit scrolls inside its main block, not the document, so a full-page shot is taken by
    making the viewport as tall as the content for a moment (at most max_height pixels).
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = size["height"]
    content_js = """() => Math.max(...['stMain', 'stSidebarContent'].map(id => {
        const el = document.querySelector(`[data-testid="${id}"]`);
        return el ? el.scrollHeight : 0;
    }))"""
    for _ in range(3 if full_page else 0):  # content can grow as it is laid out anew
        want = max(size["height"], min(int(page.evaluate(content_js)), max_height))
        if want == height:
            break
        height = want
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(600)  # charts follow the new size
    try:
        page.screenshot(path=str(path))
    finally:
        if height != size["height"]:
            page.set_viewport_size(size)
    return path


def browser_marks(timeout: int) -> list:
    """A browser test module's pytestmark: marked `browser`, skipped without Chromium or
    playwright (unless VLSIM_REQUIRE_BROWSER=1, as in CI, where it runs and fails), and a
    timeout of `timeout` seconds a test."""
    import pytest

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:  # pragma: no cover - the dev requirements install it
        have_browser = False
    else:
        have_browser = Path(CHROMIUM).exists()
    return [
        pytest.mark.browser,
        pytest.mark.skipif(
            not have_browser and not REQUIRE_BROWSER,
            reason=f"needs {CHROMIUM} and the playwright package (apt-get install chromium)",
        ),
        pytest.mark.timeout(timeout),
    ]
