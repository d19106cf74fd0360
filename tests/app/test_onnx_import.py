"""ONNX import: every supported operator and its parameter variants, checked against onnxruntime.

Each case builds a small random-weight model with ``onnx.helper`` (tests/app/onnx_models.py), runs it
in onnxruntime (the independent reference) and in the engine after import, and requires the outputs
to agree within 1e-4 max abs. Error cases check that what cannot be imported is refused with a
message naming every operator and node at fault.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("onnx")

from app.importers import OnnxImportError, import_onnx
from engine.graph import Graph
from tests.app.onnx_models import Builder, run_onnxruntime

TOLERANCE = 1e-4
Case = Callable[[], tuple[Builder, str]]
CASES: dict[str, Case] = {}


def case(name: str):
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn
    return register


def compare(model: bytes, x: np.ndarray) -> tuple[dict, dict, dict, float]:
    """Import ``model``, run it in the engine and in onnxruntime; return spec, params, info, max abs diff."""
    reference = run_onnxruntime(model, x)
    spec, params, info = import_onnx(model)
    mine = Graph(spec).forward(x, params, keep_caches=False).output
    assert mine.shape == reference.shape, f"engine gives {mine.shape}, onnxruntime {reference.shape}"
    assert np.all(np.isfinite(reference)) and np.abs(reference).max() > 1e-3, "a degenerate reference proves nothing"
    return spec, params, info, float(np.abs(mine - reference).max())


# --- convolutions ---------------------------------------------------------------------------
def _conv(input_shape, weight_shape, bias=True, **attrs) -> tuple[Builder, str]:
    b = Builder(input_shape)
    inputs = ["x", b.weight(weight_shape)] + ([b.weight((weight_shape[0],))] if bias else [])
    return b, b.node("Conv", inputs, **attrs)


case("conv_pads_bias")(lambda: _conv(["N", 3, 9, 9], (4, 3, 3, 3), pads=[1, 1, 1, 1]))
case("conv_stride2_asymmetric_pads")(lambda: _conv(["N", 3, 10, 9], (4, 3, 3, 3), strides=[2, 2],
                                                   pads=[0, 1, 2, 0]))
case("conv_dilation_no_bias")(lambda: _conv([1, 2, 11, 11], (3, 2, 3, 3), bias=False, dilations=[2, 3],
                                            pads=[2, 1, 2, 1]))
case("conv_groups")(lambda: _conv(["N", 6, 8, 8], (4, 3, 3, 3), group=2, pads=[1, 1, 1, 1]))
case("conv_depthwise")(lambda: _conv(["N", 4, 8, 8], (4, 1, 5, 5), group=4, strides=[2, 2], pads=[2, 2, 2, 2]))
case("conv_rect_kernel_stride")(lambda: _conv(["N", 2, 9, 7], (3, 2, 3, 1), strides=[2, 1], kernel_shape=[3, 1]))
case("conv_auto_pad_same_upper_stride2")(lambda: _conv(["N", 3, 8, 8], (4, 3, 3, 3), strides=[2, 2],
                                                       auto_pad="SAME_UPPER"))
case("conv_auto_pad_same_upper_even_kernel")(lambda: _conv(["N", 3, 7, 7], (4, 3, 2, 2), auto_pad="SAME_UPPER"))
case("conv_auto_pad_same_lower")(lambda: _conv(["N", 3, 8, 8], (4, 3, 3, 3), strides=[2, 2],
                                               auto_pad="SAME_LOWER"))
case("conv_auto_pad_valid")(lambda: _conv(["N", 3, 8, 8], (4, 3, 3, 3), auto_pad="VALID"))
case("conv1d")(lambda: _conv(["N", 3, 12], (4, 3, 3), strides=[2], pads=[1, 0], dilations=[2]))
case("conv3d")(lambda: _conv(["N", 2, 5, 6, 6], (3, 2, 3, 3, 3), strides=[1, 2, 2], pads=[1, 1, 0, 1, 1, 1]))


def _conv_transpose(weight_shape, input_shape=("N", 4, 5, 5), bias=True, **attrs) -> tuple[Builder, str]:
    b = Builder(list(input_shape))
    group = attrs.get("group", 1)
    inputs = ["x", b.weight(weight_shape)] + ([b.weight((weight_shape[1] * group,))] if bias else [])
    return b, b.node("ConvTranspose", inputs, **attrs)


case("conv_transpose_stride_pads_output_padding")(lambda: _conv_transpose(
    (4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]))
case("conv_transpose_groups_dilation")(lambda: _conv_transpose((4, 2, 3, 3), group=2, dilations=[2, 2], bias=False))
case("conv_transpose_asymmetric_pads")(lambda: _conv_transpose((4, 3, 4, 4), strides=[2, 2], pads=[0, 1, 2, 1]))
case("conv_transpose_output_shape")(lambda: _conv_transpose((4, 3, 3, 3), strides=[2, 2], output_shape=[10, 10]))
case("conv_transpose_same_upper")(lambda: _conv_transpose((4, 3, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER"))


# --- pooling ----------------------------------------------------------------------------------
def _pool(op: str, input_shape=("N", 3, 9, 9), relu_first: bool = False, **attrs) -> tuple[Builder, str]:
    b = Builder(list(input_shape))
    x = b.node("Relu", ["x"]) if relu_first else "x"
    return b, b.node(op, [x], **attrs)


case("max_pool_k2s2")(lambda: _pool("MaxPool", kernel_shape=[2, 2], strides=[2, 2]))
case("max_pool_default_stride_is_1")(lambda: _pool("MaxPool", kernel_shape=[3, 3]))
case("max_pool_pads_ceil_mode")(lambda: _pool("MaxPool", ("N", 3, 10, 10), kernel_shape=[3, 3], strides=[2, 2],
                                              pads=[1, 1, 1, 1], ceil_mode=1))
case("max_pool_ceil_mode_drops_window_in_padding")(lambda: _pool("MaxPool", ("N", 2, 6, 6), kernel_shape=[2, 2],
                                                                 strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1))
case("max_pool_dilation")(lambda: _pool("MaxPool", kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 2]))
case("max_pool_same_upper")(lambda: _pool("MaxPool", ("N", 3, 8, 8), kernel_shape=[3, 3], strides=[2, 2],
                                          auto_pad="SAME_UPPER"))
case("max_pool_same_lower")(lambda: _pool("MaxPool", ("N", 3, 8, 8), kernel_shape=[2, 2], strides=[1, 1],
                                          auto_pad="SAME_LOWER"))
case("max_pool1d")(lambda: _pool("MaxPool", ("N", 3, 11), kernel_shape=[3], strides=[2], pads=[1, 1]))
case("max_pool3d")(lambda: _pool("MaxPool", ("N", 2, 4, 6, 6), kernel_shape=[2, 2, 2], strides=[2, 2, 2]))
case("avg_pool_exclude_pad")(lambda: _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
case("avg_pool_include_pad")(lambda: _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                           count_include_pad=1))
case("avg_pool_ceil_mode_exclude_pad")(lambda: _pool("AveragePool", ("N", 3, 10, 10), kernel_shape=[3, 3],
                                                     strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1))
case("avg_pool_ceil_mode_include_pad")(lambda: _pool("AveragePool", ("N", 3, 10, 10), kernel_shape=[3, 3],
                                                     strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                                                     count_include_pad=1))
case("avg_pool_asymmetric_pads")(lambda: _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2],
                                               pads=[0, 1, 1, 0], count_include_pad=1))
case("avg_pool_same_upper")(lambda: _pool("AveragePool", ("N", 3, 8, 8), kernel_shape=[3, 3], strides=[2, 2],
                                          auto_pad="SAME_UPPER"))
case("avg_pool1d")(lambda: _pool("AveragePool", ("N", 3, 11), kernel_shape=[4], strides=[3]))
case("avg_pool3d")(lambda: _pool("AveragePool", ("N", 2, 4, 5, 5), kernel_shape=[2, 3, 3], strides=[2, 1, 2],
                                 pads=[0, 1, 1, 0, 1, 1]))
case("global_max_pool")(lambda: _pool("GlobalMaxPool"))
case("global_avg_pool")(lambda: _pool("GlobalAveragePool"))


@case("global_avg_pool_then_conv1x1")
def _gap_conv() -> tuple[Builder, str]:
    """GlobalAveragePool keeps (N, C, 1, 1) in ONNX: a 1x1 conv after it needs the 1s back."""
    b = Builder(["N", 4, 6, 6])
    y = b.node("GlobalAveragePool", ["x"])
    y = b.node("Relu", [y])
    return b, b.node("Conv", [y, b.weight((3, 4, 1, 1)), b.weight((3,))])


@case("global_avg_pool_flatten_gemm")
def _gap_flatten() -> tuple[Builder, str]:
    b = Builder(["N", 4, 6, 6])
    y = b.node("Flatten", [b.node("GlobalAveragePool", ["x"])])
    return b, b.node("Gemm", [y, b.weight((3, 4)), b.weight((3,))], transB=1)


# --- normalisation and activations ------------------------------------------------------------
@case("batch_norm")
def _bn() -> tuple[Builder, str]:
    b = Builder(["N", 4, 5, 5])
    inputs = ["x", b.weight((4,)), b.weight((4,)), b.weight((4,)), b.weight((4,), positive=True)]
    return b, b.node("BatchNormalization", inputs, epsilon=1e-3, momentum=0.99)


@case("batch_norm_2d_input")
def _bn2() -> tuple[Builder, str]:
    b = Builder(["N", 6])
    return b, b.node("BatchNormalization", ["x", b.weight((6,)), b.weight((6,)), b.weight((6,)),
                                            b.weight((6,), positive=True)])


def _unary(op: str, opset: int = 17, extra: tuple = (), **attrs) -> Case:
    def build() -> tuple[Builder, str]:
        b = Builder(["N", 3, 4, 4], opset=opset)
        return b, b.node(op, ["x", *[b.const(np.float32(v)) if v is not None else "" for v in extra]], **attrs)
    return build


case("relu")(_unary("Relu"))
case("leaky_relu_alpha")(_unary("LeakyRelu", alpha=0.2))
case("leaky_relu_default")(_unary("LeakyRelu"))
case("sigmoid")(_unary("Sigmoid"))
case("tanh")(_unary("Tanh"))
case("hardsigmoid_default")(_unary("HardSigmoid"))
case("hardsigmoid_alpha_beta")(_unary("HardSigmoid", alpha=0.3, beta=0.4))
case("hardswish")(_unary("HardSwish"))
case("clip_opset10_attributes")(_unary("Clip", opset=10, min=-0.5, max=0.7))
case("clip_opset13_inputs")(_unary("Clip", opset=13, extra=(0.0, 6.0)))
case("clip_opset13_min_only")(_unary("Clip", opset=13, extra=(-0.3,)))
case("clip_opset13_max_only")(_unary("Clip", opset=13, extra=(None, 0.25)))
case("softmax_opset13_axis1")(_unary("Softmax", opset=13, axis=1))
case("softmax_opset13_default_last_axis")(_unary("Softmax", opset=13))
case("softmax_opset11_default_axis1_coerced")(_unary("Softmax", opset=11))
case("softmax_opset11_axis2_coerced")(_unary("Softmax", opset=11, axis=2))
case("softmax_opset11_last_axis")(_unary("Softmax", opset=11, axis=-1))
case("log_softmax_opset13")(_unary("LogSoftmax", opset=13, axis=1))
case("identity")(_unary("Identity"))
case("cast_to_float_is_identity")(_unary("Cast", to=1))


@case("dropout_opset10_ratio_attribute")
def _dropout10() -> tuple[Builder, str]:
    b = Builder(["N", 3, 4, 4], opset=10)
    return b, b.node("Relu", [b.node("Dropout", ["x"], ratio=0.3)])


@case("dropout_opset13_ratio_input")
def _dropout13() -> tuple[Builder, str]:
    b = Builder(["N", 3, 4, 4], opset=13)
    return b, b.node("Relu", [b.node("Dropout", ["x", b.const(np.float32(0.2))])])


# --- merges -----------------------------------------------------------------------------------
@case("add_skip_connection")
def _skip() -> tuple[Builder, str]:
    b = Builder(["N", 3, 6, 6])
    y = b.node("Conv", ["x", b.weight((3, 3, 3, 3)), b.weight((3,))], pads=[1, 1, 1, 1])
    return b, b.node("Relu", [b.node("Add", [b.node("Relu", [y]), "x"])])


@case("mul_gating_squeeze_excitation")
def _se() -> tuple[Builder, str]:
    b = Builder(["N", 4, 6, 6])
    s = b.node("GlobalAveragePool", ["x"])
    s = b.node("Relu", [b.node("Conv", [s, b.weight((2, 4, 1, 1)), b.weight((2,))])])
    s = b.node("HardSigmoid", [b.node("Conv", [s, b.weight((4, 2, 1, 1)), b.weight((4,))])])
    return b, b.node("Mul", ["x", s])


@case("add_mul_constants_per_channel_and_scalar")
def _consts() -> tuple[Builder, str]:
    b = Builder(["N", 3, 4, 4])
    y = b.node("Add", ["x", b.weight((3, 1, 1))])            # initializer without batch axis
    y = b.node("Mul", [b.weight((1, 3, 1, 1)), y])            # constant first, with batch axis 1
    scale = b.node("Constant", [], value_float=0.5)
    y = b.node("Mul", [y, scale])                             # scalar Constant node
    shift = b.node("Constant", [], value=__import__("onnx").numpy_helper.from_array(
        np.linspace(-1, 1, 4).astype(np.float32), "shift"))
    y = b.node("Add", [y, shift])                             # broadcast along the last axis
    y = b.node("Sub", [y, b.const(np.float32(0.25))])
    return b, b.node("Div", [y, b.const(np.float32(2.0))])


@case("constant_folding")
def _fold() -> tuple[Builder, str]:
    b = Builder(["N", 3, 4, 4])
    c = b.node("Add", [b.weight((3, 1, 1)), b.weight((3, 1, 1))])  # constant + constant: folded
    c = b.node("Identity", [c])
    return b, b.node("Mul", ["x", c])


@case("concat_channels")
def _concat() -> tuple[Builder, str]:
    b = Builder(["N", 3, 6, 6])
    a = b.node("Conv", ["x", b.weight((2, 3, 1, 1)), b.weight((2,))])
    c = b.node("Conv", ["x", b.weight((4, 3, 3, 3)), b.weight((4,))], pads=[1, 1, 1, 1])
    return b, b.node("Concat", [a, "x", c], axis=1)


@case("concat_negative_axis_width")
def _concat_w() -> tuple[Builder, str]:
    b = Builder(["N", 3, 4, 5])
    return b, b.node("Concat", ["x", b.node("Relu", ["x"])], axis=-1)


# --- shapes and fully connected ---------------------------------------------------------------
def _reshape(shape: list[int], input_shape=("N", 3, 4, 4)) -> Case:
    def build() -> tuple[Builder, str]:
        b = Builder(list(input_shape))
        return b, b.node("Reshape", ["x", b.const(np.array(shape, dtype=np.int64))])
    return build


case("reshape_copy_batch_infer")(_reshape([0, -1]))
case("reshape_copy_batch_and_channels")(_reshape([0, 0, 16]))
case("reshape_batch_inferred")(_reshape([-1, 48]))
case("reshape_static_batch_1")(_reshape([1, 12, -1], input_shape=(1, 3, 4, 4)))
case("flatten_axis1")(lambda: (lambda b: (b, b.node("Flatten", ["x"], axis=1)))(Builder(["N", 3, 4, 4])))
case("flatten_axis_minus3")(lambda: (lambda b: (b, b.node("Flatten", ["x"], axis=-3)))(Builder(["N", 3, 4, 4])))


@case("flatten_by_shape_arithmetic_dynamic_batch")
def _shape_chain() -> tuple[Builder, str]:
    """What torch.onnx.export writes for ``x.view(x.size(0), -1)`` with a dynamic batch."""
    b = Builder(["N", 3, 4, 4], opset=13)
    batch = b.node("Gather", [b.node("Shape", ["x"]), b.const(np.int64(0))], axis=0)
    batch = b.node("Unsqueeze", [batch, b.const(np.array([0], dtype=np.int64))])
    target = b.node("Concat", [batch, b.const(np.array([-1], dtype=np.int64))], axis=0)
    b.output_shape = ["N", 48]
    return b, b.node("Reshape", [b.node("Relu", ["x"]), target])


@case("flatten_by_shape_arithmetic_static_batch")
def _shape_chain_static() -> tuple[Builder, str]:
    b = Builder([1, 3, 4, 4], opset=11)
    dims = b.node("Cast", [b.node("Shape", ["x"])], to=7)
    batch = b.node("Unsqueeze", [b.node("Gather", [dims, b.const(np.int64(0))])], axes=[0])
    target = b.node("Concat", [batch, b.const(np.array([-1], dtype=np.int64))], axis=0)
    b.output_shape = [1, 48]
    return b, b.node("Reshape", ["x", target])


@case("squeeze_unsqueeze_after_global_pool")
def _squeeze() -> tuple[Builder, str]:
    b = Builder(["N", 4, 5, 5], opset=13)
    y = b.node("Squeeze", [b.node("GlobalAveragePool", ["x"]), b.const(np.array([2, 3], dtype=np.int64))])
    y = b.node("Unsqueeze", [b.node("Relu", [y]), b.const(np.array([-1, 2], dtype=np.int64))])
    return b, b.node("Conv", [y, b.weight((3, 4, 1, 1))])


@case("squeeze_opset11_all_unit_axes")
def _squeeze_all() -> tuple[Builder, str]:
    b = Builder(["N", 4, 1, 5], opset=11)
    b.output_shape = ["N", 1, 4, 5]
    return b, b.node("Unsqueeze", [b.node("Squeeze", ["x"])], axes=[1])


def _gemm(trans_b: int, bias_shape: tuple | None, **attrs) -> Case:
    def build() -> tuple[Builder, str]:
        b = Builder(["N", 6])
        weight = b.weight((5, 6) if trans_b else (6, 5))
        inputs = ["x", weight] + ([b.weight(bias_shape)] if bias_shape else [])
        return b, b.node("Gemm", inputs, transB=trans_b, **attrs)
    return build


case("gemm_transB")(_gemm(1, (5,)))
case("gemm_no_transB")(_gemm(0, (5,)))
case("gemm_alpha_beta_bias_1xM")(_gemm(1, (1, 5), alpha=0.5, beta=2.0))
case("gemm_scalar_bias")(_gemm(0, (1,)))
case("gemm_no_bias")(_gemm(1, None))


@case("matmul_add_bias_is_linear")
def _matmul_add() -> tuple[Builder, str]:
    b = Builder(["N", 6])
    return b, b.node("Add", [b.node("MatMul", ["x", b.weight((6, 4))]), b.weight((4,))])


@case("matmul_without_bias")
def _matmul() -> tuple[Builder, str]:
    b = Builder(["N", 6])
    return b, b.node("Relu", [b.node("MatMul", ["x", b.weight((6, 4))])])


# --- Pad folded into the next Conv / pool ---------------------------------------------------------
@case("pad_opset11_into_conv")
def _pad_conv() -> tuple[Builder, str]:
    b = Builder(["N", 3, 7, 7], opset=11)
    p = b.node("Pad", ["x", b.const(np.array([0, 0, 1, 0, 0, 0, 2, 1], dtype=np.int64))], mode="constant")
    return b, b.node("Conv", [p, b.weight((4, 3, 3, 3)), b.weight((4,))], strides=[2, 2], pads=[1, 1, 0, 0])


@case("pad_opset18_axes_into_conv_same_upper")
def _pad_axes() -> tuple[Builder, str]:
    b = Builder(["N", 3, 7, 7], opset=18)
    p = b.node("Pad", ["x", b.const(np.array([1, 0, 2, 1], dtype=np.int64)), "",
                       b.const(np.array([2, 3], dtype=np.int64))])
    return b, b.node("Conv", [p, b.weight((4, 3, 3, 3))], strides=[2, 2], auto_pad="SAME_UPPER")


@case("pad_opset2_attribute_into_conv")
def _pad_attr() -> tuple[Builder, str]:
    b = Builder(["N", 3, 6, 6], opset=10)
    p = b.node("Pad", ["x"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0)
    return b, b.node("Conv", [p, b.weight((4, 3, 3, 3)), b.weight((4,))])


@case("pad_zero_after_relu_into_max_pool")
def _pad_max() -> tuple[Builder, str]:
    b = Builder(["N", 3, 7, 7], opset=13)
    p = b.node("Pad", [b.node("Relu", ["x"]), b.const(np.array([0, 0, 1, 1, 0, 0, 0, 0], dtype=np.int64))])
    return b, b.node("MaxPool", [p], kernel_shape=[3, 3], strides=[2, 2])


@case("pad_into_avg_pool_count_include_pad")
def _pad_avg() -> tuple[Builder, str]:
    b = Builder(["N", 3, 7, 7], opset=13)
    p = b.node("Pad", ["x", b.const(np.array([0, 0, 1, 0, 0, 0, 0, 1], dtype=np.int64))])
    return b, b.node("AveragePool", [p], kernel_shape=[3, 3], strides=[2, 2], count_include_pad=1)


# --- a whole small network ------------------------------------------------------------------------
@case("small_cnn")
def _small_cnn() -> tuple[Builder, str]:
    b = Builder([1, 1, 16, 16])
    y = b.node("Conv", ["x", b.weight((4, 1, 3, 3)), b.weight((4,))], pads=[1, 1, 1, 1])
    y = b.node("BatchNormalization", [y, b.weight((4,)), b.weight((4,)), b.weight((4,)),
                                      b.weight((4,), positive=True)])
    y = b.node("MaxPool", [b.node("Relu", [y])], kernel_shape=[2, 2], strides=[2, 2])
    y = b.node("Conv", [y, b.weight((8, 4, 3, 3)), b.weight((8,))], strides=[2, 2], auto_pad="SAME_UPPER")
    y = b.node("Clip", [y, b.const(np.float32(0)), b.const(np.float32(6))])
    y = b.node("Reshape", [y, b.const(np.array([1, -1], dtype=np.int64))])
    y = b.node("Gemm", [y, b.weight((10, 128), scale=0.1), b.weight((10,))], transB=1)
    return b, b.node("Softmax", [y], axis=1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_onnxruntime(name: str) -> None:
    builder, output = CASES[name]()
    model = builder.build(output)
    spec, _, _, diff = compare(model, builder.sample())
    assert diff <= TOLERANCE, f"{name}: engine vs onnxruntime max abs difference {diff:.3g} > {TOLERANCE}\n{spec}"


def test_random_sweep_of_conv_and_pool_parameters() -> None:
    """Seeded random kernel/stride/padding/dilation/auto_pad/ceil_mode/count_include_pad combinations:
    each either matches onnxruntime or is refused with a reason (never a silent mismatch)."""
    rng = np.random.default_rng(2024)
    matched, refused = 0, []
    for trial in range(150):
        op = ["MaxPool", "AveragePool", "Conv"][trial % 3]
        size, k, s = int(rng.integers(3, 10)), int(rng.integers(1, 5)), int(rng.integers(1, 4))
        d = int(rng.integers(1, 3)) if op != "AveragePool" else 1
        attrs: dict = {"strides": [s, s]}
        auto = ["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"][int(rng.integers(0, 5))]
        if auto == "NOTSET":
            attrs["pads"] = [int(rng.integers(0, (d * (k - 1) + 1) // 2 + 1)) for _ in range(4)]
        else:
            attrs["auto_pad"] = auto
        if op != "AveragePool":
            attrs["dilations"] = [d, d]
        b = Builder(["N", 2, size, size + 1], seed=trial)
        if op == "Conv":
            y = b.node("Conv", ["x", b.weight((3, 2, k, k)), b.weight((3,))], **attrs)
        else:
            attrs |= {"kernel_shape": [k, k], "ceil_mode": int(rng.integers(0, 2))}
            if op == "AveragePool":
                attrs["count_include_pad"] = int(rng.integers(0, 2))
            y = b.node(op, ["x"], **attrs)
        try:
            model = b.build(y)
            reference = run_onnxruntime(model, b.sample())
        except Exception:  # onnxruntime (or the checker) refuses this combination itself: nothing to compare
            continue
        try:
            spec, params, _ = import_onnx(model)
        except OnnxImportError as error:
            refused.append(f"{op} {attrs}: {error}")
            continue
        mine = Graph(spec).forward(b.sample(), params, keep_caches=False).output
        assert mine.shape == reference.shape and np.abs(mine - reference).max() <= TOLERANCE, \
            f"{op} on [2, 2, {size}, {size + 1}] with {attrs}: engine {mine.shape} vs onnxruntime {reference.shape}"
        matched += 1
    print(f"matched {matched}, refused {len(refused)}")
    assert matched >= 100 and len(refused) <= 15, (matched, refused)


def test_random_sweep_of_conv_transpose_parameters() -> None:
    """As above for ConvTranspose: strides, dilations, groups, pads + output_padding, output_shape, auto_pad."""
    rng = np.random.default_rng(7)
    matched, refused = 0, []
    for trial in range(100):
        size, k = int(rng.integers(2, 7)), int(rng.integers(1, 5))
        s, d = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        group, per_group = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        attrs: dict = {"strides": [s, s], "dilations": [d, d], "group": group}
        mode = ["pads", "pads", "output_shape", "SAME_UPPER", "SAME_LOWER", "VALID"][trial % 6]
        if mode == "pads":
            attrs["pads"] = [int(rng.integers(0, k)) for _ in range(4)]
            attrs["output_padding"] = [int(rng.integers(0, max(s, d))) for _ in range(2)]
        elif mode == "output_shape":
            attrs["output_shape"] = [size * s + int(rng.integers(-1, 2)), (size + 1) * s]
        else:
            attrs["auto_pad"] = mode
        b = Builder(["N", 4, size, size + 1], seed=trial)
        y = b.node("ConvTranspose", ["x", b.weight((4, per_group, k, k)), b.weight((per_group * group,))], **attrs)
        try:
            model = b.build(y)
            reference = run_onnxruntime(model, b.sample())
        except Exception:  # onnxruntime refuses this combination itself
            continue
        try:
            spec, params, _ = import_onnx(model)
        except OnnxImportError as error:
            refused.append(f"{attrs}: {error}")
            continue
        mine = Graph(spec).forward(b.sample(), params, keep_caches=False).output
        assert mine.shape == reference.shape and np.abs(mine - reference).max() <= TOLERANCE, \
            f"ConvTranspose on [2, 4, {size}, {size + 1}] with {attrs}: engine {mine.shape} vs {reference.shape}"
        matched += 1
    print(f"matched {matched}, refused {len(refused)}")
    assert matched >= 60 and len(refused) <= 15, (matched, refused)


def test_comparison_can_fail() -> None:
    """Negative control: a slightly wrong weight is caught at this tolerance."""
    builder, output = CASES["small_cnn"]()
    model = builder.build(output)
    x = builder.sample()
    spec, params, _ = import_onnx(model)
    conv = spec["nodes"][0]["id"]
    params[f"{conv}.weight"] = params[f"{conv}.weight"] * 1.001
    mine = Graph(spec).forward(x, params, keep_caches=False).output
    assert np.abs(mine - run_onnxruntime(model, x)).max() > TOLERANCE


def test_dynamic_batch_runs_any_batch() -> None:
    builder, output = CASES["conv_stride2_asymmetric_pads"]()
    model = builder.build(output)
    spec, params, info = import_onnx(model)
    assert spec["input_shape"] == [3, 10, 9] and info["input_shape"] == ["N", 3, 10, 9]
    for batch in (1, 3):
        x = builder.sample(batch)
        mine = Graph(spec).forward(x, params, keep_caches=False).output
        assert np.abs(mine - run_onnxruntime(model, x)).max() <= TOLERANCE


# --- what the import gives back ---------------------------------------------------------------
def test_node_ids_weights_and_info() -> None:
    b = Builder([1, 3, 8, 8], name="tiny")
    y = b.node("Conv", ["x", b.weight((4, 3, 3, 3)), b.weight((4,))], name="/features/0/Conv", pads=[1, 1, 1, 1])
    y = b.node("Relu", [y], name="")                         # unnamed: <op>_<index>
    y = b.node("Relu", [y], name="9lives")                   # cannot start an id: <op>_<index>
    b.node("Constant", [], name="relu_5", value_float=1.0)    # folded: its name stays free
    y = b.node("Relu", [y], name="features_0_Conv")          # clashes with the sanitised first name
    y = b.node("Relu", [y], name="relu_5")
    y = b.node("Flatten", [y], name="input")                 # 'input' is reserved
    model = b.build(b.node("Gemm", [y, b.weight((2, 256)), b.weight((2,))], name="fc", transB=1))
    spec, params, info = import_onnx(model)
    ids = [n["id"] for n in spec["nodes"]]
    assert ids == ["features_0_Conv", "relu_1", "relu_2", "features_0_Conv_2", "relu_5", "input_2", "fc"]
    assert sorted(params) == ["fc.bias", "fc.weight", "features_0_Conv.bias", "features_0_Conv.weight"]
    assert all(p.dtype == np.float32 for p in params.values())
    assert params["fc.weight"].shape == (2, 256)
    assert spec["nodes"][0]["padding"] == [[1, 1], [1, 1]] and spec["nodes"][0]["inputs"] == ["input"]
    assert info["name"] == "tiny" and info["opset"] == 17 and info["input_shape"] == [1, 3, 8, 8]
    assert info["output_shape"] == ["N", 2] and info["node_map"]["/features/0/Conv"] == ["features_0_Conv"]
    assert info["value_map"][info["output_name"]] == "fc"
    assert import_onnx(model)[0] == spec  # stable: the same ids every time
    assert import_onnx(model, name="mine")[2]["name"] == "mine"


def test_reads_a_path(tmp_path) -> None:
    builder, output = CASES["relu"]()
    path = tmp_path / "relu.onnx"
    path.write_bytes(builder.build(output))
    spec, _, info = import_onnx(path)
    assert spec["nodes"][0]["op"] == "relu" and info["name"] == "test"
    builder.name = "main_graph"  # an exporter's stock name says nothing: the file name is used
    path.write_bytes(builder.build(output))
    assert import_onnx(path)[2]["name"] == "relu.onnx"
    assert import_onnx(path.read_bytes())[2]["name"] is None


def test_same_upper_stays_same_and_same_lower_is_explicit() -> None:
    upper, out_u = CASES["conv_auto_pad_same_upper_stride2"]()
    lower, out_l = CASES["conv_auto_pad_same_lower"]()
    assert import_onnx(upper.build(out_u))[0]["nodes"][0]["padding"] == "same"
    assert import_onnx(lower.build(out_l))[0]["nodes"][0]["padding"] == [[1, 0], [1, 0]]


# --- refusals ---------------------------------------------------------------------------------
def test_unsupported_operators_are_all_listed() -> None:
    b = Builder(["N", 3, 8, 8])
    y = b.node("LRN", ["x"], name="norm1", size=3)
    y = b.node("Relu", [y])
    y = b.node("Celu", [y], name="celu_a")
    y = b.node("Celu", [y], name="celu_b")
    model = b.build(b.node("Relu", [y]))
    with pytest.raises(OnnxImportError) as caught:
        import_onnx(model)
    error = caught.value
    assert error.unsupported == [("LRN", "norm1"), ("Celu", "celu_a"), ("Celu", "celu_b")]
    for text in ("LRN (node 'norm1')", "Celu ×2 (nodes 'celu_a', 'celu_b')"):
        assert text in str(error)


def test_a_refusal_groups_repeated_operators_and_stays_short() -> None:
    """ConvNeXt's refusal was 8 KB: each op type is said once, with a few of its nodes and a count."""
    b = Builder(["N", 3, 8, 8])
    y = "x"
    for i in range(40):
        y = b.node("Celu", [y], name=f"/features/features.{i}/block/act/Celu")
        y = b.node("LRN", [y], name=f"/features/features.{i}/norm/LRN", size=3)
    with pytest.raises(OnnxImportError) as caught:
        import_onnx(b.build(y))
    error = caught.value
    assert len(error.unsupported) == 80  # every node is still listed for programs
    text = str(error)
    assert "Celu ×40 (nodes '/features/features.0/block/act/Celu', '/features/features.1/block/act/Celu', " \
           "'/features/features.2/block/act/Celu' and 37 more)" in text
    assert "LRN ×40 (nodes '/features/features.0/norm/LRN'" in text and text.count(" and 37 more") == 2
    assert len(text) < 1200, len(text)


