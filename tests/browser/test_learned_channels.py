"""The learned page's "What each channel detects" view in a real browser: the first visit's job with its progress, the
atlas's grid with the API's values and crops, a channel's 16 digits with their boxes, a channel opened in the explorer
with the right state, the explorer's link to a layer's atlas, and feature visualisation on demand (its endpoint
answered by the test where the steps must be seen one by one: a job whose preview improves, then its result;
"every channel" one job after another; and by the real endpoint)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest

pytestmark = pytest.mark.browser

VIEW = "/learned?view=channels"


def js_number(v: float) -> str:
    """A number as the page's fmt (grid.js) writes it."""
    if v == int(v):
        return str(int(v))
    a = abs(v)
    return f"{v:.{0 if a >= 100 else 1 if a >= 10 else 2 if a >= 0.095 else 3}f}"


def open_view(page, query: str = "") -> None:
    page.goto(VIEW + query)
    page.wait_for_selector("#view-channels .channel-cell", timeout=60_000)


def layer_answer(page, model: str, node: str, k: int) -> dict:
    """The API's own per-layer answer, asked beside the page (the job is done once the page shows the grid)."""
    response = page.request.get(f"/api/models/{model}/nodes/{node}/top-examples?k={k}")
    assert response.status == 200, response.text()
    return response.json()


def cell_values(page, channel: int) -> list[str]:
    return page.locator(f'.channel-cell[data-channel="{channel}"] .examples .value').all_inner_texts()


def test_first_visit_shows_the_jobs_progress_then_the_apis_grid(page):
    page.goto(VIEW + "&ch_model=digits_resnet&ch_layer=block2_out")
    # nobody asked for digits_resnet's top examples in this server yet: one job ranks the 10,000 digits
    page.wait_for_selector("#ch-job:not([hidden])", timeout=30_000)
    text = page.locator("#ch-job-text").inner_text()
    assert "Ranking the 10,000 shipped digits for every channel of digits_resnet" in text
    assert re.search(r"(queued|starting|[\d,]+ of 10,000 digits)…", text), text
    page.wait_for_selector("#view-channels .channel-cell", timeout=60_000)
    assert page.locator("#ch-job").is_hidden()
    expected = layer_answer(page, "digits_resnet", "block2_out", 6)
    assert page.locator(".channel-cell").count() == len(expected["channels"]) == 32
    for channel in (0, 17, 31):
        examples = expected["channels"][channel]["examples"]
        assert cell_values(page, channel) == [js_number(e["value"]) for e in examples]
        crops = page.locator(f'.channel-cell[data-channel="{channel}"] img.crop')
        assert crops.evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))") == [e["crop_url"] for e in examples]
    # the crops load (lazily: those on screen), as the API draws them: 32 × 32 boxes clipped to the digit, 4×
    page.wait_for_function("(() => { const i = document.querySelector('.channel-cell img.crop'); "
                           "return i.complete && i.naturalWidth > 0; })()")
    box = expected["channels"][0]["examples"][0]["box"]
    width = 4 * (box["clipped_end"][1] - box["clipped_start"][1] + 1)
    assert page.locator(".channel-cell img.crop").first.evaluate("i => i.naturalWidth") == width
    summary = page.locator("#ch-summary").inner_text()
    assert "block2_out, output 32×7×7: 32 channels" in summary and "r = 32" in summary
    assert page.locator("#ch-model").input_value() == "digits_resnet"
    page.console.check()


def test_the_layer_and_k_are_in_the_url_and_redraw_the_grid(page):
    open_view(page)
    assert page.locator("#ch-model").input_value() == "digits_classic"
    assert page.locator("#ch-layer").input_value() == "conv1"
    layers = page.locator("#ch-layer option").evaluate_all("os => os.map(o => o.value)")
    assert layers == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc"]  # from the API: flatten left out
    page.locator("#ch-layer").select_option("fc")
    page.wait_for_function("document.querySelectorAll('.channel-cell').length === 10")
    page.locator("#ch-k").select_option("9")
    page.wait_for_function("document.querySelectorAll('.channel-cell[data-channel=\"0\"] .example').length === 9")
    query = parse_qs(urlparse(page.url).query)
    assert query["ch_layer"] == ["fc"] and query["ch_k"] == ["9"]
    expected = layer_answer(page, "digits_classic", "fc", 9)
    for channel in range(10):
        assert cell_values(page, channel) == [js_number(e["value"]) for e in expected["channels"][channel]["examples"]]
    assert "sees the whole digit" in page.locator("#ch-summary").inner_text()
    page.reload()
    page.wait_for_function("document.querySelectorAll('.channel-cell[data-channel=\"0\"] .example').length === 9")
    assert page.locator("#ch-layer").input_value() == "fc"
    page.console.check()


