"""The chain rule for one unit, with the real numbers of one backward pass.

For unit ``u`` of node ``N`` (``index`` without the batch axis), two views:

- **incoming**: how ``dL/du`` is made. Every unit ``y`` of every node ``C`` that reads ``u`` hands back its own
  gradient times the local derivative: ``dL/du = Σ_C Σ_y dL/dy · ∂y/∂u``. For the logits the loss itself reads
  ``u``: ``∂L/∂z_u = p_u − [u = label]``. The sum is checked against the engine's backward pass (``engine_value``).
- **outgoing**: where ``dL/du`` goes. Each input unit ``x`` that feeds ``u`` receives ``dL/du · ∂u/∂x``, its share
  of ``dL/dx`` (the rest comes from the other units that read ``x``).

The local derivatives ``∂y/∂x`` come from a formula where the op has a simple one, and otherwise from the op's own
backward pass seeded with a single 1 at ``y`` (one row of its Jacobian, exactly as the backward pass computes it):

- convolution: the weight that multiplied ``x`` in ``y``'s window, ``w[k, c, i, j]``;
- linear: ``W[k, i]``;
- elementwise ops (ReLU, batch norm with its running statistics, ...): ``y`` reads ``x`` at its own index only;
  ReLU's derivative is 1 where its input was positive and 0 elsewhere, batch norm's ``γ / √(var + ε)``;
- pooling: ``y`` reads its window in the same channel (max: 1 for the largest input, 0 for the others; average:
  1 / the number of inputs averaged); a global average reads its channel, ``1 / (H·W)`` each;
- add and mul: the same index (a sum passes its gradient on unchanged; a product times the other factor);
  flatten and reshape: the same number in another shape (the same flat index);
- any other op: every unit of its output is asked (at most ``MAX_GENERIC_UNITS``) and those with a nonzero
  derivative are listed.

Lists are bounded (``MAX_TERMS``, the largest products first); the sum is over every term, and what is not listed is
added up in ``omitted``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.explain.elementwise import ELEMENTWISE
from engine.graph import INPUT, Graph, Node
from engine.layers.grad_mode import input_grads_only
from engine.learned.backprop import Backprop
from engine.ops.base import ForwardContext
from engine.ops.conv import ConvNd

MAX_TERMS = 48  # products listed per view (the largest |product| first); the rest are summed in ``omitted``
MAX_GENERIC_UNITS = 4096  # output units asked, one backward pass of the node each, for an op with no formula here
WINDOW_OPS = {f"{kind}_pool{n}d" for kind in ("max", "avg") for n in (1, 2, 3)}
SAME_INDEX_OPS = set(ELEMENTWISE) | {"add", "mul"}
RESHAPE_OPS = {"flatten", "reshape"}

Index = tuple[int, ...]


# --- one node's forward cache and one row of its Jacobian --------------------------------------------------------
def node_params(node: Node, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The node's parameters by short name (``weight``, ``bias``, ...)."""
    return {name: params[f"{node.id}.{name}"] for name in node.op.param_shapes()}


class LocalNode:
    """One node run again on the recorded inputs, to ask its backward pass for rows of its Jacobian."""

    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], result: Backprop, node_id: str) -> None:
        self.node = graph.node(node_id)
        self.params = node_params(self.node, params)
        self.inputs = [result.activations[name] for name in self.node.inputs]
        self.out_dtype = result.activations[node_id].dtype
        self._cache: Any = None
        self._rows: dict[Index, list[np.ndarray | None]] = {}

    def row(self, y: Index) -> list[np.ndarray | None]:
        """``∂y/∂(each input)``: per input, an array of its shape (no batch axis), or None (takes no gradient)."""
        if y not in self._rows:
            if self._cache is None:
                _, self._cache = self.node.op.forward(self.inputs, self.params, ForwardContext())
            seed = np.zeros((1, *self.node.output_shape), dtype=self.out_dtype)
            seed[(0, *y)] = 1
            with input_grads_only():
                dinputs, _ = self.node.op.backward(seed, self._cache)
            self._rows[y] = [None if d is None else d[0] for d in dinputs]
        return self._rows[y]