def test_problems_with_the_same_reason_are_said_once() -> None:
    b = Builder(["N", 3, 8, 8], opset=13)
    outputs = [b.node("Erf", [b.node("Relu", ["x"])], name=f"erf_{i}") for i in range(5)]
    y = outputs[0]
    for other in outputs[1:]:
        y = b.node("Add", [y, other])
    with pytest.raises(OnnxImportError) as caught:
        import_onnx(b.build(y))
    error = caught.value
    assert len(error.problems) == 5 and all("the engine takes Erf only inside GELU" in p for p in error.problems)
    assert "5 Erf nodes ('erf_0', 'erf_1', 'erf_2' and 2 more): the engine takes Erf only inside GELU" in str(error)
    assert str(error).count("only inside GELU") == 1


def test_unsupported_uses_of_known_operators_are_all_listed() -> None:
    b = Builder(["N", 3, 8, 8], opset=13)
    p = b.node("Pad", ["x", b.const(np.array([0, 1, 1, 1, 0, 0, 1, 1], dtype=np.int64))], name="pad",
               mode="reflect")                                   # pads the channel axis
    bad1 = b.node("Relu", [p], name="relu_after_pad")           # depends on a refused node: not repeated
    r = b.node("Resize", ["x", "", b.const(np.array([1, 1, 2, 2], dtype=np.float32))], name="resize",
               mode="linear", coordinate_transformation_mode="asymmetric")  # half_pixel linear is supported
    bad2 = b.node("Flatten", [r], name="after_resize")           # depends on a refused node: not repeated
    ok = b.node("Flatten", [b.node("Relu", ["x"])])
    model = b.build(b.node("Concat", [b.node("Flatten", [bad1]), bad2, ok], axis=1))
    with pytest.raises(OnnxImportError) as caught:
        import_onnx(model)
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert "Pad node 'pad'" in problems[0] and "batch or channel axis" in problems[0]
    assert "Resize node 'resize'" in problems[1] and "mode 'linear'" in problems[1]