def test_tied_channels_say_that_their_order_means_nothing(page):
    open_view(page, "&ch_model=digits_resnet&ch_layer=stem_conv")
    expected = layer_answer(page, "digits_resnet", "stem_conv", 6)["channels"]
    tied = [c["channel"] for c in expected if c["tied"]]
    assert tied and len(tied) < len(expected)  # digits_resnet's stem has both kinds
    notes = page.locator(".channel-cell").evaluate_all(
        "cells => cells.filter(c => c.querySelector('.tied-note')).map(c => Number(c.dataset.channel))")
    assert notes == tied
    value = js_number(expected[tied[0]]["examples"][0]["value"])
    assert page.locator(f'.channel-cell[data-channel="{tied[0]}"] .tied-note').inner_text().startswith(
        f"All 6 tied at {value}:")
    page.console.check()


def test_a_channels_sixteen_digits_show_their_boxes(page):
    open_view(page, "&ch_model=digits_classic&ch_layer=conv2&ch_channel=5")
    page.wait_for_selector("#ch-detail:not([hidden]) .example")
    expected = page.request.get("/api/models/digits_classic/nodes/conv2/channels/5/top-examples?k=16").json()
    assert page.locator("#ch-detail-title").inner_text() == "Channel 5 of conv2: its 16 top digits"
    figures = page.locator("#ch-detail .example")
    assert figures.count() == 16
    assert figures.locator("img").evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))") == [
        e["digit_url"] for e in expected["examples"]]
    first = expected["examples"][0]
    caption = figures.first.locator("figcaption").inner_text()
    assert caption.startswith(f"#1: a {first['label']}, value {js_number(first['value'])}")
    r0, c0 = first["box"]["clipped_start"]
    r1, c1 = first["box"]["clipped_end"]
    assert f"rows {r0}–{r1}, columns {c0}–{c1}" in caption
    assert "selected" in page.locator('.channel-cell[data-channel="5"]').get_attribute("class")
    page.locator("#ch-detail-close").click()
    assert page.locator("#ch-detail").is_hidden() and "ch_channel" not in page.url
    page.locator('.channel-cell[data-channel="2"] .more').click()
    page.wait_for_function("document.querySelector('#ch-detail-title').textContent.startsWith('Channel 2 of conv2')")
    assert "ch_channel=2" in page.url
    page.console.check()


def test_clicking_a_channel_opens_its_map_in_the_explorer(page):
    open_view(page, "&ch_model=digits_classic&ch_layer=relu2")
    top = layer_answer(page, "digits_classic", "relu2", 6)["channels"][3]["examples"][0]
    page.locator('.channel-cell[data-channel="3"] .channel-link').click()
    page.wait_for_url(re.compile(r"/\?"))
    query = parse_qs(urlparse(page.url).query)
    y, x = top["position"]
    assert query["model"] == ["digits_classic"] and query["layer"] == ["relu2"]
    assert query["unit"] == [f"relu2,3,{y},{x}"] and query["digit"] == [str(top["index"])]
    page.wait_for_selector("#detail:not([hidden])", timeout=30_000)
    page.wait_for_function("document.querySelector('#detail-title').textContent.includes('relu2')")
    assert f"unit [3, {y}, {x}]" in page.locator("#detail-title").inner_text()
    assert page.locator("#input-caption").inner_text() == f"shipped digit #{top['index']}"
    # the explorer's run of that digit gives the unit the value the atlas ranked it by
    page.wait_for_function("document.querySelector('#detail-body').textContent.includes('value')")
    assert f"This neuron's value: {js_number(top['value'])}" in page.locator("#detail-body").inner_text()
    page.console.check()


