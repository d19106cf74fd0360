"""The recurrent-networks page in a real browser: a digit read row by row by the LSTM (and the GRU), stepped with the
clicker keys; a hidden unit explained; the GRU's attention weights over the rows; a CNN beside the RNN on a drawing."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"
READY = ["#step-bars .bar-row", "#weight-bars .weight-bar", "#cnn-bars .bar-row", "#rnn-bars .bar-row"]
STRIP_NAMES = "els => els.map(e => e.dataset.name)"


def open_page(page, query: str = "") -> None:
    page.goto(f"/recurrent{query}")
    for selector in READY:
        page.wait_for_selector(selector, timeout=30_000)


def bar_texts(page, selector: str) -> list[str]:
    """Each bar's accessible text, "label: percentage", as bars.js writes it."""
    return page.locator(f"{selector} .bar-row").evaluate_all("rows => rows.map(r => r.getAttribute('aria-label'))")


def as_bar_text(c: dict) -> str:
    """An API class as bars.js shows it (one decimal from 10%, else two)."""
    p = c["probability"]
    return f"{c['label']}: {100 * p:.{1 if p >= 0.1 else 2}f}%"


def js_number(v: float) -> str:
    """A number as the page's grid.js formats one (|v| < 100)."""
    return f"{v:.{2 if abs(v) >= 0.095 or v == 0 else 3}f}"


def predict(page, model: str, sample: str) -> list[dict]:
    """The API's own /predict of a shipped sample, asked beside the page."""
    image = {"name": sample, "mimeType": "image/png", "buffer": (SAMPLES / sample).read_bytes()}
    answer = page.request.post(f"/api/models/{model}/predict?top_k=3", multipart={"image": image})
    assert answer.ok, answer.text()
    return answer.json()["classes"]


def test_the_page_loads_both_recurrent_models(page):
    open_page(page)
    models = page.locator("#model option").evaluate_all("options => options.map(o => o.value)")
    assert {"digits_lstm", "digits_gru_attention"} <= set(models)
    assert page.locator("#model").input_value() == "digits_lstm"
    # the LSTM unrolled: its hidden state, cell state and four gates, one cell per unit
    assert page.locator("#strips .strip").evaluate_all(STRIP_NAMES) == ["h", "c", "i", "f", "g", "o"]
    assert page.locator('#strips .strip[data-name="h"] .cell').count() == 128
    assert page.locator("#memory").evaluate("c => [c.width, c.height]") == [128, 28]
    # the GRU with attention is loaded too: its weights over the rows
    assert page.locator("#weight-bars .weight-bar").count() == 28
    assert "GRU" in page.locator("#weights-sum").inner_text()
    page.locator("#model").select_option("digits_gru_attention")
    page.wait_for_function("document.querySelectorAll('#strips .strip[data-name=h] .cell').length === 64")
    assert page.locator("#strips .strip").evaluate_all(STRIP_NAMES) == ["h", "r", "z", "n"]
    assert "model=digits_gru_attention" in page.url
    # a GRU whose every row's state attention pools has no answer after each row: the API says why
    assert "No answer after each row" in page.locator("#so-far-note").inner_text()
    page.console.check()


def test_page_down_steps_to_the_next_row_without_scrolling(page):
    open_page(page, "?step=0")
    digit = page.locator("#digit").bounding_box()
    panel = page.locator("#unrolled-panel").bounding_box()
    assert page.evaluate("window.scrollY") == 0
    for _ in range(3):
        page.keyboard.press("PageDown")
    assert page.locator("#digit-band").get_attribute("data-row") == "3"
    assert "step=3" in page.url
    assert page.locator("#lesson-title").inner_text() == "Step 4 of 28: reading row 3"
    assert page.locator("#step-label").inner_text() == "row 3 · step 4 of 28"
    # the band outlines row 3 of the digit: its centre is 3.5 rows down the picture
    band = page.locator("#digit-band").bounding_box()
    assert abs(band["y"] + band["height"] / 2 - (digit["y"] + 3.5 / 28 * digit["height"])) < 1.5, (band, digit)
    assert page.locator("#memory-band").get_attribute("data-row") == "3"
    assert page.evaluate("window.scrollY") == 0, "Page Down scrolled the page instead of stepping"
    page.keyboard.press("PageUp")
    assert page.locator("#digit-band").get_attribute("data-row") == "2"
    page.keyboard.press("End")
    assert page.locator("#digit-band").get_attribute("data-row") == "27"
    page.keyboard.press("Home")
    assert page.locator("#digit-band").get_attribute("data-row") == "0"
    page.keyboard.press("ArrowRight")
    assert page.locator("#digit-band").get_attribute("data-row") == "1"
    assert page.evaluate("window.scrollY") == 0
    # the layout holds still while the steps change: no panel moves or grows
    for key in ("End", "Home", "PageDown"):
        page.keyboard.press(key)
        assert page.locator("#unrolled-panel").bounding_box() == panel, key
    # Space plays, and pauses
    page.keyboard.press("Space")
    assert page.locator("[data-action=play]").get_attribute("aria-pressed") == "true"
    page.wait_for_function("document.querySelector('#digit-band').dataset.row !== '2'", timeout=5_000)
    page.keyboard.press("Space")
    assert page.locator("[data-action=play]").get_attribute("aria-pressed") == "false"
    assert page.evaluate("window.scrollY") == 0
    page.console.check()


