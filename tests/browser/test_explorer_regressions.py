"""Bugs a lecturer at 1280×720 and a student alone ran into in the explorer (issue 13), each pinned by a test."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


def first_maps_ready(page, timeout: float = 30_000) -> None:
    page.wait_for_function("window.cnnVis && window.cnnVis.firstFeatureMapMs !== null", timeout=timeout)


def uncovered(page, selector: str) -> bool:
    """Whether the middle of the element's top line is the element itself on screen, not something over it."""
    return page.locator(selector).evaluate("""el => {
      const r = el.getBoundingClientRect();
      const hit = document.elementFromPoint(r.left + Math.min(40, r.width / 2), r.top + Math.min(8, r.height / 2));
      return r.top >= 0 && r.bottom <= window.innerHeight && hit !== null && el.contains(hit);
    }""")


def test_lecture_mode_draws_the_field_rings_on_their_tiles(page):
    # bug 1: the overlay canvas was stretched over the column while the tiles were letterboxed inside it
    page.goto("/?model=digits_classic&lecture=1&layer=pool1&unit=pool1,2,7,7")
    page.wait_for_selector('.layer.current.loaded[data-node="pool1"]')
    page.wait_for_selector('.layer.in-field[data-node="relu1"]', state="attached")
    geometry = page.locator('.layer[data-node="pool1"] .maps').evaluate("""maps => {
      const tiles = maps.querySelector("canvas.tiles"), overlay = maps.querySelector("canvas.overlay");
      const t = tiles.getBoundingClientRect(), o = overlay.getBoundingClientRect();
      return {t: [t.left, t.top, t.width, t.height], o: [o.left, o.top, o.width, o.height],
              ratio: tiles.width / tiles.height, painted: overlay.getContext("2d")
                .getImageData(0, 0, overlay.width, overlay.height).data.some(v => v > 0)};
    }""")
    t, o = geometry["t"], geometry["o"]
    assert all(abs(a - b) <= 1 for a, b in zip(t, o, strict=True)), (t, o)
    # the tiles are drawn at their own shape (nothing letterboxed in a box of another shape)
    assert abs(t[2] / t[3] - geometry["ratio"]) < 0.03, (t, geometry["ratio"])
    assert geometry["painted"]
    # the layer before (relu1) is shown in the left slot as one picture: its maps with the field's orange outlines
    page.wait_for_function("document.querySelector('.before-slot h3').textContent === 'relu1'")
    page.wait_for_function("""() => {
      const c = document.querySelector('.before-slot canvas');
      if (!c) return false;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const orange = (i) => d[i] >= 250 && d[i + 1] >= 165 && d[i + 1] <= 185 && d[i + 2] <= 10;  // #ffb000
      for (let i = 0; i < d.length; i += 4) if (orange(i)) return true;
      return false;
    }""")
    page.console.check()


def test_a_file_that_is_not_an_image_leaves_nothing_stale(page, tmp_path: Path):
    # bug 2: the error showed, but the previous image's maps and prediction stayed, under a broken image
    page.goto("/?model=digits_classic")
    first_maps_ready(page)
    assert page.locator("#predictions .bar-label").count() > 0
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file, not a JPEG\n" * 20)
    page.locator("#file").set_input_files(str(fake))
    page.wait_for_selector("#error:not([hidden])")
    assert "image" in page.locator("#error-text").inner_text().lower()
    page.wait_for_function("document.querySelectorAll('#network .layer').length === 0")
    assert page.locator("#predictions .bar-label").count() == 0
    assert page.locator("#input-figure").is_hidden()
    assert "could not be read" in page.locator("#network").inner_text()
    assert page.locator("#detail").is_hidden()
    page.console.check(ignore=["400", "415", "422"])


def test_the_toolbar_never_covers_the_maps_or_the_detail_heading(page):
    # bug 4: at 720 lines the sticky toolbar lay over the map columns and, after a click, the detail's heading
    page.goto("/?model=efficientnet_lite0&sample=cat.jpg&filter=all")
    page.wait_for_selector('.layer.loaded[data-node="stem.conv"]')
    page.mouse.wheel(0, 200)
    page.wait_for_function("window.scrollY > 100")
    first_header = '.layer[data-node="stem.conv"] .maps'
    page.locator(first_header).scroll_into_view_if_needed()
    assert uncovered(page, first_header)
    page.locator('.layer[data-node="stem.conv"] canvas.tiles').click(position={"x": 10, "y": 10})
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("document.querySelector('#detail-body').textContent.includes('Receptive field')")
    page.wait_for_timeout(800)  # the smooth scroll to the detail
    assert uncovered(page, "#detail-title")
    page.console.check(ignore=["404"])