def test_the_explorers_atlas_link_opens_the_layers_atlas(page):
    page.goto("/?model=digits_classic&digit=8001&layer=conv2&unit=conv2,1,2,2")
    link = page.locator("#atlas-link")
    link.wait_for(state="visible", timeout=30_000)
    assert link.inner_text() == "What each channel of conv2 detects (atlas) →"
    query = parse_qs(urlparse(link.get_attribute("href")).query)
    assert query == {"view": ["channels"], "ch_model": ["digits_classic"], "ch_layer": ["conv2"], "ch_channel": ["1"]}
    link.click()
    page.wait_for_selector("#ch-detail:not([hidden]) .example", timeout=30_000)
    assert page.locator("#ch-layer").input_value() == "conv2"
    assert page.locator("#ch-detail-title").inner_text().startswith("Channel 1 of conv2")
    assert page.locator(".channel-cell").count() == 16
    # a node without channels of its own has no atlas
    page.goto("/?model=digits_classic&digit=8001&layer=flatten&unit=flatten,7")
    page.wait_for_selector("#detail:not([hidden])", timeout=30_000)
    page.wait_for_timeout(500)
    assert page.locator("#atlas-link").is_hidden()
    page.console.check()


# --- feature visualisation, its endpoint answered by the test --------------------------------------------------

def job(job_id: str, status: str, done: int, total: int, preview: str | None = None) -> dict:
    base = f"/api/jobs/{job_id}"
    return {"id": job_id, "kind": "feature-visualisation", "model_id": "digits_classic", "status": status,
            "done": done, "total": total, "created_at": 0, "started_at": 0, "finished_at": None, "error": None,
            "error_status": None, "owned": True, "status_url": base, "events_url": f"{base}/events",
            "result_url": f"{base}/result", "preview_url": preview}


def sse(event: str, seq: int, data: dict) -> str:
    return f"id: {seq}\nevent: {event}\ndata: {json.dumps(data)}\n\n"


class FakeFeatureVis:
    """POST .../feature-visualisation answered with a job per channel (202); its events come in two connections (the
    first ends after progress with a preview, the browser reconnects and gets the end), then its result."""

    def __init__(self, page, reconnect_ms: int = 300) -> None:
        self.reconnect_ms = reconnect_ms  # how long the browser waits before it reconnects to the events
        self.posts: list[dict] = []
        self.connections: dict[str, int] = {}
        self.running: set[str] = set()
        self.most_at_once = 0
        page.route(re.compile(r".*/api/models/[^/]+/feature-visualisation$"), self.create)
        page.route(re.compile(r".*/api/jobs/fv-\d+/events$"), self.events)
        page.route(re.compile(r".*/api/jobs/fv-\d+/result$"), self.result)

    def create(self, route) -> None:
        body = json.loads(route.request.post_data)
        self.posts.append(body)
        job_id = f"fv-{body['channel']}"
        self.running.add(job_id)
        self.most_at_once = max(self.most_at_once, len(self.running))
        route.fulfill(status=202, content_type="application/json", body=json.dumps(job(job_id, "queued", 0, 128)))

    def events(self, route) -> None:
        job_id = route.request.url.split("/")[-2]
        self.connections[job_id] = self.connections.get(job_id, 0) + 1
        if self.connections[job_id] == 1:
            body = f"retry: {self.reconnect_ms}\n\n" + sse("progress", 1, job(job_id, "running", 64, 128,
                                                                        "/api/digits/1.png?scale=2"))
        else:
            self.running.discard(job_id)
            body = sse("end", 2, job(job_id, "done", 128, 128))
        route.fulfill(status=200, content_type="text/event-stream", body=body)

    def result(self, route) -> None:
        channel = int(route.request.url.split("/")[-2].split("-")[1])
        route.fulfill(status=200, content_type="application/json", body=json.dumps({  # a FeatureVisualisation
            "model_id": "digits_classic", "steps": 128, "seed": 0, "learning_rate": 0.23, "input_shape": [1, 28, 28],
            "objective": {"kind": "channel", "node": "conv2", "channel": channel, "unit": None, "class_index": None,
                          "label": None, "description": f"the mean activation of channel {channel} of 'conv2'"},
            "resized": False, "start": 0.5, "end": 31.25, "history": [0.5, 31.25], "ratio": 7.8125,
            "reference": {"source": "digits", "description": "the 2,000 held-out shipped digits", "count": 2000,
                          "mean": 4.0, "max": 12.5},
            "ratio_to_best": 2.5, "image_url": f"/api/digits/{100 + channel}.png",
            "input_npy_url": "/api/jobs/x/files/input.npy", "seconds": 0.2}))


