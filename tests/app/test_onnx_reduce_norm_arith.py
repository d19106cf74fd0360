"""ONNX reductions, normalisations, GELU, arithmetic, Expand and general MatMul against onnxruntime, op by op.

Each case is a tiny model written with ``onnx.helper`` in the forms exporters write (axes as attributes and as
inputs, both GELU orders, channels-last blocks); the engine's recording and lean passes must match onnxruntime
within 1e-5 of the output's scale. Refusals say why; negative controls show the tolerance catches a wrong import.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.importers import OnnxImportError, import_onnx
from engine.graph import Graph
from tests.app.onnx_models import Builder, check_against_onnxruntime, run_onnxruntime

SPATIAL = np.array([2, 3], np.int64)


def ops_of(spec: dict) -> list[str]:
    return [n["op"] for n in spec["nodes"]]


# --- reductions -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [13, 17, 18])
def test_reduce_mean_over_the_spatial_axes_is_global_pooling(opset: int) -> None:
    """A squeeze-excite squeeze as both exporters write it: ReduceMean keepdims=1, then a gate multiplied back."""
    b = Builder(["N", 4, 5, 6], opset=opset)
    if opset >= 18:
        s = b.node("ReduceMean", ["x", b.const(np.array([-1, -2], np.int64))], keepdims=1)
    else:
        s = b.node("ReduceMean", ["x"], axes=[2, 3], keepdims=1)
    s = b.node("Sigmoid", [b.node("Conv", [s, b.weight((4, 4, 1, 1)), b.weight((4,))])])
    spec, _, _ = check_against_onnxruntime(b, b.node("Mul", ["x", s]))
    assert ops_of(spec)[0] == "global_avg_pool"


def test_reduce_mean_without_keepdims_feeds_a_classifier() -> None:
    b = Builder(["N", 4, 5, 6], opset=18)
    pooled = b.node("ReduceMean", ["x", b.const(SPATIAL)], keepdims=0)
    spec, _, _ = check_against_onnxruntime(b, b.node("Gemm", [pooled, b.weight((3, 4)), b.weight((3,))], transB=1))
    assert ops_of(spec) == ["global_avg_pool", "linear"]


@pytest.mark.parametrize("op_type, opset, axes, keepdims, engine_op", [
    ("ReduceMean", 18, [1], 1, "mean"),
    ("ReduceMean", 17, [1, 3], 0, "mean"),
    ("ReduceSum", 13, [1], 0, "sum"),       # ReduceSum takes axes as an input from opset 13
    ("ReduceSum", 11, [-1], 1, "sum"),      # ... and as an attribute before
    ("ReduceSum", 18, [2, 3], 1, "sum"),
    ("ReduceMax", 17, [-1], 1, "max"),
    ("ReduceMax", 18, [1, 2, 3], 0, "max"),
])
def test_other_reductions(op_type: str, opset: int, axes: list[int], keepdims: int, engine_op: str) -> None:
    b = Builder(["N", 3, 4, 5], opset=opset)
    axes_as_input = opset >= 18 or (op_type == "ReduceSum" and opset >= 13)
    if axes_as_input:
        y = b.node(op_type, ["x", b.const(np.array(axes, np.int64))], keepdims=keepdims)
    else:
        y = b.node(op_type, ["x"], axes=axes, keepdims=keepdims)
    spec, _, _ = check_against_onnxruntime(b, b.node("Relu", [y]))
    assert engine_op in ops_of(spec)


def test_reduce_with_no_axes_is_a_no_op_only_when_asked() -> None:
    b = Builder(["N", 3, 4, 5], opset=18)
    spec, _, _ = check_against_onnxruntime(b, b.node("ReduceMean", [b.node("Relu", ["x"])], noop_with_empty_axes=1))
    assert ops_of(spec) == ["relu", "identity"]
    b = Builder(["N", 3, 4, 5], opset=18)
    with pytest.raises(OnnxImportError, match="reduces over every axis, the batch axis too"):
        import_onnx(b.build(b.node("ReduceMean", ["x"])))


def test_reductions_over_the_batch_axis_are_refused() -> None:
    b = Builder(["N", 3, 4, 5], opset=18)
    with pytest.raises(OnnxImportError, match="include the batch axis 0"):
        import_onnx(b.build(b.node("ReduceSum", ["x", b.const(np.array([0, 1], np.int64))])))


def test_reductions_of_constants_are_folded() -> None:
    b = Builder(["N", 3, 4, 4], opset=18)
    c = b.node("ReduceMean", [b.weight((1, 3, 4, 4)), b.const(SPATIAL)], keepdims=1)
    spec, _, _ = check_against_onnxruntime(b, b.node("Add", ["x", c]))
    assert ops_of(spec) == ["constant", "add"]


# --- normalisations ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_channels_last_as_convnext_writes_it(with_bias: bool) -> None:
    b = Builder(["N", 6, 4, 5], opset=17)
    t = b.node("Transpose", ["x"], perm=[0, 2, 3, 1])
    inputs = [t, b.weight((6,), positive=True)] + ([b.weight((6,))] if with_bias else [])
    n = b.node("LayerNormalization", inputs, axis=-1, epsilon=1e-6)
    spec, _, _ = check_against_onnxruntime(b, b.node("Transpose", [n], perm=[0, 3, 1, 2]))
    node = next(n for n in spec["nodes"] if n["op"] == "layer_norm")
    assert node["normalized_shape"] == [6] and node["bias"] is with_bias and node["eps"] == pytest.approx(1e-6)


def test_layer_norm_over_several_axes_and_a_broadcast_scale() -> None:
    b = Builder(["N", 3, 4, 5], opset=17)
    spec, _, _ = check_against_onnxruntime(b, b.node("LayerNormalization", ["x", b.weight((4, 1)), b.weight((5,))],
                                                     axis=2))
    assert spec["nodes"][0]["normalized_shape"] == [4, 5]


def test_layer_norm_refusals() -> None:
    b = Builder(["N", 3, 4], opset=17)
    with pytest.raises(OnnxImportError, match="axis 0 normalises over the batch axis"):
        import_onnx(b.build(b.node("LayerNormalization", ["x", b.weight((2, 3, 4))], axis=0)))
    b = Builder(["N", 3, 4], opset=17)
    y, mean, _ = b.node("LayerNormalization", ["x", b.weight((4,))], outputs=["y", "mean", "inv"])
    with pytest.raises(OnnxImportError, match="Mean or InvStdDev output is used"):
        import_onnx(b.build(b.node("Add", [y, mean])))


@pytest.mark.parametrize("shape", [["N", 4, 9], ["N", 4, 5, 6], ["N", 2, 3, 4, 5]])
def test_instance_norm(shape: list) -> None:
    b = Builder(shape, opset=17)
    channels = shape[1]
    y = b.node("InstanceNormalization", ["x", b.weight((channels,), positive=True), b.weight((channels,))],
               epsilon=1e-3)
    spec, _, _ = check_against_onnxruntime(b, y)
    assert spec["nodes"][0]["op"] == "instance_norm" and spec["nodes"][0]["affine"] is True


# --- GELU -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_opset_20(approximate: str) -> None:
    b = Builder(["N", 3, 4, 4], opset=20)
    spec, _, _ = check_against_onnxruntime(b, b.node("Gelu", ["x"], approximate=approximate))
    assert spec["nodes"][0] == {"id": spec["nodes"][0]["id"], "op": "gelu", "inputs": ["input"],
                                "approximate": approximate}


def _written_out_gelu(b: Builder, x: str, order: str, half: float = 0.5, by_mul: bool = False) -> str:
    if by_mul:
        scaled = b.node("Mul", [x, b.node("Constant", [], value_float=1 / math.sqrt(2))])
    else:
        scaled = b.node("Div", [x, b.node("Constant", [], value_float=math.sqrt(2))])
    one_plus = b.node("Add", [b.node("Erf", [scaled]), b.const(np.float32(1.0))])
    half_const = b.node("Constant", [], value_float=half)
    if order == "torchscript":  # (x * (1 + erf)) * 0.5
        return b.node("Mul", [b.node("Mul", [x, one_plus]), half_const], name="gelu_out")
    return b.node("Mul", [x, b.node("Mul", [half_const, one_plus])], name="gelu_out")  # dynamo: x * (0.5 * ...)


@pytest.mark.parametrize("order, by_mul", [("torchscript", False), ("dynamo", False), ("dynamo", True)])
def test_gelu_written_out_with_erf_becomes_one_node(order: str, by_mul: bool) -> None:
    b = Builder(["N", 3, 4, 4], opset=17)
    x = b.node("Conv", ["x", b.weight((3, 3, 1, 1)), b.weight((3,))])
    spec, _, info = check_against_onnxruntime(b, b.node("Relu", [_written_out_gelu(b, x, order, by_mul=by_mul)]))
    assert ops_of(spec) == ["conv2d", "gelu", "relu"]
    assert any(n["id"] == "gelu_out" for n in spec["nodes"])
    assert any("GELU written out in five nodes" in note for note in info["notes"])


def test_erf_with_other_constants_is_refused_not_misread() -> None:
    """Negative control: x · 0.4 · (1 + erf(x / √2)) is not GELU."""
    b = Builder(["N", 3, 4, 4], opset=17)
    with pytest.raises(OnnxImportError, match="constants other than GELU's"):
        import_onnx(b.build(_written_out_gelu(b, "x", "torchscript", half=0.4)))


def test_erf_whose_intermediate_is_read_twice_is_refused() -> None:
    b = Builder(["N", 3, 4, 4], opset=17)
    erf = b.node("Erf", [b.node("Div", ["x", b.const(np.float32(math.sqrt(2)))])])
    with pytest.raises(OnnxImportError, match="Erf only inside GELU"):
        import_onnx(b.build(b.node("Add", [erf, b.node("Relu", [erf])])))


# --- arithmetic -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exponent", [2.0, 3.0, 0.5, -1.0])
def test_pow_with_a_constant_exponent(exponent: float) -> None:
    b = Builder(["N", 3, 4, 4], opset=17)
    positive = b.node("Add", [b.node("Relu", ["x"]), b.const(np.float32(0.5))])
    spec, _, _ = check_against_onnxruntime(b, b.node("Pow", [positive, b.const(np.float32(exponent))]))
    assert spec["nodes"][-1]["op"] == "pow" and spec["nodes"][-1]["exponent"] == exponent


def test_sqrt_and_layer_norm_written_out_as_opset_13_exports_it() -> None:
    """(x - mean) / sqrt(var + eps) over channels, every node on its own: ReduceMean, Sub, Pow, Sqrt, Div."""
    b = Builder(["N", 4, 3, 3], opset=13)
    mean = b.node("ReduceMean", ["x"], axes=[1], keepdims=1)
    centred = b.node("Sub", ["x", mean])
    var = b.node("ReduceMean", [b.node("Pow", [centred, b.const(np.float32(2.0))])], axes=[1], keepdims=1)
    std = b.node("Sqrt", [b.node("Add", [var, b.const(np.float32(1e-5))])])
    spec, _, _ = check_against_onnxruntime(b, b.node("Div", [centred, std]))
    assert {"mean", "sub", "pow", "sqrt", "div"} <= set(ops_of(spec))


def test_sub_and_div_of_computed_tensors_and_constant_first() -> None:
    b = Builder(["N", 3, 4, 4], opset=17)
    a = b.node("Sub", ["x", b.node("Relu", ["x"])])
    d = b.node("Div", [a, b.node("Add", [b.node("Sigmoid", ["x"]), b.const(np.float32(0.5))])])
    one_minus = b.node("Sub", [b.const(np.float32(1.0)), d])
    spec, _, _ = check_against_onnxruntime(b, b.node("Div", [b.weight((3, 1, 1), positive=True),
                                                             b.node("Add", [b.node("Sigmoid", [one_minus]),
                                                                            b.const(np.float32(1.0))])]))
    assert ops_of(spec).count("sub") == 2 and ops_of(spec).count("div") == 2


def test_constants_fold_through_the_new_operators() -> None:
    b = Builder(["N", 3, 4, 4], opset=17)
    c = b.node("Sqrt", [b.node("Pow", [b.weight((1, 3, 1, 1), positive=True), b.const(np.float32(2.0))])])
    spec, _, _ = check_against_onnxruntime(b, b.node("Mul", ["x", b.node("Erf", [c])]))
    assert ops_of(spec) == ["constant", "mul"]


# --- Expand, MatMul ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [[1, 3, 5, 4], [5, 4], [3, 1, 4]])
def test_expand(shape: list[int]) -> None:
    b = Builder(["N", 3, 1, 4], opset=17)
    spec, _, _ = check_against_onnxruntime(b, b.node("Expand", ["x", b.const(np.array(shape, np.int64))]))
    assert spec["nodes"][0]["op"] == "expand"


def test_a_class_token_expanded_to_the_batch_and_concatenated() -> None:
    """``cls_token.expand(B, -1, -1)`` then ``torch.cat``: shape arithmetic with Equal and Where, folded."""
    b = Builder(["N", 4, 8], opset=17)
    batch = b.node("Gather", [b.node("Shape", ["x"]), b.const(np.array([0], np.int64))], axis=0)
    wanted = b.node("Concat", [batch, b.const(np.array([-1, -1], np.int64))], axis=0)
    minus = b.node("Equal", [wanted, b.const(np.array(-1, np.int64))])
    shape = b.node("Where", [minus, b.const(np.array([1, 1, 1], np.int64)), wanted])
    token = b.node("Expand", [b.weight((1, 1, 8)), shape])
    spec, _, _ = check_against_onnxruntime(b, b.node("Concat", [token, "x"], axis=1))
    assert ops_of(spec) == ["constant", "concat"]


def test_matmul_channels_last_linear_and_bias() -> None:
    """ConvNeXt's per-position linear layer: Transpose to channels-last, MatMul by (C, 4C), Add bias, back."""
    b = Builder(["N", 4, 3, 3], opset=17)
    t = b.node("Transpose", ["x"], perm=[0, 2, 3, 1])
    y = b.node("Add", [b.weight((8,)), b.node("MatMul", [t, b.weight((4, 8))])])
    spec, _, _ = check_against_onnxruntime(b, b.node("Transpose", [y], perm=[0, 3, 1, 2]))
    assert "matmul" in ops_of(spec) and "linear" not in ops_of(spec)


