"""Bring your own model in a real browser: an ONNX upload is imported, then explored like a built-in model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.services.owners import hash_token
from tests.browser.conftest import as_function

pytestmark = pytest.mark.browser

onnx = pytest.importorskip("onnx", reason="onnx is not installed: upload tests skipped")
helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto

CANVAS_HAS_PICTURE = """canvas => {
  const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  const colours = new Set();
  for (let i = 0; i < data.length; i += 4) colours.add(data[i] * 65536 + data[i + 1] * 256 + data[i + 2]);
  return canvas.width > 1 && colours.size > 4;
}"""


def tiny_cnn(path: Path, extra_nodes: list | None = None) -> Path:
    """Conv 3×3 (4 maps) → ReLU → MaxPool 2 → Flatten → Gemm (5 classes) on 3×16×16 inputs, random weights."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b1"),
               numpy_helper.from_array(rng.normal(0, 0.3, (5, 4 * 8 * 8)).astype(np.float32), "w2"),
               numpy_helper.from_array(np.zeros(5, np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    output = "y"
    for node in extra_nodes or []:
        nodes.append(node)
        output = node.output[0]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])]
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "tiny_cnn", inputs, outputs, weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_onnx_upload_can_be_explored(page, tmp_path):
    model_file = tiny_cnn(tmp_path / "tiny.onnx")
    page.goto("/upload")
    page.set_input_files("#onnx-file", str(model_file))
    page.fill("#onnx-name", "Tiny test CNN")
    page.fill("#onnx-labels", "zero\none\n<i>two</i>\nthree\nfour")  # names are shown as text, never as HTML
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_selector("#upload-result .badge.ok")
    result = page.locator("#upload-result").inner_text()
    assert "Tiny test CNN" in result and "input 3×16×16" in result and "5 outputs" in result
    assert "1 × conv2d" in result and "1 × linear" in result
    page.locator("#uploaded").get_by_text("Tiny test CNN").wait_for()
    # explore it like a built-in model: a photo runs through it and every column draws its maps
    page.locator("#upload-result").get_by_role("link", name="Explore it").click()
    page.wait_for_url("**/?model=onnx-*")
    page.wait_for_function("window.cnnVis && window.cnnVis.firstFeatureMapMs !== null", timeout=30_000)
    assert page.locator("#model option:checked").inner_text().startswith("Tiny test CNN")
    page.wait_for_selector('.layer.loaded[data-node="conv"]')
    assert page.locator('.layer[data-node="conv"] canvas.tiles').evaluate(CANVAS_HAS_PICTURE)
    # input, conv, relu, pool, flat, fc (then the softmax's probabilities, a step of the lecture, not a node)
    assert page.locator(".layer[data-node]:not(.probabilities)").count() == 6
    labels = page.locator("#predictions .bar-label").all_inner_texts()
    assert sorted(labels) == ["<i>two</i>", "four", "one", "three", "zero"]
    page.get_by_role("button", name="How are these probabilities computed?").click()
    page.wait_for_selector("#detail-body .badge.ok")  # softmax recomputed from the scores matches the API
    assert "<i>two</i>" in page.locator("#detail-body").inner_text()
    assert page.locator("#detail i, #predictions i").count() == 0
    page.console.check()


def test_unsupported_operators_are_listed(page, tmp_path):
    extra = [helper.make_node("Celu", ["y"], ["e"], name="mystery_celu")]
    model_file = tiny_cnn(tmp_path / "celu.onnx", extra)
    page.goto("/upload")
    page.set_input_files("#onnx-file", str(model_file))
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_selector("#error:not([hidden])")
    assert "Celu" in page.locator("#error-text").inner_text()
    assert "mystery_celu" in page.locator("#upload-result").inner_text()


def test_a_damaged_upload_is_left_out_of_the_menus_marked_and_deletable(page, server_data_dir):
    page.goto("/upload")  # the page gives this browser its identity: the damaged model is its own
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "cnn_vis_owner")
    directory = server_data_dir / "models" / "onnx-00000000dead"  # as a full disk or a kill could leave it
    directory.mkdir(parents=True)
    (directory / "meta.json").write_text(json.dumps({"name": "Broken net", "owner": hash_token(token)}))
    (directory / "spec.json").write_text('{"input_shape": [3, 16')
    page.goto("/")  # the explorer's menu offers the models that work (the whole list failed before)
    page.wait_for_selector("#model option[value=digits_classic]", state="attached")
    assert not [o for o in page.locator("#model option").all_inner_texts() if "Broken" in o]
    page.goto("/upload")
    entry = page.locator("#uploaded .uploaded-model.unavailable")
    entry.wait_for()
    text = entry.inner_text()
    assert "Broken net" in text and "cannot be loaded" in text and "meta.json lacks the field" in text
    page.on("dialog", lambda dialog: dialog.accept())
    entry.get_by_role("button", name="Delete Broken net").click()
    entry.wait_for(state="detached")
    assert not directory.exists()
    page.console.check()



