"""The kernel sliding over the real feature map (issue 13): a convolution's operation detail moves the window over
the run's actual input map and fills in the output map with the engine's values, position by position.

Every number is checked against values worked out here, independently of the page: the run's activations and the
model's weights fetched as .npy from the API, the convolution done with NumPy."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytestmark = pytest.mark.browser

FIGURE = "#detail .slide-figure"
SIDE = 480  # the slide's canvases, in canvas pixels
NOT_YET = (238, 240, 243)  # an output position the window has not reached
INK = (22, 25, 31)  # the window's outline (dark, then orange inside)
WINDOW = (232, 163, 23)

#: per output cell of the slide's output canvas (rows × cols cells, centred, as slide.js lays them out): filled?
FILLED_CELLS = """([rows, cols]) => {
  const canvas = document.querySelector("#detail .slide-figure canvas.slide-output");
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const cell = Math.floor(canvas.width / Math.max(rows, cols));
  const x0 = Math.floor((canvas.width - cell * cols) / 2), y0 = Math.floor((canvas.height - cell * rows) / 2);
  const filled = [];
  for (let r = 0; r < rows; r += 1) {
    for (let c = 0; c < cols; c += 1) {
      const i = ((y0 + Math.floor((r + 0.5) * cell)) * canvas.width + x0 + Math.floor((c + 0.5) * cell)) * 4;
      filled.push(!(data[i] === 238 && data[i + 1] === 240 && data[i + 2] === 243));
    }
  }
  return filled;
}"""

PIXEL = """([selector, x, y]) => Array.from(document.querySelector(selector).getContext("2d")
  .getImageData(x, y, 1, 1).data.slice(0, 3))"""


def npy(page, url: str) -> np.ndarray:
    answer = page.request.get(url)
    assert answer.ok, answer.text()
    return np.load(io.BytesIO(answer.body()))


def shown(page, value: float) -> str:
    """``value`` as the page writes it (the page's own number formatting)."""
    return page.evaluate("async v => (await import('/static/js/grid.js')).formatNumber(v)", value)


def open_slide(page, model: str, unit: str, query: str = "") -> dict:
    """Open ``unit``'s detail; the activations answer of the run (every node's .npy URL)."""
    with page.expect_response(lambda r: r.url.endswith("/activations") and r.request.method == "POST",
                              timeout=60_000) as response:
        page.goto(f"/?model={model}{query}&unit={unit}")
    run = response.value.json()
    page.wait_for_selector(f"{FIGURE}[data-state=ready]", timeout=60_000)
    return run


def node_npy(page, run: dict, node: str) -> np.ndarray:
    (url,) = [n["npy_url"] for n in run["nodes"] if n["id"] == node]
    return npy(page, url)


def attrs(page) -> dict:
    figure = page.locator(FIGURE)
    return {name: figure.get_attribute(f"data-{name}")
            for name in ("step", "position", "window", "filled", "channel", "count", "region")}


def layout(page) -> list[dict]:
    """The figure's size, and where its parts lie in it (the explanation above it may change height meanwhile)."""
    return page.evaluate("""() => {
      const figure = document.querySelector("#detail .slide-figure");
      const f = figure.getBoundingClientRect();
      const parts = figure.querySelectorAll(
        "canvas, .slide-controls, .slide-numbers, .slide-cells, .slide-sums, .slide-check");
      return [figure, ...parts].map((e) => {
        const r = e.getBoundingClientRect();
        return { x: r.left - f.left, y: r.top - f.top, w: r.width, h: r.height };
      });
    }""")


def click(page, label: str) -> None:
    page.locator(FIGURE).get_by_role("button", name=label, exact=True).click()


def numbers(page) -> tuple[float, float, str]:
    """The current position's Σ window × kernel (its exact number), the engine's output there and its text."""
    figure = page.locator(FIGURE)
    total = float(figure.locator(".slide-sum").get_attribute("data-value"))
    value = figure.locator(".slide-value")
    return total, float(value.get_attribute("data-value")), value.inner_text()


def window_sum(x: np.ndarray, kernel: np.ndarray, y: int, xpos: int, stride: int, pad: int) -> float:
    """Σ window × kernel at output (y, x) of one channel ``x`` (H, W), zero padding, independent of the page."""
    kh, kw = kernel.shape
    padded = np.pad(x.astype(np.float64), pad)
    window = padded[y * stride:y * stride + kh, xpos * stride:xpos * stride + kw]
    return float((window * kernel.astype(np.float64)).sum())


def test_the_kernel_slides_over_the_real_input_map_and_builds_the_output(page):
    run = open_slide(page, "digits_classic", "conv1,0,5,5")
    image = node_npy(page, run, "input")[0, 0]  # (28, 28): conv1 reads the image (one channel)
    out = node_npy(page, run, "conv1")[0, 0]  # (28, 28): map 0 of conv1, the engine's values
    weight = npy(page, "/api/models/digits_classic/params/conv1.weight.npy")[0, 0]  # (5, 5)
    bias = float(npy(page, "/api/models/digits_classic/params/conv1.bias.npy")[0])
    figure = page.locator(FIGURE)
    assert figure.locator("h3").inner_text() == "Slide the kernel over the map"
    assert "the whole 28×28 output map" in figure.inner_text()
    # it starts at the neuron explained above, marked as such; the map is slid whole (28 × 28 positions)
    start = attrs(page)
    assert start["position"] == "5,5" and start["count"] == "784" and start["region"] == "0,0,28,28"
    assert start["window"] == "3,3"  # 5×5 kernel, padding 2: output (5, 5) reads rows and columns 3…7
    assert "position (5, 5) reads rows 3…7, columns 3…7 · this neuron" in figure.inner_text()
    total, value, text = numbers(page)
    assert total == pytest.approx(window_sum(image, weight, 5, 5, 1, 2), rel=1e-5, abs=1e-6)
    assert value == pytest.approx(float(out[5, 5]), rel=1e-6, abs=1e-7) and text == shown(page, float(out[5, 5]))
    assert total + bias == pytest.approx(float(out[5, 5]), rel=1e-4, abs=1e-5)  # the numpy convolution agrees
    assert "matches the engine's value" in figure.locator(".slide-check").inner_text()
    box = layout(page)
    filled = page.evaluate(FILLED_CELLS, [28, 28])
    assert sum(filled) == 5 * 28 + 6 and filled[5 * 28 + 5] and not filled[5 * 28 + 6]

    # the first position: the window on the padding's corner, one output cell filled
    click(page, "First position")
    assert attrs(page)["position"] == "0,0" and attrs(page)["window"] == "-2,-2"
    assert page.evaluate(FILLED_CELLS, [28, 28]).count(True) == 1
    # the window is drawn where it says: 32 input cells (28 + 2 × 2 padding) of 15 canvas pixels, its dark edge
    # on the left of the top-left cell, and the orange inside it
    assert tuple(page.evaluate(PIXEL, [f"{FIGURE} canvas.slide-map", 0, 37])) == INK
    assert tuple(page.evaluate(PIXEL, [f"{FIGURE} canvas.slide-map", 2, 37])) == WINDOW
    total, value, text = numbers(page)
    assert total == pytest.approx(window_sum(image, weight, 0, 0, 1, 2), rel=1e-5, abs=1e-6)
    assert value == pytest.approx(float(out[0, 0]), rel=1e-6, abs=1e-7) and text == shown(page, float(out[0, 0]))
    assert "matches the engine's value" in figure.locator(".slide-check").inner_text()
    for step in range(1, 4):
        click(page, "Next position")
        assert attrs(page)["position"] == f"0,{step}" and attrs(page)["window"] == f"-2,{step - 2}"
        assert page.evaluate(FILLED_CELLS, [28, 28]).count(True) == step + 1
        assert layout(page) == box  # stepping moves nothing
    # the window moved three cells right: where its edge was, the input map shows again
    assert tuple(page.evaluate(PIXEL, [f"{FIGURE} canvas.slide-map", 0, 37])) != INK
    assert tuple(page.evaluate(PIXEL, [f"{FIGURE} canvas.slide-map", 3 * 15, 37])) == INK
    assert tuple(page.evaluate(PIXEL, [f"{FIGURE} canvas.slide-map", 3 * 15 + 2, 37])) == WINDOW
    total, value, text = numbers(page)
    assert total == pytest.approx(window_sum(image, weight, 0, 3, 1, 2), rel=1e-5, abs=1e-6)
    assert text == shown(page, float(out[0, 3]))
    # a position in the middle of the digit: real, non-zero numbers (not a padding corner)
    # (a click on the output map: 28 cells of 17 canvas pixels from pixel 2, the canvas drawn at half size)
    page.locator(f"{FIGURE} canvas.slide-output").click(position={"x": (2 + 14.5 * 17) / 2, "y": (2 + 12.5 * 17) / 2})
    assert attrs(page)["position"] == "12,14"
    total, value, text = numbers(page)
    expected = window_sum(image, weight, 12, 14, 1, 2)
    assert abs(expected) > 0.1 and total == pytest.approx(expected, rel=1e-5)
    assert text == shown(page, float(out[12, 14])) and total + bias == pytest.approx(float(out[12, 14]), rel=1e-4)
    assert page.evaluate(FILLED_CELLS, [28, 28]).count(True) == 12 * 28 + 15
    # back to the neuron explained above, and to the last position: every output position filled
    click(page, "◎ This neuron")
    assert attrs(page)["position"] == "5,5"
    click(page, "Last position")
    assert attrs(page)["position"] == "27,27" and all(page.evaluate(FILLED_CELLS, [28, 28]))
    assert numbers(page)[2] == shown(page, float(out[27, 27]))
    assert layout(page) == box
    page.console.check()


def test_playing_fills_the_map_and_closing_the_detail_stops_it(page):
    open_slide(page, "digits_classic", "conv1,2,0,0")
    figure = page.locator(FIGURE)
    box = layout(page)
    assert attrs(page)["position"] == "0,0"
    click(page, "Play the slide")
    page.wait_for_function("Number(document.querySelector('#detail .slide-figure').dataset.step) >= 4")
    click(page, "Play the slide")  # pause
    assert figure.get_by_role("button", name="Play the slide").get_attribute("aria-pressed") == "false"
    step = int(attrs(page)["step"])
    assert step >= 4 and page.evaluate(FILLED_CELLS, [28, 28]).count(True) == step + 1
    assert layout(page) == box
    # playing again, then the detail closes: the slide's animator stops for good (no step after the close)
    click(page, "Play the slide")
    page.wait_for_function(f"Number(document.querySelector('#detail .slide-figure').dataset.step) > {step}")
    handle = figure.element_handle()
    page.locator("#detail-close").click()
    page.wait_for_selector("#detail", state="hidden")
    before = handle.get_attribute("data-step")
    page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 800))")  # ≥ 8 steps' time, were it playing
    assert handle.get_attribute("data-step") == before
    page.console.check()


