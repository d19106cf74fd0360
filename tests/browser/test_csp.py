"""The pages under the app's Content-Security-Policy: every page and /docs does its work without a single
violation (the ``page`` fixture fails a test on any), and a violation would indeed be caught."""

from __future__ import annotations

import pytest

from tests.browser.test_pages import PAGES as EVERY_PAGE

pytestmark = pytest.mark.browser

# every page of tests/browser/test_pages.py, and the two it leaves out
PAGES = [*EVERY_PAGE, ("/training", "#a-start"), ("/docs", ".swagger-ui .opblock")]


@pytest.mark.parametrize(("path", "ready"), PAGES)
def test_every_page_works_under_the_policy(page, path, ready):
    response = page.goto(path)
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers.get("x-frame-options") == "SAMEORIGIN"
    page.wait_for_selector(ready, timeout=30_000)
    page.wait_for_load_state("networkidle")
    page.csp.check()


def test_a_violation_is_caught(page):
    """An inline style attribute written through innerHTML, as the templates once had: the policy blocks it and
    the fixture sees it."""
    page.goto("/arithmetic")
    page.evaluate("""() => document.body.insertAdjacentHTML("beforeend", '<p style="color: red">x</p>')""")
    page.wait_for_function("() => true")
    page.wait_for_timeout(300)
    caught = list(page.csp.violations)
    page.csp.violations.clear()
    assert any("style-src" in v for v in caught), caught