def test_an_upload_is_this_browsers_own(page, browser, server, tmp_path):
    """The page gives the browser an HttpOnly identity cookie; its upload is listed with a Delete button, and
    another browser (another student) does not see it at all."""
    model_file = tiny_cnn(tmp_path / "mine.onnx")
    page.goto("/upload")
    cookie = next(c for c in page.context.cookies() if c["name"] == "cnn_vis_owner")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert page.evaluate("document.cookie").find("cnn_vis_owner") == -1  # page scripts never see the token
    page.set_input_files("#onnx-file", str(model_file))
    page.fill("#onnx-name", "Only mine")
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_selector("#upload-result .badge.ok")
    mine = page.locator(".uploaded-model", has_text="Only mine")
    mine.wait_for()
    assert mine.get_by_role("button", name="Delete Only mine").is_visible() and "yours" in mine.inner_text()

    other = browser.new_context(base_url=server)
    try:
        theirs = other.new_page()
        theirs.goto("/upload")
        theirs.wait_for_function(as_function("!document.getElementById('uploaded').textContent.includes('Loading')"))
        assert "Only mine" not in theirs.locator("#uploaded").inner_text()
    finally:
        other.close()
    page.once("dialog", lambda dialog: dialog.accept())
    mine.get_by_role("button", name="Delete Only mine").click()
    page.locator(".uploaded-model", has_text="Only mine").wait_for(state="detached")
    page.console.check()


#: the element is on screen (a pixel of rounding allowed at the bottom)
IN_VIEW = """e => { const r = e.getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight + 1; }"""


def form_message(page):
    """The message the form shows just under its button (an alert: read out as it appears)."""
    return page.locator("#upload-form").get_by_role("alert")


def test_uploading_without_a_file_says_what_to_choose(page, tmp_path):
    """Issue 13: "Upload and import" with no file chosen did nothing visible (the hidden file input's `required`
    stopped the form with a browser bubble that cannot show on a hidden input). It says what to choose, under
    the button, and puts the focus on the file input; a result shown before does not stay on the page."""
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/api/models" in r.url else None)
    page.goto("/upload")
    page.get_by_role("button", name="Upload and import").click()
    message = form_message(page)
    message.wait_for()
    text = message.inner_text()
    assert "Choose a model file first" in text and ".onnx" in text and "external data" in text
    assert message.evaluate(IN_VIEW)  # seen at 1280×720 without scrolling, beside the button
    assert page.evaluate("document.activeElement.id") == "onnx-file"
    assert page.locator("#onnx-file").get_attribute("aria-invalid") == "true"
    assert not posts

    # a model imported, then the file taken away: the message again, and the old result is gone
    page.set_input_files("#onnx-file", str(tiny_cnn(tmp_path / "first.onnx")))
    form_message(page).wait_for(state="hidden")  # choosing a file takes the message away
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_selector("#upload-result .badge.ok")
    page.set_input_files("#onnx-file", [])
    page.get_by_role("button", name="Upload and import").click()
    form_message(page).wait_for()
    assert "Choose a model file first" in form_message(page).inner_text()
    assert page.locator("#upload-result").inner_text().strip() == ""
    page.console.check()


def test_a_file_that_is_not_onnx_is_named_and_not_sent(page, tmp_path):
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/api/models" in r.url else None)
    weights = tmp_path / "my_cnn.pt"
    weights.write_bytes(b"PK\x03\x04 a PyTorch checkpoint")
    page.goto("/upload")
    page.set_input_files("#onnx-file", str(weights))
    page.get_by_role("button", name="Upload and import").click()
    message = form_message(page)
    message.wait_for()
    text = message.inner_text()
    assert "my_cnn.pt" in text and "not an ONNX file" in text and "torch.onnx.export" in text
    assert page.evaluate("document.activeElement.id") == "onnx-file"
    assert not posts
    page.console.check()


def test_a_dropped_file_is_uploaded(page, tmp_path):
    """A file dropped on the box (not chosen through the file input) is sent: the empty input's `required` used to
    stop the form without a word."""
    data = list(tiny_cnn(tmp_path / "dropped.onnx").read_bytes())
    page.goto("/upload")
    transfer = page.evaluate_handle("""bytes => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([new Uint8Array(bytes)], "dropped.onnx"));
      return transfer;
    }""", data)
    page.locator("#onnx-drop").dispatch_event("drop", {"dataTransfer": transfer})
    assert "dropped.onnx" in page.locator("#onnx-chosen").inner_text()
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_selector("#upload-result .badge.ok")
    assert not form_message(page).count()
    page.console.check()
