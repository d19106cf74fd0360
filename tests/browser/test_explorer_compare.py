"""Issue 13: two inputs side by side in the explorer. "Compare with…" runs a second input through the same model; for
the selected layer the panel shows A's maps, B's maps and the API's difference A − B (white where they are equal),
the API's summary numbers, and the channels that changed most (a click explains one); the comparison is kept in the
address (a reload restores it), clearing removes it, and after a refusal nothing of the last comparison stays."""

from __future__ import annotations

import io
import json
import re
import urllib.request

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CENTRE = [247, 247, 247]  # the blue-red scale's middle colour (colormap.js STOPS.rdbu): white, for 0
LAYER = "conv1"
SUMMARY = ["cosine_similarity", "relative_change", "max_abs", "mean_abs"]
PANEL = "#compare-panel"

# the difference canvas read back: {width, height, rgba (flat)}
READ_DIFFERENCE = """() => {
  const c = document.querySelector('#compare-panel [data-side=difference] canvas.compare-maps');
  const rgba = Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
  return {width: c.width, height: c.height, rgba};
}"""


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def run_ids(page) -> tuple[str, str]:
    """Runs A and B, from the pictures the panel shows (GET /api/runs/{run}/input.png)."""
    sources = page.eval_on_selector_all("#compare-panel img.compare-input", "images => images.map(i => i.src)")
    ids = [re.search(r"/api/runs/([0-9a-f]{32})/input\.png", s).group(1) for s in sources]
    assert len(ids) == 2
    return ids[0], ids[1]


def summary_shown(page) -> dict[str, tuple[str, str]]:
    """Each summary number as the panel shows it: {field: (data-value, text)}."""
    return page.eval_on_selector_all(
        "#compare-panel dd[data-field]",
        "items => Object.fromEntries(items.map(d => [d.dataset.field, [d.dataset.value, d.textContent]]))")


def wait_for_comparison(page, node: str = LAYER) -> None:
    page.wait_for_selector(f'#compare-body[data-node="{node}"][aria-busy=false] dd[data-field=cosine_similarity]',
                           timeout=60_000)
    page.wait_for_function("[...document.querySelectorAll('#compare-panel img.compare-input')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")


def test_compare_two_digits_layer_by_layer(page, server):
    page.goto(f"/?model=digits_classic&layer={LAYER}")
    page.wait_for_selector(f'.layer.loaded[data-node="{LAYER}"]', timeout=60_000)
    assert page.is_hidden("#compare-panel")
    page.select_option("#compare", "digit-7.png")
    wait_for_comparison(page)
    assert "compare=digit-7.png" in page.url

    # the three panels: A's and B's pictures as the model sees them, and three sets of maps
    run, other = run_ids(page)
    assert run != other
    sides = page.eval_on_selector_all("#compare-panel .compare-side", "s => s.map(e => e.dataset.side)")
    assert sides == ["a", "b", "difference"]
    assert page.eval_on_selector_all(f"{PANEL} canvas.compare-maps", "cs => cs.map(c => c.width > 1)") == [True] * 3
    assert page.eval_on_selector_all(f"{PANEL} img.compare-input", "is => is.map(i => i.naturalWidth)") == [28, 28]
    legend = page.inner_text("#compare-panel [data-side=difference] .compare-key")
    assert "B larger" in legend and "A larger" in legend and "white" in legend

    # the numbers are the API's, as it answers for these two runs
    base = f"{server}/api/runs/{run}/compare/{other}/nodes/{LAYER}"
    answer = json.loads(fetch(f"{base}.json"))
    shown = summary_shown(page)
    assert sorted(shown) == sorted(SUMMARY)
    for name in SUMMARY:
        assert float(shown[name][0]) == answer[name], name
    assert abs(float(shown["cosine_similarity"][1]) - answer["cosine_similarity"]) <= 0.0005
    assert abs(float(shown["relative_change"][1].rstrip("%")) - 100 * answer["relative_change"]) <= 0.05
    channels = page.eval_on_selector_all(f"{PANEL} .compare-channel", "bs => bs.map(b => Number(b.dataset.channel))")
    assert channels == [c["channel"] for c in answer["top_channels"]][:5]

    # A − B painted white exactly where the API's difference is 0, and not white where it is not
    d = np.load(io.BytesIO(fetch(f"{base}.npy")))[0]
    got = page.evaluate(READ_DIFFERENCE)
    image = np.array(got["rgba"], dtype=np.uint8).reshape(got["height"], got["width"], 4)[:, :, :3]
    layout = answer["layout"]
    for c in range(layout["tiles"]):
        row, column = divmod(c, layout["columns"])
        top, left = row * (layout["tile_height"] + layout["gap"]), column * (layout["tile_width"] + layout["gap"])
        tile = image[top:top + layout["tile_height"], left:left + layout["tile_width"]]
        white = np.all(tile == CENTRE, axis=-1)
        assert np.all(white[d[c] == 0]), f"channel {c}: a zero difference not painted white"
        assert not np.any(white[np.abs(d[c]) > 0.02 * np.abs(d[c]).max()]), f"channel {c}: a difference painted white"

    # a channel that changed most opens its neuron (where A and B differ most) in the operation detail
    first = answer["top_channels"][0]
    page.click("#compare-panel .compare-channel >> nth=0")
    page.wait_for_selector("#detail:not([hidden])")
    row, column = first["largest_at"]
    assert f"unit={LAYER}%2C{first['channel']}%2C{row}%2C{column}" in page.url

    # the address keeps the comparison: a reload shows it again, with the same numbers
    page.reload()
    wait_for_comparison(page)
    assert page.input_value("#compare") == "digit-7.png"
    assert summary_shown(page) == shown

    # clearing removes the panel and the key from the address
    page.click("#compare-clear")
    page.wait_for_selector("#compare-panel", state="hidden")
    assert "compare=" not in page.url and page.input_value("#compare") == ""
    assert page.eval_on_selector_all("#compare-panel canvas, #compare-panel dd", "e => e.length") == 0

    # a refusal (a digit index past the 10,000 shipped) leaves its message and nothing of the last comparison
    page.select_option("#compare", "8014")
    wait_for_comparison(page)
    page.evaluate("""() => {
      history.pushState(null, '', location.pathname + location.search.replace(/compare=\\d+/, 'compare=12345'));
      dispatchEvent(new PopStateEvent('popstate'));
    }""")
    page.wait_for_selector("#error:not([hidden])")
    assert "12345" in page.inner_text("#error-text")
    page.wait_for_selector("#compare-panel .compare-message")
    assert page.eval_on_selector_all(f"{PANEL} canvas, {PANEL} dd, {PANEL} img", "e => e.length") == 0
    page.console.check(ignore=["422"])
