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
