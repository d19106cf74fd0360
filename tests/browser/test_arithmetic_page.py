"""The arithmetic playground in a real browser: sliders drive the API's formula and the sliding-window animation."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

# A 4×4 input and a 2×2 kernel, stride 2, worked by hand (cross-correlation, no flip):
#   input            kernel
#   1 2 0 1          1  0
#   0 1 3 1          0 -1
#   2 1 0 0
#   1 0 1 2
# top-left:     1·1 + 2·0 + 0·0 + 1·(−1) =  0     top-right:    0·1 + 1·0 + 3·0 + 1·(−1) = −1
# bottom-left:  2·1 + 1·0 + 1·0 + 0·(−1) =  2     bottom-right: 0·1 + 0·0 + 1·0 + 2·(−1) = −2
HAND_WORKED = "/arithmetic?size=4&kernel=2&stride=2&x=1,2,0,1,0,1,3,1,2,1,0,0,1,0,1,2&w=1,0,0,-1"


def output_values(page) -> list[str]:
    return page.locator("#output-grid .cell").all_inner_texts()


def wait_for_steps(page, count: int) -> None:
    page.wait_for_function("n => document.querySelector('#step-label').textContent.endsWith(`of ${n}`)", arg=count)


def test_page_loads_with_formula_and_animation(page):
    page.goto("/arithmetic")
    page.wait_for_function("document.querySelector('#out-size').textContent !== '–'")
    assert "⌊" in page.locator("#formula").inner_text()
    assert page.locator("#worked").inner_text().startswith("⌊(7 − 1·(3 − 1) − 1 + 0 + 0) / 2⌋")
    assert page.locator("#out-size").inner_text() == "3 × 3"
    wait_for_steps(page, 9)
    assert page.locator("#input-grid .cell.window").count() == 9  # a 3×3 window
    assert page.locator("#volume-svg svg").count() == 1
    assert "parameters: (3·3·3 + 1)·4 = 28·4 = 112" in page.locator("#volume-lines").inner_text()
    page.console.check()


def test_moving_the_sliders_updates_formula_animation_and_url(page):
    page.goto("/arithmetic")
    wait_for_steps(page, 9)
    before = page.locator("#worked").inner_text()
    page.locator("#stride").focus()
    page.keyboard.press("ArrowRight")  # stride 2 -> 3: (7 − 3) / 3 is not whole
    page.wait_for_function("b => document.querySelector('#worked').textContent !== b", arg=before)
    assert "/ 3" in page.locator("#worked").inner_text()
    assert page.locator("#out-size").inner_text() == "2 × 2"
    assert page.locator("#exact-badge").inner_text() == "not a whole number"
    assert page.locator("#inexact").is_visible()
    assert "never read" in page.locator("#explanation").inner_text()
    wait_for_steps(page, 4)
    assert page.locator("#input-grid .cell.unread").count() > 0  # what floor() throws away is marked
    assert "stride=3" in page.url
    # a suggestion from the API applies itself: stride 2 divides 7 − 3 = 4
    page.get_by_role("button", name=re.compile(r"^stride 2 ")).click()
    page.wait_for_function("document.querySelector('#out-size').textContent === '3 × 3'")
    assert page.locator("#exact-badge").inner_text().startswith("a whole number")
    wait_for_steps(page, 9)
    assert page.locator("#input-grid .cell.unread").count() == 0
    page.console.check()


def test_steps_show_hand_worked_values(page):
    page.goto(HAND_WORKED)
    wait_for_steps(page, 4)
    page.locator("#window-panel").get_by_role("button", name="First step").click()
    assert page.locator("#step-text").inner_text().endswith("= 0")
    assert page.locator("#input-grid .cell.window").count() == 4
    first_window = [c.get_attribute("data-r") + c.get_attribute("data-c")
                    for c in page.locator("#input-grid .cell.window").all()]
    page.locator("#window-panel").get_by_role("button", name="Next step").click()
    page.wait_for_function("document.querySelector('#step-label').textContent.startsWith('step 2')")
    second_window = [c.get_attribute("data-r") + c.get_attribute("data-c")
                     for c in page.locator("#input-grid .cell.window").all()]
    assert first_window == ["00", "01", "10", "11"] and second_window == ["02", "03", "12", "13"]
    assert page.locator("#step-text").inner_text().endswith("= -1")
    page.locator("#window-panel").get_by_role("button", name="Last step").click()
    assert output_values(page) == ["0", "-1", "2", "-2"]
    # editing a number re-runs the window: top-left becomes 5·1 + 2·0 + 0·0 + 1·(−1) = 4
    cell = page.get_by_label("input row 1 column 1")
    cell.fill("5")
    cell.press("Enter")
    page.locator("#window-panel").get_by_role("button", name="Last step").click()
    page.wait_for_function("document.querySelectorAll('#output-grid .cell')[0].textContent === '4'")
    assert "x=5" in page.url
    page.console.check()


def test_pooling_takes_the_max_of_each_window(page):
    page.goto(HAND_WORKED.replace("/arithmetic?", "/arithmetic?op=max_pool&"))
    wait_for_steps(page, 4)
    assert page.locator("#kernel-box").is_hidden()
    page.locator("#window-panel").get_by_role("button", name="Last step").click()
    assert output_values(page) == ["2", "3", "2", "2"]  # max of each 2×2 block, by hand
    assert page.locator("#step-text").inner_text().startswith("out[1, 1] = max(")
    page.console.check()


def test_an_impossible_setting_shows_the_api_message(page):
    page.goto("/arithmetic?size=3&kernel=7")
    page.wait_for_selector("#error:not([hidden])")
    assert "kernel spans 7" in page.locator("#error-text").inner_text()


def test_one_filter_through_the_whole_depth(page):
    page.goto("/arithmetic?size=4&kernel=2&stride=2&depth=3")
    panel = page.locator("#volume-window")
    label = "#volume-window [data-role=step-label]"
    page.wait_for_function(f"document.querySelector('{label}').textContent === 'step 1 of 4'")
    assert panel.locator("[data-role=inputs] .grid").count() == 3  # one grid per channel
    assert panel.locator("[data-role=kernels] .grid").count() == 3  # one filter slice per channel
    for channel in range(3):  # the window covers the same 2×2 positions on every channel
        cells = panel.locator(f'.grid[aria-label="volume channel {channel}"] .cell.window')
        assert cells.count() == 4
    text = panel.locator("[data-role=text]").inner_text()
    assert text.startswith("out[0, 0] = ") and "ch 2" in text
    page.console.check()
