"""The attention page in a real browser: the heatmap is laid over the picture, methods compare side by side."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

IMAGE_LOADED = "img => img.complete && img.naturalWidth > 0"


def wait_for_card(page, method: str):
    card = page.locator(f'.map-card[data-method="{method}"]')
    page.wait_for_selector(f'.map-card.done[data-method="{method}"]', timeout=30_000)
    return card


def test_overlay_appears_with_opacity_slider(page):
    page.goto("/attention?model=efficientnet_lite0&sample=cat.jpg&method=gradcam")
    card = wait_for_card(page, "gradcam")
    heat = card.locator("img.heat")
    picture = card.locator("img.picture")
    page.wait_for_function(IMAGE_LOADED, arg=heat.element_handle())
    page.wait_for_function(IMAGE_LOADED, arg=picture.element_handle())
    assert heat.evaluate("img => img.naturalWidth") == 224
    assert "cat" in card.locator("figcaption").inner_text()  # the top prediction is a cat class
    assert heat.evaluate("img => getComputedStyle(img).opacity") == "0.6"
    # the heatmap sits exactly over the picture
    assert heat.bounding_box() == picture.bounding_box()
    page.locator("#opacity").focus()
    for _ in range(4):
        page.keyboard.press("ArrowLeft")
    assert heat.evaluate("img => getComputedStyle(img).opacity") == "0.4"
    assert "opacity=0.4" in page.url
    assert page.locator("#layer-grid .cell").count() == 49  # Grad-CAM at head.relu6: 7×7
    page.console.check()


def test_methods_side_by_side_and_learned_attention(page):
    page.goto("/attention?model=digits_resnet&method=learned_attention")  # starts from a written "3"
    card = wait_for_card(page, "learned_attention")
    page.wait_for_function(IMAGE_LOADED, arg=card.locator("img.heat").element_handle())
    # the network's own attention weights are a softmax over the 7×7 positions: they add up to 1
    assert "add up to 1.000" in page.locator("#layer-map-caption").inner_text()
    assert page.locator("#draw-box").is_visible()
    assert page.locator("#target option").first.inner_text() == "the top prediction (3)"  # the written 3 is read
    assert page.locator("#layer-grid .cell").count() == 49
    page.get_by_label("Grad-CAM", exact=True).check()
    wait_for_card(page, "gradcam")
    assert page.locator(".map-card").count() == 2
    assert "compare=gradcam" in page.url
    page.console.check()


def test_learned_attention_is_offered_only_where_it_exists(page):
    page.goto("/attention?model=digits_classic&sample=cat.jpg")
    wait_for_card(page, "gradcam")
    assert page.locator("#learned").is_hidden()
    assert page.locator('#method option[value="learned_attention"]').is_disabled()
    page.console.check()


def test_a_heavy_method_shows_its_progress_then_the_map(page):
    """Score-CAM is a background job: the card follows its events in a progress bar, then draws the result."""
    seen = []
    page.on("request", lambda request: seen.append(request.url))
    page.goto("/attention?model=digits_classic&method=scorecam")  # starts from a written "3"
    card = wait_for_card(page, "scorecam")
    page.wait_for_function(IMAGE_LOADED, arg=card.locator("img.heat").element_handle())
    job_id = card.get_attribute("data-job")
    assert job_id
    assert any(url.endswith(f"/api/attention/jobs/{job_id}/events") for url in seen)
    assert any(url.endswith(f"/api/attention/jobs/{job_id}/result") for url in seen)
    bar = card.locator("progress.job-progress")
    # the bar followed the passes to the end, and is hidden once the map is drawn
    assert bar.evaluate("p => [p.value, p.max]") == [bar.evaluate("p => p.max")] * 2
    assert bar.evaluate("p => p.max") > 1 and bar.is_hidden()
    assert "ms" in card.locator(".card-note").inner_text()  # the note as for any map
    assert "for “3”" in card.locator("figcaption").inner_text()
    page.console.check()


# --- issue 13: the legend, the prediction, and the slow methods marked ---------------------------------------------

COFFEE = "/attention?model=digits_classic&sample=coffee.jpg"
VIEWPORT_HEIGHT = 720


def canvas_end_colours(canvas) -> list[list[int]]:
    """The RGB of a legend canvas's first and last columns (middle row)."""
    return canvas.evaluate("""c => {
        const y = Math.floor(c.height / 2);
        const ctx = c.getContext("2d");
        return [0, c.width - 1].map((x) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
    }""")


