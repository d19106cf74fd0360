"""The training lab in a real browser: a short run draws its curves and pictures, opens in the explorer; two runs
share one chart; bad settings show the API's message; a run can be stopped; the keyboard alone starts a run; a
recurrent network shows its own toggles and pictures."""

from __future__ import annotations

import pytest

from tests.browser.conftest import as_function

pytestmark = pytest.mark.browser

QUICK = "a_train_size=200&a_epochs=2&a_batch_size=50"

# How many pixels of the canvas are close to a colour (the runs' line colours): the curves were drawn.
PIXELS_NEAR = """(canvas, rgb) => {
  const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1]) + Math.abs(data[i + 2] - rgb[2]) < 40
        && data[i + 3] > 200) n++;
  }
  return n;
}"""
BLUE, ORANGE = [0x1F, 0x5F, 0xBF], [0xC2, 0x41, 0x0C]


def wait_status(page, run: str, text: str, timeout: float = 60_000) -> None:
    # as_function: a page from browser.new_context() lacks the page fixture's wrapper, and the CSP forbids eval
    page.wait_for_function(as_function(f"document.getElementById('{run}-status').textContent.includes({text!r})"),
                           timeout=timeout)


def test_a_short_run_draws_curves_and_pictures_and_opens_in_the_explorer(page):
    page.goto(f"/training?{QUICK}")
    assert page.locator('nav a[aria-current="page"]').inner_text() == "Training lab"
    assert page.locator("#panel-b").is_hidden()
    page.click("#a-start")
    wait_status(page, "a", "Done")
    assert page.locator("#a-progress").evaluate("p => p.value") == 1
    assert "a_job=" in page.url
    loss = page.locator("#loss-chart")
    assert loss.evaluate(PIXELS_NEAR, BLUE) > 100
    row = page.locator("#summary tbody tr")
    assert row.count() == 1 and "done" in row.inner_text() and "2 / 2" in row.inner_text()
    assert page.locator("#a-filters img").count() == 8
    assert page.locator("#a-maps img").count() == 8
    assert page.locator("#a-sample").get_attribute("src").startswith("data:image/png;base64,")
    assert "predicted" in page.locator("#a-prediction").inner_text()
    assert "after 8 steps" in page.locator("#a-pictures-when").inner_text()

    # a reload follows the same job again from the link: curves replayed from the server
    page.reload()
    wait_status(page, "a", "Done")
    assert page.locator("#summary tbody tr").count() == 1

    page.click("#a-open")
    page.wait_for_url("**/?model=trained-*")
    model_id = page.url.split("model=")[1].split("&")[0]
    page.wait_for_function(f"document.getElementById('model').value === {model_id!r}")
    page.console.check()


def test_two_runs_share_one_chart(page):
    page.goto(f"/training?compare=1&{QUICK}&b_train_size=200&b_epochs=2&b_batch_size=50&b_batch_norm=1")
    assert page.locator("#panel-b").is_visible() and page.locator("#b-batch_norm").is_checked()
    page.click("#start-both")
    wait_status(page, "a", "Done")
    wait_status(page, "b", "Done")
    rows = page.locator("#summary tbody tr")
    assert rows.count() == 2 and "BN" in rows.nth(1).inner_text()
    for chart in ("#loss-chart", "#accuracy-chart"):
        canvas = page.locator(chart)
        assert canvas.evaluate(PIXELS_NEAR, BLUE) > 100
        assert canvas.evaluate(PIXELS_NEAR, ORANGE) > 100
    assert "run B epoch 2" in page.locator("#loss-chart").get_attribute("aria-label")
    page.console.check()


def test_presets_set_both_runs(page):
    page.goto("/training")
    page.click('[data-preset="skip"]')
    assert page.locator("#panel-b").is_visible()
    assert page.locator("#a-network").input_value() == "deep" and page.locator("#b-network").input_value() == "deep"
    assert not page.locator("#a-skip_connections").is_checked() and page.locator("#b-skip_connections").is_checked()
    assert "b_skip_connections=1" in page.url
    assert "skip connections" in page.locator("#preset-note").inner_text()
    # toggles that do not apply to the network are hidden: pre-training for deep, skips for classic
    assert page.locator("#a-pretrained").is_hidden() and page.locator("#a-depth").is_visible()
    page.select_option("#a-network", "classic")
    assert page.locator("#a-skip_connections").is_hidden() and page.locator("#a-pretrained").is_visible()
    page.console.check()


def test_bad_settings_show_the_api_message(page):
    page.goto(f"/training?{QUICK}")
    page.fill("#a-lr", "5")
    page.click("#a-start")
    banner = page.locator("#error")
    banner.wait_for(state="visible")
    assert "lr must be from 1e-05 to 1, got 5" in page.locator("#error-text").inner_text()
    assert page.locator("#a-status").inner_text() == "Not started."
    page.click("#error-close")
    assert banner.is_hidden()


