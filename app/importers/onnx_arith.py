"""ONNX arithmetic as engine ops: Pow, Sqrt, Expand, MatMul beyond a linear layer, GELU (Gelu, and Erf in its pattern).

``torch.nn.GELU`` exports (before opset 20) as five nodes, ``x · ½ · (1 + erf(x / √2))``; ``find_gelu_chains`` finds
them before the import walks the graph, so the walk skips the first four and turns the last into one engine ``gelu``
node (the node a lecture should show). Both exporters' orders are recognised: TorchScript writes
``Mul(Mul(x, 1 + erf), 0.5)``, the dynamo exporter ``Mul(x, Mul(0.5, 1 + erf))``. An Erf used any other way is
refused with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from app.importers.onnx_import import BATCH_SIZE, ImportContext, NodeError, attributes

Converter = Callable[[ImportContext, onnx.NodeProto, str], None]


def _fold_or_value(cx: ImportContext, node: onnx.NodeProto, fold: Callable[[np.ndarray], np.ndarray]) -> bool:
    """Fold ``node`` on a constant input (True), or leave it to the caller (False)."""
    if cx.is_const(node.input[0]):
        with np.errstate(all="ignore"):
            cx.consts[node.output[0]] = fold(np.asarray(cx.consts[node.input[0]]))
        return True
    return False


def convert_sqrt(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    if _fold_or_value(cx, node, np.sqrt):
        return
    x = cx.raw_value(node.input[0], node)
    out = cx.emit(node_id, "sqrt", {}, [x.node_id], nonnegative=True)
    out.onnx_shape = x.onnx_shape
    cx.values[node.output[0]] = out


def convert_pow(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    if cx.is_const(node.input[0]) and cx.is_const(node.input[1]):
        cx.consts[node.output[0]] = np.power(cx.consts[node.input[0]], cx.consts[node.input[1]])
        return
    exponent = np.asarray(cx.const(node, 1, "the exponent Y"))
    if exponent.size != 1:
        raise NodeError(f"the exponent has shape {list(exponent.shape)}; the engine's pow takes one number "
                        "(x ** 2, x ** 0.5, ...)")
    value = float(exponent.reshape(-1)[0])
    x = cx.raw_value(node.input[0], node)
    even = value == int(value) and int(value) % 2 == 0
    out = cx.emit(node_id, "pow", {"exponent": int(value) if value == int(value) else value}, [x.node_id],
                  nonnegative=even or x.nonnegative)
    out.onnx_shape = x.onnx_shape
    cx.values[node.output[0]] = out


def convert_gelu(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Gelu (opset 20): ``approximate`` "none" or "tanh", as torch.nn.GELU."""
    approximate = attributes(node).get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise NodeError(f"approximate={approximate!r}; ONNX's Gelu takes 'none' or 'tanh'")
    x = cx.raw_value(node.input[0], node)
    out = cx.emit(node_id, "gelu", {"approximate": approximate}, [x.node_id])
    out.onnx_shape = x.onnx_shape
    cx.values[node.output[0]] = out


_erf = np.vectorize(math.erf, otypes=[np.float64])