# --- which units read which: windows of convolutions and pools ----------------------------------------------------
def window_taps(op, position: Index) -> list[tuple[Index, Index]]:
    """Output ``position`` (spatial, no channel) of a windowed op: each (tap, input position) inside the input."""
    axes = []
    for g, out_pos, size in zip(op.geometry(), position, op.input_shapes[0][1:]):
        axes.append([(j, p) for j in range(g.kernel) if 0 <= (p := out_pos * g.stride - g.padding + j * g.dilation)
                     < size])
    return [(tuple(t for t, _ in combo), tuple(p for _, p in combo)) for combo in itertools.product(*axes)]


def windows_reading(op, position: Index) -> list[tuple[Index, Index]]:
    """Input ``position`` (spatial) of a windowed op: each (tap, output position) whose window reads it."""
    axes = []
    for g, p, out_size in zip(op.geometry(), position, op.output_shape[1:]):
        found = []
        for j in range(g.kernel):
            t = p + g.padding - j * g.dilation
            if t % g.stride == 0 and 0 <= t // g.stride < out_size:
                found.append((j, t // g.stride))
        axes.append(found)
    return [(tuple(t for t, _ in combo), tuple(o for _, o in combo)) for combo in itertools.product(*axes)]


def conv_group_channels(op: ConvNd, channel: int, output: bool) -> tuple[range, int]:
    """The channels of the other side in ``channel``'s group, and the index of the group's first input channel."""
    per_in, per_out = op.in_channels // op.groups, op.out_channels // op.groups
    group = channel // (per_out if output else per_in)
    other = range(group * per_in, (group + 1) * per_in) if output else range(group * per_out, (group + 1) * per_out)
    return other, group * per_in


# --- the local derivatives: who feeds y, who reads x ----------------------------------------------------------------
def feeders(local: LocalNode, y: Index) -> Iterator[tuple[int, Index, float]]:
    """Every input unit that feeds output unit ``y``: (input position, index, ``∂y/∂x``)."""
    node, op = local.node, local.node.op
    if isinstance(op, ConvNd):
        weight = local.params["weight"]
        channels, first = conv_group_channels(op, y[0], output=True)
        taps = window_taps(op, y[1:])
        for c in channels:
            for tap, position in taps:
                yield 0, (c, *position), float(weight[(y[0], c - first, *tap)])
        return
    if op.op == "linear":
        for i, w in enumerate(local.params["weight"][y[0]]):
            yield 0, (i,), float(w)
        return
    row = local.row(y)
    listed: set[tuple[int, Index]] = set()
    for position in range(len(node.inputs)):
        if row[position] is None:
            continue
        for index in structural_feeders(node, position, y):
            listed.add((position, index))
            yield position, index, float(row[position][index])
        for index in zip(*np.nonzero(row[position])):
            index = tuple(int(i) for i in index)
            if (position, index) not in listed:
                yield position, index, float(row[position][index])


def structural_feeders(node: Node, position: int, y: Index) -> list[Index]:
    """The input units an op reads for ``y`` even where its derivative is 0 (a ReLU that was off, a max pool's
    other inputs): listed so that the zero shows."""
    op, shape = node.op, node.op.input_shapes[position]
    if op.op in WINDOW_OPS:
        return [(y[0], *p) for _, p in window_taps(op, y[1:])]
    if op.op in SAME_INDEX_OPS and tuple(shape) == tuple(op.output_shape):
        return [y]
    if op.op in RESHAPE_OPS:
        return [tuple(int(i) for i in np.unravel_index(np.ravel_multi_index(y, op.output_shape), shape))]
    return []


def readers(local: LocalNode, position: int, x: Index) -> Iterator[tuple[Index, float]]:
    """Every output unit of ``local``'s node that reads unit ``x`` of its input ``position``: (index, ``∂y/∂x``)."""
    op = local.node.op
    if isinstance(op, ConvNd):
        weight = local.params["weight"]
        channels, first = conv_group_channels(op, x[0], output=False)
        for k in channels:
            for tap, out_position in windows_reading(op, x[1:]):
                yield (k, *out_position), float(weight[(k, x[0] - first, *tap)])
        return
    if op.op == "linear":
        for k, w in enumerate(local.params["weight"][:, x[0]]):
            yield (k,), float(w)
        return
    shape = tuple(op.output_shape)
    if op.op in WINDOW_OPS:
        candidates: Iterable[Index] = [(x[0], *o) for _, o in windows_reading(op, x[1:])]
    elif op.op in ELEMENTWISE and tuple(op.input_shapes[position]) == shape:
        candidates = [x]
    elif op.op in RESHAPE_OPS:
        candidates = [tuple(int(i) for i in np.unravel_index(np.ravel_multi_index(x, op.input_shapes[position]),
                                                             shape))]
    elif op.op == "global_avg_pool":
        candidates = [(x[0],)]
    elif (aligned := op.aligned_axes()) is not None:
        # along an aligned axis y reads x at x's own index; along the others it reads x whole (or broadcast)
        fixed = aligned[position]
        axes = [[x[fixed[a]]] if a in fixed else range(n) for a, n in enumerate(shape)]
        check_asked(local, math.prod(len(a) for a in axes))
        candidates = itertools.product(*axes)
    else:
        check_asked(local, math.prod(shape))
        for y in np.ndindex(*shape):
            d = local.row(y)[position]
            if d is not None and d[x] != 0:
                yield y, float(d[x])
        return
    for y in candidates:
        d = local.row(tuple(y))[position]
        yield tuple(y), 0.0 if d is None else float(d[x])


def check_asked(local: LocalNode, units: int) -> None:
    """Refuse to ask more than ``MAX_GENERIC_UNITS`` output units (one backward pass of the node each)."""
    if units > MAX_GENERIC_UNITS:
        node = local.node
        raise ShapeError(f"node '{node.id}' ({node.op.op}, output {list(node.output_shape)}) would have to be asked "
                         f"for {units:,} of its outputs, one backward pass each, to find the units that read one of "
                         f"its inputs: more than the {MAX_GENERIC_UNITS:,} allowed. The chain rule is written out for "
                         "convolutions, linear layers, pooling, elementwise ops, add, mul, flatten and reshape, and "
                         f"for other ops when at most {MAX_GENERIC_UNITS:,} outputs read a unit")


# --- the rule in words ----------------------------------------------------------------------------------------------
def local_rule(node: Node) -> str:
    """What ``∂y/∂x`` is for this node's op, in words."""
    op = node.op.op
    if isinstance(node.op, ConvNd):
        return "the weight w[k, c, i, j] that multiplied x in y's window"
    return {
        "linear": "the weight W[k, i] that multiplied x",
        "relu": "1 where ReLU's input was positive, 0 where it was not (no gradient flows through an inactive unit)",
        "relu6": "1 where ReLU6's input was between 0 and 6, else 0",
        "batch_norm": "γ / √(running var + ε) of the channel (batch norm with its running statistics)",
        "add": "1: a sum hands its gradient to each of its inputs unchanged",
        "mul": "the product of the other factors",
        "flatten": "1: the same number, in another shape",
        "reshape": "1: the same number, in another shape",
        "global_avg_pool": "1 / (the number of positions averaged)",
        "dropout": "1 (dropout is off when the model predicts)",
        "identity": "1",
    }.get(op, "1 for the largest input of the window, 0 for the others" if op.startswith("max_pool") else
          "1 / (the number of inputs averaged in the window)" if op.startswith("avg_pool") else
          f"the derivative of {op} at its input" if op in ELEMENTWISE else
          f"from {op}'s own backward pass (one row of its Jacobian)")


# --- the two views --------------------------------------------------------------------------------------------------
def bounded(terms: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``MAX_TERMS`` terms with the largest |product| (largest first) and the others added up."""
    ranked = sorted(terms, key=lambda t: -abs(t["product"]))
    listed, rest = ranked[:MAX_TERMS], ranked[MAX_TERMS:]
    omitted = {"count": len(rest), "sum": math.fsum(t["product"] for t in rest),
               "note": (f"the {len(listed)} largest of {len(terms)} products are listed; the other {len(rest)} are "
                        "added up as one number") if rest else ""}
    return listed, omitted


def incoming(graph: Graph, params: Mapping[str, np.ndarray], result: Backprop, node_id: str,
             index: Index) -> dict[str, Any]:
    """``dL/du = Σ dL/dy · ∂y/∂u`` over every unit ``y`` that reads ``u`` (and the loss, for the logits)."""
    terms: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    if node_id == result.logits_node:
        p, onehot = float(result.probabilities[index[0]]), float(index[0] == result.label)
        terms.append({"node": "loss", "op": "softmax_cross_entropy", "index": [], "upstream": 1.0, "local": p - onehot,
                      "product": p - onehot})
        sources.append({"node": "loss", "op": "softmax_cross_entropy", "count": 1, "sum": p - onehot,
                        "rule": f"∂L/∂z = p − onehot(label) = {p:.6g} − {onehot:g}: the loss reads the logits"})
    for consumer in graph.consumers[node_id]:
        if consumer not in result.gradients:
            continue  # after the logits (a final softmax is part of the loss)
        local = LocalNode(graph, params, result, consumer)
        upstream = result.gradients[consumer][0]
        own: list[dict[str, Any]] = []
        for position, name in enumerate(local.node.inputs):
            if name != node_id:
                continue
            for y, d in readers(local, position, index):
                g = float(upstream[y])
                own.append({"node": consumer, "op": local.node.op.op, "index": list(y), "upstream": g, "local": d,
                            "product": g * d})
        terms.extend(own)
        sources.append({"node": consumer, "op": local.node.op.op, "count": len(own),
                        "sum": math.fsum(t["product"] for t in own), "rule": local_rule(local.node)})
    listed, omitted = bounded(terms)
    return {"sources": sources, "terms": listed, "omitted": omitted,
            "total": math.fsum(t["product"] for t in terms),
            "engine_value": float(result.gradients[node_id][0][index])}


def outgoing(graph: Graph, params: Mapping[str, np.ndarray], result: Backprop, node_id: str,
             index: Index) -> dict[str, Any] | None:
    """``dL/du · ∂u/∂x`` for every input unit ``x`` that feeds ``u`` (None for the graph's input: nothing feeds it)."""
    if node_id == INPUT:
        return None
    local = LocalNode(graph, params, result, node_id)
    upstream = float(result.gradients[node_id][0][index])
    terms = []
    for position, x, d in feeders(local, index):
        name = local.node.inputs[position]
        gradients = result.gradients.get(name)
        terms.append({"input": name, "index": list(x), "value": float(result.activations[name][0][x]), "local": d,
                      "product": upstream * d,
                      "input_gradient": None if gradients is None else float(gradients[0][x])})
    listed, omitted = bounded(terms)
    return {"upstream": upstream, "rule": local_rule(local.node), "inputs": list(local.node.inputs),
            "terms": listed, "omitted": omitted}


def check_unit(graph: Graph, result: Backprop, node_id: str, index: Iterable[int]) -> Index:
    """``index`` as a unit of ``node_id`` whose gradient the loss has, or a ShapeError saying what exists."""
    if node_id != INPUT:
        graph.node(node_id)  # UnknownNodeError listing the nodes
    if node_id not in result.gradients:
        raise ShapeError(f"the loss does not depend on node '{node_id}' (it comes after the logits "
                         f"'{result.logits_node}', whose softmax is part of the loss): pick a node from "
                         f"{result.order[0]} back to the input")
    index = tuple(int(i) for i in index)
    shape = result.gradients[node_id].shape[1:]
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        raise ShapeError(f"unit {list(index)} is outside node '{node_id}' of shape {list(shape)}: give {len(shape)} "
                         "indices, each from 0 to that size minus 1")
    return index


def chain_rule(graph: Graph, params: Mapping[str, np.ndarray], result: Backprop, node_id: str,
               index: Iterable[int]) -> dict[str, Any]:
    """Both views of the chain rule at unit ``index`` (no batch axis) of ``node_id`` (``"input"`` allowed)."""
    unit = check_unit(graph, result, node_id, index)
    op = "input" if node_id == INPUT else graph.node(node_id).op.op
    return {"node": node_id, "op": op, "index": list(unit), "value": float(result.activations[node_id][0][unit]),
            "gradient": float(result.gradients[node_id][0][unit]),
            "incoming": incoming(graph, params, result, node_id, unit),
            "outgoing": outgoing(graph, params, result, node_id, unit)}