def test_a_multi_channel_convolution_slides_one_picked_channel(page):
    run = open_slide(page, "digits_classic", "conv2,5,4,4")
    pool1 = node_npy(page, run, "pool1")[0]  # (8, 14, 14)
    out = node_npy(page, run, "conv2")[0, 5]  # (10, 10)
    weight = npy(page, "/api/models/digits_classic/params/conv2.weight.npy")[5]  # (8, 5, 5)
    bias = float(npy(page, "/api/models/digits_classic/params/conv2.bias.npy")[5])
    figure = page.locator(FIGURE)
    start = attrs(page)
    assert start["position"] == "4,4" and start["count"] == "100" and start["window"] == "4,4"
    # the channel shown first: the one whose window adds the most to this unit
    sums = [window_sum(pool1[c], weight[c], 4, 4, 1, 0) for c in range(8)]
    assert start["channel"] == str(int(np.argmax(np.abs(sums))))
    select = figure.get_by_label("input channel shown")
    assert select.locator("option").count() == 8
    text = figure.inner_text()
    assert "the other 7 channels' windows are added to it" in text
    # at the explained neuron the API's other channels make the check: this channel + the rest + bias = engine
    assert "matches the engine's value" in figure.locator(".slide-check").inner_text()
    box = layout(page)
    for channel in (0, 3):
        select.select_option(str(channel))
        assert attrs(page)["channel"] == str(channel) and attrs(page)["position"] == "4,4"
        click(page, "Next position")
        assert attrs(page)["position"] == "4,5"
        total, value, shown_text = numbers(page)
        assert total == pytest.approx(window_sum(pool1[channel], weight[channel], 4, 5, 1, 0), rel=1e-5, abs=1e-6)
        assert value == pytest.approx(float(out[4, 5]), rel=1e-6, abs=1e-7)
        assert shown_text == shown(page, float(out[4, 5]))
        others = float(out[4, 5]) - total - bias
        line = f"+ the other 7 channels {signed(page, others)} + bias {signed(page, bias)} = output"
        assert line in figure.inner_text()
        # and the numpy convolution of every channel agrees with the engine's output shown
        every = sum(window_sum(pool1[c], weight[c], 4, 5, 1, 0) for c in range(8)) + bias
        assert every == pytest.approx(value, rel=1e-4, abs=1e-5)
        click(page, "◎ This neuron")
        assert layout(page) == box
    page.console.check()


