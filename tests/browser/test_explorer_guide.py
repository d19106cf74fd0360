"""What the explorer tells a student alone (issue 13): the first-visit guide (what a feature map is, what the colours
and the numbers under a map mean, how to pick a neuron; it closes, stays closed and reopens on demand), the tooltips,
the colour legend above the maps, and a selected neuron's connections to its input patch."""

from __future__ import annotations

import pytest

from tests.browser.conftest import CSP_LISTENER, ConsoleLog

pytestmark = pytest.mark.browser


@pytest.fixture
def first_visit(browser, server):
    """A page in a fresh browser profile: nothing stored, so the guide has never been seen."""
    context = browser.new_context(viewport={"width": 1280, "height": 720}, base_url=server)
    context.expose_function("__cspViolation", lambda text: pytest.fail(f"CSP violation: {text}"))
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    console = ConsoleLog()
    page.on("console", lambda msg: console.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.errors.append(str(exc)))
    page.console = console
    page.set_default_timeout(20_000)
    yield page
    context.close()


def test_the_guide_opens_on_a_first_visit_and_walks_four_steps(first_visit):
    page = first_visit
    page.goto("/?model=digits_classic")
    page.wait_for_selector("#guide:not([hidden])")
    titles, targets = [], []
    for step in range(4):
        assert page.locator(".guide-count").inner_text() == f"Guide · {step + 1} of 4"
        titles.append(page.locator("#guide-title").inner_text())
        target = page.locator(".guide-target")
        assert target.count() == 1 and target.is_visible()
        targets.append(target.evaluate("e => e.className + ' ' + (e.id || '')"))
        page.locator("#guide").get_by_role("button", name="Done" if step == 3 else "Next", exact=True).click()
    assert titles == ["Each small picture is a feature map", "The colours are numbers", "The numbers under a map",
                      "Click a neuron"]
    assert "maps" in targets[0] and "stats" in targets[2] and "tiles" in targets[3]
    assert page.locator("#guide").is_hidden() and page.locator(".guide-target").count() == 0
    # seen: a reload does not open it again; the Guide button does
    page.reload()
    page.wait_for_selector(".layer.loaded")
    page.wait_for_timeout(500)
    assert page.locator("#guide").is_hidden()
    page.get_by_role("button", name="Guide", exact=True).click()
    assert page.locator("#guide").is_visible()
    assert page.locator(".guide-count").inner_text() == "Guide · 1 of 4"
    page.keyboard.press("Escape")
    assert page.locator("#guide").is_hidden()
    page.console.check()


def test_the_guide_can_be_closed_at_once_and_never_moves_the_page(first_visit):
    page = first_visit
    page.goto("/?model=digits_classic")
    page.wait_for_selector("#guide:not([hidden])")
    assert page.locator("#guide").evaluate("e => getComputedStyle(e).position") == "fixed"
    page.get_by_role("button", name="Close the guide").click()
    assert page.locator("#guide").is_hidden()
    page.console.check()


def test_no_guide_for_a_presenter(first_visit):
    page = first_visit
    for url in ("/?model=digits_classic&projector=1", "/?model=digits_classic&lecture=1"):
        page.goto(url)
        page.wait_for_selector(".layer.loaded", state="attached")
        page.wait_for_timeout(500)
        assert page.locator("#guide").is_hidden(), url
    page.console.check()


def test_the_numbers_under_a_map_and_a_maps_channel_are_explained_on_hover(page):
    page.goto("/?model=digits_classic")
    page.wait_for_selector('.layer.loaded[data-node="relu1"]')
    stats = page.locator('.layer[data-node="relu1"] .stats')
    assert "zeros" in stats.inner_text()
    assert "smallest and the largest number" in stats.get_attribute("title")
    assert "ReLU switched those neurons off" in stats.get_attribute("title")
    tiles = page.locator('.layer[data-node="relu1"] canvas.tiles')
    tiles.hover(position={"x": 2, "y": 2})
    assert tiles.get_attribute("title").startswith("channel 0, row 0, column 0"), tiles.get_attribute("title")
    box = tiles.bounding_box()
    tiles.hover(position={"x": box["width"] - 3, "y": 5})  # the first row's last tile
    title = tiles.get_attribute("title")
    assert title.startswith("channel ") and not title.startswith("channel 0,"), title
    page.console.check()


def test_the_colour_legend_stands_right_above_the_maps(page):
    # not at the bottom of the sidebar (which projector mode folds away): between the lesson and the maps
    for url in ("/?model=digits_classic", "/?model=digits_classic&projector=1"):
        page.goto(url)
        page.wait_for_selector('.layer.loaded[data-node="conv1"]')
        legend = page.locator("#map-legend").bounding_box()
        maps = page.locator("#network").bounding_box()
        assert page.locator("#scale-legend").is_visible(), url
        assert 0 <= maps["y"] - (legend["y"] + legend["height"]) < 40, (url, legend, maps)
        assert "minimum" in page.locator("#scale-ends").inner_text()
    page.console.check()


def test_a_selected_neuron_is_connected_to_its_patch_on_every_input_channel(page):
    # CNN Explainer's hover view: conv2 (5×5 over pool1's 8 channels): 8 lines, each from the outlined patch of one
    # pool1 map to the neuron on conv2's map
    page.goto("/?model=digits_classic&filter=all&unit=conv2,3,4,4")
    page.wait_for_selector('.layer.loaded.in-field[data-node="pool1"]')
    page.wait_for_function("document.querySelectorAll('#connections line').length === 8")
    ends = page.evaluate("""() => {
      const strip = document.querySelector('#network').getBoundingClientRect();
      const sx = document.querySelector('#network').scrollLeft;
      const box = (sel) => { const r = document.querySelector(sel).getBoundingClientRect();
        return [r.left - strip.left + sx, r.top - strip.top, r.right - strip.left + sx, r.bottom - strip.top]; };
      return { lines: [...document.querySelectorAll('#connections line')].map((l) => [+l.getAttribute('x1'),
                 +l.getAttribute('y1'), +l.getAttribute('x2'), +l.getAttribute('y2'), l.dataset.from]),
               source: box('.layer[data-node="pool1"] canvas.tiles'),
               target: box('.layer[data-node="conv2"] canvas.tiles') };
    }""")
    s, t = ends["source"], ends["target"]
    assert sorted(line[4] for line in ends["lines"]) == [f"pool1:{c}" for c in range(8)]
    for x1, y1, x2, y2, _ in ends["lines"]:
        assert s[0] <= x1 <= s[2] and s[1] <= y1 <= s[3], (x1, y1, s)
        assert t[0] <= x2 <= t[2] and t[1] <= y2 <= t[3], (x2, y2, t)
    assert len({(round(x2), round(y2)) for _, _, x2, y2, _ in ends["lines"]}) == 1  # all meet at the one neuron
    # closing the detail removes them
    page.locator("#detail-close").click()
    page.wait_for_function("document.querySelectorAll('#connections line').length === 0")
    page.console.check()
