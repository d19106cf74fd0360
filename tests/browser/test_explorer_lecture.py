"""Lecture mode as a presenter uses it (issue 13): nothing jumps while a lecture plays (cumulative layout shift),
the forward pass ends on the probabilities with the top classes labelled, a big network is grouped by block, and
the play speed is a control kept in the address."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

# Sums every layout shift from now on (the browser's own measure: the `layout-shift` performance entries),
# including those right after a key press, which the web-vitals CLS would forgive.
WATCH_SHIFTS = """() => {
  window.__shifts = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__shifts.push({ value: entry.value, input: entry.hadRecentInput,
      sources: (entry.sources || []).map((s) => s.node?.id || s.node?.className || s.node?.nodeName || "?") });
  }).observe({ type: "layout-shift" });
}"""
SHIFT_TOTAL = "() => window.__shifts.reduce((sum, e) => sum + e.value, 0)"


def step_label(page) -> str:
    return page.locator("[data-role=step-label]").first.inner_text()


@pytest.mark.parametrize("lecture", [True, False])
def test_a_played_lecture_moves_nothing(page, lecture):
    page.goto(f"/?model=digits_classic&speed=4{'&lecture=1' if lecture else ''}")
    page.wait_for_selector(".layer.loaded", state="attached")
    page.wait_for_timeout(800)  # the first maps settle before the lecture starts
    page.evaluate(WATCH_SHIFTS)
    page.get_by_role("button", name="▶ Play").click()
    page.wait_for_function("document.querySelector('[data-action=play]').getAttribute('aria-pressed') === 'false'",
                           timeout=30_000)
    count = int(step_label(page).split(" of ")[1])
    assert step_label(page) == f"step {count} of {count}"
    page.evaluate("document.activeElement.blur()")
    for key in ["Home", "PageDown", "PageDown", "ArrowRight", "PageUp", "End", "ArrowLeft"]:
        page.keyboard.press(key)
        page.wait_for_timeout(250)
    total = page.evaluate(SHIFT_TOTAL)
    shifts = page.evaluate("window.__shifts")
    assert total <= 0.05, (total, shifts)
    page.console.check()


def test_the_lecture_ends_on_the_labelled_probabilities(page):
    page.goto("/?model=efficientnet_lite0&sample=cat.jpg&lecture=1")
    page.wait_for_selector(".layer.current.loaded")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("End")
    page.wait_for_selector(".layer.probabilities.current")
    labels = page.locator(".layer.probabilities .bar-label").all_inner_texts()
    assert len(labels) == 5 and labels[0] in {"tiger cat", "tabby", "Egyptian cat"}
    sidebar = page.locator("#predictions .bar-label").all_inner_texts()
    assert labels == sidebar[:5]  # the same answer as the prediction panel (the API's classes)
    assert page.locator(".layer.probabilities .bar-value").first.inner_text().endswith("%")
    title = page.locator("#lesson-title").inner_text()
    text = page.locator("#lesson-text").inner_text()
    assert "Softmax" in title
    assert "add up to 1" in text and labels[0] in text and "1000 scores" in text
    # the step before it is the output's raw scores
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("!document.querySelector('.layer.probabilities.current')")
    page.console.check()


def test_a_big_network_lectures_one_step_per_block(page):
    page.goto("/?model=efficientnet_lite0&sample=cat.jpg&lecture=1")
    page.wait_for_selector(".layer.current.loaded")
    count = int(step_label(page).split(" of ")[1])
    assert count <= 25, count  # 61 main layers otherwise
    page.evaluate("document.activeElement.blur()")
    for _ in range(4):
        page.keyboard.press("PageDown")
    page.wait_for_function("document.querySelector('#lesson-title').textContent.includes('Block block')")
    assert "layers in one step" not in page.locator("#lesson-text").inner_text()
    assert "The whole block" in page.locator("#lesson-text").inner_text()
    # leaving lecture mode shows the main layers again
    page.get_by_role("button", name="Lecture mode").click()
    page.wait_for_function("Number(document.querySelector('[data-role=step-label]').textContent.split(' of ')[1]) > 40")
    page.console.check()


def test_play_speed_is_a_control_kept_in_the_address(page):
    page.goto("/?model=digits_classic")
    page.wait_for_selector(".layer.loaded")
    page.locator("#speed").select_option("2")
    assert "speed=2" in page.url
    page.goto("/?model=digits_classic&speed=4")
    page.wait_for_selector(".layer.loaded")
    assert page.locator("#speed").input_value() == "4"
    page.console.check()
