"""The explorer's overview of the whole network: the graph as it is (branches side by side, skip connections as arcs),
each layer a volume to scale, a click selecting the layer in the strip, folded chains in "main layers" mode."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.browser

onnx = pytest.importorskip("onnx", reason="onnx is not installed: the overview tests are skipped")
helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto

LONG_NAME = "a_rather_long_block_output_relu_name"
BRANCHES = ["branch_1x1", "branch_3x3", "branch_pool"]


def resnet_inception_onnx() -> bytes:
    """A residual block, then an Inception-style block, on 3×16×16 images (random weights):
    Conv 3×3 (8) → ReLU → [Conv 3×3 → ReLU → Conv 3×3] + skip → ReLU → three branches side by side
    (Conv 1×1 (4) | Conv 3×3 (4) → ReLU | MaxPool 3×3 stride 1) → Concat (16) → GlobalAveragePool → Flatten → Gemm (5).
    """
    rng = np.random.default_rng(0)

    def weight(name: str, shape: tuple[int, ...], scale: float = 0.3):
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    same = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    weights = [weight("w_stem", (8, 3, 3, 3)), weight("w_a", (8, 8, 3, 3)), weight("w_b", (8, 8, 3, 3)),
               weight("w_1x1", (4, 8, 1, 1)), weight("w_3x3", (4, 8, 3, 3)), weight("w_fc", (5, 16), 0.1),
               numpy_helper.from_array(np.zeros(5, np.float32), "b_fc")]
    nodes = [helper.make_node("Conv", ["x", "w_stem"], ["stem"], name="stem", **same),
             helper.make_node("Relu", ["stem"], ["stem_relu"], name="stem_relu"),
             helper.make_node("Conv", ["stem_relu", "w_a"], ["res_a"], name="res_a", **same),
             helper.make_node("Relu", ["res_a"], ["res_a_relu"], name="res_a_relu"),
             helper.make_node("Conv", ["res_a_relu", "w_b"], ["res_b"], name="res_b", **same),
             helper.make_node("Add", ["stem_relu", "res_b"], ["skip"], name="skip_add"),
             helper.make_node("Relu", ["skip"], ["block_out"], name=LONG_NAME),
             helper.make_node("Conv", ["block_out", "w_1x1"], ["b1"], name="branch_1x1", kernel_shape=[1, 1]),
             helper.make_node("Conv", ["block_out", "w_3x3"], ["b2"], name="branch_3x3", **same),
             helper.make_node("Relu", ["b2"], ["b2r"], name="branch_3x3_relu"),
             helper.make_node("MaxPool", ["block_out"], ["b3"], name="branch_pool", strides=[1, 1], **same),
             helper.make_node("Concat", ["b1", "b2r", "b3"], ["cat"], name="concat", axis=1),
             helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "w_fc", "b_fc"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "resnet_inception",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def branchy_model(page) -> tuple[str, list[dict]]:
    """The model above, uploaded (the page's context owns it): (model id, its architecture's nodes)."""
    answer = page.request.post("/api/models", multipart={
        "file": {"name": "resnet-inception.onnx", "mimeType": "application/octet-stream",
                 "buffer": resnet_inception_onnx()},
        "name": "Residual and Inception blocks", "preprocessing": "unit"})
    assert answer.ok, answer.text()
    model_id = answer.json()["id"]
    nodes = page.request.get(f"/api/models/{model_id}").json()["architecture"]["nodes"]
    ids = [n["id"] for n in nodes]
    assert {"stem_relu", "skip_add", "concat", LONG_NAME, *BRANCHES} <= set(ids), ids
    return model_id, nodes


def node_ids(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.node)")


def box(page, selector: str) -> dict:
    """The bounding box of an SVG element, in the picture's coordinates (getBBox)."""
    return page.eval_on_selector(selector, "e => { const b = e.getBBox(); "
                                           "return {x: b.x, y: b.y, w: b.width, h: b.height}; }")


#: the strip's columns of graph nodes (not the probabilities after the output, a step of the strip but no node)
STRIP = "#network .layer[data-node]:not(.probabilities)"


