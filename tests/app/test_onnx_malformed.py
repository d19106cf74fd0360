"""Uploads no exporter writes: malformed attributes or inputs, and constants worked out at import that would take
gigabytes. Each is a clear import error (a 422 over the API), never a crash (500) or a huge allocation. Also the
nearest Resize settings that pick the same pixels as the engine's ``upsample``, against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper

from app.importers import OnnxImportError, import_onnx
from engine.graph import Graph
from tests.app.onnx_models import run_onnxruntime

SHAPE = [1, 2, 3, 4]


def raw_model(nodes, consts: dict[str, np.ndarray], opset: int = 13, output: str = "y") -> bytes:
    """An unchecked model (the checker would refuse some of these, as a careless exporter would not)."""
    graph = helper.make_graph(nodes, "raw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def resize(scales, **attrs) -> bytes:
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"} | attrs
    return raw_model([helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", **attrs)],
                     {"s": np.array(scales, np.float32)})


MALFORMED = {
    "an infinite scale": (resize([1, 1, np.inf, 2]), "malformed"),
    "a NaN scale": (resize([1, 1, np.nan, 2]), "malformed"),
    "Upsample-7 with an infinite scale": (raw_model(
        [helper.make_node("Upsample", ["x"], ["y"], name="up", scales=[1.0, 1.0, float("inf"), 2.0])], {}, opset=7),
        "malformed"),
    "Pad-18 with axes but too few pads": (raw_model(
        [helper.make_node("Pad", ["x", "p", "", "a"], ["y"], name="pad")],
        {"p": np.array([1, 1], np.int64), "a": np.array([2, 3], np.int64)}, opset=18), "Pad node 'pad'"),
    "a ConstantOfShape of negative size": (raw_model(
        [helper.make_node("ConstantOfShape", ["shape"], ["c"], name="c"),
         helper.make_node("Add", ["x", "c"], ["y"], name="add")], {"shape": np.array([-1], np.int64)}),
        "negative size"),
    "a ConstantOfShape of 400 million values": (raw_model(
        [helper.make_node("ConstantOfShape", ["shape"], ["c"], name="c"),
         helper.make_node("Add", ["x", "c"], ["y"], name="add")], {"shape": np.array([20000, 20000], np.int64)}),
        "400,000,000 values"),
    "a Transpose with a repeated axis": (raw_model(
        [helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[0, 0, 1, 2])], {}), "Transpose node 't'"),
    "scales and sizes both given": (raw_model(
        [helper.make_node("Resize", ["x", "", "s", "z"], ["y"], name="up", mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
        {"s": np.array([1, 1, 2, 2], np.float32), "z": np.array([1, 2, 6, 8], np.int64)}), "both scales and sizes"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_models_are_import_errors(case):
    data, message = MALFORMED[case]
    with pytest.raises(OnnxImportError, match=message):
        import_onnx(data)


@pytest.mark.parametrize("coordinates", ["half_pixel", "pytorch_half_pixel"])
@pytest.mark.parametrize("rounding", ["round_prefer_floor", "round_prefer_ceil"])
@pytest.mark.parametrize("factor", [2, 3, 5])
def test_half_pixel_nearest_resize_picks_the_engines_pixels(coordinates, rounding, factor):
    """ONNX's default nearest Resize (half-pixel centres, rounding half down) picks x[floor(i / s)] for whole
    factors: imported as upsample, and equal to onnxruntime's output."""
    data = resize([1, 1, factor, factor], coordinate_transformation_mode=coordinates, nearest_mode=rounding)
    spec, params, _ = import_onnx(data)
    assert [n["op"] for n in spec["nodes"]] == ["upsample"]
    x = np.random.default_rng(factor).standard_normal(SHAPE).astype(np.float32)
    np.testing.assert_array_equal(Graph(spec).forward(x, params).output, run_onnxruntime(data, x))


def test_half_pixel_with_floor_rounding_is_still_refused():
    """Negative control: half-pixel centres rounded down pick other pixels (output 2 of factor 2 reads pixel 0)."""
    data = resize([1, 1, 2, 2], coordinate_transformation_mode="half_pixel", nearest_mode="floor")
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    assert not np.array_equal(run_onnxruntime(data, x), x.repeat(2, 2).repeat(2, 3))
    with pytest.raises(OnnxImportError, match="nearest_mode 'floor'"):
        import_onnx(data)