def test_the_detail_says_pixel_for_one_and_names_a_digit_class_once(page):
    # bug 7: "shifted by 1 pixels"; "class 3 (3)" in the softmax of a digit model
    page.goto("/?model=digits_classic&unit=conv1,0,5,5")
    page.wait_for_function("document.querySelector('#detail-body').textContent.includes('Receptive field')")
    body = page.locator("#detail-body").inner_text()
    assert "shifted by 1 pixel (the effective stride)" in body
    assert "1 pixels" not in body
    page.get_by_role("button", name="How are these probabilities computed?").click()
    page.wait_for_function("document.querySelector('#detail-body').textContent.includes('Softmax')")
    text = page.locator("#detail-body .step-text").last.inner_text()
    assert text.startswith("class 3:"), text
    page.console.check()


def test_a_lifted_pen_is_classified_at_once(page):
    # bug 10: the drawing waited on a 150 ms debounce timer (and on the previous drawing's feature-map fetches)
    # before its 10 ms request. With the page's clock stopped, no timer can fire: the request must still go.
    page.goto("/?model=digits_classic")
    first_maps_ready(page)
    page.clock.install()
    page.clock.pause_at(page.evaluate("Date.now()") + 60_000)
    page.get_by_role("button", name="Clear").click()
    pad = page.locator("#draw").bounding_box()
    with page.expect_request("**/activations") as sent:
        page.mouse.move(pad["x"] + pad["width"] * 0.5, pad["y"] + pad["height"] * 0.15)
        page.mouse.down()
        page.mouse.move(pad["x"] + pad["width"] * 0.5, pad["y"] + pad["height"] * 0.85, steps=8)
        page.mouse.up()
    assert sent.value.method == "POST"
    page.wait_for_function("document.querySelector('#predictions .bar-label')?.textContent === '1'")
    page.console.check()


# every fetch the page makes whose promise rejects because the page aborted it, by URL
RECORD_ABORTED_FETCHES = """(() => {
  const original = window.fetch;
  window.__aborted = [];
  window.fetch = (input, init) => original(input, init).catch((err) => {
    if (err.name === "AbortError") window.__aborted.push(String(input.url ?? input));
    throw err;
  });
})();"""


def test_a_new_drawing_cancels_the_previous_drawings_map_fetches(page):
    # bug 10, the other half: a stroke's nine map PNGs must not hold the browser's connections while the next
    # stroke's answer waits; they are aborted when its columns are replaced
    page.add_init_script(RECORD_ABORTED_FETCHES)
    page.goto("/?model=digits_classic")
    first_maps_ready(page)
    held: list = []
    page.route("**/nodes/*.png", lambda route: held.append(route))

    def stroke(x: float) -> None:
        pad = page.locator("#draw").bounding_box()  # after the click: clicking may have scrolled the page
        page.mouse.move(pad["x"] + pad["width"] * x, pad["y"] + pad["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(pad["x"] + pad["width"] * x, pad["y"] + pad["height"] * 0.8, steps=6)
        page.mouse.up()

    page.get_by_role("button", name="Clear").click()
    with page.expect_request("**/nodes/conv1.png"):  # the first stroke's run, its maps asked for
        stroke(0.5)
    page.wait_for_timeout(300)
    first_urls = {route.request.url for route in held}
    assert first_urls, "the first stroke's maps were not requested"
    stroke(0.3)
    page.wait_for_function("urls => urls.every(u => window.__aborted.some(a => u.endsWith(a)))", arg=sorted(first_urls))
    page.unroute("**/nodes/*.png")
    for route in held:
        with contextlib.suppress(Exception):  # an aborted request cannot be continued
            route.continue_()
    page.console.check()


# the DOM changes one more render of the whole page makes (synchronously: no answer can arrive in between)
RENDER_AGAIN = """() => {
  const observer = new MutationObserver(() => {});
  observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  window.cnnVis.render();
  window.cnnVis.render();
  const changes = observer.takeRecords().map((m) => [m.type, m.target.id || m.target.className || m.target.nodeName,
    m.attributeName].join(" "));
  observer.disconnect();
  return changes;
}"""


@pytest.mark.parametrize("url", ["/?model=digits_classic&unit=conv2,5,4,4&layer=conv1&compare=digit-7.png",
                                 "/?model=digits_classic&lecture=1&speed=4", "/?model=digits_classic&overview=1"])
def test_drawing_the_explorer_again_changes_nothing(page, url):
    # the page is drawn from its state and data (explorer_render.js): once drawn, drawing it again is no change
    page.goto(url)
    first_maps_ready(page)
    page.wait_for_selector(".layer.current.loaded, #detail-body .field-block, .ov-node", state="attached")
    page.wait_for_load_state("networkidle")
    assert page.evaluate(RENDER_AGAIN) == []
    page.console.check()
