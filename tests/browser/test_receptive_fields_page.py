"""The receptive-fields page in a real browser: per-layer r, S, P for a model and for a typed graph spec."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.browser


def row_cells(page, node: str) -> list[str]:
    return page.locator(f'#rf-table tr[data-node="{node}"] td').all_inner_texts()


def test_builtin_model_table_and_picture(page):
    page.goto("/receptive-fields")
    page.wait_for_selector('#rf-table tr[data-node="stem.conv"]')
    # EfficientNet-Lite0's stem: 3×3 convolution, stride 2, TF "same" padding (0 before): r 3, S 2, P 0
    cells = row_cells(page, "stem.conv")
    assert cells[4:9] == ["3", "2", "3", "2", "0"]
    assert page.locator("#field-text").inner_text().startswith("input")
    page.locator("#picture-controls").get_by_role("button", name="Next ▶").click()
    page.wait_for_function("document.querySelector('#field-text').textContent.startsWith('stem.conv')")
    assert "r = 3, S = 2, P = 0" in page.locator("#field-text").inner_text()
    assert "layer=stem.conv" in page.url
    assert page.locator('#rf-table tr.selected[data-node="stem.conv"]').count() == 1
    assert page.locator("#growth rect").count() > 5
    page.console.check()


# Hand-worked (Araujo et al. recurrences, r_l = r_{l-1} + (k_l − 1)·S_{l-1}, S_l = S_{l-1}·s_l,
# P_l = P_{l-1} + p_l·S_{l-1}):
#   conv 3×3 s1 p1: r = 1 + 2·1 = 3,  S = 1, P = 0 + 1·1 = 1
#   pool 2×2 s2:    r = 3 + 1·1 = 4,  S = 2, P = 1
#   conv 3×3 s1 p0: r = 4 + 2·2 = 8,  S = 2, P = 1
SPEC = {"input_shape": [1, 16, 16], "nodes": [
    {"id": "c1", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
    {"id": "p1", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
    {"id": "c2", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
]}


def test_typed_spec_is_analysed(page):
    page.goto("/receptive-fields")
    page.wait_for_selector('#rf-table tr[data-node="stem.conv"]')
    page.get_by_label("a graph spec I type or paste").check()
    page.locator("#spec").fill(json.dumps(SPEC))
    page.get_by_role("button", name="Analyse").click()
    page.wait_for_selector('#rf-table tr[data-node="c2"]')
    assert row_cells(page, "c1")[6:9] == ["3", "1", "1"]
    assert row_cells(page, "p1")[6:9] == ["4", "2", "1"]
    assert row_cells(page, "c2")[6:9] == ["8", "2", "1"]
    assert "source=spec" in page.url
    # the link restores the same view
    page.goto(page.url)
    page.wait_for_selector('#rf-table tr[data-node="c2"]')
    page.locator('#rf-table tr[data-node="c2"]').click()
    page.wait_for_function("document.querySelector('#field-text').textContent.startsWith('c2')")
    # centre neuron of c2 (6×6 output): index 2; box 2·2 − 1 = 3 … 3 + 8 − 1 = 10
    assert "rows 3…10 and columns 3…10" in page.locator("#field-text").inner_text()
    page.console.check()


def test_a_broken_spec_shows_the_api_message(page):
    page.goto("/receptive-fields?source=spec")
    page.wait_for_selector('#rf-table tr[data-node="conv1"]')
    bad = {"input_shape": [1, 8, 8], "nodes": [{"id": "big", "op": "conv2d", "out_channels": 1, "kernel_size": 11}]}
    page.locator("#spec").fill(json.dumps(bad))
    page.get_by_role("button", name="Analyse").click()
    page.wait_for_selector("#error:not([hidden])")
    assert "big" in page.locator("#error-text").inner_text()
    page.locator("#spec").fill("{not json")
    page.get_by_role("button", name="Analyse").click()
    page.wait_for_function("document.querySelector('#error-text').textContent.includes('not valid JSON')")


# A squeeze-excite block (tests/engine/test_receptive_field_gates.py works it out): stem 3×3 s2 p1 (r 3, S 2, P 1),
# depthwise 5×5 p2 (r 3 + 4·2 = 11, S 2, P 1 + 2·2 = 5); the gate, one value per channel from the whole input,
# scales the depthwise output: the product keeps r 11, S 2, P 5 and is marked.
SE_SPEC = {"input_shape": [3, 20, 20], "nodes": [
    {"id": "stem", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1},
    {"id": "dw", "op": "conv2d", "out_channels": 8, "kernel_size": 5, "padding": 2, "groups": 8},
    {"id": "act", "op": "relu"},
    {"id": "se.pool", "op": "global_avg_pool"},
    {"id": "se.view", "op": "reshape", "shape": [8, 1, 1]},
    {"id": "se.fc1", "op": "conv2d", "out_channels": 2, "kernel_size": 1},
    {"id": "se.act", "op": "relu"},
    {"id": "se.fc2", "op": "conv2d", "out_channels": 8, "kernel_size": 1},
    {"id": "se.gate", "op": "hardsigmoid"},
    {"id": "se.mul", "op": "mul", "inputs": ["act", "se.gate"]},
    {"id": "project", "op": "conv2d", "out_channels": 4, "kernel_size": 1},
]}


def test_a_squeeze_excite_gate_keeps_the_outline_with_a_badge(page):
    page.goto("/receptive-fields?source=spec")
    page.wait_for_selector('#rf-table tr[data-node="conv1"]')
    page.locator("#spec").fill(json.dumps(SE_SPEC))
    page.get_by_role("button", name="Analyse").click()
    page.wait_for_selector('#rf-table tr[data-node="project"]')
    badge = '#rf-table tr[data-node="{}"] .gate-badge'
    assert page.locator(badge.format("act")).count() == 0
    assert page.locator(badge.format("se.gate")).count() == 0 and row_cells(page, "se.gate")[6] == "global"
    for node in ["se.mul", "project"]:
        cells = row_cells(page, node)
        assert cells[6].startswith("11") and cells[7:9] == ["2", "5"], (node, cells)
        title = page.locator(badge.format(node)).get_attribute("title")
        assert title.startswith("also scaled by a global gate (squeeze-excite at se.mul)"), title
    page.locator('#rf-table tr[data-node="project"]').click()
    page.wait_for_function("document.querySelector('#field-text').textContent.startsWith('project')")
    text = page.locator("#field-text").inner_text()
    assert "r = 11, S = 2, P = 5" in text and "rows" in text  # drawn as a local field
    assert "also scaled by a global gate (squeeze-excite at se.mul)" in text
    page.locator('#rf-table tr[data-node="act"]').click()
    page.wait_for_function("document.querySelector('#field-text').textContent.startsWith('act')")
    assert "global gate" not in page.locator("#field-text").inner_text()
    # the product is a step of the picture of its own (where the gate joins), right after the gate's global branch
    page.locator('#rf-table tr[data-node="se.pool"]').click()
    page.wait_for_function("document.querySelector('#field-text').textContent.startsWith('se.pool')")
    assert "sees the whole input" in page.locator("#field-text").inner_text()
    page.locator("#picture-controls").get_by_role("button", name="Next ▶").click()
    page.wait_for_function("document.querySelector('#field-text').textContent.startsWith('se.mul')")
    assert "squeeze-excite at se.mul" in page.locator("#field-text").inner_text()
    page.console.check()


# A ConvNeXt-style channels-last block: conv 3×3 s2 p1 (r 3, S 2, P 1) on 20×20 gives 10×10 maps, which are
# transposed to (H, W, C), normalised and multiplied per position, then transposed back before a 3×3 conv
# (r 3 + 2·2 = 7, S 2, P 1 + 2 = 3). Between the transposes the positions are axes 0 and 1, not the last two.
CHANNELS_LAST_SPEC = {"input_shape": [3, 20, 20], "nodes": [
    {"id": "c1", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    {"id": "to_last", "op": "transpose", "perm": [1, 2, 0]},
    {"id": "ln", "op": "layer_norm", "normalized_shape": [4]},
    {"id": "w", "op": "constant", "shape": [4, 8], "inputs": []},
    {"id": "mm", "op": "matmul", "inputs": ["ln", "w"]},
    {"id": "act", "op": "gelu"},
    {"id": "to_first", "op": "transpose", "perm": [2, 0, 1]},
    {"id": "c2", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
]}


def test_a_channels_last_block_is_drawn_at_its_positions(page):
    page.goto("/receptive-fields?source=spec")
    page.wait_for_selector('#rf-table tr[data-node="conv1"]')
    page.locator("#spec").fill(json.dumps(CHANNELS_LAST_SPEC))
    page.get_by_role("button", name="Analyse").click()
    page.wait_for_selector('#rf-table tr[data-node="c2"]')
    assert row_cells(page, "act")[6:9] == ["3", "2", "1"]
    assert row_cells(page, "c2")[6:9] == ["7", "2", "3"]
    page.locator('#rf-table tr[data-node="act"]').click()
    page.wait_for_function("document.querySelector('#field-text').textContent.startsWith('act')")
    # act is (10, 10, 8): its centre neuron is at position (4, 4), box 4·2 − 1 = 7 … 9 (not column 3 of 8 channels)
    assert "rows 7…9 and columns 7…9" in page.locator("#field-text").inner_text()
    page.console.check()


def analyse(page, spec: dict | str) -> None:
    page.locator("#spec").fill(spec if isinstance(spec, str) else json.dumps(spec))
    page.get_by_role("button", name="Analyse").click()


#: the canvas has nothing drawn on it (every pixel transparent)
BLANK_CANVAS = """() => {
  const c = document.querySelector('#field-canvas');
  return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every((v, i) => i % 4 !== 3 || v === 0);
}"""


def assert_nothing_stale(page) -> None:
    assert page.locator("#rf-table tbody tr").count() == 0
    assert page.locator("#field-text").inner_text() == ""
    assert page.locator("#picture-caption").inner_text() == ""
    assert page.locator("#totals").inner_text() == ""
    assert page.locator("#growth > *").count() == 0
    assert page.evaluate(BLANK_CANVAS)


def test_an_error_after_a_good_spec_leaves_nothing_stale(page):
    page.goto("/receptive-fields?source=spec")
    page.wait_for_selector('#rf-table tr[data-node="conv1"]')
    analyse(page, SPEC)
    page.wait_for_selector('#rf-table tr[data-node="c2"]')
    page.wait_for_function("document.querySelector('#field-text').textContent !== ''")
    assert page.locator("#growth rect").count() == 4
    assert not page.evaluate(BLANK_CANVAS)
    # the API refuses this one (an 11×11 kernel on an 8×8 input): the c1/p1/c2 table, picture and chart go
    bad = {"input_shape": [1, 8, 8], "nodes": [{"id": "big", "op": "conv2d", "out_channels": 1, "kernel_size": 11}]}
    analyse(page, bad)
    page.wait_for_selector("#error:not([hidden])")
    assert "big" in page.locator("#error-text").inner_text()
    assert_nothing_stale(page)  # cleared before the error is shown
    # a good spec again, then one that is not even JSON (refused by the page itself): the same
    analyse(page, SPEC)
    page.wait_for_selector('#rf-table tr[data-node="c2"]')
    assert page.locator("#error").is_hidden()
    analyse(page, "{not json")
    page.wait_for_function("document.querySelector('#error-text').textContent.includes('not valid JSON')")
    assert page.locator("#error").is_visible()
    assert_nothing_stale(page)
    page.console.check(ignore=["status of 422"])


def tick_labels(page, axis: str) -> list[str]:
    return page.locator(f"#growth text.{axis}-tick").all_text_contents()


def tick_y(page, axis: str, label: str) -> float:
    return float(page.locator(f"#growth text.{axis}-tick", has_text=re.compile(f"^{label}$")).get_attribute("y"))


def test_the_growth_chart_has_numbered_axes(page):
    page.goto("/receptive-fields?source=spec")
    page.wait_for_selector('#rf-table tr[data-node="conv1"]')
    analyse(page, SPEC)
    page.wait_for_selector('#rf-table tr[data-node="c2"]')
    page.wait_for_function("document.querySelectorAll('#growth rect').length === 4")
    # y: r in input pixels, from 0 past the 16-pixel input in round steps; x: the table's row number of each step
    # (input, c1, p1, c2 are rows 0 to 3)
    assert tick_labels(page, "y") == ["0", "5", "10", "15", "20"]
    assert tick_labels(page, "x") == ["0", "1", "2", "3"]
    assert "r (input pixels)" in page.locator("#growth").text_content()
    ys = [tick_y(page, "y", label) for label in ["0", "5", "10", "15", "20"]]
    assert ys == sorted(ys, reverse=True)  # larger r higher up
    # c2's bar (r = 8) ends between the 5 and the 10 lines; the text is 14 px
    bar = page.locator("#growth rect").nth(3)
    assert "c2: r = 8" in bar.locator("title").text_content()
    top = float(bar.get_attribute("y"))
    assert tick_y(page, "y", "10") - 5 < top < tick_y(page, "y", "5") - 5
    sizes = page.locator("#growth text").evaluate_all("els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
    assert min(sizes) >= 14, sizes
    page.console.check()


#: per input pixel of the 28×28 digit (sampled at the pixel's centre on the canvas, at the first step, where the
#: whole canvas is the input): how many are bright and how many dark
PIXEL_COUNTS = """() => {
  const c = document.querySelector('#field-canvas');
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const s = c.width / 28;
  let bright = 0, dark = 0;
  for (let r = 0; r < 28; r += 1) for (let col = 0; col < 28; col += 1) {
    const i = (Math.floor((r + 0.5) * s) * c.width + Math.floor((col + 0.5) * s)) * 4;
    const v = (data[i] + data[i + 1] + data[i + 2]) / 3;
    if (v > 150) bright += 1; else if (v < 60) dark += 1;
  }
  return { bright, dark };
}"""


def test_a_digit_model_draws_the_field_on_a_digit(page):
    page.goto("/receptive-fields?model=digits_classic")
    page.wait_for_function("document.querySelector('#field-text').textContent.startsWith('input')")
    assert "/api/digits/" in page.locator("#field-canvas").get_attribute("data-background")
    assert "MNIST digit" in page.locator("#picture-caption").inner_text()
    counts = page.evaluate(PIXEL_COUNTS)
    # an empty grid is one dark colour everywhere but the centre pixel; a digit has a stroke of bright pixels
    assert counts["bright"] >= 30 and counts["dark"] >= 300, counts
    labels = tick_labels(page, "x") + tick_labels(page, "y")
    assert tick_labels(page, "x")[0] == "0" and all(t.isdigit() for t in labels), labels
    page.console.check()
