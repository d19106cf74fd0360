"""One converter per ONNX operator: ONNX node -> engine spec node(s), with weights.

Each converter reads its node's inputs from the ``ImportContext`` (run-time values or constants),
emits engine nodes and records its outputs, or raises ``NodeError`` saying why this use of the
operator has no engine equivalent. ONNX counts the batch axis in its axes and shapes; the engine's
shapes leave it out (its ``dim`` attributes count it, as PyTorch's do).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx

from app.importers.onnx_arith import CONVERTERS as ARITH_CONVERTERS
from app.importers.onnx_arith import convert_general_matmul
from app.importers.onnx_import import BATCH_SIZE, ImportContext, NodeError, PendingPad, Value, attributes, prod
from app.importers.onnx_recurrent import CONVERTERS as RECURRENT_CONVERTERS
from app.importers.onnx_recurrent import with_time_major_views
from app.importers.onnx_reduce_norm import CONVERTERS as REDUCE_NORM_CONVERTERS
from app.importers.onnx_safety import tensor_array
from engine.ops import OP_REGISTRY
from engine.padding import same_padding

Pairs = list[list[int]]
_FLOAT_MAX = float(np.finfo(np.float32).max)


# --- padding ----------------------------------------------------------------------------------
def _spatial_pads(attrs: dict, nd: int, kernel: list[int], stride: list[int], dilation: list[int],
                  in_sizes: list[int]) -> tuple[Pairs, str]:
    """ONNX ``auto_pad`` / ``pads`` as one ``[before, after]`` pair per spatial axis, and the auto_pad mode."""
    auto = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = list(attrs.get("pads", [0] * 2 * nd))
        if len(pads) != 2 * nd:
            raise NodeError(f"pads has {len(pads)} values; a {nd}-D op needs {2 * nd} (all begins, then all ends)")
        if any(p < 0 for p in pads):
            raise NodeError(f"negative pads {pads} (cropping) have no engine equivalent")
        return [[pads[i], pads[i + nd]] for i in range(nd)], auto
    if auto == "VALID":
        return [[0, 0] for _ in range(nd)], auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pairs = [list(same_padding(n, k, s, d)) for n, k, s, d in zip(in_sizes, kernel, stride, dilation)]
        if auto == "SAME_LOWER":  # the odd pixel goes before
            pairs = [[after, before] for before, after in pairs]
        return pairs, auto
    raise NodeError(f"auto_pad '{auto}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")


def _with_folded_pad(pairs: Pairs, pad: PendingPad | None) -> Pairs:
    if pad is None:
        return pairs
    return [[b + pb, a + pa] for (b, a), (pb, pa) in zip(pairs, pad.pairs)]


def _padded_sizes(x: Value, pad: PendingPad | None) -> list[int]:
    sizes = list(x.shape[1:])
    if pad is not None:
        sizes = [n + b + a for n, (b, a) in zip(sizes, pad.pairs)]
    return sizes


def _per_axis(attrs: dict, key: str, nd: int, default: int) -> list[int]:
    values = list(attrs.get(key, [default] * nd))
    if len(values) != nd:
        raise NodeError(f"{key} has {len(values)} values for {nd} spatial axes")
    return [int(v) for v in values]


def _spatial_input(cx: ImportContext, node: onnx.NodeProto, nd: int) -> tuple[Value, PendingPad | None]:
    x, pad = cx.value_or_pad(node.input[0], node)
    if x.rank != nd + 2:
        raise NodeError(f"a {nd}-D {node.op_type} needs an input [N, C, {nd} spatial axes], got rank {x.rank}")
    return x, pad


def _unfold(cx: ImportContext, node: onnx.NodeProto, pad: PendingPad, why: str) -> tuple[Value, None]:
    """The input of ``node`` with its pending Pad made an engine pad node, for when it cannot be folded in."""
    return cx.materialise_pad(node.input[0], node, why), None


def _fold_note(cx: ImportContext, pad: PendingPad | None, node_id: str) -> None:
    if pad is not None:
        cx.notes.append(f"Pad node '{pad.node_name}' {pad.pairs} folded into the padding of '{node_id}'")


# --- convolutions -----------------------------------------------------------------------------
def convert_conv(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    attrs = attributes(node)
    weight = cx.const(node, 1, "the weight W")
    bias = cx.optional_const(node, 2, "the bias B")
    nd = weight.ndim - 2
    if nd not in (1, 2, 3):
        raise NodeError(f"its weight has shape {list(weight.shape)}: a {nd}-D convolution; the engine has "
                        "conv1d, conv2d and conv3d")
    x, pad = _spatial_input(cx, node, nd)
    if pad is not None and pad.value != 0:
        x, pad = _unfold(cx, node, pad, f"it pads with {pad.value:g} and a convolution pads with zeros")
    kernel = list(weight.shape[2:])
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != kernel:
        raise NodeError(f"kernel_shape {list(attrs['kernel_shape'])} does not match its weight {list(weight.shape)}")
    stride = _per_axis(attrs, "strides", nd, 1)
    dilation = _per_axis(attrs, "dilations", nd, 1)
    pairs, auto = _spatial_pads(attrs, nd, kernel, stride, dilation, _padded_sizes(x, pad))
    padding = "same" if auto == "SAME_UPPER" and pad is None else _with_folded_pad(pairs, pad)
    spec = {"out_channels": int(weight.shape[0]), "kernel_size": kernel, "stride": stride, "padding": padding,
            "dilation": dilation, "groups": int(attrs.get("group", 1)), "bias": bias is not None}
    params = {"weight": weight} | ({"bias": bias} if bias is not None else {})
    cx.values[node.output[0]] = cx.emit(node_id, f"conv{nd}d", spec, [x.node_id], params)
    _fold_note(cx, pad, node_id)


def convert_conv_transpose(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    attrs = attributes(node)
    weight = cx.const(node, 1, "the weight W")
    bias = cx.optional_const(node, 2, "the bias B")
    nd = weight.ndim - 2
    op = f"conv_transpose{nd}d"
    if op not in OP_REGISTRY:
        available = ", ".join(sorted(name for name in OP_REGISTRY if name.startswith("conv_transpose")))
        raise NodeError(f"a {nd}-D transposed convolution; the engine has {available}")
    x = cx.value(node.input[0], node)
    if x.rank != nd + 2:
        raise NodeError(f"a {nd}-D ConvTranspose needs an input [N, C, {nd} spatial axes], got rank {x.rank}")
    groups = int(attrs.get("group", 1))
    kernel = list(weight.shape[2:])
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != kernel:
        raise NodeError(f"kernel_shape {list(attrs['kernel_shape'])} does not match its weight {list(weight.shape)}")
    stride = _per_axis(attrs, "strides", nd, 1)
    dilation = _per_axis(attrs, "dilations", nd, 1)
    output_padding = _per_axis(attrs, "output_padding", nd, 0)
    in_sizes = list(x.shape[1:])
    auto = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        # ONNX: total = stride·(in − 1) + output_padding + dilation·(kernel − 1) + 1 − output_shape,
        # split with the odd pixel at the end for SAME_UPPER, at the beginning otherwise.
        if "output_shape" in attrs:
            wanted = [int(v) for v in attrs["output_shape"]][-nd:]
        else:
            wanted = [n * s for n, s in zip(in_sizes, stride)]
        padding = []
        for n, k, s, d, op_, out in zip(in_sizes, kernel, stride, dilation, output_padding, wanted):
            total = s * (n - 1) + op_ + d * (k - 1) + 1 - out
            if total < 0:
                asked = "output_shape" if "output_shape" in attrs else f"auto_pad {auto} (output = input × stride)"
                raise NodeError(f"{asked} asks for output {wanted}, larger than this transposed convolution makes "
                                "(negative padding, which the engine cannot express); export with explicit pads "
                                "and output_padding")
            upper = auto == "SAME_UPPER"
            padding.append([total // 2, total - total // 2] if upper else [total - total // 2, total // 2])
    elif auto == "VALID":
        padding = [[0, 0] for _ in range(nd)]
    else:
        padding, _ = _spatial_pads(attrs, nd, kernel, stride, dilation, in_sizes)
    spec = {"out_channels": int(weight.shape[1]) * groups, "kernel_size": kernel, "stride": stride,
            "padding": padding, "output_padding": output_padding, "dilation": dilation, "groups": groups,
            "bias": bias is not None}
    params = {"weight": weight} | ({"bias": bias} if bias is not None else {})
    cx.values[node.output[0]] = cx.emit(node_id, op, spec, [x.node_id], params)


# --- pooling ----------------------------------------------------------------------------------
def _only_first_output_used(cx: ImportContext, node: onnx.NodeProto, what: str) -> None:
    for name in node.output[1:]:
        if name and (name in cx.consumers or name in cx.graph_outputs):
            raise NodeError(f"its output '{name}' ({what}) is used; the engine computes only the main output")


def _pool(cx: ImportContext, node: onnx.NodeProto, node_id: str, kind: str) -> None:
    attrs = attributes(node)
    kernel = [int(k) for k in attrs.get("kernel_shape", [])]
    nd = len(kernel)
    if nd not in (1, 2, 3):
        raise NodeError(f"kernel_shape {kernel}: the engine pools over 1, 2 or 3 spatial axes")
    _only_first_output_used(cx, node, "the argmax indices")
    x, pad = _spatial_input(cx, node, nd)
    stride = _per_axis(attrs, "strides", nd, 1)  # ONNX's default stride is 1, not the kernel
    dilation = _per_axis(attrs, "dilations", nd, 1)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    count_include_pad = bool(attrs.get("count_include_pad", 0))  # ONNX's default is 0, PyTorch's True
    pairs, auto = _spatial_pads(attrs, nd, kernel, stride, dilation, _padded_sizes(x, pad))
    if auto.startswith("SAME") and any(d != 1 for d in dilation):
        raise NodeError(f"auto_pad {auto} with dilations {dilation}: onnxruntime pads as if the kernel were not "
                        "dilated, the ONNX spec as if it were, so the result is ambiguous; export with explicit pads")
    if auto.startswith("SAME"):
        for n, k, s in zip(_padded_sizes(x, pad), kernel, stride):
            if (-(-n // s) - 1) * s + k - n < 0:
                raise NodeError(f"auto_pad {auto} with kernel {k} smaller than stride {s} on an axis of {n}: "
                                "ONNX's formula gives negative padding there (onnxruntime refuses it); export with "
                                "explicit pads")
    if kind == "max" and pad is not None and not (pad.value == -math.inf or (pad.value <= 0 and x.nonnegative)):
        x, pad = _unfold(cx, node, pad, f"it pads with {pad.value:g}, max pooling with −inf (they agree only for "
                                        "-inf, or for 0 after a ReLU-like op)")
    if kind == "avg" and pad is not None and (pad.value != 0 or not count_include_pad or ceil_mode):
        x, pad = _unfold(cx, node, pad, "a Pad folds into average pooling only for zero padding with "
                                        "count_include_pad=1 and ceil_mode=0 (then both count the zeros)")
    if kind == "max":
        spec = {"kernel_size": kernel, "stride": stride, "padding": _with_folded_pad(pairs, pad),
                "dilation": dilation, "ceil_mode": ceil_mode}
        op = f"max_pool{nd}d"
    else:
        if any(d != 1 for d in dilation):
            raise NodeError(f"dilations {dilation}: the engine's average pooling has no dilation")
        spec = {"kernel_size": kernel, "stride": stride, "padding": _with_folded_pad(pairs, pad),
                "ceil_mode": ceil_mode, "count_include_pad": count_include_pad}
        op = f"avg_pool{nd}d"
    cx.values[node.output[0]] = cx.emit(node_id, op, spec, [x.node_id], nonnegative=x.nonnegative)
    _fold_note(cx, pad, node_id)


def convert_max_pool(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    _pool(cx, node, node_id, "max")


def convert_average_pool(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    _pool(cx, node, node_id, "avg")


def convert_global_average_pool(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    x = cx.value(node.input[0], node)
    if x.rank < 3:
        raise NodeError(f"its input has no spatial axes (rank {x.rank})")
    out = cx.emit(node_id, "global_avg_pool", {}, [x.node_id], nonnegative=x.nonnegative)
    # ONNX keeps the pooled axes as 1s: (N, C, 1, 1). The engine gives (N, C); a later consumer
    # that needs the 1s gets a reshape (a Flatten does not).
    out.onnx_shape = (x.shape[0],) + (1,) * (x.rank - 2)
    cx.values[node.output[0]] = out


def convert_global_max_pool(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    x = cx.value(node.input[0], node)
    nd = x.rank - 2
    if nd not in (1, 2, 3):
        raise NodeError(f"its input has rank {x.rank}; the engine pools over 1, 2 or 3 spatial axes")
    size = list(x.shape[1:])
    cx.values[node.output[0]] = cx.emit(node_id, f"max_pool{nd}d", {"kernel_size": size, "stride": size},
                                        [x.node_id], nonnegative=x.nonnegative)


# --- normalisation, activations ---------------------------------------------------------------
def convert_batch_norm(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    attrs = attributes(node)
    if attrs.get("training_mode", 0):
        raise NodeError("training_mode=1; export the model in evaluation mode (model.eval())")
    _only_first_output_used(cx, node, "a training statistic")
    x = cx.value(node.input[0], node)
    params = {"weight": cx.const(node, 1, "scale"), "bias": cx.const(node, 2, "B"),
              "running_mean": cx.const(node, 3, "input_mean"), "running_var": cx.const(node, 4, "input_var")}
    # ONNX's momentum weighs the old running statistic, PyTorch's the new batch statistic.
    spec = {"eps": float(attrs.get("epsilon", 1e-5)), "momentum": round(1.0 - float(attrs.get("momentum", 0.9)), 9)}
    cx.values[node.output[0]] = cx.emit(node_id, "batch_norm", spec, [x.node_id], params)


def _elementwise(op: str, attrs_from: Callable[[dict], dict] | None = None,
                 nonnegative: bool = False) -> Callable[[ImportContext, onnx.NodeProto, str], None]:
    def convert(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
        x = cx.raw_value(node.input[0], node)
        spec = attrs_from(attributes(node)) if attrs_from else {}
        out = cx.emit(node_id, op, spec, [x.node_id], nonnegative=nonnegative or (op == "identity" and x.nonnegative))
        out.onnx_shape = x.onnx_shape  # elementwise: whatever shape ONNX sees stays
        cx.values[node.output[0]] = out

    convert.__doc__ = f"ONNX elementwise op -> engine '{op}'."
    return convert


def convert_clip(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    if cx.opset < 11:
        attrs = attributes(node)
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo_array = cx.optional_const(node, 1, "min")
        hi_array = cx.optional_const(node, 2, "max")
        lo = None if lo_array is None else float(np.asarray(lo_array).reshape(-1)[0])
        hi = None if hi_array is None else float(np.asarray(hi_array).reshape(-1)[0])
    lo = None if lo is None or lo <= -_FLOAT_MAX else float(lo)
    hi = None if hi is None or hi >= _FLOAT_MAX else float(hi)
    x = cx.raw_value(node.input[0], node)
    out = cx.emit(node_id, "clip", {"min": lo, "max": hi}, [x.node_id],
                  nonnegative=(lo is not None and lo >= 0) or (x.nonnegative and (hi is None or hi >= 0)))
    out.onnx_shape = x.onnx_shape
    cx.values[node.output[0]] = out


def convert_softmax(cx: ImportContext, node: onnx.NodeProto, node_id: str, op: str = "softmax") -> None:
    x = cx.value(node.input[0], node)
    full = (0, *x.shape)  # ONNX shape, batch axis first (its size does not matter here)
    rank = len(full)
    axis = int(attributes(node).get("axis", 1 if cx.opset < 13 else -1))
    if not -rank <= axis < rank:
        raise NodeError(f"axis {axis} is out of range for an input of rank {rank}")
    axis %= rank
    if axis == 0:
        raise NodeError("axis 0 is the batch axis: a softmax over it would mix samples")
    if cx.opset >= 13 or all(d == 1 for d in full[axis + 1:]):
        cx.values[node.output[0]] = cx.emit(node_id, op, {"dim": axis}, [x.node_id], nonnegative=op == "softmax")
        return
    # Before opset 13, Softmax flattens axes axis.. into one and normalises over all of them.
    flat = cx.emit(cx.new_id(f"{node_id}_flat"), "reshape",
                   {"shape": [*full[1:axis], prod(full[axis:])]}, [x.node_id])
    soft = cx.emit(node_id, op, {"dim": axis}, [flat.node_id])
    cx.values[node.output[0]] = cx.emit(cx.new_id(f"{node_id}_unflat"), "reshape", {"shape": list(full[1:])},
                                        [soft.node_id], nonnegative=op == "softmax")
    cx.notes.append(f"Softmax '{node.name}' (opset {cx.opset}, axis {axis}) normalises over axes {axis}..{rank - 1} "
                    f"together: imported as reshape, softmax, reshape")


def convert_log_softmax(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    convert_softmax(cx, node, node_id, op="log_softmax")


def convert_dropout(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    _only_first_output_used(cx, node, "the dropout mask")
    if cx.opset < 12:
        ratio = float(attributes(node).get("ratio", 0.5))
    else:
        given = cx.optional_const(node, 1, "ratio")
        ratio = 0.5 if given is None else float(np.asarray(given).reshape(-1)[0])
        training = cx.optional_const(node, 2, "training_mode")
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            raise NodeError("training_mode is true; export the model in evaluation mode (model.eval())")
    x = cx.raw_value(node.input[0], node)
    out = cx.emit(node_id, "dropout", {"p": ratio}, [x.node_id], nonnegative=x.nonnegative)
    out.onnx_shape = x.onnx_shape
    cx.values[node.output[0]] = out


# --- merges -----------------------------------------------------------------------------------
_NUMPY_BINARY = {"Add": np.add, "Mul": np.multiply, "Sub": np.subtract, "Div": np.divide}


def _const_operand(c: np.ndarray, rank: int) -> np.ndarray:
    """A constant operand laid out for the engine: without the batch axis, broadcasting as in ONNX."""
    c = np.asarray(c, dtype=np.float32)
    if c.ndim > rank:
        raise NodeError(f"a constant of rank {c.ndim} cannot broadcast onto a tensor of rank {rank}")
    if c.ndim == rank:
        if c.shape[0] != 1:
            raise NodeError(f"a constant of shape {list(c.shape)} varies along the batch axis")
        c = c[0]
    return c


def _binary(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    a_name, b_name = node.input[0], node.input[1]
    fold = _NUMPY_BINARY[node.op_type]
    if cx.is_const(a_name) and cx.is_const(b_name):
        cx.consts[node.output[0]] = fold(cx.consts[a_name], cx.consts[b_name])
        return
    op = "add" if node.op_type in ("Add", "Sub") else "mul"
    if cx.is_const(a_name) or cx.is_const(b_name):
        const_first = cx.is_const(a_name)
        x = cx.value(b_name if const_first else a_name, node)
        c = _const_operand(cx.consts[a_name if const_first else b_name], x.rank)
        if const_first and node.op_type in ("Sub", "Div"):
            op = node.op_type.lower()  # constant - tensor, constant / tensor: the engine's sub and div
        elif node.op_type == "Sub":
            c = -c
        elif node.op_type == "Div":
            with np.errstate(divide="ignore"):
                c = 1.0 / c
        k = cx.emit_constant(node_id, c)
        inputs = [k.node_id, x.node_id] if const_first else [x.node_id, k.node_id]
    else:
        if node.op_type in ("Sub", "Div"):
            op = node.op_type.lower()
        a, b = cx.value(a_name, node), cx.value(b_name, node)
        if a.rank != b.rank:
            raise NodeError(f"ranks {a.rank} and {b.rank} differ: broadcasting would align a batch axis with "
                            "another axis")
        inputs = [a.node_id, b.node_id]
    cx.values[node.output[0]] = cx.emit(node_id, op, {}, inputs)


def convert_concat(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    names = [n for n in node.input if n]
    axis = int(attributes(node)["axis"])
    if all(cx.is_const(n) for n in names):
        cx.consts[node.output[0]] = np.concatenate([cx.consts[n] for n in names], axis=axis)
        return
    computed = [cx.value(n, node) for n in names if not cx.is_const(n)]
    rank = computed[0].rank
    if not -rank <= axis < rank:
        raise NodeError(f"axis {axis} is out of range for inputs of rank {rank}")
    axis %= rank
    if axis == 0:
        raise NodeError("axis 0 joins along the batch axis, which would mix samples")
    values = []
    for n in names:  # a constant (a vision transformer's class token) becomes a constant node every sample shares
        if cx.is_const(n):
            c = np.asarray(cx.consts[n], dtype=np.float32)
            if c.ndim != rank or c.shape[0] != 1:
                raise NodeError(f"the constant input '{n}' of shape {list(c.shape)} must have the other inputs' rank "
                                f"({rank}) and 1 on the batch axis")
            values.append(cx.emit_constant(node_id, c[0]))
        else:
            values.append(cx.value(n, node))
    cx.values[node.output[0]] = cx.emit(node_id, "concat", {"dim": axis}, [v.node_id for v in values],
                                        nonnegative=all(v.nonnegative for v in values))


# --- shapes -----------------------------------------------------------------------------------
def convert_flatten(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    x = cx.raw_value(node.input[0], node)
    sample = x.onnx_shape if x.onnx_shape is not None else x.shape
    rank = len(sample) + 1
    axis = int(attributes(node).get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis == 0 or prod(sample[:axis - 1]) != 1:
        raise NodeError(f"axis {axis} of [N, {', '.join(map(str, sample))}] would fold other axes into the "
                        "batch axis; only Flatten that keeps the batch axis (axis=1) is supported")
    if x.shape == (prod(sample),):
        cx.values[node.output[0]] = Value(x.node_id, x.shape, None, x.nonnegative)  # already flat
        return
    cx.values[node.output[0]] = cx.emit(node_id, "flatten", {"start_dim": 1}, [x.node_id], nonnegative=x.nonnegative)


def _reshaped(cx: ImportContext, x: Value, shape: list[int], node_id: str) -> Value:
    """``x`` reshaped to the engine shape ``shape`` (no batch axis, resolved): an alias if nothing changes."""
    if tuple(shape) == x.shape:
        return Value(x.node_id, x.shape, None, x.nonnegative)  # the engine holds it so already
    return cx.emit(node_id, "reshape", {"shape": list(shape)}, [x.node_id], nonnegative=x.nonnegative)


def convert_reshape(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    attrs = attributes(node)
    given = cx.const(node, 1, "shape") if cx.opset >= 5 else np.asarray(attrs["shape"])
    if cx.is_const(node.input[0]):
        data = cx.consts[node.input[0]]
        target = [data.shape[i] if s == 0 and not attrs.get("allowzero", 0) else s for i, s in enumerate(given)]
        cx.consts[node.output[0]] = data.reshape(target)
        return
    x = cx.raw_value(node.input[0], node)
    shape = [int(s) for s in given]
    sample = list(x.onnx_shape if x.onnx_shape is not None else x.shape)
    full = ["N", *sample]
    if shape == [-1] and cx.static_batch == 1 and _only_flat_gathers(cx, node.output[0]):
        cx.flat_views[node.output[0]] = x  # the dynamo exporter's as_strided: resolved by the Gather that reads it
        return
    if not shape:
        raise NodeError("an empty target shape would drop the batch axis")
    if shape[0] == BATCH_SIZE:
        shape[0] = -2  # -2 marks "the batch axis, kept"
    if not attrs.get("allowzero", 0):
        for i, s in enumerate(shape):
            if s == 0:
                if i >= len(full):
                    raise NodeError(f"shape {shape} copies axis {i} (a 0), but the input has only {len(full)} axes")
                shape[i] = -2 if i == 0 else full[i]
    first, rest = shape[0], shape[1:]
    written = ["N" if s == -2 else s for s in shape]
    if any(s < -1 for s in rest):
        raise NodeError(f"target shape {written} computes an axis from the batch size; the engine reshapes each "
                        "sample on its own, so only the first axis may depend on the batch")
    total = prod(sample)
    known = prod(s for s in rest if s != -1)
    if first == -1:
        keeps_batch = -1 not in rest and known == total
    else:
        keeps_batch = first == -2 or (first == 1 and cx.static_batch in (1, None)) or first == cx.static_batch
    if not keeps_batch or rest.count(-1) > 1 or (-1 not in rest and known != total) or (known and total % known):
        raise NodeError(f"target shape {written} does not keep the batch axis of the input "
                        f"[N, {', '.join(map(str, sample))}]: the engine reshapes each sample, so the first axis "
                        "must stay the batch (0, -1 or the batch size) and the rest hold the sample's values")
    if -1 in rest:
        rest[rest.index(-1)] = total // known
    cx.values[node.output[0]] = _reshaped(cx, x, rest, node_id)


def _axes(cx: ImportContext, node: onnx.NodeProto, rank: int) -> list[int] | None:
    """Squeeze/Unsqueeze ``axes`` (an attribute before opset 13, an input after), sorted, in ``0..rank-1``."""
    if cx.opset < 13:
        axes = attributes(node).get("axes")
    else:
        given = cx.optional_const(node, 1, "axes")
        axes = None if given is None else np.atleast_1d(given).tolist()
    return None if axes is None else sorted(int(a) % rank for a in axes)


def _axes_number(cx: ImportContext, node: onnx.NodeProto) -> int:
    if cx.opset < 13:
        return len(attributes(node).get("axes", []))
    return 0 if len(node.input) < 2 else np.atleast_1d(cx.const(node, 1, "axes")).size


def convert_unsqueeze(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    if cx.is_const(node.input[0]):
        data = cx.consts[node.input[0]]
        axes = _axes(cx, node, data.ndim + _axes_number(cx, node)) or []
        cx.consts[node.output[0]] = np.expand_dims(data, tuple(axes)) if axes else data
        return
    x = cx.raw_value(node.input[0], node)
    axes = _axes(cx, node, x.rank + _axes_number(cx, node))
    if not axes:
        raise NodeError("axes are missing")
    if axes[0] == 0:
        raise NodeError("axis 0 would put a new axis before the batch axis")
    full: list[int | str] = ["N", *(x.onnx_shape if x.onnx_shape is not None else x.shape)]
    for axis in axes:  # ascending, so each index is already in the output's numbering
        full.insert(axis, 1)
    cx.values[node.output[0]] = _reshaped(cx, x, [int(d) for d in full[1:]], node_id)


def convert_squeeze(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    if cx.is_const(node.input[0]):
        data = cx.consts[node.input[0]]
        axes = _axes(cx, node, max(data.ndim, 1))
        cx.consts[node.output[0]] = np.squeeze(data, axis=None if axes is None else tuple(axes))
        return
    x = cx.raw_value(node.input[0], node)
    shape = list(x.onnx_shape if x.onnx_shape is not None else x.shape)
    axes = _axes(cx, node, x.rank)
    if axes is None:
        axes = [i for i, d in enumerate(shape, 1) if d == 1]  # every axis of size 1 except the batch
    if 0 in axes:
        raise NodeError("squeezing axis 0 would remove the batch axis")
    if any(shape[a - 1] != 1 for a in axes):
        raise NodeError(f"axes {axes} of [N, {', '.join(map(str, shape))}] are not all of size 1")
    kept = [d for i, d in enumerate(shape, 1) if i not in axes]
    if not kept:
        raise NodeError("squeezing every axis after the batch leaves no sample shape; the engine needs one")
    cx.values[node.output[0]] = _reshaped(cx, x, kept, node_id)


# --- shape arithmetic on constants ------------------------------------------------------------
def convert_shape(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """The shape of a run-time tensor is known when importing, except a dynamic batch (``BATCH_SIZE``)."""
    if cx.is_const(node.input[0]):
        shape = list(cx.consts[node.input[0]].shape)
    else:
        x = cx.raw_value(node.input[0], node)
        batch = cx.static_batch if cx.static_batch is not None else BATCH_SIZE
        shape = [batch, *(x.onnx_shape if x.onnx_shape is not None else x.shape)]
    attrs = attributes(node)
    start, end = attrs.get("start", 0), attrs.get("end")
    cx.consts[node.output[0]] = np.array(shape[start:end], dtype=np.int64)


def _shape_arithmetic_only(cx: ImportContext, node: onnx.NodeProto) -> None:
    if not cx.is_const(node.input[0]):
        raise NodeError(f"the engine takes {node.op_type} only in shape arithmetic on constants (Shape -> Gather "
                        "-> Concat -> Reshape), not on a tensor computed from the input")


def _only_flat_gathers(cx: ImportContext, name: str) -> bool:
    """Whether every reader of ``name`` is a Gather along axis 0 with constant indices (``as_strided`` as the dynamo
    exporter writes it: the tensor flattened, batch axis and all, then gathered back into shape)."""
    readers = cx.consumers.get(name, [])
    return bool(readers) and name not in cx.graph_outputs and all(
        n.op_type == "Gather" and n.input[0] == name and int(attributes(n).get("axis", 0)) == 0
        and cx.is_const(n.input[1]) for _, n in readers)


def _gather_flat_view(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """A Gather of a flattened batch-1 tensor: a reshape when it reads every value in order (the ``as_strided`` of a
    contiguous tensor), else refused."""
    x = cx.flat_views[node.input[0]]
    indices = np.asarray(cx.consts[node.input[1]])
    sample = x.onnx_shape if x.onnx_shape is not None else x.shape
    total = prod(sample)
    if indices.ndim < 1 or indices.shape[0] != 1 or not np.array_equal(indices.reshape(-1), np.arange(total)):
        raise NodeError(f"it gathers the flattened input [1, {', '.join(map(str, sample))}] with indices of shape "
                        f"{list(indices.shape)} in another order (a strided view); the engine takes only views that "
                        "read every value in order, which are reshapes")
    cx.values[node.output[0]] = _reshaped(cx, x, [int(d) for d in indices.shape[1:]], node_id)


def convert_gather(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    if node.input[0] in cx.flat_views:
        _gather_flat_view(cx, node, node_id)
        return
    _shape_arithmetic_only(cx, node)
    data = cx.const(node, 0, "data")
    indices = cx.const(node, 1, "indices")
    cx.consts[node.output[0]] = np.take(data, indices, axis=int(attributes(node).get("axis", 0)))


def convert_equal(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Equal in shape arithmetic (``x.expand(B, -1, -1)`` exports as Equal(shape, -1) -> Where): folded."""
    _shape_arithmetic_only(cx, node)
    cx.consts[node.output[0]] = np.equal(cx.const(node, 0, "A"), cx.const(node, 1, "B"))


