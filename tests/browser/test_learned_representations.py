"""The learned page's "Representations" view in a real browser: the held-out digits by PCA as the API answers them,
a hovered point's digit cut from the sprite sheet, the state in the URL, t-SNE's progress then its KL, the probes'
chart and table, and a photo model's nearest sample photos (no digits: the API says why)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

VIEW = "/learned?view=representations"
LONG = 240_000  # a job the first time: probes and t-SNE take tens of seconds on a busy machine


def open_view(page, query: str = "") -> None:
    page.goto(VIEW + query)
    page.wait_for_selector("#view-representations #rep-legend li", timeout=LONG)


def api(page, path: str) -> dict:
    """The API's answer beside the page (the page's visit computed it: 200 from the cache)."""
    response = page.request.get(path)
    assert response.status == 200, response.text()
    return response.json()


def pct(p: float) -> str:
    return f"{100 * p:.2f}%"


def test_pca_of_a_layer_as_the_api_answers(page):
    open_view(page)
    assert page.locator("#rep-model").input_value() == "digits_classic"
    support = api(page, "/api/models/digits_classic/representations")
    options = page.locator("#rep-node option").evaluate_all("os => os.map(o => o.value)")
    assert options == support["nodes"]
    assert page.locator("#rep-node").input_value() == support["default_node"] == "pool2"
    answer = api(page, "/api/models/digits_classic/projection?node=pool2&method=pca")
    info = page.locator("#rep-projection-info").inner_text()
    a, b = answer["explained_variance_ratio"]
    assert f"the first axis holds {pct(a)}" in info and f"the second {pct(b)}" in info
    assert answer["features"]["description"] in info
    legend = page.locator("#rep-legend li").all_inner_texts()
    counts = np.bincount(answer["labels"], minlength=10)
    assert legend == [f"{k} ({counts[k]})" for k in range(10)]
    assert not page.locator("#rep-neighbours").is_visible()  # a digit model: its neighbours are the points
    page.console.check()


def test_a_point_shows_its_digit_from_the_sprite(page):
    open_view(page)
    answer = api(page, "/api/models/digits_classic/projection?node=pool2&method=pca")
    page.locator("#rep-scatter").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    hover = page.locator("#rep-hover")
    assert hover.is_visible() and hover.get_attribute("data-index") == "2"
    assert hover.get_attribute("data-label") == str(answer["labels"][2])
    text = page.locator("#rep-hover-text").inner_text()
    assert text.startswith(f"Digit {answer['labels'][2]} · held-out digit 3 of 2000")
    assert f"shipped digit #{answer['indices'][2]}" in text
    # the picture is the sprite's cell 2, scaled 3x by whole pixels
    page.wait_for_function("document.querySelector('#rep-hover-digit').getContext('2d')"
                           ".getImageData(0, 0, 84, 84).data.some((v, i) => i % 4 === 0 && v > 0)")
    page.keyboard.press("ArrowRight")  # redraw now that the sprite is surely loaded
    page.keyboard.press("ArrowLeft")
    drawn = np.array(page.locator("#rep-hover-digit").evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, 84, 84).data)"), dtype=np.uint8).reshape(84, 84, 4)
    sheet = np.asarray(Image.open(io.BytesIO(page.request.get(answer["sprite"]["url"]).body())))
    cell = sheet[0:28, 2 * 28:3 * 28]
    np.testing.assert_array_equal(drawn[1::3, 1::3, 0], cell)
    page.keyboard.press("Escape")
    assert hover.is_hidden()
    # the mouse finds the point under it
    box = page.locator("#rep-scatter").bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)  # the corner: the plot's frame, no point
    assert hover.is_hidden()
    page.console.check()


def test_state_lives_in_the_url(page):
    open_view(page)
    page.locator("#rep-node").select_option("relu1")
    page.wait_for_function("new URLSearchParams(location.search).get('repNode') === 'relu1'")
    # a job: it may wait for the probes' job (the background lane runs one at a time)
    page.wait_for_function("document.querySelector('#rep-projection-info').textContent.includes('8 x 16 x 16')",
                           timeout=LONG)
    page.reload()
    page.wait_for_selector("#rep-legend li", timeout=LONG)
    assert page.locator("#rep-node").input_value() == "relu1"
    assert "at relu1" in page.locator("#rep-projection-title").inner_text()
    page.console.check()


def test_tsne_shows_progress_while_it_runs_then_its_kl(page):
    """One t-SNE (a job of tens of seconds): chosen on the page, its progress and the embedding so far are shown
    while it runs, then its KL as the API answers it; a reload of the link opens the finished answer."""
    open_view(page, "&repModel=digits_gru_attention&repNode=attention&repMethod=pca")
    page.locator("#rep-method").select_option("tsne")
    page.wait_for_selector("#rep-projection-progress:not([hidden])", timeout=30_000)
    page.wait_for_function("/\\d+ of \\d+ steps/.test(document.querySelector('#rep-projection-progress-text')"
                           ".textContent)", timeout=LONG)
    # the embedding so far, coloured by digit, before the answer
    page.wait_for_function("document.querySelector('#rep-projection-info').textContent.includes('t-SNE at work')",
                           timeout=LONG)
    page.wait_for_selector("#rep-kl:not([hidden])", timeout=LONG)
    answer = api(page, "/api/models/digits_gru_attention/projection?node=attention&method=tsne")
    for opened in ("chosen", "reloaded"):
        info = page.locator("#rep-projection-info").inner_text()
        assert f"KL(P‖Q) = {answer['final_kl']:.3f} nats after 1000 steps (perplexity 30" in info, opened
        reduced = f"reduced by PCA to {answer['pca_dims']} dimensions"
        assert (reduced in info) if answer["pca_dims"] else ("reduced by PCA" not in info), opened
        assert page.locator("#rep-kl-chart svg polyline").count() == 1, opened
        assert page.locator("#rep-projection-progress").is_hidden(), opened
        if opened == "chosen":
            page.reload()  # the link keeps repMethod=tsne: the answer is computed, so it opens at once
            page.wait_for_selector("#rep-kl:not([hidden])", timeout=30_000)
            assert page.locator("#rep-method").input_value() == "tsne"
    page.console.check()


def test_probe_accuracy_by_layer(page):
    open_view(page)
    page.wait_for_selector("#rep-probes-table tbody tr", timeout=LONG)
    answer = api(page, "/api/models/digits_classic/probes")
    rows = page.locator("#rep-probes-table tbody tr")
    assert rows.count() == len(answer["probes"])
    assert rows.nth(0).locator("td").first.inner_text() == "input (pixels)"
    for i, probe in enumerate(answer["probes"]):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert cells[3] == pct(probe["test_accuracy"]) and cells[4] == pct(probe["train_accuracy"])
    ticks = page.locator("#rep-probes-chart .rep-tick").evaluate_all("ts => ts.map(t => t.textContent)")  # SVG
    assert "100%" in ticks and "pixels" in ticks
    info = page.locator("#rep-probes-info").inner_text()
    assert f"The raw pixels give {pct(answer['probes'][0]['test_accuracy'])}" in info
    page.console.check()


def test_a_photo_model_finds_the_nearest_photos(page):
    page.goto(VIEW + "&repModel=efficientnet_lite0&repPhoto=rocket.jpg&repK=2")  # no projection: wait for photos
    page.wait_for_selector("#rep-neighbours-list figure[data-file]", timeout=60_000)
    assert page.locator("#rep-note").is_visible() and "[3, 224, 224]" in page.locator("#rep-note").inner_text()
    assert page.locator("#rep-projection").is_hidden() and page.locator("#rep-probes").is_hidden()
    node = page.locator("#rep-node").input_value()
    image = {"name": "rocket.jpg", "mimeType": "image/jpeg",
             "buffer": page.request.get("/static/samples/rocket.jpg").body()}
    answer = page.request.post(f"/api/models/efficientnet_lite0/neighbours?node={node}&k=2",
                               multipart={"image": image}).json()
    files = page.locator("#rep-neighbours-list figure[data-file]").evaluate_all("fs => fs.map(f => f.dataset.file)")
    assert files == [n["file"] for n in answer["neighbours"]] and files[0] == "rocket.jpg"
    cosines = page.locator("#rep-neighbours-list .rep-cosine").all_inner_texts()
    assert cosines == [f"cosine {n['similarity']:.4f}" for n in answer["neighbours"]]
    page.locator('#rep-photos .sample[data-file="cat.jpg"]').click()
    page.wait_for_function("document.querySelector('#rep-neighbours-list figure[data-file]')?.dataset.file === "
                           "'cat.jpg'")
    page.console.check()