def test_keyboard_starts_and_stops_a_run(page):
    page.goto("/training?a_train_size=8000&a_epochs=20&a_batch_size=16")
    page.focus("#a-lr")
    page.keyboard.press("Enter")  # submits the run's form
    wait_status(page, "a", "Training")
    page.wait_for_function("!document.getElementById('a-cancel').disabled")
    page.focus("#a-cancel")
    page.keyboard.press("Enter")
    wait_status(page, "a", "Stopped after", timeout=20_000)
    assert page.locator("#a-open").is_disabled() and page.locator("#a-start").is_enabled()
    page.console.check()


def test_a_run_opened_from_someone_elses_link_can_be_watched_not_stopped(page, browser, server):
    page.goto("/training?a_train_size=8000&a_epochs=20&a_batch_size=16")
    page.click("#a-start")
    wait_status(page, "a", "Training")
    page.wait_for_function("!document.getElementById('a-cancel').disabled")
    link = page.url
    other = browser.new_context(base_url=server)
    try:
        theirs = other.new_page()
        theirs.goto(link)  # another student follows the link: the run is shown, its Stop and Open are not
        wait_status(theirs, "a", "Training")
        assert theirs.locator("#a-cancel").is_hidden() and theirs.locator("#a-open").is_hidden()
    finally:
        other.close()
    assert page.locator("#a-cancel").is_visible()
    page.click("#a-cancel")
    wait_status(page, "a", "Stopped after", timeout=20_000)
    assert page.locator("#a-cancel").is_visible()  # the end event does not take the owner's buttons away
    page.console.check()


def test_a_recurrent_network_trains_and_shows_its_gates_and_memory(page):
    page.goto(f"/training?{QUICK}&a_optimizer=adam&a_lr=0.003")
    page.select_option("#a-network", "lstm")
    # the toggles that apply: layers, pre-training, dropout, L2; not batch norm, depth or skip connections
    assert page.locator("#a-num_layers").is_visible() and page.locator("#a-pretrained").is_visible()
    assert page.locator("#a-batch_norm").is_hidden() and page.locator("#a-depth").is_hidden()
    assert page.locator("#a-skip_connections").is_hidden() and page.locator("#a-dropout").is_visible()
    assert "a_network=lstm" in page.url
    page.check("#a-dropout")
    page.click("#a-start")
    wait_status(page, "a", "Done")
    row = page.locator("#summary tbody tr")
    assert "LSTM" in row.inner_text() and "dropout" in row.inner_text() and "2 / 2" in row.inner_text()
    assert page.locator("#loss-chart").evaluate(PIXELS_NEAR, BLUE) > 100
    # the pictures say what they are: four gates, the hidden and cell states after each row
    assert page.locator("#a-filter-title").inner_text() == "Input weights of each gate"
    assert "(lstm, 4 gates)" in page.locator("#a-filter-layer").inner_text()
    gates = page.locator("#a-filters img")
    assert gates.count() == 4 and gates.first.get_attribute("alt") == "i: input gate"
    states = page.locator("#a-maps img")
    assert states.count() == 2 and states.nth(1).get_attribute("alt").startswith("cell state c")
    assert page.locator("#a-feature-title").inner_text() == "One test digit and its memory, row by row"
    # states are drawn as tall as the digit, one picture row per digit row
    assert states.first.evaluate("img => img.getBoundingClientRect().height") == pytest.approx(84, abs=1)

    # back to a CNN: the pictures' words follow the new run's network (epoch 0 is drawn before training starts)
    page.select_option("#a-network", "classic")
    assert page.locator("#a-batch_norm").is_visible() and page.locator("#a-num_layers").is_hidden()
    first_job = page.evaluate(as_function("new URLSearchParams(location.search).get('a_job')"))
    page.click("#a-start")
    page.wait_for_function(as_function(f"new URLSearchParams(location.search).get('a_job') !== {first_job!r}"))
    wait_status(page, "a", "Done")
    assert page.locator("#a-filter-title").inner_text() == "First-layer filters"
    assert page.locator("#a-filters img").count() == 8
    page.console.check()


def test_the_cnn_vs_rnn_preset(page):
    page.goto("/training")
    page.click('[data-preset="rnn"]')
    assert page.locator("#a-network").input_value() == "classic" and page.locator("#b-network").input_value() == "lstm"
    assert page.locator("#b-batch_norm").is_hidden() and page.locator("#b-num_layers").is_visible()
    assert "row by row" in page.locator("#preset-note").inner_text()
    page.console.check()
