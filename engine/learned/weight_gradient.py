"""The weight gradient of one filter, written out: what backpropagation hands to a convolution's (or a linear
layer's) weights.

A convolution's output channel ``k`` is ``y[k, o] = b[k] + Σ_{c, t} w[k, c, t] · x[c, o·s − p + t·d]`` (``o`` an
output position, ``t`` a kernel tap). Every output position uses the same filter, so its gradient sums over them::

    dL/dw[k, c, t] = Σ_o dL/dy[k, o] · x[c, o·s − p + t·d]      (0 where the window is in the padding)
    dL/db[k]       = Σ_o dL/dy[k, o]

the correlation of the input with the upstream gradient map. For a linear layer ``y[k] = b[k] + Σ_i W[k, i] x[i]``:
``dL/dW[k, i] = dL/dy[k] · x[i]`` and ``dL/db[k] = dL/dy[k]``. The numbers here are computed from these formulas,
apart from the backward pass, and agree with ``Gradients.params`` to float rounding (``engine_gradient``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.graph import Graph
from engine.learned.backprop import Backprop
from engine.ops.conv import ConvNd

MAX_WEIGHT_TERMS = 16  # output positions listed for the example weight (the largest |product| first)


def filter_ops(graph: Graph) -> list[str]:
    """The nodes whose filters can be shown: convolutions and linear layers."""
    return [n.id for n in graph.nodes if isinstance(n.op, ConvNd) or n.op.op == "linear"]


def check_filter(graph: Graph, node_id: str, k: int) -> None:
    """A ShapeError unless ``node_id`` is a convolution or linear layer with an output channel ``k``."""
    node = graph.node(node_id)
    if not (isinstance(node.op, ConvNd) or node.op.op == "linear"):
        nodes = ", ".join(filter_ops(graph)[:20]) or "none in this model"
        raise ShapeError(f"node '{node_id}' is a {node.op.op}, which has no filters: pick a convolution or linear "
                         f"layer ({nodes})")
    count = node.output_shape[0]
    if not 0 <= k < count:
        raise ShapeError(f"node '{node_id}' has {count} filters (output channels): give a filter from 0 to {count - 1}")


def conv_filter_gradient(op: ConvNd, x: np.ndarray, upstream: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """x: (C, *S) the convolution's input; upstream: (K, *S_out) its output's gradient. Returns ``dL/dw[k]``
    ``(C / groups, *kernel_size)`` and ``dL/db[k]``, in float64, from the formula above."""
    per_in = op.in_channels // op.groups
    first = (k // (op.out_channels // op.groups)) * per_in
    g = upstream[k].astype(np.float64)
    padded = np.pad(x[first:first + per_in].astype(np.float64), [(0, 0), *op.padding])
    grad = np.zeros((per_in, *op.kernel))
    for tap in itertools.product(*(range(n) for n in op.kernel)):
        # the input each output position read at this tap: a strided slice of the padded input
        window = tuple(slice(t * d, t * d + s * (n - 1) + 1, s)
                       for t, d, s, n in zip(tap, op.dilation, op.stride, op.out_sizes))
        grad[(slice(None), *tap)] = np.tensordot(padded[(slice(None), *window)], g, axes=g.ndim)
    return grad, float(g.sum())


def weight_terms(op: ConvNd, x: np.ndarray, upstream: np.ndarray, k: int, weight: tuple[int, ...]) -> dict[str, Any]:
    """The sum behind one weight's gradient ``dL/dw[k, c, t]``: per output position, ``dL/dy[k, o]`` times the
    input it read there (positions in the padding read 0 and are left out), the largest products first."""
    c, tap = weight[0], weight[1:]
    channel = (k // (op.out_channels // op.groups)) * (op.in_channels // op.groups) + c
    terms = []
    for o in itertools.product(*(range(n) for n in op.out_sizes)):
        position = tuple(oo * s - pad[0] + t * d for oo, s, pad, t, d in zip(o, op.stride, op.padding, tap,
                                                                             op.dilation))
        if all(0 <= p < n for p, n in zip(position, op.in_sizes)):
            g, v = float(upstream[(k, *o)]), float(x[(channel, *position)])
            terms.append({"output": list(o), "input": [channel, *position], "upstream": g, "value": v,
                          "product": g * v})
    ranked = sorted(terms, key=lambda t: -abs(t["product"]))
    rest = ranked[MAX_WEIGHT_TERMS:]
    return {"weight": [k, *weight], "terms": ranked[:MAX_WEIGHT_TERMS], "count": len(terms),
            "omitted_sum": math.fsum(t["product"] for t in rest), "total": math.fsum(t["product"] for t in terms)}


def filter_gradient(graph: Graph, params: Mapping[str, np.ndarray], result: Backprop, node_id: str,
                    k: int) -> dict[str, Any]:
    """Filter ``k`` of convolution or linear layer ``node_id``: its weights, their gradient by the formula, the
    engine's own gradient, the bias and its gradient; for a convolution also the sum behind its largest weight
    gradient (``example``)."""
    check_filter(graph, node_id, k)
    node = graph.node(node_id)
    x = result.activations[node.inputs[0]][0]
    upstream = result.gradients[node_id][0]
    weight = params[f"{node_id}.weight"][k]
    bias_name = f"{node_id}.bias"
    has_bias = bias_name in params
    example = None
    if isinstance(node.op, ConvNd):
        grad, bias_grad = conv_filter_gradient(node.op, x, upstream, k)
        largest = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(grad)), grad.shape))
        example = weight_terms(node.op, x, upstream, k, largest)
    else:
        grad, bias_grad = float(upstream[k]) * x.astype(np.float64), float(upstream[k])
    return {"node": node_id, "op": node.op.op, "filter": k, "shape": list(weight.shape),
            "weight": weight.astype(np.float64), "gradient": grad,
            "engine_gradient": result.param_gradients[f"{node_id}.weight"][k].astype(np.float64),
            "bias": float(params[bias_name][k]) if has_bias else None,
            "bias_gradient": bias_grad if has_bias else None,
            "engine_bias_gradient": float(result.param_gradients[bias_name][k]) if has_bias else None,
            "upstream_positions": int(np.prod(upstream.shape[1:])) if upstream.ndim > 1 else 1,
            "example": example}