def convert_where(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Where in shape arithmetic: folded; on a computed tensor refused."""
    if not all(cx.is_const(n) for n in node.input):
        raise NodeError("the engine takes Where only in shape arithmetic on constants, not on a tensor computed from "
                        "the input")
    cx.consts[node.output[0]] = np.where(*(cx.consts[n] for n in node.input))


def convert_cast(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    to = int(attributes(node)["to"])
    if not cx.is_const(node.input[0]) and to == onnx.TensorProto.FLOAT:
        _elementwise("identity")(cx, node, node_id)  # run-time tensors are float32 already
        return
    _shape_arithmetic_only(cx, node)
    cx.consts[node.output[0]] = cx.consts[node.input[0]].astype(onnx.helper.tensor_dtype_to_np_dtype(to))


# --- fully connected --------------------------------------------------------------------------
def _features(cx: ImportContext, node: onnx.NodeProto) -> Value:
    x = cx.value(node.input[0], node)
    if len(x.shape) != 1:
        raise NodeError(f"its input has shape [N, {', '.join(map(str, x.shape))}], but Gemm multiplies matrices "
                        "[N, K] (ONNX's rule). A classifier flattens its maps first (torch.flatten(x, 1)); a "
                        "per-position linear layer on channels-last maps exports as MatMul, which the engine takes")
    return x


def convert_gemm(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    attrs = attributes(node)
    if attrs.get("transA", 0):
        raise NodeError("transA=1 transposes the batch axis away; the engine's linear layer keeps it")
    x = _features(cx, node)
    b = cx.const(node, 1, "B")
    c = cx.optional_const(node, 2, "C")
    if b.ndim != 2:
        raise NodeError(f"B has shape {list(b.shape)}; Gemm's B is a matrix")
    weight = (b if attrs.get("transB", 0) else b.T) * float(attrs.get("alpha", 1.0))
    out_features = weight.shape[0]
    params = {"weight": weight}
    if c is not None:
        try:
            bias = np.broadcast_to(c, (1, out_features))[0]
        except ValueError:
            raise NodeError(f"C has shape {list(c.shape)}; only a bias per output, ({out_features},) or "
                            f"(1, {out_features}), maps to the engine's linear layer") from None
        params["bias"] = bias * float(attrs.get("beta", 1.0))
    spec = {"out_features": int(out_features), "bias": c is not None}
    cx.values[node.output[0]] = cx.emit(node_id, "linear", spec, [x.node_id], params)


def convert_matmul(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """[N, K] @ constant [K, M] is a linear layer (a following bias Add merged in); every other product
    (channels-last [N, H, W, C] @ [C, M], two computed tensors, a constant on the left) is the engine's matmul."""
    a_name, b_name = node.input[0], node.input[1]
    b = cx.consts.get(b_name)
    if cx.is_const(a_name) or b is None or b.ndim != 2 or len(cx.value(a_name, node).shape) != 1:
        convert_general_matmul(cx, node, node_id)
        return
    x = cx.value(a_name, node)
    params = {"weight": b.T}
    out = node.output[0]
    users = cx.consumers.get(out, [])
    if len(users) == 1 and out not in cx.graph_outputs and users[0][1].op_type == "Add":
        index, add = users[0]
        other = add.input[1] if add.input[0] == out else add.input[0]
        bias = cx.consts.get(other)
        if bias is not None and bias.shape in ((b.shape[1],), (1, b.shape[1])):
            params["bias"] = bias.reshape(-1)
            cx.absorbed[index] = node_id
            cx.notes.append(f"MatMul '{node.name}' and Add '{add.name}' (its bias) merged into linear '{node_id}'")
    spec = {"out_features": int(b.shape[1]), "bias": "bias" in params}
    cx.values[out] = cx.emit(node_id, "linear", spec, [x.node_id], params)


# --- constants, identity, padding -------------------------------------------------------------
def convert_constant(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    attr = node.attribute[0] if len(node.attribute) == 1 else None
    if attr is None:
        raise NodeError("a Constant needs exactly one value attribute")
    if attr.name == "value":
        value = tensor_array(attr.t)
    elif attr.name in ("value_float", "value_int"):
        value = np.asarray(attr.f if attr.name == "value_float" else attr.i)
    elif attr.name in ("value_floats", "value_ints"):
        value = np.asarray(list(attr.floats if attr.name == "value_floats" else attr.ints))
    else:
        raise NodeError(f"a Constant given as {attr.name} has no engine equivalent")
    cx.consts[node.output[0]] = value


def convert_identity(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    if cx.is_const(node.input[0]):
        cx.consts[node.output[0]] = cx.consts[node.input[0]]
        return
    _elementwise("identity")(cx, node, node_id)


#: ONNX Pad modes -> the engine pad op's modes ("wrap" has no engine equivalent)
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


def convert_pad(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Constant padding waits to be folded into the Conv or pool that reads it (else it becomes a ``pad`` node
    when read); reflect and edge padding become a ``pad`` node at once."""
    attrs = attributes(node)
    mode = attrs.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise NodeError(f"mode '{mode}' has no engine equivalent: the engine pads in modes constant, reflect and "
                        "edge (PyTorch's replicate)")
    if cx.opset < 11:
        pads = [int(p) for p in attrs.get("pads", attrs.get("paddings", []))]
        value = float(attrs.get("value", 0.0))
        axes = None
    else:
        pads = [int(p) for p in cx.const(node, 1, "pads")]
        given = cx.optional_const(node, 2, "constant_value")
        value = 0.0 if given is None else float(np.asarray(given).reshape(-1)[0])
        axes_array = cx.optional_const(node, 3, "axes")
        axes = None if axes_array is None else [int(a) for a in axes_array]
    source = node.input[0]
    inner = cx.pending_pads.get(source)
    if inner is not None and (mode != "constant" or inner.value != value):
        cx.materialise_pad(source, node, f"Pad node '{node.name or node_id}' pads its output in another way")
        inner = None
    x = cx.value(inner.source if inner else source, node)
    rank = x.rank
    if axes is not None:  # pads given for some axes only
        full = [0] * (2 * rank)
        for i, axis in enumerate(axes):
            full[axis % rank], full[axis % rank + rank] = pads[i], pads[i + len(axes)]
        pads = full
    if len(pads) != 2 * rank:
        raise NodeError(f"pads has {len(pads)} values for an input of rank {rank} (needs {2 * rank})")
    if any(p < 0 for p in pads):
        raise NodeError(f"negative pads {pads} crop the tensor; cropping has no engine equivalent")
    if any(pads[i] or pads[i + rank] for i in (0, 1)):
        raise NodeError(f"pads {pads} pad the batch or channel axis; the engine pads only the spatial axes "
                        "(axes 2 and after)")
    pairs = tuple((pads[i], pads[i + rank]) for i in range(2, rank))
    if mode != "constant":
        if not any(b or a for b, a in pairs):
            cx.values[node.output[0]] = Value(x.node_id, x.shape, x.onnx_shape, x.nonnegative)
            return
        spec = {"padding": [list(p) for p in pairs], "mode": _PAD_MODES[mode]}
        cx.values[node.output[0]] = cx.emit(node_id, "pad", spec, [x.node_id], nonnegative=x.nonnegative)
        return
    if inner is not None:
        pairs = tuple((b + ib, a + ia) for (b, a), (ib, ia) in zip(pairs, inner.pairs))
        source = inner.source
    cx.pending_pads[node.output[0]] = PendingPad(source, pairs, value, node.name or node_id, node_id,
                                                 cx.current_label)


# --- upsampling -------------------------------------------------------------------------------
def _upsample(cx: ImportContext, node: onnx.NodeProto, node_id: str, scales: np.ndarray | None,
              sizes: np.ndarray | None, axes: list[int] | None, align_corners: bool | None = None) -> None:
    """An ``upsample`` node from ONNX ``scales`` or ``sizes`` (per axis, batch included; ``axes`` picks some).

    ``align_corners`` None: nearest; False or True: linear interpolation ("linear", "bilinear" or "trilinear"
    by the number of spatial axes) with that ``align_corners``.
    """
    x = cx.value(node.input[0], node)
    rank = x.rank
    if rank - 2 not in (1, 2, 3):
        raise NodeError(f"its input has rank {rank}; the engine upsamples 1 to 3 spatial axes [N, C, *spatial]")
    given = scales if scales is not None else sizes
    if given is None:
        raise NodeError("neither scales nor sizes is given")
    given = [float(v) for v in np.asarray(given).reshape(-1)]
    what = "scales" if scales is not None else "sizes"
    batch = cx.static_batch if cx.static_batch is not None else BATCH_SIZE
    full_in = [batch, *(x.onnx_shape if x.onnx_shape is not None else x.shape)]
    if axes is not None:
        picked = [a % rank for a in axes]
        if len(picked) != len(given):
            raise NodeError(f"{what} has {len(given)} values for axes {axes}")
        values = [1.0 if scales is not None else float(n) for n in full_in]
        for a, v in zip(picked, given):
            values[a] = v
        given = values
    if len(given) != rank:
        raise NodeError(f"{what} has {len(given)} values for an input of rank {rank}")
    if scales is not None:
        factors = given
    else:
        if given[1] != full_in[1] or (given[0] != full_in[0] and given[0] != BATCH_SIZE):
            raise NodeError(f"sizes {[int(v) for v in given]} resize the batch or channel axis of "
                            f"[N, {', '.join(map(str, full_in[1:]))}]; the engine upsamples only the spatial axes")
        factors = [1.0, 1.0, *(v / n for v, n in zip(given[2:], full_in[2:]))]
    if factors[0] != 1 or factors[1] != 1:
        raise NodeError(f"scales {given} resize the batch or channel axis; the engine upsamples only the spatial "
                        "axes (scales 1 on axes 0 and 1)")
    spatial = factors[2:]
    if any(f < 1 or f != int(f) for f in spatial):
        shown = [int(v) if v == int(v) else v for v in given]
        raise NodeError(f"{what} {shown} give spatial factors {[round(f, 4) for f in spatial]}; the engine upsamples "
                        "by whole factors only (x1, x2, x3, ...): no downsampling or fractional scales")
    spec: dict = {"scale_factor": [int(f) for f in spatial]}
    if align_corners is not None:
        spec |= {"mode": _LINEAR_MODES[len(spatial)], "align_corners": align_corners}
    # interpolating mixes values with weights >= 0 that sum to 1: a nonnegative input stays nonnegative
    cx.values[node.output[0]] = cx.emit(node_id, "upsample", spec, [x.node_id], nonnegative=x.nonnegative)


_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
_SUPPORTED = ("mode 'nearest' (coordinate_transformation_mode 'asymmetric' with nearest_mode 'floor', as "
              "torch.onnx.export writes F.interpolate(..., mode='nearest')) or mode 'linear' with "
              "coordinate_transformation_mode 'half_pixel', 'pytorch_half_pixel' (F.interpolate(..., "
              "align_corners=False)) or 'align_corners' (align_corners=True), all with whole scale factors")


#: nearest Resize settings that pick x[floor(i / s)] for a whole factor s: asymmetric + floor by definition;
#: half-pixel centres (i + 0.5) / s - 0.5 lie within half a pixel of floor(i / s) and never on a tie, so rounding
#: either way gives floor(i / s) too (checked against onnxruntime in the tests)
_NEAREST_AS_FLOOR = {("asymmetric", "floor")} | {(c, r) for c in ("half_pixel", "pytorch_half_pixel")
                                                  for r in ("round_prefer_floor", "round_prefer_ceil")}


def _check_mode(mode: str) -> None:
    if mode not in ("nearest", "linear"):
        raise NodeError(f"mode '{mode}' has no engine equivalent: the engine's upsample takes {_SUPPORTED}")


def _asymmetric_linear(where: str) -> NodeError:
    return NodeError(f"mode 'linear' in {where} samples at x_resized / scale (coordinates 'asymmetric'), which "
                     "the engine's upsample does not: it interpolates as F.interpolate does, with "
                     "coordinate_transformation_mode 'half_pixel' or 'align_corners' (Resize from opset 11; "
                     "re-export with a newer opset)")


def _linear_align_corners(attrs: dict) -> bool:
    """Resize-11+ ``mode="linear"``: the engine's ``align_corners`` for its coordinate transformation, or refuse."""
    coordinates = attrs.get("coordinate_transformation_mode", "half_pixel")
    # antialias=1 widens the filter only when downscaling: for the whole factors >= 1 the engine takes
    # (checked in _upsample) it is plain linear interpolation, so it is accepted as it is
    # pytorch_half_pixel differs from half_pixel only for an output of length 1, where both sample at 0
    # when the factor is whole (the only factors the engine takes)
    if coordinates in ("half_pixel", "pytorch_half_pixel"):
        return False
    if coordinates == "align_corners":
        return True
    if coordinates == "asymmetric":
        raise _asymmetric_linear("Resize with coordinate_transformation_mode 'asymmetric'")
    raise NodeError(f"mode 'linear' with coordinate_transformation_mode '{coordinates}' has no engine "
                    f"equivalent: the engine's upsample takes {_SUPPORTED}")


def convert_resize(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    attrs = attributes(node)
    mode = attrs.get("mode", "nearest")
    _check_mode(mode)
    if cx.opset < 11:  # Resize-10: (X, scales), asymmetric coordinates, nearest rounds down when upsampling
        if mode == "linear":
            raise _asymmetric_linear("Resize-10 (opset 10)")
        _upsample(cx, node, node_id, cx.const(node, 1, "scales"), None, None)
        return
    align_corners = None
    if mode == "linear":
        align_corners = _linear_align_corners(attrs)
    else:
        coordinates = attrs.get("coordinate_transformation_mode", "half_pixel")
        rounding = attrs.get("nearest_mode", "round_prefer_floor")
        if (coordinates, rounding) not in _NEAREST_AS_FLOOR:
            raise NodeError(f"coordinate_transformation_mode '{coordinates}' with nearest_mode '{rounding}': the "
                            "engine's nearest upsample is out[i] = x[floor(i / scale)], which is "
                            "coordinate_transformation_mode 'asymmetric' with nearest_mode 'floor' (what "
                            "torch.onnx.export writes for F.interpolate(..., mode='nearest')), or, for whole "
                            "factors, 'half_pixel' / 'pytorch_half_pixel' with 'round_prefer_floor' / "
                            "'round_prefer_ceil' (ONNX's defaults)")
    scales = cx.optional_const(node, 2, "scales")
    sizes = cx.optional_const(node, 3, "sizes")
    scales = None if scales is None or np.asarray(scales).size == 0 else scales
    sizes = None if sizes is None or np.asarray(sizes).size == 0 else sizes
    if scales is not None and sizes is not None:
        raise NodeError("it gives both scales and sizes; ONNX allows one of them (give the other as an empty input)")
    if sizes is not None and attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise NodeError(f"keep_aspect_ratio_policy '{attrs['keep_aspect_ratio_policy']}' with sizes; only 'stretch' "
                        "(the default) maps to whole scale factors")
    axes = attrs.get("axes")
    _upsample(cx, node, node_id, scales, sizes, None if axes is None else [int(a) for a in axes], align_corners)


def convert_upsample(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Upsample (opset 7-9, deprecated since 10): scales as an attribute before opset 9, an input after."""
    attrs = attributes(node)
    mode = attrs.get("mode", "nearest")
    _check_mode(mode)
    if mode == "linear":
        raise _asymmetric_linear("Upsample (opset 7-9)")
    if cx.opset < 9:
        if "scales" not in attrs:
            raise NodeError("the scales attribute is missing")
        scales = np.asarray(attrs["scales"], dtype=np.float32)
    else:
        scales = cx.const(node, 1, "scales")
    _upsample(cx, node, node_id, scales, None, None)


# --- constant folding for exporters' shape arithmetic ------------------------------------------
#: values a constant worked out while importing may hold (exporters make small index and padding arrays)
MAX_FOLDED_VALUES = 1_000_000


def convert_constant_of_shape(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    shape = [int(v) for v in np.atleast_1d(cx.const(node, 0, "the shape"))]
    if any(n < 0 for n in shape):
        raise NodeError(f"its shape {shape} has a negative size")
    if math.prod(shape) > MAX_FOLDED_VALUES:
        raise NodeError(f"it makes a constant of shape {shape} = {math.prod(shape):,} values, more than the "
                        f"{MAX_FOLDED_VALUES:,} an import works out; such constants are index or padding arrays, "
                        "small in every model this tool can run")
    attrs = attributes(node)
    fill = tensor_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
    cx.consts[node.output[0]] = np.full(shape, fill[0], dtype=fill.dtype)


def _slice_arguments(cx: ImportContext, node: onnx.NodeProto) -> tuple[list[int], list[int], list[int] | None,
                                                                        list[int]]:
    """Slice's ``starts, ends, axes`` (None: the first ones) and ``steps``: attributes before opset 10, constant inputs
    after (starts computed while the model runs are refused by ``cx.const``)."""
    if cx.opset < 10:
        attrs = attributes(node)
        starts, ends = [int(v) for v in attrs["starts"]], [int(v) for v in attrs["ends"]]
        axes = [int(v) for v in attrs["axes"]] if "axes" in attrs else None
        return starts, ends, axes, [1] * len(starts)
    starts = [int(v) for v in np.atleast_1d(cx.const(node, 1, "starts"))]
    ends = [int(v) for v in np.atleast_1d(cx.const(node, 2, "ends"))]
    given_axes = cx.optional_const(node, 3, "axes")
    given_steps = cx.optional_const(node, 4, "steps")
    axes = None if given_axes is None else [int(v) for v in np.atleast_1d(given_axes)]
    steps = [1] * len(starts) if given_steps is None else [int(v) for v in np.atleast_1d(given_steps)]
    return starts, ends, axes, steps


def _whole_batch(cx: ImportContext, start: int, end: int, step: int) -> bool:
    """Whether a Slice on axis 0 keeps every sample (exporters write ``0 : INT64_MAX``), whatever the batch."""
    return step == 1 and start == 0 and (end >= 2**31 - 1 or (cx.static_batch is not None and end >= cx.static_batch))


def convert_slice(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Slice of a constant: folded (torch.onnx.export reverses F.pad's pads with one). On a computed tensor: one engine
    ``slice`` node per sliced axis, with constant starts/ends/steps; the batch axis and negative steps are refused."""
    starts, ends, axes, steps = _slice_arguments(cx, node)
    if axes is None:
        axes = list(range(len(starts)))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise NodeError(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must have one entry per axis")
    if cx.is_const(node.input[0]):
        data = cx.consts[node.input[0]]
        index = [slice(None)] * data.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[int(axis) % data.ndim] = slice(int(start), int(end), int(step))  # Python clamps as ONNX does
        cx.consts[node.output[0]] = data[tuple(index)]
        return
    x = cx.value(node.input[0], node)
    rank = x.rank
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise NodeError(f"axes {axes} must be distinct axes of the input [N, {', '.join(map(str, x.shape))}]")
    for step in steps:
        if step < 1:
            raise NodeError(f"step {step} {'is not allowed' if step == 0 else 'runs backwards along the axis'}; the "
                            "engine's slice takes steps of 1 or more (a reversed axis has no engine op)")
    current = x
    for start, end, axis, step in sorted(zip(starts, ends, axes, steps), key=lambda t: t[2] % rank):
        axis %= rank
        if axis == 0:
            if _whole_batch(cx, start, end, step):
                continue
            raise NodeError(f"it takes samples {start}:{end}:{step} of the batch axis; the engine runs every sample "
                            "of a batch through the same graph, so only the axes after the batch can be sliced")
        size = current.shape[axis - 1]
        first, last, stride = slice(start, end, step).indices(size)
        if (first, last, stride) == (0, size, 1):
            continue  # keeps the whole axis
        part_id = node_id if current is x else cx.new_id(f"{node_id}_axis{axis}")
        current = cx.emit(part_id, "slice", {"dim": axis, "start": first, "end": last, "step": stride},
                          [current.node_id], nonnegative=x.nonnegative)
    cx.values[node.output[0]] = current if current is not x else Value(x.node_id, x.shape, None, x.nonnegative)


def _split_sizes(cx: ImportContext, node: onnx.NodeProto, size: int) -> list[int]:
    """The sizes of Split's outputs along its axis: ``split`` (an attribute before opset 13, an input after), else
    equal parts, one per output (opset 18's ``num_outputs``: ceil(size / n) each, the last smaller)."""
    attrs = attributes(node)
    given = attrs.get("split") if cx.opset < 13 else cx.optional_const(node, 1, "split")
    if given is not None:
        sizes = [int(v) for v in np.atleast_1d(given)]
        if len(sizes) != len(node.output) or any(s < 0 for s in sizes) or sum(sizes) != size:
            raise NodeError(f"split {sizes} must give {len(node.output)} sizes of 0 or more adding up to the axis's "
                            f"{size}")
        return sizes
    parts = int(attrs.get("num_outputs", len(node.output)))
    if parts != len(node.output):
        raise NodeError(f"num_outputs {parts} differs from the node's {len(node.output)} outputs")
    if "num_outputs" in attrs:
        chunk = -(-size // parts)
        sizes = [min(chunk, max(size - i * chunk, 0)) for i in range(parts)]
    elif size % parts:
        raise NodeError(f"an axis of {size} does not split into {parts} equal parts: give the sizes in 'split'")
    else:
        sizes = [size // parts] * parts
    return sizes


def convert_split(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Split along a non-batch axis (ShuffleNet's channel split, ``x.chunk(2, dim=1)``): one engine ``slice`` per
    output. A Split of a constant is folded."""
    axis = int(attributes(node).get("axis", 0))
    if cx.is_const(node.input[0]):
        data = cx.consts[node.input[0]]
        sizes = _split_sizes(cx, node, data.shape[axis])
        for name, part in zip(node.output, np.split(data, np.cumsum(sizes)[:-1], axis=axis)):
            cx.consts[name] = part
        return
    x = cx.value(node.input[0], node)
    if not -x.rank <= axis < x.rank:
        raise NodeError(f"axis {axis} is out of range for an input of rank {x.rank}")
    axis %= x.rank
    if axis == 0:
        raise NodeError("axis 0 splits the batch axis (0 is ONNX's default axis), which would separate samples; the "
                        "engine splits the axes after the batch only (e.g. axis=1 for channels)")
    size = x.shape[axis - 1]
    sizes = _split_sizes(cx, node, size)
    offset = 0
    for index, (name, part) in enumerate(zip(node.output, sizes)):
        used = name and (name in cx.consumers or name in cx.graph_outputs)
        if part == 0 and used:
            raise NodeError(f"output '{name}' would be empty (split size 0); the engine has no empty tensors")
        if name and part == size:
            cx.values[name] = Value(x.node_id, x.shape, None, x.nonnegative)  # a Split into one part
        elif name and part:
            part_id = node_id if index == 0 else cx.new_id(f"{node_id}_{index}")
            cx.values[name] = cx.emit(part_id, "slice", {"dim": axis, "start": offset, "end": offset + part},
                                      [x.node_id], nonnegative=x.nonnegative)
        offset += part


def convert_transpose(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Transpose of a constant: folded. On a computed tensor: an engine ``transpose`` of the sample's axes, if the
    batch axis stays first (a channel shuffle's [0, 2, 1, 3, 4])."""
    perm = attributes(node).get("perm")
    if cx.is_const(node.input[0]):
        cx.consts[node.output[0]] = np.transpose(cx.consts[node.input[0]], None if perm is None else list(perm))
        return
    x = cx.value(node.input[0], node)
    if perm is None:
        raise NodeError(f"it has no perm, so it reverses all {x.rank} axes and moves the batch axis last; the engine "
                        "transposes each sample's axes and keeps the batch axis first (perm [0, ...])")
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(x.rank)):
        raise NodeError(f"perm {perm} is not a reordering of the input's {x.rank} axes")
    if perm[0] != 0:
        raise NodeError(f"perm {perm} moves the batch axis (axis 0) to position {perm.index(0)}; the engine "
                        "transposes each sample's axes and keeps the batch axis first (perm [0, ...])")
    sample_perm = [p - 1 for p in perm[1:]]
    if sample_perm == sorted(sample_perm):
        cx.values[node.output[0]] = Value(x.node_id, x.shape, None, x.nonnegative)  # nothing moves
        return
    cx.values[node.output[0]] = cx.emit(node_id, "transpose", {"perm": sample_perm}, [x.node_id],
                                        nonnegative=x.nonnegative)


CONVERTERS: dict[str, Callable[[ImportContext, onnx.NodeProto, str], None]] = {
    "Conv": convert_conv,
    "ConvTranspose": convert_conv_transpose,
    "MaxPool": convert_max_pool,
    "AveragePool": convert_average_pool,
    "GlobalAveragePool": convert_global_average_pool,
    "GlobalMaxPool": convert_global_max_pool,
    "BatchNormalization": convert_batch_norm,
    "Relu": _elementwise("relu", nonnegative=True),
    "LeakyRelu": _elementwise("leaky_relu", lambda a: {"negative_slope": float(a.get("alpha", 0.01))}),
    "Clip": convert_clip,
    "Sigmoid": _elementwise("sigmoid", nonnegative=True),
    "Tanh": _elementwise("tanh"),
    "HardSigmoid": _elementwise("hardsigmoid", lambda a: {"alpha": float(a.get("alpha", 0.2)),
                                                          "beta": float(a.get("beta", 0.5))}, nonnegative=True),
    "HardSwish": _elementwise("hardswish"),
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
    "Concat": convert_concat,
    "Flatten": convert_flatten,
    "Reshape": convert_reshape,
    "Squeeze": convert_squeeze,
    "Unsqueeze": convert_unsqueeze,
    "Shape": convert_shape,
    "Gather": convert_gather,
    "Cast": convert_cast,
    "Equal": convert_equal,
    "Where": convert_where,
    "Gemm": convert_gemm,
    "MatMul": convert_matmul,
    "Softmax": convert_softmax,
    "LogSoftmax": convert_log_softmax,
    "Dropout": convert_dropout,
    "Identity": convert_identity,
    "Constant": convert_constant,
    "Pad": convert_pad,
    "Resize": convert_resize,
    "Upsample": convert_upsample,
    "ConstantOfShape": convert_constant_of_shape,
    "Slice": convert_slice,
    "Split": convert_split,
    "Transpose": convert_transpose,
    **REDUCE_NORM_CONVERTERS,
    **ARITH_CONVERTERS,
    **RECURRENT_CONVERTERS,
}
#: Transpose, Squeeze, Reshape, Gather, Slice, ... also take the time-major tensors around RNN, LSTM and GRU
CONVERTERS = with_time_major_views(CONVERTERS)
