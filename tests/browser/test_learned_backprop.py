"""The learned page's backpropagation view in a real browser: the loss and the nodes from the API, stepping backwards
with the clicker keys without scrolling or moving the layout, the chain rule on a click, and one SGD step whose loss
falls for a small rate and rises for a too-large one."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"
SAMPLE = "digit-2.png"  # the first digit sample: the one the view opens with
LABEL = 3  # a wrong label: large gradients


def js_num(v: float) -> str:
    """A number as the view writes it (learned_backprop.js ``num``): 4 significant digits, powers of ten below 1e-3."""
    if v == 0:
        return "0"
    if abs(v) < 1e-3 or abs(v) >= 1e5:
        mantissa, exponent = f"{v:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        text = f"{mantissa}e{int(exponent):+d}".replace("e+", "e")
    else:
        rounded = float(f"{v:.4g}")
        text = str(int(rounded)) if rounded == int(rounded) else repr(rounded)
    return text.replace("-", "−")


def post(page, path: str) -> dict:
    """The API's own answer for the view's sample, asked beside the page."""
    image = {"name": SAMPLE, "mimeType": "image/png", "buffer": (SAMPLES / SAMPLE).read_bytes()}
    answer = page.request.post(path, multipart={"image": image})
    assert answer.ok, answer.text()
    return answer.json()


def open_view(page, query: str = "") -> None:
    page.goto(f"/learned?view=backprop&bpLabel={LABEL}{query}")
    page.wait_for_selector("#bp-strip .bp-chip", timeout=30_000)
    page.wait_for_function("document.querySelector('#bp-grad').width > 1")


def map_is_drawn(page) -> bool:
    return page.evaluate("""() => { const c = document.querySelector('#bp-grad');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 4; i < d.length; i += 4) if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
      return false; }""")


def test_the_view_loads_the_loss_and_the_nodes_from_the_api(page):
    open_view(page)
    expected = post(page, f"/api/models/digits_classic/backprop?label={LABEL}")
    assert page.locator("#bp-model").input_value() == "digits_classic"
    assert page.locator("#bp-loss-value").inner_text() == js_num(expected["loss"])
    names = page.locator("#bp-strip .bp-chip").evaluate_all("els => els.map(e => e.dataset.node)")
    assert names == [n["id"] for n in expected["nodes"]] and names[0] == "fc" and names[-1] == "input"
    assert page.locator("#bp-step-label").inner_text() == f"step 1 of {len(names)}"
    assert "the loss reads the logits (fc)" in page.locator("#bp-lesson").inner_text()
    # the logits' gradient drawn on the signed scale, its legend the node's largest |gradient|
    page.wait_for_function("document.querySelector('#bp-legend-high').textContent !== ''")
    assert page.locator("#bp-legend-high").inner_text() == f"+{js_num(expected['nodes'][0]['max_abs'])}"
    assert map_is_drawn(page)
    page.console.check()


def test_page_down_steps_backwards_without_scrolling_or_moving_the_layout(page):
    open_view(page, "&bpStep=0")
    names = page.locator("#bp-strip .bp-chip").evaluate_all("els => els.map(e => e.dataset.node)")
    panel = page.locator("#bp-pass").bounding_box()
    figure = page.locator(".bp-mapbox").first.bounding_box()
    assert page.evaluate("window.scrollY") == 0
    for _ in range(3):
        page.keyboard.press("PageDown")
    assert page.locator("#bp-step").get_attribute("data-step") == "3"
    assert "bpStep=3" in page.url
    assert page.locator("#bp-strip .bp-chip.current").get_attribute("data-node") == names[3]
    assert page.locator("#bp-step-label").inner_text() == f"step 4 of {len(names)}"
    assert page.evaluate("window.scrollY") == 0, "Page Down scrolled the page instead of stepping"
    page.keyboard.press("PageUp")
    assert page.locator("#bp-step").get_attribute("data-step") == "2"
    page.keyboard.press("End")
    assert page.locator("#bp-strip .bp-chip.current").get_attribute("data-node") == "input"
    page.keyboard.press("Home")
    assert page.locator("#bp-step").get_attribute("data-step") == "0"
    page.keyboard.press("ArrowRight")
    assert page.locator("#bp-step").get_attribute("data-step") == "1"
    # the layout holds still while the steps change: the panel and its map box neither move nor grow
    for key in ("End", "Home", "PageDown", "PageDown", "PageDown"):
        page.keyboard.press(key)
        page.wait_for_timeout(150)  # let the maps arrive and be drawn
        assert page.locator("#bp-pass").bounding_box() == panel, key
        assert page.locator(".bp-mapbox").first.bounding_box() == figure, key
    assert page.evaluate("window.scrollY") == 0
    # Space plays, and pauses
    page.keyboard.press("Space")
    assert page.locator("#bp-pass [data-action=play]").get_attribute("aria-pressed") == "true"
    page.wait_for_function("document.querySelector('#bp-step').dataset.step !== '4'", timeout=5_000)
    page.keyboard.press("Space")
    assert page.locator("#bp-pass [data-action=play]").get_attribute("aria-pressed") == "false"
    assert page.evaluate("window.scrollY") == 0
    page.console.check()


def test_clicking_a_unit_shows_the_chain_rule_with_the_api_numbers(page):
    open_view(page, "&bpStep=4")  # conv2
    assert page.locator("#bp-strip .bp-chip.current").get_attribute("data-node") == "conv2"
    page.wait_for_function("document.querySelector('#bp-grad').dataset.node === 'conv2'")
    canvas = page.locator("#bp-grad")
    box = canvas.bounding_box()
    # the centre of the first tile (channel 0, row 5, column 5 of a 10 × 10 map): 43 pixels wide in all
    canvas.click(position={"x": box["width"] * 5.5 / 43, "y": box["height"] * 5.5 / 43})
    page.wait_for_selector("#bp-chain-body .bp-total")
    assert "bpUnit=conv2%400%2C5%2C5" in page.url
    expected = post(page, f"/api/models/digits_classic/backprop/chain-rule?label={LABEL}&node=conv2&unit=0,5,5")
    assert page.locator("#bp-unit-gradient").inner_text() == js_num(expected["gradient"])
    text = page.locator("#bp-chain-body").inner_text()
    assert "u = conv2[0, 5, 5]" in text and "How dL/du is made" in text and "Where dL/du goes" in text
    assert page.locator("#bp-chain-body .bp-total .badge.ok").first.is_visible()
    assert "The weight gradient of filter 0 of conv2" in text
    assert not page.locator("#bp-marker").is_hidden()
    page.console.check()


def test_an_sgd_step_lowers_the_loss_for_a_small_rate_and_raises_it_for_a_large_one(page):
    open_view(page)
    page.wait_for_function("document.querySelector('#bp-sgd-verdict').dataset.change")
    expected = post(page, f"/api/models/digits_classic/sgd-step?label={LABEL}&node=conv1&filter=0&lr=0.01")
    assert page.locator("#bp-rate-out").inner_text() == "0.01"
    assert page.locator("#bp-sgd-verdict").get_attribute("data-change") == "fell"
    verdict = page.locator("#bp-sgd-verdict").inner_text()
    assert expected["outcome"]["loss_after"] < expected["loss_before"]
    assert f"fell from {js_num(expected['loss_before'])} to {js_num(expected['outcome']['loss_after'])}" in verdict
    assert page.locator("#bp-sgd-chart circle").count() == len(expected["sweep"])
    # a rate far too large (the sweep's last, 1000): the step overshoots and the loss rises
    last = len(expected["sweep"]) - 1
    page.locator("#bp-rate").evaluate(f"(e) => {{ e.value = '{last}'; e.dispatchEvent(new Event('change')); }}")
    page.wait_for_function("document.querySelector('#bp-sgd-verdict').dataset.change !== 'fell'")
    assert page.locator("#bp-sgd-verdict").get_attribute("data-change") in ("rose", "diverged")
    assert "too large a step overshoots" in page.locator("#bp-sgd-verdict").inner_text()
    assert "bpRate=" in page.url
    page.console.check()


def test_a_unit_of_a_vector_and_of_a_sequence_is_addressed_right(page):
    """A (1, 128) LSTM output is drawn as a block (reflowed vector) and a (28, 28) sequence as one map, time steps as
    rows: a click names the unit with the node's own axes, and its sum matches the engine's."""
    for step, node, pattern in [(2, "lstm", "lstm%400%2C"), (3, "rows", "rows%40")]:
        page.goto(f"/learned?view=backprop&bpModel=digits_lstm&bpLabel={LABEL}&bpStep={step}")
        page.wait_for_selector("#bp-strip .bp-chip", timeout=30_000)
        page.wait_for_function(f"document.querySelector('#bp-grad').dataset.node === '{node}'")
        canvas = page.locator("#bp-grad")
        box = canvas.bounding_box()
        canvas.click(position={"x": box["width"] * 0.52, "y": box["height"] * 0.4})
        page.wait_for_selector("#bp-chain-body .bp-total")
        assert pattern in page.url, page.url
        assert page.locator("#bp-chain-body .bp-total .badge.ok").first.is_visible()
    page.console.check()


def test_an_uploaded_digit_is_backpropagated(page):
    """The picker's upload: the loss is the uploaded digit's, and no sample stays pressed."""
    open_view(page)
    image = {"name": "digit-5.png", "mimeType": "image/png", "buffer": (SAMPLES / "digit-5.png").read_bytes()}
    expected = page.request.post(f"/api/models/digits_classic/backprop?label={LABEL}", multipart={"image": image})
    assert expected.ok, expected.text()
    page.locator("#bp-file").set_input_files(str(SAMPLES / "digit-5.png"))
    page.wait_for_function("document.querySelector('#bp-input-name').textContent === 'Your file: digit-5.png'")
    want = js_num(expected.json()["loss"])
    page.wait_for_function("([want]) => document.querySelector('#bp-loss-value').textContent === want", arg=[want])
    assert page.locator('#bp-samples .sample[aria-pressed="true"]').count() == 0
    page.console.check()