@pytest.mark.parametrize("build, message", [
    (lambda b: b.node("Pad", ["x", b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], mode="wrap"),
     "mode 'wrap' has no engine equivalent"),
    (lambda b: b.node("Pad", ["x", b.const(np.array([0, 0, 8, 1, 0, 0, 1, 1], np.int64))], mode="reflect"),
     "must be smaller than the input's 8 pixels"),
    (lambda b: b.node("Conv", [b.node("Pad", ["x", b.const(np.array([0, 1, 0, 0, 0, 1, 0, 0], np.int64))]),
                               b.weight((2, 5, 3, 3))]), "batch or channel axis"),
    (lambda b: b.node("Gemm", [b.node("Flatten", ["x"]), b.node("Flatten", ["x"])], transB=1),
     "computed while the model runs"),
    (lambda b: b.node("Gemm", [b.node("Flatten", ["x"]), b.weight((192, 2))], transA=1), "transA"),
    (lambda b: b.node("Gemm", [b.node("Flatten", ["x"]), b.weight((192, 2)), b.weight((2, 2))]), "bias per output"),
    (lambda b: b.node("MatMul", ["x", b.weight((2, 1, 3, 8, 2))]), "has axes before the batch axis"),
    (lambda b: b.node("Softmax", ["x"], axis=0), "batch axis"),
    (lambda b: b.node("Concat", ["x", "x"], axis=0), "batch axis"),
    (lambda b: b.node("Flatten", ["x"], axis=2), "batch axis"),
    (lambda b: b.node("Reshape", ["x", b.const(np.array([3, -1], np.int64))]), "keep the batch axis"),
    (lambda b: b.node("Pow", ["x", b.node("Relu", ["x"])]), "computed while the model runs"),
    (lambda b: b.node("Gather", ["x", b.const(np.array([2, 0], np.int64))], axis=1), "do not form a slice"),
    (lambda b: b.node("Reshape", ["x", b.node("Mul", [b.node("Shape", ["x"]), b.const(np.int64(2))])]),
     "does not keep the batch axis"),
    (lambda b: b.node("Reshape", ["x", b.node("Concat", [b.const(np.array([0, 6], np.int64)), b.node(
        "Gather", [b.node("Shape", ["x"]), b.const(np.array([0], np.int64))])], axis=0)]), "from the batch size"),
    (lambda b: b.node("Unsqueeze", ["x", b.const(np.array([0], np.int64))]), "before the batch axis"),
    (lambda b: b.node("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2], auto_pad="SAME_UPPER"),
     "the result is ambiguous"),
    (lambda b: b.node("AveragePool", ["x"], kernel_shape=[1, 1], strides=[3, 3], auto_pad="SAME_UPPER",
                      ceil_mode=1), "negative padding"),
    (lambda b: b.node("BatchNormalization", ["x", *[b.weight((3,)) for _ in range(4)]], outputs=["bn", "m", "v"],
                      training_mode=1)[0], "evaluation mode"),
])
def test_refusals_say_why(build, message) -> None:
    b = Builder(["N", 3, 8, 8], opset=18 if "training_mode" not in message else 15)
    model = b.build(build(b))
    with pytest.raises(OnnxImportError, match="cannot be imported") as caught:
        import_onnx(model)
    assert message in str(caught.value)


def test_max_pool_indices_output_is_refused() -> None:
    b = Builder(["N", 3, 8, 8])
    _, indices = b.node("MaxPool", ["x"], outputs=["y", "idx"], kernel_shape=[2, 2])
    model = b.build(b.node("Cast", [indices], to=1))
    with pytest.raises(OnnxImportError, match="the argmax indices"):
        import_onnx(model)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is not a model at all \x00\xff", "not an ONNX model"),
    (b"\x08\x07", "no ONNX graph"),
])
def test_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(OnnxImportError, match=message):
        import_onnx(data)


