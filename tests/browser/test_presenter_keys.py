"""The keys a presenter's clicker sends, on every page that has steps (issue 13, static/js/presenter.js): → and Page
Down step forward, ← and Page Up back, never scrolling the page; Home and End jump; Space plays or pauses (or what the
page says it does); Esc leaves a detail; ? opens the legend, which says what this page's steps are."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

# two animation frames: a scroll the key started (smooth or not) has moved the page by then
FRAMES = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


def ready_to_present(page) -> None:
    """The page is taller than the window (so Page Down would scroll it), at the top, with nothing focused."""
    assert page.evaluate("() => document.documentElement.scrollHeight > window.innerHeight + 100"), \
        "the page fits the window: Page Down could not scroll it, so the test would prove nothing"
    page.evaluate("() => { window.scrollTo(0, 0); document.activeElement?.blur(); }")
    assert page.evaluate("() => document.activeElement === document.body")


def press(page, key: str) -> None:
    """Press a key on the page and check that it did not scroll it."""
    before = page.evaluate("() => window.scrollY")
    page.keyboard.press(key)
    page.evaluate(FRAMES)
    assert page.evaluate("() => window.scrollY") == before, f"{key} scrolled the page instead of stepping"


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, pattern: str) -> None:
    """Wait until the element's text matches the regular expression."""
    page.wait_for_function("([s, p]) => new RegExp(p).test(document.querySelector(s)?.textContent ?? '')",
                           arg=[selector, pattern])


def query(page, key: str) -> str | None:
    return page.evaluate("k => new URLSearchParams(location.search).get(k)", key)


def play_pressed(page, selector: str) -> str | None:
    return page.locator(selector).get_attribute("aria-pressed")


# --- the explorer (already wired: the reference) ----------------------------------------------------------------------
def test_explorer_page_down_steps_the_layers_without_scrolling(page):
    page.goto("/?model=digits_classic")
    label = "#toolbar [data-role=step-label]"
    wait_text(page, label, r"^step \d+ of \d+$")
    page.wait_for_selector("#network .layer.loaded", timeout=30_000)
    ready_to_present(page)
    press(page, "Home")
    total = int(text(page, label).split(" of ")[1])
    assert text(page, label) == f"step 1 of {total}"
    press(page, "PageDown")
    assert text(page, label) == f"step 2 of {total}"
    press(page, "PageUp")
    assert text(page, label) == f"step 1 of {total}"
    press(page, "End")
    assert text(page, label) == f"step {total} of {total}"
    page.console.check()


# --- arithmetic: the sliding window -----------------------------------------------------------------------------------
def test_arithmetic_keys_step_the_sliding_window(page):
    page.goto("/arithmetic")
    wait_text(page, "#step-label", "of 9$")
    ready_to_present(page)
    assert text(page, "#step-label") == "step 1 of 9"
    window = page.locator("#input-grid .cell.window").evaluate_all("cs => cs.map(c => c.dataset.r + c.dataset.c)")
    press(page, "PageDown")
    assert text(page, "#step-label") == "step 2 of 9"
    assert query(page, "step") == "1"
    assert page.locator("#input-grid .cell.window").evaluate_all("cs => cs.map(c => c.dataset.r + c.dataset.c)") \
        != window, "the window did not move"
    press(page, "ArrowRight")
    assert text(page, "#step-label") == "step 3 of 9"
    press(page, "PageUp")
    press(page, "ArrowLeft")
    assert text(page, "#step-label") == "step 1 of 9"
    press(page, "End")
    assert text(page, "#step-label") == "step 9 of 9"
    press(page, "Home")
    assert text(page, "#step-label") == "step 1 of 9"
    # Space plays the window's positions, and pauses them
    play = "#window-panel [data-action=play]"
    press(page, "Space")
    assert play_pressed(page, play) == "true"
    press(page, "Space")
    assert play_pressed(page, play) == "false"
    # a grid's number keeps its keys: the arrows move the caret, not the window
    step = text(page, "#step-label")
    page.locator("#input-grid input.cell").first.focus()
    page.keyboard.press("ArrowRight")
    assert text(page, "#step-label") == step
    page.console.check()


# --- receptive fields: the layers -------------------------------------------------------------------------------------
def test_receptive_fields_keys_step_the_layers(page):
    page.goto("/receptive-fields")
    page.wait_for_selector('#rf-table tr[data-node="stem.conv"]')
    label = "#picture-controls [data-role=step-label]"
    wait_text(page, label, r"^step 1 of \d+$")
    total = int(text(page, label).split(" of ")[1])
    ready_to_present(page)
    assert text(page, "#field-text").startswith("input")
    press(page, "PageDown")
    assert text(page, label) == f"step 2 of {total}"
    assert text(page, "#field-text").startswith("stem.conv")
    assert query(page, "layer") == "stem.conv"
    press(page, "PageUp")
    assert text(page, label) == f"step 1 of {total}"
    press(page, "End")
    assert text(page, label) == f"step {total} of {total}"
    press(page, "Home")
    assert text(page, label) == f"step 1 of {total}"
    assert text(page, "#field-text").startswith("input")
    play = "#picture-controls [data-action=play]"
    press(page, "Space")
    assert play_pressed(page, play) == "true"
    press(page, "Space")
    assert play_pressed(page, play) == "false"
    page.console.check()