def assert_close_rgb(seen: list[int], expected: list[int]) -> None:
    assert all(abs(a - b) <= 1 for a, b in zip(seen, expected, strict=True)), (seen, expected)


def test_the_legend_stands_beside_the_maps_with_its_ends_labelled(page):
    page.goto(COFFEE)
    card = wait_for_card(page, "gradcam")
    page.wait_for_function(IMAGE_LOADED, arg=card.locator("img.heat").element_handle())
    scales = page.request.get("/api/attention/methods").json()["scales"]
    legend = page.locator('#map-legends .key-legend[data-scale="unsigned"]')
    assert legend.is_visible()
    assert page.locator('#map-legends .key-legend[data-scale="signed"]').count() == 0  # Grad-CAM has no signs
    # beside the map, not below the page: just right of the card, level with it, its bar and ends on the first screen
    card_box, bar_box = card.bounding_box(), legend.locator("canvas").bounding_box()
    ends_box = legend.locator(".key-ends").bounding_box()
    assert 0 <= bar_box["x"] - (card_box["x"] + card_box["width"]) <= 64, (card_box, bar_box)
    assert card_box["y"] <= bar_box["y"] < card_box["y"] + card_box["height"]
    assert ends_box["y"] + ends_box["height"] <= VIEWPORT_HEIGHT
    # its ends say what the numbers are: 0 = least, 1 = most influence, normalised per map (min-max)
    ends = legend.locator(".key-end")
    assert ends.count() == 2
    assert ends.nth(0).locator("b").inner_text() == "0" and "least influence" in ends.nth(0).inner_text()
    assert ends.nth(1).locator("b").inner_text() == "1" and "most influence" in ends.nth(1).inner_text()
    note = legend.locator(".key-note").inner_text()
    assert "Normalised per map" in note and "min-max to [0, 1]" in note
    assert legend.locator(".key-methods").inner_text() == "Grad-CAM"
    # the bar is the scale the map PNGs are drawn with (the API's), end to end
    first, last = canvas_end_colours(legend.locator("canvas"))
    assert_close_rgb(first, scales["unsigned"][0]["rgb"])
    assert_close_rgb(last, scales["unsigned"][-1]["rgb"])
    page.console.check()


def test_a_signed_method_gets_the_diverging_legend(page):
    page.goto(f"{COFFEE}&compare=gradient_x_input")
    wait_for_card(page, "gradcam")
    wait_for_card(page, "gradient_x_input")
    scales = page.request.get("/api/attention/methods").json()["scales"]
    signed = page.locator('#map-legends .key-legend[data-scale="signed"]')
    assert signed.is_visible() and signed.locator(".key-methods").inner_text() == "Gradient × Input"
    assert page.locator('#map-legends .key-legend[data-scale="unsigned"] .key-methods').inner_text() == "Grad-CAM"
    ends = signed.locator(".key-end")
    assert ends.locator("b").all_inner_texts() == ["−1", "0", "+1"]
    assert "lowers the class score" in ends.nth(0).inner_text()
    assert "no effect" in ends.nth(1).inner_text()
    assert "raises the class score" in ends.nth(2).inner_text()
    assert "largest |value|" in signed.locator(".key-note").inner_text()
    first, last = canvas_end_colours(signed.locator("canvas"))
    assert_close_rgb(first, scales["signed"][0]["rgb"])  # blue
    assert_close_rgb(last, scales["signed"][-1]["rgb"])  # red
    page.console.check()