def test_two_inputs_are_refused() -> None:
    from onnx import TensorProto, helper

    b = Builder(["N", 3, 4, 4])
    model = b.build(b.node("Add", ["x", "x2"]), extra_inputs=[
        helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 3, 4, 4])])
    with pytest.raises(OnnxImportError, match=r"2 inputs \('x', 'x2'\)"):
        import_onnx(model)


def test_two_outputs_are_refused() -> None:
    b = Builder(["N", 3, 4, 4])
    model = b.build([b.node("Relu", ["x"]), b.node("Sigmoid", ["x"])])
    with pytest.raises(OnnxImportError, match="2 outputs"):
        import_onnx(model)


def test_dynamic_spatial_shape_is_refused() -> None:
    b = Builder(["N", 3, "H", "W"])
    model = b.build(b.node("Relu", ["x"]))
    with pytest.raises(OnnxImportError, match="axis 2, 3 is dynamic"):
        import_onnx(model)


# --- a model exported by PyTorch --------------------------------------------------------------
def test_pytorch_export_matches(torch_or_skip) -> None:
    torch = torch_or_skip
    nn = torch.nn

    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                                      nn.ReLU6())
            self.branch_a = nn.Conv2d(8, 4, 1)
            self.branch_b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish(),
                                          nn.Conv2d(8, 4, 1))
            self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
            self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 5))

        def forward(self, x):
            x = self.stem(x)
            x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1) + x
            x = nn.functional.leaky_relu(self.up(self.pool(x)), 0.1)
            x = self.gap(x)
            x = x.view(x.size(0), -1)  # with a dynamic batch: Shape -> Gather -> Unsqueeze -> Concat -> Reshape
            return torch.softmax(self.head(x), dim=1)

    torch.manual_seed(0)
    model = Small().eval()
    with torch.no_grad():  # non-trivial running statistics
        model.stem[1].running_mean.uniform_(-0.5, 0.5)
        model.stem[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 20, 20)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17, input_names=["image"],
                              output_names=["probs"], dynamic_axes={"image": {0: "batch"}},
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    except (ImportError, ModuleNotFoundError, RuntimeError) as error:  # exporter deps vary across torch builds
        pytest.skip(f"torch.onnx.export is not usable here: {error}")
    spec, params, info = import_onnx(buffer.getvalue())
    import onnx

    exported = {n.op_type for n in onnx.load_from_string(buffer.getvalue()).graph.node}
    assert {"BatchNormalization", "Clip", "Shape", "Gather", "Reshape", "ConvTranspose"} <= exported
    ops = {n["id"]: n["op"] for n in spec["nodes"]}
    assert ops["stem_stem.1_BatchNormalization"] == "batch_norm" and ops["stem_stem.2_Clip"] == "clip"
    mine = Graph(spec).forward(x.numpy(), params, keep_caches=False).output
    with torch.no_grad():
        theirs = model(x).numpy()
    assert info["input_shape"] == ["batch", 3, 20, 20]
    assert np.abs(mine - theirs).max() <= TOLERANCE
    assert np.abs(mine - run_onnxruntime(buffer.getvalue(), x.numpy())).max() <= TOLERANCE