# --- attention: the methods this model allows -------------------------------------------------------------------------
def test_attention_keys_step_through_the_methods_the_model_allows(page):
    page.goto("/attention?model=digits_classic&method=gradcam")
    page.wait_for_selector('.map-card.done[data-method="gradcam"]', timeout=30_000)
    allowed = page.locator("#method option").evaluate_all("os => os.filter(o => !o.disabled).map(o => o.value)")
    refused = page.locator("#method option").evaluate_all("os => os.filter(o => o.disabled).map(o => o.value)")
    assert len(allowed) >= 3 and "gradcam" in allowed
    ready_to_present(page)
    at = allowed.index("gradcam")
    press(page, "PageDown")
    assert page.locator("#method").input_value() == allowed[at + 1] == query(page, "method")
    page.wait_for_selector(f'.map-card[data-method="{allowed[at + 1]}"]')
    press(page, "PageUp")
    assert page.locator("#method").input_value() == "gradcam"
    press(page, "End")
    assert page.locator("#method").input_value() == allowed[-1]
    # a method this model cannot use is never a step: the menu's first (CAM, which needs a global-pooling head)
    # is refused for this model, so Home lands on the first allowed one and Page Up stays there
    options = page.locator("#method option").evaluate_all("os => os.map(o => o.value)")
    assert options[0] in refused
    press(page, "Home")
    assert page.locator("#method").input_value() == allowed[0] != options[0]
    press(page, "PageUp")
    assert page.locator("#method").input_value() == allowed[0]
    # Space keeps the method shown in the comparison: the next step shows it beside the next method
    page.wait_for_selector(f'.map-card.done[data-method="{allowed[0]}"]', timeout=30_000)
    press(page, "Space")
    assert page.locator(f'#compare input[value="{allowed[0]}"]').is_checked()
    assert query(page, "compare") == allowed[0]
    press(page, "PageDown")
    cards = page.locator(".map-card").evaluate_all("cs => cs.map(c => c.dataset.method)")
    assert cards == [allowed[1], allowed[0]]
    page.console.check()


# --- the training lab: the ready-made comparisons ---------------------------------------------------------------------
def test_training_keys_step_the_comparisons(page):
    page.goto("/training")
    wait_text(page, "#a-status", "Not started")
    presets = page.locator("#presets [data-preset]").evaluate_all("bs => bs.map(b => b.dataset.preset)")
    assert presets[:2] == ["skip", "bn"] and presets[-1] == "rnn"
    assert page.locator("#panel-b").is_hidden()
    ready_to_present(page)
    press(page, "PageDown")  # no comparison yet: the first
    assert page.locator("#panel-b").is_visible()
    assert query(page, "b_skip_connections") == "1" and query(page, "a_skip_connections") is None
    assert "skip connections" in text(page, "#preset-note")
    press(page, "PageDown")
    assert query(page, "b_batch_norm") == "1" and query(page, "b_skip_connections") is None
    assert "batch normalisation" in text(page, "#preset-note")
    press(page, "PageUp")
    assert query(page, "b_skip_connections") == "1" and query(page, "b_batch_norm") is None
    press(page, "End")
    assert page.locator("#b-network").input_value() == "lstm"
    assert "row by row" in text(page, "#preset-note")
    press(page, "PageDown")  # the last stays the last
    assert page.locator("#b-network").input_value() == "lstm"
    press(page, "Home")
    assert query(page, "b_skip_connections") == "1"
    # the comparison is known from the settings themselves: a reload steps on from it
    page.reload()
    wait_text(page, "#a-status", "Not started")
    page.evaluate("() => document.activeElement?.blur()")
    press(page, "PageDown")
    assert query(page, "b_batch_norm") == "1"
    page.console.check()


def test_training_space_trains_both_runs_and_stops_them(page):
    slow = "train_size=8000&{0}_epochs=20&{0}_batch_size=16"
    page.goto(f"/training?compare=1&a_{slow.format('a')}&b_{slow.format('b')}")
    wait_text(page, "#a-status", "Not started")
    assert page.locator("#start-both").is_visible()
    ready_to_present(page)
    press(page, "Space")
    for run in ("a", "b"):
        wait_text(page, f"#{run}-status", "^Training")
        page.wait_for_function(f"!document.getElementById('{run}-cancel').disabled")
    assert query(page, "a_job") and query(page, "b_job")
    press(page, "Space")
    for run in ("a", "b"):
        page.wait_for_function(f"document.getElementById('{run}-status').textContent.startsWith('Stopped after')",
                               timeout=20_000)
    page.console.check()