def strip_ready(page, count: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('{STRIP}').length === {count}", timeout=60_000)


def test_overview_draws_the_graph_as_it_is(page, branchy_model):
    model_id, nodes = branchy_model
    page.goto(f"/?model={model_id}")
    # closed by default, and out of the URL; opening it is kept in the URL
    page.wait_for_selector(".ov-node", state="attached")
    assert page.eval_on_selector("#overview", "d => d.open") is False
    assert "overview=" not in page.url
    page.locator("#overview > summary").click()
    page.wait_for_function("location.search.includes('overview=1')")
    assert page.locator(".overview-scroll").is_visible()
    # three rows of branches are taller than the panel: they scroll inside it, the panel keeps its height
    inner, outer = page.eval_on_selector(".overview-scroll", "s => [s.scrollHeight, s.clientHeight]")
    assert inner > outer and outer < 300

    # one node per layer (a small network: every node), with the input
    expected = ["input", *[n["id"] for n in nodes]]
    assert node_ids(page, ".ov-node") == expected
    strip_ready(page, len(expected))
    assert node_ids(page, STRIP) == expected  # the strip shows the same layers

    # the skip connection: an edge from the block's input to the add, over the layers between, drawn as an arc
    skip = page.locator('path.ov-edge[data-from="stem_relu"][data-to="skip_add"]')
    assert skip.count() == 1
    assert int(skip.get_attribute("data-span")) > 1 and "ov-skip" in skip.get_attribute("class")
    assert "C" in skip.get_attribute("d")
    arc = box(page, 'path.ov-edge[data-from="stem_relu"][data-to="skip_add"]')
    skipped = box(page, '.ov-node[data-node="res_a_relu"] .ov-volume')
    assert arc["y"] < skipped["y"], (arc, skipped)  # it rises above the volumes it skips, not through them
    # and the main path into the add
    assert page.locator('path.ov-edge[data-from="res_b"][data-to="skip_add"]').count() == 1

    # the Inception-style branches: one column, three rows, every branch an edge into the concatenation
    cols = {page.get_attribute(f'.ov-node[data-node="{b}"]', "data-col") for b in BRANCHES}
    rows = [page.get_attribute(f'.ov-node[data-node="{b}"]', "data-row") for b in BRANCHES]
    assert len(cols) == 1 and len(set(rows)) == 3, (cols, rows)
    tops = [box(page, f'.ov-node[data-node="{b}"] .ov-frame')["y"] for b in BRANCHES]
    assert len(set(tops)) == 3
    sources = page.eval_on_selector_all('path.ov-edge[data-to="concat"]', "els => els.map(e => e.dataset.from)")
    assert sorted(sources) == sorted(["branch_1x1", "branch_3x3_relu", "branch_pool"])
    assert int(page.get_attribute('path.ov-edge[data-from="branch_1x1"][data-to="concat"]', "data-span")) > 1
    # every edge of the architecture is drawn, and none more
    edges = page.eval_on_selector_all("path.ov-edge", "els => els.map(e => `${e.dataset.from}>${e.dataset.to}`)")
    assert sorted(edges) == sorted(f"{i}>{n['id']}" for n in nodes for i in n["inputs"])

    # volumes to scale: the same 16×16 maps, 4 channels against 16: the same front face, a deeper volume
    thin, thick = (f'.ov-node[data-node="{n}"] .ov-volume' for n in ("branch_1x1", "concat"))
    assert box(page, thick)["w"] > box(page, thin)["w"] + 3
    front = "e => { const r = e.querySelector('rect'); return [r.getAttribute('width'), r.getAttribute('height')]; }"
    assert page.eval_on_selector(thin, front) == page.eval_on_selector(thick, front)
    assert page.locator('.ov-node[data-node="concat"] .ov-shape').text_content() == "16×16×16"
    assert page.locator('.ov-node[data-node="branch_1x1"] .ov-shape').text_content() == "4×16×16"

    # a long name is shortened with an ellipsis, the full one in the tooltip
    name = page.locator(f'.ov-node[data-node="{LONG_NAME}"] .ov-name').text_content()
    assert "…" in name and len(name) < len(LONG_NAME)
    assert LONG_NAME in page.locator(f'.ov-node[data-node="{LONG_NAME}"] > title').text_content()
    name_box = box(page, f'.ov-node[data-node="{LONG_NAME}"] .ov-name')
    frame_box = box(page, f'.ov-node[data-node="{LONG_NAME}"] .ov-frame')
    assert frame_box["x"] <= name_box["x"] and name_box["x"] + name_box["w"] <= frame_box["x"] + frame_box["w"]

    # a click selects the layer: in the URL, marked in the strip and here
    page.locator('.ov-node[data-node="res_a"]').click()
    page.wait_for_function("new URLSearchParams(location.search).get('layer') === 'res_a'")
    page.wait_for_selector('#network .layer.current[data-node="res_a"]')
    assert node_ids(page, ".ov-node.current") == ["res_a"]
    assert page.locator('path.ov-edge.active[data-to="res_a"]').count() == 1
    # stepping the strip moves the overview's mark with it
    page.locator('#toolbar [data-action="next"]').click()
    page.wait_for_selector('.ov-node.current[data-node="res_a_relu"]')
    assert node_ids(page, ".ov-node.current") == ["res_a_relu"]
    assert page.locator('#network .layer.current[data-node="res_a_relu"]').count() == 1
    # from the keyboard: the marked node is the panel's one tab stop, the arrows step and the focus follows
    assert node_ids(page, '.ov-node[tabindex="0"]') == ["res_a_relu"]
    page.locator('.ov-node[data-node="res_a_relu"]').focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_selector('#network .layer.current[data-node="res_b"]')
    assert page.evaluate("document.activeElement.dataset.node") == "res_b"
    assert node_ids(page, ".ov-node.current") == ["res_b"]
    # the Back button undoes the click (stepping replaces the URL's layer, a click pushes it)
    page.go_back()
    page.wait_for_function("!new URLSearchParams(location.search).get('layer')")
    assert page.eval_on_selector("#overview", "d => d.open") is True
    # closing it is kept too
    page.locator("#overview > summary").click()
    page.wait_for_function("!location.search.includes('overview=')")
    page.console.check()


def test_overview_folds_main_layers_like_the_strip_and_keeps_its_size(page, branchy_model):
    model_id, _ = branchy_model
    page.goto(f"/?model={model_id}&filter=main&overview=1")
    page.wait_for_selector(".ov-node")
    assert page.eval_on_selector("#overview", "d => d.open") is True
    shown = node_ids(page, ".ov-node")
    strip_ready(page, len(shown))
    assert node_ids(page, STRIP) == shown  # the overview folds exactly as the strip does
    assert "stem" not in shown and "stem_relu" in shown  # a convolution folds into its activation
    stem = page.locator('.ov-node[data-node="stem_relu"]')
    assert stem.get_attribute("data-folded") == "stem"
    assert "+ReLU" in stem.locator(".ov-ops").text_content()
    assert "stem → stem_relu" in stem.locator("title").text_content()
    assert "folded" in page.locator(".overview-note").text_content()
    # the skip still runs from the folded block's input to the add
    assert page.locator('path.ov-skip[data-from="stem_relu"][data-to="skip_add"]').count() == 1

    # playing moves the mark, never the panel's size nor the maps below it
    def geometry() -> list[float]:
        return page.evaluate("""() => {
          const o = document.querySelector('#overview').getBoundingClientRect();
          const n = document.querySelector('#network').getBoundingClientRect();
          return [o.height, n.top - o.bottom];
        }""")

    before = geometry()
    # the animator plays only while the strip is on screen: bring it there (at 720 lines the open overview and the
    # lesson push it low), and press Play without Playwright scrolling the page back to the button
    page.eval_on_selector("#network", "n => n.scrollIntoView({block: 'center'})")
    page.eval_on_selector('#toolbar [data-action="play"]', "b => b.click()")
    step = "parseInt(document.querySelector('[data-role=step-label]').textContent.split(' ')[1])"
    snapshot = f"""() => [{step}, ...[".ov-node.current", "#network .layer.current"].map(
      (s) => [...document.querySelectorAll(s)].map((e) => e.dataset.node))]"""
    seen, at = [], 1
    for _ in range(3):
        page.wait_for_function(f"{step} > {at}", timeout=30_000)
        at, current, strip = page.evaluate(snapshot)  # one snapshot: it is playing
        assert current == strip and len(current) == 1, (current, strip)
        seen.append(current[0])
        assert geometry() == before
    assert len(set(seen)) == 3, seen
    page.eval_on_selector('#toolbar [data-action="play"]', "b => b.click()")  # pause
    page.console.check()


def test_overview_of_a_big_network_scrolls_and_follows_the_step(page):
    page.goto("/?model=efficientnet_lite0&overview=1")
    page.wait_for_selector(".ov-node")
    nodes = page.request.get("/api/models/efficientnet_lite0").json()["architecture"]["nodes"]
    shown = node_ids(page, ".ov-node")
    assert 40 < len(shown) < len(nodes) / 2  # "automatic" folds a network this big, as the strip does
    assert page.locator(".ov-graph").get_attribute("data-mode") == "main"
    assert "folded" in page.locator(".overview-note").text_content()
    wide = page.eval_on_selector(".overview-scroll", "s => [s.scrollWidth, s.clientWidth, s.clientHeight]")
    assert wide[0] > 4 * wide[1] and wide[2] < 300  # one long row, scrolled sideways in a panel of fixed height
    # every skip connection (each add) is an edge over the layers it skips
    adds = [n for n in nodes if n["op"] == "add"]
    assert len(adds) >= 5
    for add in adds:
        spans = page.eval_on_selector_all(f'path.ov-edge[data-to="{add["id"]}"]',
                                          "els => els.map(e => +e.dataset.span)")
        assert len(spans) == 2 and max(spans) > 1, (add["id"], spans)
    strip_ready(page, len(shown))
    assert node_ids(page, STRIP) == shown
    # a node far to the right: the click selects it, the strip scrolls to it
    target = adds[-1]["id"]
    page.locator(f'.ov-node[data-node="{target}"]').click()
    page.wait_for_selector(f'#network .layer.current[data-node="{target}"]')
    page.wait_for_function("document.querySelector('#network').scrollLeft > 1000")
    # the last step (the probabilities after the output): the overview scrolls, itself, to the output node, marked
    page.locator(".overview-scroll").evaluate("s => s.scrollTo({left: 0})")
    page.locator('#toolbar [data-action="last"]').click()
    last = shown[-1]
    page.wait_for_selector(f'.ov-node.current[data-node="{last}"]')
    page.wait_for_function(f"""() => {{
      const s = document.querySelector('.overview-scroll').getBoundingClientRect();
      const n = document.querySelector('.ov-node[data-node="{last}"]').getBoundingClientRect();
      return n.left >= s.left && n.right <= s.right;
    }}""")
    page.console.check()


#: every label of every node of the overview as drawn on screen: its size (its font size times the picture's scale on
#: screen) and whether it lies within its node's frame (so that it never runs into a neighbour's)
OVERVIEW_LABELS = """() => [...document.querySelectorAll('.ov-node')].flatMap((g) => {
  const frame = g.querySelector('.ov-frame').getBoundingClientRect();
  return [...g.querySelectorAll('text')].map((t) => {
    const m = t.getScreenCTM(), r = t.getBoundingClientRect();
    return {node: g.dataset.node, text: t.textContent,
            size: parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b),
            inside: r.left >= frame.left - 0.5 && r.right <= frame.right + 0.5};
  });
})"""


@pytest.mark.parametrize("model", ["branchy", "efficientnet_lite0"])
def test_overview_labels_read_at_least_12_px_in_normal_mode(page, request, model):
    # a student at the screen's normal size (not projector mode, which draws them at 18 px) reads them at 12 px or more
    model_id = request.getfixturevalue("branchy_model")[0] if model == "branchy" else model
    page.goto(f"/?model={model_id}&overview=1")
    page.wait_for_selector(".ov-node")
    assert page.evaluate("document.documentElement.classList.contains('projector')") is False
    labels = page.evaluate(OVERVIEW_LABELS)
    assert len(labels) == 3 * page.locator(".ov-node").count()
    small = [(round(label["size"], 2), label["node"], label["text"]) for label in labels if label["size"] < 12 - 0.05]
    assert not small, small[:20]
    # still readable: every name, op line and shape fits its node's slot, a long name shortened (the full one in the
    # node's tooltip)
    outside = [(label["node"], label["text"]) for label in labels if not label["inside"]]
    assert not outside, outside[:20]
    if model == "branchy":
        name = page.locator(f'.ov-node[data-node="{LONG_NAME}"] .ov-name').text_content()
        assert "…" in name and LONG_NAME in page.locator(f'.ov-node[data-node="{LONG_NAME}"] > title').text_content()
    page.console.check()
