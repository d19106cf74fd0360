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


# 7 − 3 + 0 = 4 is not divisible by stride 3: the API suggests padding [0, 2] (one side only, which this page's
# "each side" slider cannot set), padding 1 on each side, strides 2 and 4, and inputs of 6 and 9.
NOT_WHOLE = "/arithmetic?stride=3"


def wait_for_suggestions(page) -> None:
    page.wait_for_function("document.querySelector('#exact-badge').textContent === 'not a whole number'")
    page.wait_for_selector("#suggestions button")


def test_every_suggestion_offered_can_be_clicked_and_makes_the_output_whole(page):
    page.goto(NOT_WHOLE)
    wait_for_suggestions(page)
    texts = page.locator("#suggestions button").all_inner_texts()
    assert page.locator("#suggestions button:disabled").count() == 0, texts
    assert "click one to try it" in page.locator("#suggestions-intro").inner_text()
    assert [t.split(" (")[0] for t in texts] == [
        "padding 1 on each side", "stride 2", "stride 4", "an input of 6", "an input of 9"]
    # what these controls cannot do is listed as text that says so, not as a button that does nothing
    others = page.locator("#other-suggestions li").all_inner_texts()
    assert others == ["padding 2 more on one side, e.g. [0, 2] (total 2): this page pads both sides equally"]
    assert page.locator("#other-fixes").is_visible()
    # each button sets what it names, and the output becomes whole
    expected = {0: ("#padding-out", "1"), 1: ("#stride-out", "2"), 2: ("#stride-out", "4"), 3: ("#size-out", "6"),
                4: ("#size-out", "9")}
    for index, (output, value) in expected.items():
        if index:
            page.goto(NOT_WHOLE)
            wait_for_suggestions(page)
        page.locator("#suggestions button").nth(index).click()
        page.wait_for_function("document.querySelector('#exact-badge').textContent.startsWith('a whole number')")
        assert page.locator(output).inner_text() == value, texts[index]
        assert page.locator("#inexact").is_hidden()
    page.console.check()


def test_a_suggestion_beyond_a_slider_is_text_with_the_reason(page):
    # 2 − 1 + 0 = 1 and stride 3: "an input of 1" is below the input slider's minimum of 2
    page.goto("/arithmetic?size=2&kernel=1&stride=3")
    wait_for_suggestions(page)
    assert page.locator("#suggestions button:disabled").count() == 0
    assert not any(t.startswith("an input of 1 ") for t in page.locator("#suggestions button").all_inner_texts())
    assert ("an input of 1 (1 column fewer): the input size slider goes from 2 to 16"
            in page.locator("#other-suggestions li").all_inner_texts())
    page.console.check()


def symbol_legend(page) -> dict[str, str]:
    """The Symbols line: each letter (a <var>) and what it means."""
    legend: dict[str, str] = {}
    for item in page.locator("#symbols .symbol").all():
        letters = item.locator("var").all_inner_texts()
        meaning = item.inner_text()
        for letter in letters:
            assert letter not in legend, f"{letter} means both {legend[letter]!r} and {meaning!r}"
            legend[letter] = meaning
    return legend


def test_every_symbol_means_one_thing(page):
    page.goto("/arithmetic")
    page.wait_for_function("document.querySelector('#out-size').textContent !== '–'")
    page.wait_for_selector("#volume-svg svg")  # the legend below it is written with it
    legend = symbol_legend(page)
    assert page.locator("#symbols .symbol").all_inner_texts() == [
        "W, H input width and height (equal here)", "F filter (kernel) size",
        "P padding on each side (P_before, P_after when they differ)", "S stride", "d dilation",
        "D input depth (channels)", "K number of filters"]
    # the sliders use the legend's letters
    label = {key: page.locator(f'label[for="{key}"]').inner_text() for key in
             ["size", "kernel", "padding", "stride", "dilation", "depth", "filters"]}
    assert label["size"].startswith("Input size W ")
    assert label["kernel"].startswith("Filter (kernel) size F ")
    assert label["padding"].startswith("Padding P ")
    assert label["stride"].startswith("Stride S ")
    assert label["dilation"].startswith("Dilation d ")
    assert label["depth"].startswith("Input depth D ")
    assert label["filters"].startswith("Number of filters K ")
    # the API's formula, shown with the same letters: F the kernel size, d the dilation
    formula = page.locator("#formula").inner_text()
    assert formula == "⌊(W − d·(F − 1) − 1 + P_before + P_after) / S⌋ + 1"
    assert set(re.findall(r"\b[A-Za-z]\b", formula)) <= set(legend)
    assert "(W − F + 2P) / S" in page.locator("#lecture-form").inner_text()
    # the 3D panel: K counts filters, F is their size, D the depth
    panel = page.locator("#volume-panel").inner_text()
    assert "K filters, each F×F×D" in panel and "W_out×H_out×K" in panel
    assert page.locator("#volume-legend .volume-key").all_inner_texts() == [
        "input W×H×D = 7×7×3", "K = 4 filters, each F×F×D = 3×3×3", "output W_out×H_out×K = 3×3×4"]
    assert "F×F×D = 3×3×3" in page.locator("#volume-svg").get_attribute("aria-label")
    # nowhere on the page is K a kernel size or D a dilation
    text = page.locator("main").inner_text()
    for overloaded in ["K×K", "(K − 1)", "Kernel size K", "D·(", "Dilation D", "filters of size K"]:
        assert overloaded not in text, overloaded
    for selector in ["#symbols", "#lecture-form", "#volume-legend"]:
        size = page.locator(selector).evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert size >= 14, (selector, size)
    page.console.check()


def test_no_suggestion_stays_after_an_impossible_setting(page):
    # 4 − 3 = 1 and stride 3: not whole, with suggestions; dilation 3 makes the kernel span 7 > 4: no output at all
    page.goto("/arithmetic?size=4&stride=3")
    wait_for_suggestions(page)
    page.locator("#dilation").focus()
    page.keyboard.press("End")
    page.wait_for_selector("#error:not([hidden])")
    assert "kernel spans 7" in page.locator("#error-text").inner_text()
    assert page.locator("#inexact").is_hidden()
    assert page.locator("#suggestions button").count() == 0
    assert page.locator("#exact-badge").inner_text() == ""
    page.console.check(ignore=["status of 422"])
