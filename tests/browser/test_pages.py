"""Every page in a real browser: it loads without console errors, keeps its state in the URL, shows a progress
indicator for slow answers and the API's own message when the API refuses something."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

# (path, a selector that appears once the page has its numbers from the API)
PAGES = [
    ("/?model=digits_classic", ".layer.loaded"),
    ("/arithmetic", "#input-grid .cell.window"),
    ("/receptive-fields?model=digits_resnet", '#rf-table tr[data-node="attention"]'),
    ("/attention?model=digits_classic&sample=coffee.jpg", ".map-card.done"),
    ("/recurrent", "#step-bars .bar-row"),
    ("/upload", "#uploaded p"),
]


@pytest.mark.parametrize(("path", "ready"), PAGES)
def test_page_loads_without_console_errors(page, path, ready):
    page.goto(path)
    page.wait_for_selector(ready, timeout=30_000)
    nav = page.get_by_role("navigation", name="Pages")
    assert nav.get_by_role("link").count() >= 5
    assert nav.locator('[aria-current="page"]').count() == 1
    # every form control has a name a screen reader can announce
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(el => el.offsetParent !== null && el.type !== 'hidden')
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
        .map(el => el.outerHTML.slice(0, 80))""")
    assert not unlabelled, unlabelled
    page.console.check()


def test_waits_over_200_ms_show_progress(page):
    # slow every API answer down by 700 ms in the page, so the indicator must appear (and then go away)
    page.add_init_script("""{
      const realFetch = window.fetch;
      window.fetch = (...args) => new Promise(r => setTimeout(r, 700)).then(() => realFetch(...args));
    }""")
    page.goto("/arithmetic")
    page.wait_for_selector("#busy:not([hidden])", timeout=5_000)
    assert page.locator("#busy-text").inner_text().endswith("…")
    page.wait_for_selector("#input-grid .cell.window", timeout=15_000)
    page.wait_for_selector("#busy", state="hidden", timeout=5_000)
    page.console.check()


def test_an_unreadable_upload_shows_the_api_message(page, tmp_path):
    fake = tmp_path / "not-a-photo.png"
    fake.write_text("this is text, not a PNG")
    page.goto("/?model=digits_classic")
    page.wait_for_selector(".layer.loaded")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    message = page.locator("#error-text").inner_text()
    assert message.startswith("running digits_classic on not-a-photo.png: ")
    assert len(message) > 60  # the API's explanation, not a bare status code
    page.console.check(ignore=["status of 415", "status of 422"])


def test_back_button_restores_the_previous_view(page):
    page.goto("/arithmetic?stride=3")
    page.wait_for_function("document.querySelector('#out-size').textContent === '2 × 2'")
    page.get_by_role("button", name=re.compile(r"^stride 2 ")).click()  # a suggestion: a new history entry
    page.wait_for_function("document.querySelector('#out-size').textContent === '3 × 3'")
    assert "stride=3" not in page.url
    page.go_back()  # popstate: the page redraws from the URL's state
    page.wait_for_function("document.querySelector('#out-size').textContent === '2 × 2'")
    assert page.locator("#stride").input_value() == "3"
    page.console.check()


@pytest.mark.parametrize(("path", "ready"), PAGES)
def test_page_fits_a_narrow_laptop_window(page, path, ready):
    page.set_viewport_size({"width": 800, "height": 900})
    page.goto(path)
    page.wait_for_selector(ready, timeout=30_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