def test_the_bars_after_the_last_row_are_the_api_prediction(page):
    open_page(page, "?sample=digit-7.png&step=0")
    first = bar_texts(page, "#step-bars")
    page.keyboard.press("End")
    page.wait_for_function("document.querySelector('#step-bars').dataset.step === '27'")
    final = bar_texts(page, "#step-bars")
    expected = [as_bar_text(c) for c in predict(page, "digits_lstm", "digit-7.png")]
    assert final == expected, f"page {final} vs /predict {expected}"
    assert final[0].startswith("7: ")
    assert first != final  # having read only the top row, it does not yet say the same
    # the compare panel's RNN and CNN answers are /predict's too
    assert bar_texts(page, "#rnn-bars") == expected
    assert bar_texts(page, "#cnn-bars") == [as_bar_text(c) for c in predict(page, "digits_classic", "digit-7.png")]
    page.console.check()


def test_clicking_a_hidden_cell_explains_that_unit_at_that_step(page):
    open_page(page, "?step=12")
    cell = page.locator('#strips .strip[data-name="h"] .cell[data-unit="5"]')
    value = float(cell.get_attribute("data-value"))
    cell.click()
    view = page.locator('#unit-body [data-family="recurrent"]')
    view.wait_for(timeout=20_000)
    assert (view.get_attribute("data-step"), view.get_attribute("data-unit")) == ("12", "5")
    assert "unit=5" in page.url
    assert page.locator("#unit-title").inner_text() == "LSTM unit 5 at step 12 (row 12)"
    assert page.locator("#unit-body .gate-card").evaluate_all("cards => cards.map(c => c.dataset.gate)") == \
        ["i", "f", "g", "o"]
    # every gate, the cell state and h itself agree with the engine's recorded values
    assert page.locator("#unit-body .badge.ok").count() == 6
    assert page.locator("#unit-body .badge.warn").count() == 0
    # the h the strip shows is the h_t the explanation rebuilds, checked against the engine's own (the last line)
    assert view.locator(".badge.ok").last.inner_text() == f"matches the engine's value {js_number(value)} ✓"
    # stepping on moves the explanation to the next row
    page.keyboard.press("PageDown")
    page.wait_for_function("document.querySelector('#unit-body [data-family]')?.dataset.step === '13'")
    page.console.check()


def test_the_attention_weights_drawn_sum_to_one(page):
    open_page(page)
    bars = page.locator("#weight-bars .weight-bar")
    assert bars.count() == 28
    weights = bars.evaluate_all("bars => bars.map(b => Number(b.dataset.weight))")
    assert all(w >= 0 for w in weights)
    assert abs(sum(weights) - 1) < 1e-4, f"the weights drawn add up to {sum(weights)}"
    # each bar's length is its weight (relative to the heaviest)
    widths = bars.evaluate_all("bars => bars.map(b => b.firstChild.getBoundingClientRect().width)")
    for w, width in zip(weights, widths):
        assert abs(width / max(widths) - w / max(weights)) < 0.02, (w, width)
    assert page.locator("#weights-total").inner_text() == "1.0000"
    # the weighted sum, written out for one feature, agrees with the engine's output
    assert page.locator("#att-sum .badge.ok").count() == 1
    assert page.locator("#att-output .strip .cell").count() == 64
    page.locator('#att-output .cell[data-unit="3"]').click()
    page.wait_for_function("document.querySelector('#att-sum').textContent.includes('out[3]')")
    assert page.locator("#att-sum .badge.ok").count() == 1
    assert "feature=3" in page.url
    page.console.check()


def test_drawing_a_digit_updates_the_cnn_and_the_rnn(page):
    open_page(page, "?sample=digit-7.png")
    assert bar_texts(page, "#cnn-bars")[0].startswith("7: ")
    assert bar_texts(page, "#rnn-bars")[0].startswith("7: ")
    answers: dict[str, list[dict]] = {}
    page.on("response", lambda r: answers.__setitem__(r.url.split("/api/models/")[1].split("/")[0], r.json()["classes"])
            if "/predict" in r.url else None)
    page.get_by_role("button", name="Clear").click()
    page.locator("#draw").scroll_into_view_if_needed()
    pad = page.locator("#draw").bounding_box()
    page.mouse.move(pad["x"] + pad["width"] * 0.5, pad["y"] + pad["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(pad["x"] + pad["width"] * 0.5, pad["y"] + pad["height"] * 0.85, steps=12)
    page.mouse.up()  # a vertical stroke: a "1"
    page.wait_for_function("['#cnn-bars', '#rnn-bars'].every(s => "
                           "document.querySelector(`${s} .bar-label`)?.textContent === '1')", timeout=20_000)
    assert bar_texts(page, "#cnn-bars") == [as_bar_text(c) for c in answers["digits_classic"]]
    assert bar_texts(page, "#rnn-bars") == [as_bar_text(c) for c in answers["digits_lstm"]]
    # the CNN's view: its first convolution's maps drawn, and one neuron's patch outlined from the API's box
    assert page.locator("#cnn-maps").evaluate("c => c.width > 1 && c.height > 1")
    assert page.locator("#cnn-digit-stack .field-box").is_visible()
    assert "5×5" in page.locator("#cnn-text").inner_text()
    page.console.check()
