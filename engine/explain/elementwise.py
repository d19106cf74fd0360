"""Elementwise units (batch norm with its running statistics, ReLU, ReLU6, sigmoid, ...): the value coming in and
the formula's numbers; and the chain of elementwise nodes that follows any explained unit, each step recomputed
where it has a formula."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.explain.base import Explainer, Unit
from engine.graph import Graph, Node, Trace

MAX_CHAIN = 4  # elementwise nodes followed after the unit
ELEMENTWISE = ("relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "clip",
               "gelu", "sqrt", "pow", "identity", "dropout", "batch_norm")


def explain_elementwise(unit: Unit) -> dict[str, Any]:
    """The input value at the unit's index and the formula's numbers (batch norm reads the full params: its running
    statistics)."""
    v = float(unit.inputs()[0][1][unit.index])
    return {"input_value": v, **formula_numbers(unit.node, unit.params, unit.index, v)}


def chain(graph: Graph, params: Mapping[str, np.ndarray], trace: Trace, node_id: str, index,
          value: float) -> list[dict[str, Any]]:
    """The elementwise nodes after ``node_id`` while it has exactly one consumer, each with the unit's value."""
    steps = []
    current, previous = node_id, value
    for _ in range(MAX_CHAIN):
        consumers = graph.consumers.get(current, [])
        if len(consumers) != 1 or graph.by_id[consumers[0]].op.op not in ELEMENTWISE:
            break
        nxt = graph.by_id[consumers[0]]
        step: dict[str, Any] = {"node": nxt.id, "op": nxt.op.op, "title": nxt.op.title, "input_value": previous,
                                "engine_value": float(trace.activations[nxt.id][0][index])}
        step.update(formula_numbers(nxt, params, index, previous))
        steps.append(step)
        current, previous = nxt.id, step["engine_value"]
    return steps


def formula_numbers(node: Node, params: Mapping[str, np.ndarray], index, v: float) -> dict[str, Any]:
    """The formula's numbers, for the ops that have one here (``result`` recomputed from ``v``)."""
    op = node.op.op
    if op == "batch_norm":
        c = index[0]

        def param(name: str, default: float) -> float:
            key = f"{node.id}.{name}"
            return float(params[key][c]) if key in params else default

        mean, var = param("running_mean", 0.0), param("running_var", 1.0)
        weight, bias, eps = param("weight", 1.0), param("bias", 0.0), float(node.op.attrs["eps"])
        return {"running_mean": mean, "running_var": var, "eps": eps, "weight": weight, "bias": bias,
                "result": (v - mean) / math.sqrt(var + eps) * weight + bias}
    attrs = node.op.attrs
    sigmoid = 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
    formulas = {
        "relu": lambda: max(0.0, v),
        "relu6": lambda: min(max(0.0, v), 6.0),
        "leaky_relu": lambda: v if v > 0 else attrs["negative_slope"] * v,
        "sigmoid": lambda: sigmoid,
        "tanh": lambda: math.tanh(v),
        "silu": lambda: v * sigmoid,
        "hardsigmoid": lambda: min(max(attrs["alpha"] * v + attrs["beta"], 0.0), 1.0),
        "hardswish": lambda: v * min(max(v / 6 + 0.5, 0.0), 1.0),
        "clip": lambda: min(max(v, -math.inf if attrs["min"] is None else attrs["min"]),
                            math.inf if attrs["max"] is None else attrs["max"]),
        "gelu": lambda: (0.5 * v * (1 + math.erf(v / math.sqrt(2))) if attrs["approximate"] == "none" else
                         0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))),
        "sqrt": lambda: math.sqrt(v) if v >= 0 else math.nan,
        "pow": lambda: _power(v, attrs["exponent"]),
        "identity": lambda: v,
        "dropout": lambda: v,  # inference: unchanged
    }
    return {"result": float(formulas[op]())} if op in formulas else {}


def _power(v: float, exponent: float) -> float:
    """``v ** exponent`` as torch.pow gives it: nan for a negative base and a fractional exponent, inf at 0 for a
    negative exponent."""
    try:
        result = v ** exponent
    except ZeroDivisionError:
        return math.inf
    return math.nan if isinstance(result, complex) else float(result)


EXPLAINERS = {op: Explainer("elementwise", explain_elementwise) for op in ELEMENTWISE}
