"""Issue 13, a student alone in the explorer: a signed colour scale centred on zero, one colour range for a whole
layer, the input shown as the picture the model sees, default inputs the models get right, and a note when the
input is not the kind of picture the model was trained on."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.datasets import mnist

pytestmark = pytest.mark.browser

SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"
DIGIT_MODELS = ["digits_classic", "digits_resnet", "digits_lstm", "digits_gru_attention"]
DEFAULT_DIGIT = 8055  # static/js/explorer.js DEFAULT_DIGIT
CENTRE = [247, 247, 247]  # the blue-red scale's middle colour (colormap.js STOPS.rdbu): white, for 0

# a column's painted tiles, read back from its canvas: {layout, rgba (flat), width, run}
READ_COLUMN = """id => {
  const column = window.cnnVis.network.byId.get(id);
  const c = column.canvas;
  return {layout: column.layout, width: c.width, height: c.height, run: window.cnnVis.network.run.run_id,
          rgba: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)};
}"""
# the page's own blue-red lookup table, 256 x 3 (to place a painted colour on the scale)
READ_LUT = """async () => Array.from((await import('/static/js/colormap.js')).lut('rdbu'))"""


def fetch(url: str, data: bytes | None = None, content_type: str | None = None) -> bytes:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type} if content_type else {})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def first_maps_ready(page, timeout: float = 60_000) -> None:
    page.wait_for_function("window.cnnVis && window.cnnVis.firstFeatureMapMs !== null", timeout=timeout)


def column_loaded(page, node: str, timeout: float = 60_000) -> None:
    page.wait_for_selector(f'.layer.loaded[data-node="{node}"]', timeout=timeout)


def painted_tiles(page, node: str) -> tuple[dict, np.ndarray, str]:
    """(layout, pixels (tiles, H, W, 3), run id) of a column as painted on its canvas."""
    got = page.evaluate(READ_COLUMN, node)
    layout = got["layout"]
    image = np.array(got["rgba"], dtype=np.uint8).reshape(got["height"], got["width"], 4)[:, :, :3]
    tiles = []
    for c in range(layout["tiles"]):
        row, col = divmod(c, layout["columns"])
        top, left = row * (layout["tile_height"] + layout["gap"]), col * (layout["tile_width"] + layout["gap"])
        tiles.append(image[top:top + layout["tile_height"], left:left + layout["tile_width"]])
    return layout, np.stack(tiles), got["run"]


def activation(server: str, run_id: str, node: str) -> np.ndarray:
    """A node's activation from the API, as (tiles, H, W)."""
    values = np.load(io.BytesIO(fetch(f"{server}/api/runs/{run_id}/nodes/{node}.npy")))[0]
    return values.reshape(-1, *values.shape[-2:])


