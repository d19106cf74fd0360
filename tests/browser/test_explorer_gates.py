"""The explorer on a squeeze-excite model in a real browser: a unit after the gate keeps its local outline on the
earlier layers of its main path, and the detail view's receptive field says a global gate also scales it."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.browser


def se_onnx() -> bytes:
    """Conv 3×3 pad 1 (4 maps) → ReLU → squeeze-excite (GlobalAveragePool, Conv 1×1 to 2, ReLU, Conv 1×1 to 4,
    HardSigmoid, Mul) → Conv 1×1 → GlobalAveragePool → Flatten → Gemm (3 classes), on 3×16×16 images."""
    onnx = pytest.importorskip("onnx", reason="onnx is not installed: the squeeze-excite explorer test is skipped")
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    weights = [weight("w1", 4, 3, 3, 3), weight("wr", 2, 4, 1, 1), weight("we", 4, 2, 1, 1),
               weight("wp", 4, 4, 1, 1), weight("wfc", 3, 4), weight("bfc", 3)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["s"], name="squeeze"),
             helper.make_node("Conv", ["s", "wr"], ["s1"], name="reduce", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["s1"], ["s2"], name="se_relu"),
             helper.make_node("Conv", ["s2", "we"], ["s3"], name="expand", kernel_shape=[1, 1]),
             helper.make_node("HardSigmoid", ["s3"], ["g"], name="gate"),
             helper.make_node("Mul", ["r", "g"], ["m"], name="excite"),
             helper.make_node("Conv", ["m", "wp"], ["p"], name="project", kernel_shape=[1, 1]),
             helper.make_node("GlobalAveragePool", ["p"], ["h"], name="pool"),
             helper.make_node("Flatten", ["h"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "squeeze_excite",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_gated_unit_keeps_its_outline_and_shows_the_gate(page):
    answer = page.request.post("/api/models", multipart={
        "file": {"name": "squeeze-excite.onnx", "mimeType": "application/octet-stream", "buffer": se_onnx()},
        "name": "Squeeze-excite", "preprocessing": "unit"})
    assert answer.ok, answer.text()
    model_id = answer.json()["id"]
    fields = {n["id"]: n["receptive_field"] for n in
              page.request.get(f"/api/models/{model_id}").json()["architecture"]["nodes"]}
    assert fields["project"]["status"] == "local" and fields["project"]["modulated_at"] == ["excite"]
    # project (1×1 after the 3×3 conv): r 3, S 1, P 1; unit (5, 6) reads input rows 4..6 and columns 5..7
    page.goto(f"/?model={model_id}&sample=cat.jpg&filter=all&unit=project,1,5,6")
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("document.querySelector('#detail-body').textContent.includes('Receptive field')",
                           timeout=30_000)
    body = page.locator("#detail-body").inner_text()
    assert "3×3 patch of the input, rows 4…6 and columns 5…7" in body
    assert "Besides this box, a global gate modulates the unit (it joins at 'excite')" in body  # the API's note
    badge = page.locator("#detail-body .gate-badge")
    assert badge.inner_text() == "also scaled by a global gate (squeeze-excite at excite)"
    assert "same at every position" in badge.get_attribute("title")
    # outlined on the main path's layers, not on the gate's branch (its units are global: no box to draw)
    page.wait_for_selector('.layer.in-field[data-node="relu"]', timeout=20_000)
    outlined = {e.get_attribute("data-node") for e in page.locator(".layer.in-field").all()}
    assert {"input", "conv", "relu", "excite", "project"} <= outlined
    assert not outlined & {"reduce", "se_relu", "expand", "gate", "pool", "fc"}
    page.console.check()
