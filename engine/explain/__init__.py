"""How one unit's number was made, with the real numbers: the arithmetic behind the explorer's operation detail.

``explain_unit(graph, params, trace, node_id, index)`` recomputes one unit of a forward pass from its inputs and
parameters, step by step, and returns every intermediate number as plain JSON-ready Python values. One module per
family of ops says what its units' explanations hold:

- ``conv``: conv2d; ``transposed``: conv_transpose2d; ``pool``: max_pool2d / avg_pool2d; ``linear``;
  ``softmax``: softmax / spatial_softmax (and ``explain_softmax_of_scores``, the prediction's probabilities);
  ``global_pool``: global_avg_pool, attention_pool; ``merge``: add / mul; ``pad``; ``upsample``;
  ``elementwise``: batch norm, ReLU, ... and the ``chain`` of elementwise nodes that follows any explained unit;
  ``recurrent``: rnn / lstm / gru, hidden unit j at step t (``unit_shape``: the index is (t, j) whatever the node
  outputs), gate by gate.

``REGISTRY`` maps each explained op to its ``Explainer`` (its family, its function, and why a node of it cannot be
explained, e.g. a pad that is not on 2D maps); ``explainable_ops()`` lists the ops and ``explainable(node)`` says
whether a node's units can be explained.

Every explanation carries ``node``, ``op``, ``kind`` (the op explained), ``family`` (the explanation's shape),
``index``, ``input``, ``inputs``, ``result`` (recomputed here, in float64) beside ``engine_value`` (the forward
pass's own number, ``trace.activations[node_id][0][index]``): the two agree to float32 rounding; and ``chain``.
Output sizes are bounded (``MAX_CHANNELS`` channels, ``MAX_TERMS`` products, ``MAX_CLASSES`` classes); what is left
out is aggregated and said so (``omitted``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.explain import (
    conv,
    elementwise,
    global_pool,
    linear,
    merge,
    pad,
    pool,
    recurrent,
    softmax,
    transposed,
    upsample,
)
from engine.explain.base import MAX_CHANNELS, Explainer, Unit
from engine.explain.linear import MAX_TERMS
from engine.explain.softmax import MAX_CLASSES
from engine.graph import Graph, Node, Trace
from engine.layers.softmax import softmax_forward

#: what the index of a unit whose ``unit_shape`` is not the node's output names, in words
UNIT_AXES = {op: "step t, then unit j of the step's output (D·H: forward units, then reverse); k, t, j for a node "
                 "of several layers" for op in recurrent.EXPLAINERS}
#: op name -> its explainer, in the order the ops are listed to users
REGISTRY: dict[str, Explainer] = {
    **conv.EXPLAINERS, **transposed.EXPLAINERS, **pool.EXPLAINERS, **linear.EXPLAINERS, **softmax.EXPLAINERS,
    "global_avg_pool": global_pool.EXPLAINERS["global_avg_pool"], **merge.EXPLAINERS,
    "attention_pool": global_pool.EXPLAINERS["attention_pool"], **pad.EXPLAINERS, **upsample.EXPLAINERS,
    **elementwise.EXPLAINERS, **recurrent.EXPLAINERS,
}


def explainable_ops() -> tuple[str, ...]:
    """Every op whose units can be explained (some only for some nodes: see ``explainable``)."""
    return tuple(REGISTRY)


def refusal(node: Node) -> str | None:
    """Why the units of ``node`` cannot be explained, in words (None: they can)."""
    explainer = REGISTRY.get(node.op.op)
    if explainer is None:
        return f"node '{node.id}' is a {node.op.op}; units can be explained for {', '.join(REGISTRY)}"
    return explainer.refuse(node)


def explainable(node: Node) -> bool:
    """The units of ``node`` can be explained (``explain_unit`` answers for every index inside it)."""
    return refusal(node) is None


def unit_shape(node: Node) -> tuple[int, ...]:
    """What a unit index of ``node`` addresses: its output shape, or its explainer's own (a recurrent node's
    (T, D·H): step, unit)."""
    explainer = REGISTRY.get(node.op.op)
    if explainer is None or explainer.unit_shape is None:
        return tuple(node.output_shape)
    return tuple(explainer.unit_shape(node))


def explain_unit(graph: Graph, params: Mapping[str, np.ndarray], trace: Trace, node_id: str,
                 index: Sequence[int]) -> dict[str, Any]:
    """The arithmetic behind unit ``index`` (no batch axis, e.g. ``(channel, y, x)``; ``unit_shape`` says what it
    addresses) of ``node_id``, sample 0.

    Returns a dict with ``node``, ``op``, ``kind`` (the op explained), ``family``, ``index``, ``input``, ``inputs``,
    ``engine_value``, ``result`` and the op's own fields (see the family modules); ``chain``: the elementwise nodes
    after it. Raises ShapeError for an unknown node, an index outside the node, or a node whose units are not
    explained.
    """
    if node_id not in graph.by_id:
        raise ShapeError(f"the graph has no node '{node_id}' (its nodes: {', '.join(list(graph.by_id)[:30])})")
    node = graph.by_id[node_id]
    shape = unit_shape(node)
    index = tuple(int(i) for i in index)
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        what = f" ({UNIT_AXES[node.op.op]})" if node.op.op in UNIT_AXES else ""
        raise ShapeError(f"unit {list(index)} is outside node '{node_id}' of shape {list(shape)}{what}: give "
                         f"{len(shape)} indices, each from 0 to the size minus 1")
    reason = refusal(node)
    if reason is not None:
        raise ShapeError(reason)
    explainer = REGISTRY[node.op.op]
    out: dict[str, Any] = {"node": node_id, "op": node.op.op, "title": node.op.title, "kind": node.op.op,
                           "family": explainer.family, "index": list(index), "input": node.inputs[0],
                           "inputs": list(node.inputs)}
    own = explainer.explain(Unit(graph, params, trace, node, index))
    at: tuple[int, ...] | None = index
    if "engine_value" not in own:
        out["engine_value"] = float(trace.activations[node_id][0][index])
    else:  # the explainer's own value, which may not be one of the node's outputs
        at = None if own.get("activation_index") is None else tuple(own["activation_index"])
    out.update(own)
    out["chain"] = [] if at is None else elementwise.chain(graph, params, trace, node_id, at, out["engine_value"])
    return out


def explain_softmax_of_scores(graph: Graph, trace: Trace, node_id: str, index: Sequence[int]) -> dict[str, Any]:
    """Softmax over a node's class scores (K,), e.g. the output logits: how class ``index[0]``'s probability is made.

    For a model whose output is scores, this is the prediction's softmax; ``engine_value`` is the engine's own
    softmax layer applied to the scores.
    """
    if node_id not in graph.by_id:
        raise ShapeError(f"the graph has no node '{node_id}' (its nodes: {', '.join(list(graph.by_id)[:30])})")
    if graph.by_id[node_id].op.op == "softmax":  # the model ends in its own softmax: explain that one
        return explain_unit(graph, {}, trace, node_id, index)
    scores = trace.activations[node_id]
    if scores.ndim != 2:
        raise ShapeError(f"softmax over scores needs a vector of class scores, but node '{node_id}' has shape "
                         f"{list(scores.shape[1:])}: pick the node that gives the class scores (e.g. the last linear)")
    index = tuple(int(i) for i in index)
    if len(index) != 1 or not 0 <= index[0] < scores.shape[1]:
        raise ShapeError(f"class {list(index)} is outside node '{node_id}' of shape {list(scores.shape[1:])}: give "
                         f"one index from 0 to {scores.shape[1] - 1}")
    probabilities, _ = softmax_forward(scores[:1].astype(np.float64), dim=1)
    out = {"node": node_id, "op": graph.by_id[node_id].op.op, "title": graph.by_id[node_id].op.title,
           "kind": "softmax", "family": "softmax",
           "index": list(index), "input": node_id, "inputs": [node_id],
           "engine_value": float(probabilities[0, index[0]]), "chain": []}
    out.update(softmax.softmax_numbers(scores[0].astype(np.float64), index[0], "class"))
    return out


__all__ = ["MAX_CHANNELS", "MAX_CLASSES", "MAX_TERMS", "REGISTRY", "Explainer", "Unit", "explain_softmax_of_scores",
           "explain_unit", "explainable", "explainable_ops", "refusal", "unit_shape"]
