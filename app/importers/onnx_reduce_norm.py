"""ONNX reductions and normalisations as engine ops: ReduceMean/Sum/Max, LayerNormalization, InstanceNormalization.

PyTorch's default (dynamo) exporter writes every adaptive average pool and squeeze-excite squeeze as a
``ReduceMean`` over the spatial axes; ConvNeXt and transformers write ``LayerNormalization`` on channels-last
tensors. A ``ReduceMean`` over exactly the spatial axes becomes the engine's ``global_avg_pool`` (the node the
explorer explains and draws as global pooling); every other reduction becomes ``mean`` / ``sum`` / ``max``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from app.importers.onnx_import import ImportContext, NodeError, attributes

_ENGINE_REDUCTION = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max"}
_NUMPY_REDUCTION = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max}


def _reduce_axes(cx: ImportContext, node: onnx.NodeProto) -> list[int] | None:
    """The ``axes`` of a Reduce node: an attribute before opset 18 (ReduceSum: before 13), an input after."""
    axes_are_input = cx.opset >= 18 or (node.op_type == "ReduceSum" and cx.opset >= 13)
    if axes_are_input:
        given = cx.optional_const(node, 1, "axes")
        return None if given is None else [int(a) for a in np.atleast_1d(given)]
    given = attributes(node).get("axes")
    return None if given is None else [int(a) for a in given]


def convert_reduce(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """ReduceMean / ReduceSum / ReduceMax over axes after the batch axis, ``keepdims`` as given."""
    attrs = attributes(node)
    keep = bool(attrs.get("keepdims", 1))
    axes = _reduce_axes(cx, node)
    if cx.is_const(node.input[0]):
        data = cx.consts[node.input[0]]
        if not axes and attrs.get("noop_with_empty_axes", 0):
            cx.consts[node.output[0]] = data
            return
        cx.consts[node.output[0]] = _NUMPY_REDUCTION[node.op_type](
            data, axis=None if not axes else tuple(axes), keepdims=keep)
        return
    x = cx.value(node.input[0], node)
    rank = x.rank
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            out = cx.emit(node_id, "identity", {}, [x.node_id], nonnegative=x.nonnegative)
            cx.values[node.output[0]] = out
            return
        raise NodeError("it reduces over every axis, the batch axis too, which would mix samples; reduce over "
                        "the axes after the batch (e.g. axes=[2, 3] for the spatial axes of [N, C, H, W])")
    if any(not -rank <= a < rank for a in axes):
        raise NodeError(f"axes {axes} are out of range for an input of rank {rank}")
    axes = sorted({a % rank for a in axes})
    if 0 in axes:
        raise NodeError(f"axes {axes} include the batch axis 0, which would mix samples; only axes after the batch "
                        "can be reduced")
    if node.op_type == "ReduceMean" and rank >= 3 and axes == list(range(2, rank)):
        out = cx.emit(node_id, "global_avg_pool", {}, [x.node_id], nonnegative=x.nonnegative)
        if keep:  # ONNX keeps the reduced axes as 1s; a consumer that needs them gets a reshape
            out.onnx_shape = (x.shape[0],) + (1,) * (rank - 2)
        cx.values[node.output[0]] = out
        return
    spec = {"dim": axes[0] if len(axes) == 1 else axes, "keepdim": keep}
    cx.values[node.output[0]] = cx.emit(node_id, _ENGINE_REDUCTION[node.op_type], spec, [x.node_id],
                                        nonnegative=x.nonnegative)


def _only_first_output(cx: ImportContext, node: onnx.NodeProto, what: str) -> None:
    if any(name and (cx.consumers.get(name) or name in cx.graph_outputs) for name in node.output[1:]):
        raise NodeError(f"its {what} output is used; the engine computes only the normalised tensor")


def convert_layer_norm(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """LayerNormalization (opset 17): normalise over axes ``axis..`` (default -1), then Scale and B."""
    attrs = attributes(node)
    _only_first_output(cx, node, "Mean or InvStdDev")
    x = cx.value(node.input[0], node)
    rank = x.rank
    axis = int(attrs.get("axis", -1))
    if not -rank <= axis < rank:
        raise NodeError(f"axis {axis} is out of range for an input of rank {rank}")
    axis %= rank
    if axis == 0:
        raise NodeError("axis 0 normalises over the batch axis too, which would mix samples")
    normalized = list(x.shape[axis - 1:])
    scale = cx.const(node, 1, "Scale")
    bias = cx.optional_const(node, 2, "B")
    params = {}
    for name, given in (("weight", scale), ("bias", bias)):
        if given is None:
            continue
        try:
            params[name] = np.broadcast_to(np.asarray(given, dtype=np.float32), normalized).copy()
        except ValueError:
            raise NodeError(f"{'Scale' if name == 'weight' else 'B'} has shape {list(given.shape)}, which does not "
                            f"broadcast to the normalised axes {normalized}") from None
    spec = {"normalized_shape": normalized, "eps": float(attrs.get("epsilon", 1e-5)), "elementwise_affine": True,
            "bias": bias is not None}
    cx.values[node.output[0]] = cx.emit(node_id, "layer_norm", spec, [x.node_id], params)


def convert_instance_norm(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """InstanceNormalization: each (sample, channel) normalised over its spatial positions, then scale and B."""
    x = cx.value(node.input[0], node)
    if x.rank < 3:
        raise NodeError(f"its input has rank {x.rank}; instance normalisation needs [N, C, *spatial]")
    channels = x.shape[0]
    params = {}
    for position, name, what in ((1, "weight", "scale"), (2, "bias", "B")):
        given = np.asarray(cx.const(node, position, what), dtype=np.float32).reshape(-1)
        if given.shape != (channels,):
            raise NodeError(f"{what} has {given.size} values; it needs one per channel ({channels})")
        params[name] = given
    spec = {"eps": float(attributes(node).get("epsilon", 1e-5)), "affine": True}
    cx.values[node.output[0]] = cx.emit(node_id, "instance_norm", spec, [x.node_id], params)


CONVERTERS: dict[str, Callable[[ImportContext, onnx.NodeProto, str], None]] = {
    "ReduceMean": convert_reduce,
    "ReduceSum": convert_reduce,
    "ReduceMax": convert_reduce,
    "LayerNormalization": convert_layer_norm,
    "InstanceNormalization": convert_instance_norm,
}
