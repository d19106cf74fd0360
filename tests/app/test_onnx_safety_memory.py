"""The importer's text check reads text, not tensors: walking a big model's fields must not copy its weights
(``ListFields()`` hands back every bytes field as a new bytes object: VGG-16's largest tensor is 392 MiB), and it
still finds a damaged name wherever it sits."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from app.importers.onnx_safety import first_undecodable_text

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

MIB = 1024 * 1024


def model_with_weights(values: int, name: str = "conv") -> onnx.ModelProto:
    """Conv -> Flatten -> Gemm whose Gemm holds ``values`` float32 weights (kept as raw_data, as exporters do)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w")
    fw = numpy_helper.from_array(rng.standard_normal((values // 18, 18)).astype(np.float32), "fw")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name=name, kernel_shape=[3, 3]),
             helper.make_node("Flatten", ["c"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, values // 18])], [w, fw])
    return onnx.load_model_from_string(helper.make_model(graph).SerializeToString())  # parsed, as an upload is


def peak_python_bytes(action) -> int:
    """The most memory Python objects took at once above the start while ``action()`` ran (tracemalloc)."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_text_check_copies_no_tensor():
    model = model_with_weights(20 * MIB // 4)  # 20 MiB of weights
    assert first_undecodable_text(model) is None
    assert peak_python_bytes(lambda: first_undecodable_text(model)) < MIB


def test_the_measure_sees_a_copy_of_the_weights():
    """The control: ListFields(), as the check walked messages before, makes a 20 MiB bytes object, and the
    measure above catches it."""
    model = model_with_weights(20 * MIB // 4)
    tensor = model.graph.initializer[1]
    assert peak_python_bytes(lambda: [value for _, value in tensor.ListFields()]) >= 20 * MIB


@pytest.mark.parametrize("where", ["node name", "initializer name", "value info name"])
def test_a_name_that_is_not_utf8_is_still_found(where):
    names = {"node name": b"QQconvQQ", "initializer name": b"QQfwQQ", "value info name": b"QQyQQ"}
    marker = names[where]
    model = model_with_weights(360, name="QQconvQQ")
    model.graph.initializer[1].name = "QQfwQQ"
    model.graph.node[2].input[1] = "QQfwQQ"
    model.graph.output[0].name = "QQyQQ"
    model.graph.node[2].output[0] = "QQyQQ"
    data = model.SerializeToString()
    damaged = data.replace(marker, b"\xff\xfe" + marker[2:])
    assert damaged != data
    assert first_undecodable_text(onnx.load_model_from_string(data)) is None
    found = first_undecodable_text(onnx.load_model_from_string(damaged))
    assert found in ("name", "input", "output"), f"{where}: found {found!r}"  # the node's reference comes first
