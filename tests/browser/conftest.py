"""Fixtures for the end-to-end tests: a real uvicorn server on a free port and Debian's chromium via Playwright.

The whole module is skipped where /usr/bin/chromium or the playwright package is absent (never
``playwright install``: it would download a browser). The server runs with a fresh data directory.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: browser tests skipped")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium (/usr/bin/chromium) is not installed: browser tests skipped",
                allow_module_level=True)

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test server's data directory (a test may put a damaged stored model in it)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def server(server_data_dir: Path) -> Iterator[str]:
    """Base URL of a real uvicorn server running the app with a temporary data directory."""
    port = _free_port()
    data_dir = server_data_dir
    env = {**os.environ, "CNN_VIS_DATA_DIR": str(data_dir)}
    # the converted ImageNet weights are a cache: reuse the repository's if it exists, to keep tests fast
    shared_cache = REPO / "data" / "cache"
    if shared_cache.is_dir():
        (data_dir / "cache").symlink_to(shared_cache, target_is_directory=True)
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 (closed at teardown)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError("the server did not start:\n" + (data_dir / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class ConsoleLog:
    """Console errors and uncaught page errors seen while a test ran."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def check(self, ignore: tuple[str, ...] | list[str] = ()) -> None:
        """Fail on any error logged, except those containing one of ``ignore`` (expected refusals)."""
        errors = [e for e in self.errors if not any(part in e for part in ignore)]
        assert not errors, "the page logged errors:\n" + "\n".join(errors)


#: reports every Content-Security-Policy violation of every document the page loads to ``__cspViolation``
CSP_LISTENER = """document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} in ${e.documentURI}` +
                        (e.sample ? `: ${e.sample}` : ""));
});"""


#: marks the explorer's first-visit guide as seen before any page script runs
SEEN_GUIDE = 'try { localStorage.setItem("cnn-vis-guide-seen", "1"); } catch (e) {}'


class CspLog:
    """Content-Security-Policy violations seen while a test ran (events and the console's "Refused to ..." lines)."""

    def __init__(self) -> None:
        self.violations: list[str] = []

    def on_console(self, text: str) -> None:
        if "Content Security Policy" in text:
            self.violations.append(f"console: {text}")

    def check(self) -> None:
        assert not self.violations, "the page broke its Content-Security-Policy:\n" + "\n".join(self.violations)


def as_function(expression: str) -> str:
    """A ``wait_for_function`` predicate as a function: Playwright evaluates a bare expression string with eval,
    which the app's Content-Security-Policy (no 'unsafe-eval') forbids; a function it calls directly."""
    text = expression.strip()
    if text.startswith(("function", "async")) or re.match(r"^(\([^)]*\)|[A-Za-z_$][\w$]*)\s*=>", text):
        return expression
    return f"() => ({expression})"


@pytest.fixture
def page(browser, server):
    """A fresh 1280×720 page (a projector's size) that records console errors; ``page.console.check()``.

    Every Content-Security-Policy violation fails the test (``page.csp``; a test that provokes one on purpose
    empties ``page.csp.violations``).
    """
    context = browser.new_context(viewport={"width": 1280, "height": 720}, base_url=server)
    csp = CspLog()
    context.expose_function("__cspViolation", lambda text: csp.violations.append(f"event: {text}"))
    context.add_init_script(CSP_LISTENER)
    # the explorer's first-visit guide floats over the page's corner: tests of other things start as a returning
    # visitor (tests/browser/test_explorer_guide.py opens pages as a first visitor)
    context.add_init_script(SEEN_GUIDE)
    page = context.new_page()
    console = ConsoleLog()
    page.on("console", lambda msg: console.errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("console", lambda msg: csp.on_console(msg.text))
    page.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    page.console = console
    page.csp = csp
    wait_for_function = page.wait_for_function
    page.wait_for_function = lambda expression, *args, **kw: wait_for_function(as_function(expression), *args, **kw)
    page.set_default_timeout(15_000)
    yield page
    context.close()
    csp.check()