def test_visualise_one_channel_shows_the_preview_then_the_result(page):
    # the browser reconnects (and gets the end) only after 2.5 s: time to read the preview on a loaded machine (after
    # 300 ms, CI once saw 128 of 128 before it read the progress)
    fake = FakeFeatureVis(page, reconnect_ms=2500)
    open_view(page, "&ch_model=digits_classic&ch_layer=conv2")
    assert not fake.posts  # nothing starts without the user asking
    page.locator('.channel-cell[data-channel="4"] .visualise').click()
    preview = page.locator('.channel-cell[data-channel="4"] img.vis-preview')
    preview.wait_for(state="visible")
    assert "/api/digits/1.png?scale=2" in preview.get_attribute("src")
    assert page.locator('.channel-cell[data-channel="4"] .vis-text').inner_text() == "64 of 128 steps…"
    assert page.locator('.channel-cell[data-channel="4"] progress').evaluate("p => [p.value, p.max]") == [64, 128]
    final = page.locator('.channel-cell[data-channel="4"] img.vis-image')
    final.wait_for(state="visible")
    assert final.get_attribute("src") == "/api/digits/104.png"
    assert page.locator('.channel-cell[data-channel="4"] .vis-text').inner_text() == "×7.81 the digits' mean"
    assert fake.posts == [{"node": "conv2", "channel": 4, "steps": 128, "seed": 0}]
    # the result stays when the grid is redrawn (more examples per channel)
    page.locator("#ch-k").select_option("4")
    page.wait_for_function("document.querySelectorAll('.channel-cell[data-channel=\"0\"] .example').length === 4")
    assert page.locator('.channel-cell[data-channel="4"] img.vis-image').get_attribute("src") == "/api/digits/104.png"
    assert len(fake.posts) == 1
    page.console.check()


def test_visualise_every_channel_runs_one_job_at_a_time(page):
    fake = FakeFeatureVis(page)
    open_view(page, "&ch_model=digits_classic&ch_layer=conv1")
    button = page.locator("#ch-visualise-all")
    assert button.inner_text() == "Visualise every channel (8, one after another)"
    button.click()
    page.wait_for_function("document.querySelectorAll('.channel-cell img.vis-image').length === 8", timeout=60_000)
    assert [p["channel"] for p in fake.posts] == list(range(8))
    assert fake.most_at_once == 1
    assert button.inner_text().startswith("Visualise every channel")
    page.console.check()


def test_visualise_with_the_real_endpoint_shows_its_picture_and_ratio(page):
    open_view(page, "&ch_model=digits_classic&ch_layer=relu2")
    page.locator('.channel-cell[data-channel="3"] .visualise').click()
    final = page.locator('.channel-cell[data-channel="3"] img.vis-image')
    final.wait_for(state="visible", timeout=60_000)
    response = page.request.post("/api/models/digits_classic/feature-visualisation",
                                 data={"node": "relu2", "channel": 3, "steps": 128, "seed": 0})
    assert response.status == 200, response.text()  # the page's job is done: the cached answer
    expected = response.json()
    assert final.get_attribute("src") == expected["image_url"]
    assert final.evaluate("img => img.complete && img.naturalWidth === 28")
    text = page.locator('.channel-cell[data-channel="3"] .vis-text')
    assert text.inner_text() == f"×{js_number(expected['ratio'])} the digits' mean"
    assert f"mean {js_number(expected['reference']['mean'])}" in text.get_attribute("title")
    page.console.check()


def test_a_channel_the_ascent_cannot_raise_says_why(page):
    """relu2's channel 10 in digits_classic is nearly dead (mean 0.0095 over the digits, zero on the starting
    picture): the ascent ends below the digits' mean, and the cell says so rather than showing a bare ×0.001."""
    open_view(page, "&ch_model=digits_classic&ch_layer=relu2")
    page.locator('.channel-cell[data-channel="10"] .visualise').click()
    page.locator('.channel-cell[data-channel="10"] img.vis-image').wait_for(state="visible", timeout=60_000)
    expected = page.request.post("/api/models/digits_classic/feature-visualisation",
                                 data={"node": "relu2", "channel": 10, "steps": 128, "seed": 0}).json()
    assert expected["ratio"] < 1
    note = page.locator('.channel-cell[data-channel="10"] .vis-failed')
    assert "no picture that excites it more than the digits do" in note.inner_text()
    assert f"best digit {js_number(expected['reference']['max'])}" in note.inner_text()
    page.locator('.channel-cell[data-channel="3"] .visualise').click()
    page.locator('.channel-cell[data-channel="3"] img.vis-image').wait_for(state="visible", timeout=60_000)
    assert page.locator('.channel-cell[data-channel="3"] .vis-failed').count() == 0  # raised ×5 and more: no note
    page.console.check()