def test_matmul_of_two_computed_tensors_and_a_constant_on_the_left() -> None:
    b = Builder(["N", 2, 4, 4], opset=17)
    scores = b.node("MatMul", ["x", b.node("Transpose", [b.node("Relu", ["x"])], perm=[0, 1, 3, 2])])
    spec, _, _ = check_against_onnxruntime(b, b.node("MatMul", [b.weight((4, 4)), b.node("Softmax", [scores])]))
    assert ops_of(spec).count("matmul") == 2


def test_matmul_on_features_is_still_a_linear_layer() -> None:
    b = Builder(["N", 6], opset=17)
    spec, _, _ = check_against_onnxruntime(b, b.node("Add", [b.node("MatMul", ["x", b.weight((6, 3))]),
                                                             b.weight((3,))]))
    assert ops_of(spec) == ["linear"]


# --- the dynamo exporter's as_strided ---------------------------------------------------------------------------
def _as_strided(order: np.ndarray) -> Builder:
    b = Builder([1, 2, 3, 3], opset=18)
    flat = b.node("Reshape", [b.node("Relu", ["x"]), b.const(np.array([-1], np.int64))])
    b.last = b.node("Gather", [flat, b.const(order.reshape(1, 2, 3, 3).astype(np.int64))], axis=0)
    return b