def scale_positions(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Each painted colour's place on the scale, 0..255: its nearest entry of the scale's lookup table."""
    flat = pixels.reshape(-1, 3).astype(np.int32)
    distances = ((flat[:, None, :] - table[None, :, :].astype(np.int32)) ** 2).sum(axis=2)
    return distances.argmin(axis=1).reshape(pixels.shape[:-1])


def test_the_signed_scale_paints_zero_white_and_is_symmetric_about_it(page, server, tmp_path: Path):
    # the example: a map from -1 to 3, sent as the digit model's input tensor; rows 0-3 exactly 0,
    # rows 4-5 -0.5 on the left and +0.5 on the right, the rest a ramp from -1 (left) to 3 (right)
    x = np.tile(np.linspace(-1, 3, 28, dtype=np.float32), (28, 1))
    x[:4] = 0.0
    x[4:6, :14], x[4:6, 14:] = -0.5, 0.5
    tensor = tmp_path / "ramp.npy"
    np.save(tensor, x.reshape(1, 1, 28, 28))
    page.goto("/?model=digits_classic&scale=rdbu")
    first_maps_ready(page)
    page.set_input_files("#file", str(tensor))
    page.wait_for_function("document.querySelector('#input-caption').textContent === 'ramp.npy'")
    first_maps_ready(page)
    column_loaded(page, "input")
    _, tiles, run_id = painted_tiles(page, "input")
    values = activation(server, run_id, "input")
    np.testing.assert_array_equal(values[0], x)  # the painted map is of the API's numbers
    painted = tiles[0]
    zeros = np.argwhere(values[0] == 0)
    assert len(zeros) == 4 * 28
    for y, xx in zeros:  # 0 is white, not the midpoint of -1..3 (1, a light red)
        assert painted[y, xx].tolist() == CENTRE, (y, xx, painted[y, xx])
    table = np.array(page.evaluate(READ_LUT), dtype=np.uint8).reshape(256, 3)
    places = scale_positions(painted, table)
    # -0.5 and +0.5 lie the same distance either side of white: 0.5 / (2 * 3) of the scale each
    below, above = places[4, 0] - 127.5, places[4, 27] - 127.5
    assert below < 0 < above and abs(below + above) <= 1.5, (below, above)
    assert abs(above - 255 * 0.5 / 6) <= 2, above
    # every pixel sits at 0.5 + v / (2 max |v|) of the scale: the maximum (3) the darkest red, -1 a third of the way
    expected = (0.5 + values[0] / (2 * np.abs(values[0]).max())) * 255
    assert np.abs(places - expected).max() <= 2.5, np.abs(places - expected).max()
    assert painted[10, 27].tolist() == table[255].tolist()
    assert places[10, 0] >= 80  # -1 is not the darkest blue: blue is scaled by max |v| = 3
    page.console.check()


def test_a_real_layers_signed_maps_are_centred_per_map_then_per_layer(page, server):
    # conv1 of the classic digit CNN: a convolution before its ReLU, negative and positive numbers (a small layer:
    # the whole painted canvas is read back through the page)
    node = "conv1"
    page.goto("/?model=digits_classic&scale=rdbu&filter=all")
    column_loaded(page, node)
    table = np.array(page.evaluate(READ_LUT), dtype=np.uint8).reshape(256, 3)
    _, tiles, run_id = painted_tiles(page, node)
    values = activation(server, run_id, node)
    assert values.min() < 0 < values.max()
    for c in range(3):
        expected = (0.5 + values[c] / (2 * np.abs(values[c]).max())) * 255
        assert np.abs(scale_positions(tiles[c], table) - expected).max() <= 2.5, c
    # the whole layer: every map shares the layer's max |v|, so the same number is the same colour in every map
    page.select_option("#range", "layer")
    page.wait_for_function("location.search.includes('range=layer')")
    page.wait_for_function(f"window.cnnVis.network.byId.get('{node}')?.ranges?.[0]?.[0] === {float(values.min())!r}")
    column_loaded(page, node)
    _, tiles, _ = painted_tiles(page, node)
    top = np.abs(values).max()
    for c in range(3):
        expected = (0.5 + values[c] / (2 * top)) * 255
        assert np.abs(scale_positions(tiles[c], table) - expected).max() <= 2.5, c
    assert "0 (white)" in page.locator("#scale-ends").inner_text()
    assert "max |value| of the layer" in page.locator("#scale-ends").inner_text()
    page.console.check()


def test_the_whole_layer_range_gives_every_map_of_a_layer_one_range(page, server):
    page.goto("/?model=digits_classic&scale=gray")
    column_loaded(page, "conv1")
    assert "each map's minimum" in page.locator("#scale-ends").inner_text()
    _, per_map, run_id = painted_tiles(page, "conv1")
    values = activation(server, run_id, "conv1")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.select_option("#range", "layer")
    page.wait_for_function("location.search.includes('range=layer')")
    page.wait_for_function("window.cnnVis.network.byId.get('conv1')?.grey && "
                           "window.cnnVis.network.byId.get('conv1').canvas.width > 1")
    column_loaded(page, "conv1")
    assert any("/nodes/conv1.png?scale=layer" in url for url in requests)  # the API's whole-layer scale
    assert "the layer's minimum" in page.locator("#scale-ends").inner_text()
    _, per_layer, _ = painted_tiles(page, "conv1")
    grey = per_layer[..., 0].astype(int)
    low, high = values.min(), values.max()
    expected = np.floor((values - low) / (high - low) * 255 + 0.5)
    assert np.abs(grey - expected).max() <= 1
    # the same number is the same colour in two maps: pairs of near-equal values in the two maps whose own ranges
    # differ most, painted alike with the layer's range, unlike with each map's
    spans = values.max(axis=(1, 2)) - values.min(axis=(1, 2))
    a, b = int(spans.argmin()), int(spans.argmax())
    flat_a, flat_b = values[a].ravel(), values[b].ravel()
    order = np.argsort(flat_b)
    at = np.clip(np.searchsorted(flat_b[order], flat_a), 0, len(flat_b) - 1)
    pairs = [(i, order[j]) for i, j in enumerate(at) if abs(flat_a[i] - flat_b[order[j]]) < (high - low) / 5000]
    assert len(pairs) >= 20
    layer_a, layer_b = per_layer[a].reshape(-1, 3).astype(int), per_layer[b].reshape(-1, 3).astype(int)
    map_a, map_b = per_map[a].reshape(-1, 3).astype(int), per_map[b].reshape(-1, 3).astype(int)
    assert max(np.abs(layer_a[i] - layer_b[j]).max() for i, j in pairs) <= 1
    assert max(np.abs(map_a[i] - map_b[j]).max() for i, j in pairs) > 10
    page.console.check()


def test_the_input_is_shown_as_the_picture_the_model_sees(page, server):
    page.goto("/?model=efficientnet_lite0")
    first_maps_ready(page)
    picture = page.locator("#input-model")
    picture.wait_for()
    page.wait_for_function("document.querySelector('#input-model').complete && "
                           "document.querySelector('#input-model').naturalWidth > 0")
    size = picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [224, 224]  # the centre crop, not the 600 x 400 photo
    run_id = page.evaluate("window.cnnVis.network.run.run_id")
    assert picture.get_attribute("src") == f"/api/runs/{run_id}/input.png"
    assert "224 × 224" in page.locator("#input-model-size").inner_text()
    assert "centre 224 × 224" in page.locator("#input-model-caption").inner_text()
    # the picture is the input's numbers with EfficientNet's normalisation undone (x * std + mean)
    shown = picture.evaluate("""img => {
      const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
      const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
      return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
    }""")
    shown = np.array(shown, dtype=np.int32).reshape(224, 224, 4)[:, :, :3]
    pre = json.loads(fetch(f"{server}/api/models"))["models"]
    pre = next(m for m in pre if m["id"] == "efficientnet_lite0")["preprocessing"]
    x = activation(server, run_id, "input")
    pixels = np.clip(x * np.array(pre["std"])[:, None, None] + np.array(pre["mean"])[:, None, None], 0, 1) * 255
    assert np.abs(shown - pixels.transpose(1, 2, 0)).max() <= 1.5
    # a digit model sees 28 x 28 grey
    page.goto("/?model=digits_classic")
    first_maps_ready(page)
    page.wait_for_function("document.querySelector('#input-model').complete && "
                           "document.querySelector('#input-model').naturalWidth === 28")
    assert "28 × 28" in page.locator("#input-model-size").inner_text()
    page.console.check()


def test_the_default_inputs_are_ones_the_models_get_right(page, server):
    with page.expect_response("**/api/models/efficientnet_lite0/activations", timeout=60_000) as answer:
        page.goto("/?model=efficientnet_lite0")
    best = answer.value.json()["classes"][0]
    assert best["label"] == "espresso" and best["probability"] > 0.5, best
    assert "sample=coffee.jpg" in page.url
    page.wait_for_function("document.querySelector('#predictions .bar-label')?.textContent === 'espresso'")
    # a digit model starts from a real held-out digit, not a font: shipped digit #8055, a "3"
    with page.expect_response("**/api/models/digits_classic/activations", timeout=60_000) as answer:
        page.goto("/?model=digits_classic")
    best = answer.value.json()["classes"][0]
    assert best["label"] == "3" and best["probability"] > 0.5, best
    assert f"digit={DEFAULT_DIGIT}" in page.url
    assert page.locator("#input-caption").inner_text() == f"shipped digit #{DEFAULT_DIGIT}"
    _, labels = mnist.load_raw()
    assert labels[DEFAULT_DIGIT] == 3 and DEFAULT_DIGIT >= mnist.TRAIN_SIZE  # held out: not one it learned from
    digit = fetch(f"{server}/api/digits/{DEFAULT_DIGIT}.png?scale=1")
    for model in DIGIT_MODELS:  # every shipped digit model gets it right, with confidence
        classes = json.loads(fetch(f"{server}/api/models/{model}/predict", digit, "image/png"))["classes"]
        assert classes[0]["label"] == "3" and classes[0]["probability"] > 0.9, (model, classes[0])
    page.console.check()


def note_checked(page, model: str, name: str) -> None:
    """Wait until the page has checked the input ``name`` against ``model`` (the note shown or not)."""
    page.wait_for_selector(f'#input-kind-note[data-model="{model}"][data-input="{name}"]', state="attached",
                           timeout=60_000)


def test_the_wrong_kind_of_input_is_flagged(page, tmp_path: Path):
    note = page.locator("#input-kind-note")
    page.goto("/?model=efficientnet_lite0")  # the right kind: a photo
    note_checked(page, "efficientnet_lite0", "coffee.jpg")
    assert note.is_hidden()
    page.goto("/?model=digits_classic")  # the right kind: a held-out digit
    note_checked(page, "digits_classic", f"shipped digit #{DEFAULT_DIGIT}")
    assert note.is_hidden()
    # the digit kept while the photo model is chosen
    page.select_option("#model", "efficientnet_lite0")
    note_checked(page, "efficientnet_lite0", f"shipped digit #{DEFAULT_DIGIT}")
    assert note.is_visible()
    text = note.inner_text()
    assert "Not the kind of picture this model was trained on" in text
    assert "colour photos (ImageNet, 1000 classes)" in text and "handwritten digit" in text
    # a digit picture uploaded to the photo model: grey levels only
    digit = tmp_path / "my-digit.png"
    Image.open(SAMPLES / "digit-5.png").save(digit)
    page.set_input_files("#file", str(digit))
    note_checked(page, "efficientnet_lite0", "my-digit.png")
    assert note.is_visible() and "grey levels only" in note.inner_text()
    # a photo on the digit model
    page.goto("/?model=digits_classic&sample=cat.jpg")
    note_checked(page, "digits_classic", "cat.jpg")
    assert note.is_visible()
    text = note.inner_text()
    assert "handwritten digits (MNIST), grey, 28 × 28" in text and "a colour photo" in text
    assert "one of its 10 classes" in text
    # and a colour upload on it too; then a photo on the photo model clears the note
    photo = tmp_path / "holiday.png"
    Image.open(SAMPLES / "coffee.jpg").convert("RGB").resize((120, 80)).save(photo)
    page.set_input_files("#file", str(photo))
    note_checked(page, "digits_classic", "holiday.png")
    assert note.is_visible() and "a colour picture" in note.inner_text()
    page.goto("/?model=efficientnet_lite0&sample=cat.jpg")
    note_checked(page, "efficientnet_lite0", "cat.jpg")
    assert note.is_hidden()
    page.console.check()