# --- recurrent networks: the rows -------------------------------------------------------------------------------------
def test_recurrent_keys_step_the_rows_and_a_strip_keeps_its_arrows(page):
    page.goto("/recurrent?step=0")
    for selector in ("#step-bars .bar-row", "#weight-bars .weight-bar", "#strips .strip .cell"):
        page.wait_for_selector(selector, timeout=30_000)
    ready_to_present(page)
    press(page, "PageDown")
    assert page.locator("#digit-band").get_attribute("data-row") == "1"
    press(page, "End")
    assert page.locator("#digit-band").get_attribute("data-row") == "27"
    press(page, "Home")
    assert page.locator("#digit-band").get_attribute("data-row") == "0"
    # in a strip of cells the arrows move along the cells; Page Down still steps the rows
    page.locator('#strips .strip[data-name="h"] .cell[data-unit="0"]').focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.dataset.unit") == "1"
    assert page.locator("#digit-band").get_attribute("data-row") == "0"
    press(page, "PageDown")
    assert page.locator("#digit-band").get_attribute("data-row") == "1"
    # Esc closes a unit's explanation
    page.locator('#strips .strip[data-name="h"] .cell[data-unit="5"]').click()
    page.locator('#unit-body [data-family="recurrent"]').wait_for(timeout=20_000)
    assert query(page, "unit") == "5"
    page.keyboard.press("Escape")
    assert page.locator("#unit-detail").is_hidden()
    assert query(page, "unit") is None
    page.console.check()


# --- what the network learned: the views, and backpropagation's own pass ----------------------------------------------
def test_learned_keys_step_the_views_and_the_backward_pass(page):
    # each view's analysis is waited for before the next view is shown: the server runs two analysis jobs at once
    page.goto("/learned")
    page.wait_for_selector("#view-channels .channel-cell", timeout=60_000)
    ready_to_present(page)

    def view() -> str | None:
        return page.locator(".learned-tabs [aria-selected=true]").get_attribute("data-view")

    press(page, "PageDown")
    assert view() == "representations" == query(page, "view")
    assert page.locator("#view-representations").is_visible() and page.locator("#view-channels").is_hidden()
    page.wait_for_selector("#view-representations #rep-legend li", timeout=240_000)
    press(page, "PageUp")
    assert view() == "channels" and query(page, "view") is None
    press(page, "End")
    assert view() == "adversarial" == query(page, "view")
    page.wait_for_selector("#view-adversarial #adv-original-bars .bar-row", timeout=30_000)
    page.wait_for_selector("#view-adversarial #adv-chart svg", timeout=120_000)  # its analysis job is done
    press(page, "Home")
    assert view() == "channels"
    press(page, "PageDown")
    press(page, "PageDown")
    assert view() == "backprop"
    # shown, backpropagation takes the keys: they step its pass, not the views
    page.wait_for_selector("#bp-strip .bp-chip", timeout=30_000)
    assert page.locator("#bp-step").get_attribute("data-step") == "0"
    press(page, "PageDown")
    assert page.locator("#bp-step").get_attribute("data-step") == "1"
    assert view() == "backprop" and query(page, "bpStep") == "1"
    press(page, "End")
    assert page.locator("#bp-strip .bp-chip.current").get_attribute("data-node") == "input"
    assert view() == "backprop"
    press(page, "Home")
    assert page.locator("#bp-step").get_attribute("data-step") == "0"
    # back on another view, the keys step the views again
    page.locator("#tab-adversarial").click()
    page.evaluate("() => document.activeElement?.blur()")
    press(page, "PageUp")
    assert view() == "backprop"
    page.console.check()


# --- the legend -------------------------------------------------------------------------------------------------------
LEGENDS = [
    ("/?model=digits_classic", "the network's layers"),
    ("/arithmetic", "the sliding window's positions"),
    ("/receptive-fields", "the layers where the receptive field changes"),
    ("/attention?model=digits_classic", "the attention methods this model allows"),
    ("/training", "the ready-made comparisons"),
    ("/recurrent", "the rows of the digit"),
    ("/learned", "the page's views"),
    ("/learned?view=backprop", "the backward pass"),
    ("/upload", "This page has no steps"),
]


def test_question_mark_opens_the_legend_saying_what_the_steps_are(page):
    # every page in one browser context (a context per page would cost more than the checks)
    for path, steps in LEGENDS:
        page.goto(path)
        legend = page.locator("dialog#keys-legend")
        assert not legend.evaluate("d => d.open"), path
        page.evaluate("() => document.activeElement?.blur()")
        page.keyboard.press("?")
        assert legend.evaluate("d => d.open"), path
        assert legend.locator("#keys-steps").inner_text().startswith(
            "This page has no steps" if path == "/upload" else "On this page the keys step through "), path
        assert re.search(re.escape(steps), legend.locator("#keys-steps").inner_text()), \
            legend.locator("#keys-steps").inner_text()
        assert "PageDown" in legend.inner_text()
        page.keyboard.press("Escape")
        assert not legend.evaluate("d => d.open"), path
    page.console.check(ignore=["429"])