def signed(page, value: float) -> str:
    text = shown(page, value)
    return f"({text})" if value < 0 else text


def test_a_large_map_slides_over_a_region_around_the_neuron(page):
    """EfficientNet's stem: 112 × 112 outputs of a 3×3 stride-2 convolution over 3 channels: a 16 × 16 region."""
    run = open_slide(page, "efficientnet_lite0", "stem.conv,4,50,108", "&sample=cat.jpg&filter=all")
    explanation = page.request.get(f"/api/runs/{run['run_id']}/nodes/stem.conv/units/4,50,108").json()
    (sh, sw), ((pt, _), (pl, _)) = explanation["stride"], explanation["padding"]
    figure = page.locator(FIGURE)
    start = attrs(page)
    # rows 42…57 around row 50; columns up to the map's edge: 96…111
    assert start["region"] == "42,96,16,16" and start["count"] == "256" and start["position"] == "50,108"
    assert "a 16×16 region of the 112×112 output map around this neuron (rows 42…57, columns 96…111)" in \
        figure.inner_text()
    assert start["window"] == f"{50 * sh - pt},{108 * sw - pl}"
    image = node_npy(page, run, "input")[0]  # (3, 224, 224)
    out = node_npy(page, run, "stem.conv")[0, 4]
    channel = int(start["channel"])
    kernel = np.array(explanation["channels"][channel]["kernel"])
    click(page, "First position")
    assert attrs(page)["position"] == "42,96"
    total, value, text = numbers(page)
    padded = np.pad(image[channel].astype(np.float64), ((pt, pt + 2), (pl, pl + 2)))
    y0, x0 = 42 * sh, 96 * sw
    assert total == pytest.approx(float((padded[y0:y0 + 3, x0:x0 + 3] * kernel).sum()), rel=1e-5, abs=1e-6)
    assert value == pytest.approx(float(out[42, 96]), rel=1e-6, abs=1e-7) and text == shown(page, float(out[42, 96]))
    click(page, "Last position")
    assert attrs(page)["position"] == "57,111" and all(page.evaluate(FILLED_CELLS, [16, 16]))
    page.console.check()