def convert_erf(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Erf outside a GELU chain: folded on a constant, refused on a computed tensor."""
    if _fold_or_value(cx, node, lambda c: _erf(c).astype(c.dtype)):
        return
    raise NodeError("the engine takes Erf only inside GELU, x · 0.5 · (1 + erf(x / √2)) as torch.nn.GELU exports "
                    "it; this Erf is used another way")


def convert_expand(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """Expand: NumPy-style (bidirectional) broadcasting to a constant shape, the batch axis kept."""
    shape = [int(d) for d in np.atleast_1d(cx.const(node, 1, "shape"))]
    if cx.is_const(node.input[0]):
        data = np.asarray(cx.consts[node.input[0]])
        batch_given = len(shape) >= max(data.ndim, 1) and shape and shape[0] == BATCH_SIZE
        target = [1 if batch_given and i == 0 else d for i, d in enumerate(shape)]
        if any(d < 0 for d in target):
            raise NodeError(f"shape {shape} holds a negative size")
        # A constant expanded to the (dynamic) batch size stays one constant that every sample shares.
        cx.consts[node.output[0]] = data * np.ones(target, dtype=data.dtype)
        return
    x = cx.value(node.input[0], node)
    if len(shape) > x.rank:
        raise NodeError(f"shape {shape} has more axes than the input's {x.rank}: the new leading axes would come "
                        "before the batch axis")
    if len(shape) == x.rank:
        if shape[0] not in (1, BATCH_SIZE) and shape[0] != cx.static_batch:
            raise NodeError(f"shape {shape} changes the batch axis")
        shape = shape[1:]
    per_sample = [1] * (x.rank - 1 - len(shape)) + shape
    if any(d < 1 for d in per_sample):
        raise NodeError(f"shape {shape} holds a size below 1")
    cx.values[node.output[0]] = cx.emit(node_id, "expand", {"shape": per_sample}, [x.node_id],
                                        nonnegative=x.nonnegative)


def convert_general_matmul(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """MatMul as the engine's ``matmul``: channels-last products (x [N, H, W, C] @ W [C, M]) and products of two
    computed tensors (attention's Q @ Kᵀ); a constant operand becomes a ``constant`` node every sample shares."""
    a_name, b_name = node.input[0], node.input[1]
    if cx.is_const(a_name) and cx.is_const(b_name):
        cx.consts[node.output[0]] = np.matmul(cx.consts[a_name], cx.consts[b_name])
        return
    computed = cx.value(b_name if cx.is_const(a_name) else a_name, node)
    inputs = []
    for name in (a_name, b_name):
        if cx.is_const(name):
            c = np.asarray(cx.consts[name], dtype=np.float32)
            if c.ndim >= computed.rank:
                if c.ndim > computed.rank or c.shape[0] != 1:
                    raise NodeError(f"the constant operand of shape {list(c.shape)} has axes before the batch axis "
                                    f"of the other operand (rank {computed.rank})")
                c = c[0]
            inputs.append(cx.emit_constant(node_id, c).node_id)
        else:
            value = cx.value(name, node)
            if value.rank != computed.rank:
                raise NodeError(f"ranks {value.rank} and {computed.rank} differ: broadcasting would align a batch "
                                "axis with another axis")
            inputs.append(value.node_id)
    cx.values[node.output[0]] = cx.emit(node_id, "matmul", {}, inputs)


# --- GELU written out with Erf ---------------------------------------------------------------------
@dataclass(frozen=True)
class GeluChain:
    """Five ONNX nodes computing GELU: their indices, the tensor x and the constants to check."""

    scale_index: int  # Div(x, √2) or Mul(x, 1/√2)
    erf_index: int
    add_index: int
    inner_index: int
    final_index: int
    x: str
    scale_const: str
    scale_is_div: bool
    one_const: str
    half_const: str

    @property
    def skipped(self) -> tuple[int, ...]:
        return self.scale_index, self.erf_index, self.add_index, self.inner_index


def _other(node: onnx.NodeProto, name: str) -> str | None:
    """The other input of a two-input node, if ``name`` is one of its inputs."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def find_gelu_chains(model: onnx.ModelProto) -> list[GeluChain]:
    """Every ``x · ½ · (1 + erf(x / √2))`` written out in nodes whose intermediate results nothing else reads.

    Only the structure is matched here; the constants' values are checked when the last node is converted."""
    nodes = list(model.graph.node)
    producer: dict[str, int] = {}
    readers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for out in node.output:
            producer[out] = index
        for name in node.input:
            readers.setdefault(name, []).append(index)
    outputs = {o.name for o in model.graph.output}

    def sole_reader(name: str, op_type: str) -> int | None:
        found = readers.get(name, [])
        if len(found) != 1 or name in outputs or nodes[found[0]].op_type != op_type:
            return None
        return found[0]

    chains = []
    for erf_index, erf in enumerate(nodes):
        if erf.op_type != "Erf" or erf.input[0] not in producer:
            continue
        scale_index = producer[erf.input[0]]
        scale = nodes[scale_index]
        if scale.op_type not in ("Div", "Mul") or sole_reader(erf.input[0], "Erf") is None or len(scale.input) != 2:
            continue
        x, scale_const = scale.input
        if scale.op_type == "Mul" and x in producer and nodes[producer[x]].op_type == "Constant":
            x, scale_const = scale_const, x
        add_index = sole_reader(erf.output[0], "Add")
        if add_index is None:
            continue
        one_const = _other(nodes[add_index], erf.output[0])
        inner_index = sole_reader(nodes[add_index].output[0], "Mul")
        if inner_index is None or one_const is None:
            continue
        inner_other = _other(nodes[inner_index], nodes[add_index].output[0])
        final_index = sole_reader(nodes[inner_index].output[0], "Mul")
        if final_index is None or inner_other is None:
            continue
        final_other = _other(nodes[final_index], nodes[inner_index].output[0])
        if inner_other == x:  # TorchScript: (x · (1 + erf)) · ½
            half_const = final_other
        elif final_other == x:  # dynamo: x · (½ · (1 + erf))
            half_const = inner_other
        else:
            continue
        if half_const is None:
            continue
        chains.append(GeluChain(scale_index, erf_index, add_index, inner_index, final_index, x, scale_const,
                                scale.op_type == "Div", one_const, half_const))
    return chains


def _is_number(cx: ImportContext, name: str, expected: float) -> bool:
    value = cx.consts.get(name)
    return value is not None and np.asarray(value).size == 1 and math.isclose(
        float(np.asarray(value).reshape(-1)[0]), expected, rel_tol=1e-6)


def gelu_converter(chain: GeluChain) -> Converter:
    """The converter of the chain's last node: one engine ``gelu`` node, once the constants are checked."""

    def convert(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
        root2 = math.sqrt(2.0)
        scale_ok = _is_number(cx, chain.scale_const, root2 if chain.scale_is_div else 1 / root2)
        if not (scale_ok and _is_number(cx, chain.one_const, 1.0) and _is_number(cx, chain.half_const, 0.5)):
            raise NodeError("these nodes compute x · a · (b + erf(x / c)) with constants other than GELU's "
                            "(a = 0.5, b = 1, c = √2); the engine takes Erf only inside GELU")
        x = cx.raw_value(chain.x, node)
        cx.values[node.output[0]] = cx.emit(node_id, "gelu", {"approximate": "none"}, [x.node_id])
        cx.notes.append(f"GELU written out in five nodes (Erf '{cx.model.graph.node[chain.erf_index].name}') "
                        f"imported as gelu '{node_id}'")

    return convert


CONVERTERS: dict[str, Converter] = {
    "Sqrt": convert_sqrt,
    "Pow": convert_pow,
    "Gelu": convert_gelu,
    "Erf": convert_erf,
    "Expand": convert_expand,
}
