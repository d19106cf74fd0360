"""The attention page for models that take no images, in a real browser: uploaded Conv1d (sequences), Conv3d
(volumes) and segmentation ONNX models get a .npy input with the shape the API names, maps drawn along their axes
(a strip with its positions numbered, depth slices side by side), a region picker, and the API's refusals.

The models are the API tests' (tests/api/routes/test_attention_kinds.py); every number checked here is compared with
the API's own answer to the same request.
"""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

onnx = pytest.importorskip("onnx", reason="onnx is not installed: the uploaded-model attention tests are skipped")
from tests.api.routes.test_attention_kinds import conv_classifier, segmenter  # noqa: E402
from tests.app.onnx_models import Builder  # noqa: E402

IMAGE_LOADED = "img => img.complete && img.naturalWidth > 0"


def npy(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def upload(page, builder: Builder, name: str) -> str:
    model = builder.build(builder.output)
    answer = page.request.post("/api/models", multipart={
        "file": {"name": f"{name}.onnx", "mimeType": "application/octet-stream", "buffer": model},
        "name": name, "labels": "alpha\nbeta\ngamma"})
    assert answer.ok, answer.text()
    return answer.json()["id"]


def support(page, model_id: str) -> dict:
    answer = page.request.get(f"/api/models/{model_id}/attention")
    assert answer.ok, answer.text()
    return answer.json()


def choose_npy(page, x: np.ndarray, name: str = "input.npy") -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": "application/octet-stream", "buffer": npy(x)}])


def is_map_request(response) -> bool:
    return response.request.method == "POST" and urlparse(response.url).path.endswith("/attention")


def wait_for_card(page, method: str):
    page.wait_for_selector(f'.map-card.done[data-method="{method}"]', timeout=30_000)
    return page.locator(f'.map-card[data-method="{method}"]')


def decode_png(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def test_a_sequence_map_is_a_strip_along_its_positions(page):
    builder = conv_classifier([32])
    model_id = upload(page, builder, "Conv1d net")
    expected = support(page, model_id)
    page.goto(f"/attention?model={model_id}&method=gradcam")
    page.wait_for_selector("#tensor-box:not([hidden])")
    assert page.locator(f'#model option[value="{model_id}"]').count() == 1  # uploaded tensor models are offered
    # what to send, in the API's words; no samples or drawing for a model that takes no images
    assert page.locator("#expected-input").inner_text() == f"This model takes a sequence: {expected['expected_input']}."
    assert "[2, 32] (C, L: 2 channels, 32 positions)" in expected["expected_input"]
    assert page.locator("#samples").is_hidden() and page.locator("#draw-box").is_hidden()
    assert page.locator("#file-label").inner_text() == "Upload a .npy file…"
    assert "Upload a .npy file to see its maps" in page.locator(".maps-note").inner_text()
    # learned attention does not apply: shown as unavailable, with the API's reason
    reason = next(m["reason"] for m in expected["methods"] if m["name"] == "learned_attention")
    assert page.locator('#method option[value="learned_attention"]').is_disabled()
    assert reason in page.locator('#unavailable li[data-method="learned_attention"]').inner_text()

    x = builder.sample(1)
    with page.expect_response(is_map_request) as info:
        choose_npy(page, x, "signal.npy")
    answer = info.value.json()
    assert answer["kind"] == "sequence" and answer["input_shape"] == [32]
    card = wait_for_card(page, "gradcam")
    strip = card.locator("img.seq-strip")
    page.wait_for_function(IMAGE_LOADED, arg=strip.element_handle())
    # the map is the API's strip, one pixel per position, as wide as the plot and numbered 0 … 31 under it
    assert strip.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [32, 16]
    assert card.locator(".seq-view").get_attribute("data-length") == "32"
    ticks = card.locator(".seq-tick").all_inner_texts()
    assert ticks[0] == "0" and ticks[-1] == "31" and all(t.isdigit() for t in ticks)
    plot, line = card.locator(".seq-plot").bounding_box(), card.locator("svg.seq-input").bounding_box()
    width = strip.bounding_box()["width"]
    assert width == pytest.approx(plot["width"], abs=0.5) and width == pytest.approx(line["width"], abs=0.5)
    # the signal the model saw, one line per channel, from the API's numbers: the highest value is drawn highest
    assert card.locator("polyline.seq-line").count() == 2
    heights = [float(p.split(",")[1]) for p in
               card.locator("polyline.seq-line").first.get_attribute("points").split()]
    assert int(np.argmin(heights)) == int(np.argmax(answer["input_values"][0])) == int(np.argmax(x[0, 0]))
    # the colour legend, from the API's unsigned scale
    legend = card.locator(".map-legend")
    assert legend.locator(".legend-end").all_inner_texts() == ["0", "1"] and legend.locator("canvas").count() == 1
    stops = page.request.get("/api/attention/methods").json()["scales"]["unsigned"]
    bar = legend.locator("canvas")
    width = bar.evaluate("c => c.width")
    drawn = bar.evaluate("c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, 1).data)")
    drawn = np.array(drawn, dtype=float).reshape(width, 4)[:, :3]
    values = np.round(np.arange(width) / (width - 1) * 255) / 255  # the value each column stands for
    positions = [s["value"] for s in stops]
    scale = np.stack([np.interp(values, positions, [s["rgb"][i] for s in stops]) for i in range(3)], axis=1)
    assert np.abs(drawn - scale).max() <= 1, "the legend is not the API's scale"
    # pointing at a position reads the API's numbers there (the map's peak, the signal's two channels)
    peak = int(np.argmax(answer["input_map"]))
    card.locator(".seq-plot").scroll_into_view_if_needed()
    box = card.locator(".seq-plot").bounding_box()
    page.mouse.move(box["x"] + box["width"] * ((peak + 0.5) / 32), box["y"] + 10)
    readout = card.locator(".seq-readout").inner_text()
    assert readout.startswith(f"position {peak}: map 1; input "), readout
    shown = [float(v) for v in readout.split("input ")[1].split(", ")]
    np.testing.assert_allclose(shown, x[0, :, peak], atol=0.01)
    # the raw map at the layer (16 positions) as one row
    assert page.locator("#layer-grid .cell").count() == answer["layer_shape"][0] == 16
    assert "16 positions" in page.locator("#layer-map-caption").inner_text()
    page.console.check()


def test_a_volume_map_shows_its_depth_slices(page):
    builder = conv_classifier([4, 8, 8], seed=1)
    model_id = upload(page, builder, "Conv3d net")
    page.goto(f"/attention?model={model_id}")
    page.wait_for_selector("#tensor-box:not([hidden])")
    assert "(C, D, H, W: 2 channels, 4 slices of 8 × 8)" in page.locator("#expected-input").inner_text()
    with page.expect_response(is_map_request) as info:
        choose_npy(page, builder.sample(1), "clip.npy")
    answer = info.value.json()
    card = wait_for_card(page, "gradcam")
    slices = card.locator(".volume-view .slice")
    assert slices.count() == 4
    assert card.locator(".volume-view figcaption").all_inner_texts() == ["d = 0", "d = 1", "d = 2", "d = 3"]
    # slice 2's map is the third 8-pixel-wide frame of the API's picture, and lies over its frame
    heat = slices.nth(2).locator("canvas.heat")
    assert heat.evaluate("c => [c.width, c.height]") == [8, 8]
    pixels = np.array(heat.evaluate("c => Array.from(c.getContext('2d').getImageData(0, 0, 8, 8).data)"),
                      dtype=np.uint8).reshape(8, 8, 4)[..., :3]
    assert np.abs(pixels.astype(int) - decode_png(answer["input_map_png"])[:, 16:24].astype(int)).max() <= 1
    assert heat.bounding_box() == slices.nth(2).locator("canvas.picture").bounding_box()
    assert heat.evaluate("c => getComputedStyle(c).opacity") == "0.6"
    # the raw map at the layer, 2 × 4 × 4, slice by slice
    assert page.locator("#layer-grid .layer-slice").count() == 2 and page.locator("#layer-grid .cell").count() == 32
    page.console.check()


def test_a_segmentation_model_is_explained_over_a_region(page):
    builder = segmenter()
    model_id = upload(page, builder, "Segmenter")
    expected = support(page, model_id)
    page.goto(f"/attention?model={model_id}&method=gradcam")
    page.wait_for_selector("#region-panel:not([hidden])")
    assert page.locator("#region-now").inner_text() == "Explaining the whole map (8 × 8 output positions), the default."
    assert "The default is the whole map." in page.locator("#region-info").inner_text()
    cam = next(m["reason"] for m in expected["methods"] if m["name"] == "cam")
    assert cam in page.locator('#unavailable li[data-method="cam"]').inner_text()
    x = builder.sample(1)
    with page.expect_response(is_map_request) as info:
        choose_npy(page, x)
    assert "region" not in parse_qs(urlparse(info.value.url).query)  # the whole map: no region sent
    card = wait_for_card(page, "gradcam")
    assert "over the whole map (8 × 8 output positions)" in card.locator("figcaption").inner_text()
    # the classes are the model's labels; the default is the best class over the region
    assert page.locator("#target option").all_inner_texts() == [
        "the class scoring highest over the region", "alpha", "beta", "gamma"]

    # drag a box from output cell (row 1, column 1) to (row 3, column 4): rows 1…3, columns 1…4
    page.locator("#region-grid").scroll_into_view_if_needed()
    grid = page.locator("#region-grid").bounding_box()
    cell = grid["width"] / 8
    with page.expect_response(is_map_request) as info:
        page.mouse.move(grid["x"] + 1.5 * cell, grid["y"] + 1.5 * cell)
        page.mouse.down()
        page.mouse.move(grid["x"] + 3 * cell, grid["y"] + 2.5 * cell, steps=3)
        page.mouse.move(grid["x"] + 4.5 * cell, grid["y"] + 3.5 * cell, steps=3)
        page.mouse.up()
    assert parse_qs(urlparse(info.value.url).query)["region"] == ["1,1,4,5"]
    assert info.value.json()["region"] == [1, 1, 4, 5]
    page.wait_for_function("document.querySelector('.map-card.done figcaption')?.textContent.includes('y 1…3, x 1…4')")
    assert "region=1%2C1%2C4%2C5" in page.url
    assert [page.locator(f'#region-bounds input[data-bound="{i}"]').input_value() for i in range(4)] == [
        "1", "1", "4", "5"]

    # or typed, in output positions; the box the API explained is echoed on the card
    page.locator('#region-bounds input[data-bound="2"]').fill("7")
    with page.expect_response(is_map_request) as info:
        page.locator('#region-bounds input[data-bound="2"]').dispatch_event("change")
    assert info.value.json()["region"] == [1, 1, 7, 5]
    page.wait_for_function("document.querySelector('.map-card.done figcaption')?.textContent.includes('y 1…6, x 1…4')")
    assert page.locator("#region-now").inner_text() == "Explaining y 1…6, x 1…4."

    # a box that does not fit is refused with the API's message, and no map of the previous box stays
    page.locator('#region-bounds input[data-bound="3"]').fill("9")
    with page.expect_response(is_map_request) as info:
        page.locator('#region-bounds input[data-bound="3"]').dispatch_event("change")
    detail = info.value.json()["detail"]
    assert "does not fit the output map 8×8" in detail
    page.wait_for_selector(".map-card.failed")
    assert detail in page.locator("#error-text").inner_text()
    assert page.locator(".map-card.done").count() == 0 and page.locator("#layer-panel").is_hidden()
    page.console.check(ignore=["422"])


def test_a_wrong_shape_npy_shows_the_api_message_and_nothing_stale(page):
    builder = conv_classifier([32], seed=5)
    model_id = upload(page, builder, "Conv1d net")
    page.goto(f"/attention?model={model_id}")
    page.wait_for_selector("#tensor-box:not([hidden])")
    choose_npy(page, builder.sample(1), "good.npy")
    wait_for_card(page, "gradcam")
    assert page.locator("#target option").count() == 4  # the top prediction, then the 3 classes
    wrong = np.zeros((3, 32), dtype=np.float32)
    refusal = page.request.post(f"/api/models/{model_id}/predict", data=npy(wrong),
                                headers={"Content-Type": "application/x-npy"})
    assert refusal.status == 422
    message = json.loads(refusal.text())["detail"]
    assert "the tensor has shape [1, 3, 32]" in message and "[2, 32]" in message
    choose_npy(page, wrong, "wrong.npy")
    page.wait_for_selector("#error:not([hidden])")
    assert message in page.locator("#error-text").inner_text()
    # nothing of the previous input stays: no map, no layer grid, no classes of the old prediction
    page.wait_for_selector(".maps-note")
    assert page.locator(".map-card").count() == 0 and page.locator(".seq-strip").count() == 0
    assert page.locator("#layer-panel").is_hidden()
    assert page.locator("#target option").all_inner_texts() == ["the top prediction"]
    assert page.locator("#input-name").inner_text() == "Your file: wrong.npy"
    page.console.check(ignore=["422"])


def test_a_model_no_method_can_explain_says_why(page):
    b = Builder([1, 6], seed=4)
    b.output = b.node("Gemm", ["x", b.weight((3, 6)), b.weight((3,))], transB=1)
    model_id = upload(page, b, "Linear")
    expected = support(page, model_id)
    page.goto(f"/attention?model={model_id}")
    page.wait_for_selector("#model-note:not([hidden])")
    assert page.locator("#model-note").inner_text() == f"No method can explain this model: {expected['reason']}"
    assert page.locator(".map-card").count() == 0
    page.console.check()