def test_as_strided_reading_every_value_in_order_is_a_reshape() -> None:
    b = _as_strided(np.arange(18))
    spec, _, _ = check_against_onnxruntime(b, b.node("Sigmoid", [b.last]), batch=1)
    assert ops_of(spec) == ["relu", "sigmoid"]


def test_as_strided_in_another_order_is_refused() -> None:
    b = _as_strided(np.arange(18)[::-1].copy())
    with pytest.raises(OnnxImportError, match="in another order"):
        import_onnx(b.build(b.node("Sigmoid", [b.last])))


# --- negative control -------------------------------------------------------------------------------------------
def test_a_layer_norm_with_the_wrong_epsilon_fails_the_tolerance() -> None:
    b = Builder(["N", 6, 2, 2], opset=17)
    model = b.build(b.node("LayerNormalization", [b.node("Transpose", ["x"], perm=[0, 2, 3, 1]),
                                                  b.weight((6,))], axis=-1, epsilon=1e-5))
    x = b.sample(2) * np.float32(1e-3)  # tiny values: epsilon matters
    spec, params, _ = import_onnx(model)
    next(n for n in spec["nodes"] if n["op"] == "layer_norm")["eps"] = 1e-3
    reference = run_onnxruntime(model, x)
    mine = Graph(spec).forward(x, params).output
    assert np.abs(mine - reference).max() / np.abs(reference).max() > 1e-3