def test_the_prediction_is_the_apis_top_5_and_says_which_class_is_explained(page):
    page.goto(COFFEE)
    card = wait_for_card(page, "gradcam")
    picture = page.request.get("/static/samples/coffee.jpg").body()
    answer = page.request.post("/api/models/digits_classic/predict", multipart={
        "image": {"name": "coffee.jpg", "mimeType": "image/jpeg", "buffer": picture}}).json()
    classes = answer["classes"]
    assert len(classes) == 5
    rows = page.locator("#prediction .bar-row")
    assert rows.count() == 5
    assert rows.locator(".bar-label").all_inner_texts() == [c["label"] for c in classes]
    for value, c in zip(rows.locator(".bar-value").all_inner_texts(), classes, strict=True):
        decimals = len(value.rstrip("%").partition(".")[2])  # rounded to its last digit shown
        assert value.endswith("%") and abs(float(value[:-1]) - 100 * c["probability"]) <= 0.5 * 10**-decimals + 1e-9, \
            (value, c)
    # near the image: beside the map card, on the first screen
    card_box, bars_box = card.bounding_box(), page.locator("#prediction").bounding_box()
    assert 0 <= bars_box["x"] - (card_box["x"] + card_box["width"]) <= 64
    assert bars_box["y"] + bars_box["height"] <= VIEWPORT_HEIGHT
    # by default the map explains the predicted class: said in words and marked among the bars
    top = classes[0]["label"]
    assert page.locator("#prediction .bar-row.explained .bar-label").all_inner_texts() == [top]
    assert f"“{top}”, the predicted class" in page.locator("#explained-class").inner_text()
    assert f"for “{top}”" in card.locator("figcaption").inner_text()
    # another class chosen: the mark and the words follow it
    third = classes[2]
    page.select_option("#target", str(third["index"]))
    page.wait_for_function("label => document.querySelector('.map-card.done figcaption')?.textContent.includes(label)",
                           arg=f"“{third['label']}”")
    assert page.locator("#prediction .bar-row.explained .bar-label").all_inner_texts() == [third["label"]]
    words = page.locator("#explained-class").inner_text()
    assert f"“{third['label']}”, chosen under Class to explain (ranked 3" in words and f"predicts “{top}”" in words
    page.console.check()


def test_slow_methods_are_marked_as_the_api_says(page):
    page.goto(COFFEE)
    wait_for_card(page, "gradcam")
    methods = page.request.get("/api/attention/methods").json()["methods"]
    assert any(m["cost"]["heavy"] for m in methods) and not all(m["cost"]["heavy"] for m in methods)
    for m in methods:
        option = page.locator(f'#method option[value="{m["name"]}"]')
        text = option.evaluate("o => o.textContent")
        label = page.locator("#compare label").filter(has=page.locator(f'input[value="{m["name"]}"]')).inner_text()
        if m["cost"]["heavy"]:
            assert text == f'{m["title"]} (slow: {m["cost"]["passes"]})', text
            assert f'slow: {m["cost"]["passes"]}' in label, label
        elif not option.is_disabled():
            assert text == m["title"] and "slow" not in label, (text, label)
    page.console.check()


def test_a_slow_method_says_so_while_it_runs(page):
    """The card of a heavy method carries the API's cost while its job runs (its events held back), not after."""
    held, release = [], []

    def hold(route):
        if release:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/attention/jobs/*/events", hold)
    page.goto(f"{COFFEE}&method=scorecam")
    cost = next(m["cost"] for m in page.request.get("/api/attention/methods").json()["methods"]
                if m["name"] == "scorecam")
    page.wait_for_selector('.map-card[data-method="scorecam"][data-job]')
    card = page.locator('.map-card[data-method="scorecam"]')
    note = card.locator(".slow-note")
    assert note.is_visible() and "done" not in card.get_attribute("class")
    assert f'Slow: {cost["passes"]} ({cost["option"]} = {cost["default_steps"]} by default' in note.inner_text()
    assert f'Slow: {cost["passes"]}' in page.locator("#method-info").inner_text()
    release.append(True)
    for route in held:
        route.continue_()
    wait_for_card(page, "scorecam")
    assert note.is_hidden()
    page.console.check()
