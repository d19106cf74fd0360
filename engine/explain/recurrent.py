"""rnn, lstm and gru units: hidden unit j at step t, from the step's input x_t and the previous states, gate by gate.

A unit is addressed ``(t, j)``: step t (in input order), column j of one step's output (D·H: the forward direction's
H units, then the reverse direction's), of the top layer; a node of several layers takes ``(k, t, j)`` for layer k.
The arithmetic is the cell's, as ``engine.layers.recurrent`` computes it (docs/recurrent.md), recomputed here in
float64 from the engine's own float32 inputs of that step (x_t, h_{t−1}, c_{t−1} as the forward pass left them):

- each gate's weighted sums, split into the input side ``W_ih[row] · x_t + b_ih[row]`` and the recurrent side
  ``W_hh[row] · h_{t−1} + b_hh[row]`` (row = gate · H + unit; the largest products listed, the rest aggregated),
  the pre-activation (the GRU's candidate n scales the recurrent side by its reset gate r), and the activation;
- the new state: ``c_t = f · c_{t−1} + i · g``, ``h_t = o · tanh(c_t)`` (LSTM); ``h_t = (1 − z) · n + z · h_{t−1}``
  (GRU); ``h_t = tanh or relu(pre-activation)`` (RNN).

``result`` is the recomputed h_t[unit], ``engine_value`` the engine's recorded one; every gate carries both too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.explain.base import Explainer, Unit
from engine.explain.linear import MAX_TERMS
from engine.graph import Node
from engine.layers.recurrent import GATES
from engine.time_steps import GATE_TITLES, record_steps

#: the activation each gate goes through, by cell (an RNN's one "gate" is h itself: its nonlinearity)
ACTIVATIONS = {"lstm": {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid"},
               "gru": {"r": "sigmoid", "z": "sigmoid", "n": "tanh"}}


def recurrent_unit_shape(node: Node) -> tuple[int, ...]:
    """What a unit index addresses: (T, D·H) for one layer, (num_layers, T, D·H) for several."""
    a = node.op.attrs
    steps = node.op.input_shapes[0][0]
    width = (2 if a["bidirectional"] else 1) * a["hidden_size"]
    return (steps, width) if a["num_layers"] == 1 else (a["num_layers"], steps, width)


def activate(name: str, v: float) -> float:
    """sigmoid, tanh or relu of ``v``, in float64."""
    if name == "sigmoid":
        return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
    if name == "tanh":
        return math.tanh(v)
    return max(v, 0.0)


def weighted_sum(values: np.ndarray, weights: np.ndarray, bias: float) -> dict[str, Any]:
    """``Σ_i values[i] · weights[i] + bias``: the largest |products| (``MAX_TERMS``), the rest added up."""
    products = values * weights
    order = np.argsort(-np.abs(products), kind="stable")[:MAX_TERMS]
    rest = np.setdiff1d(np.arange(len(products)), order)
    total = math.fsum(products.tolist())
    return {"terms": [{"index": int(i), "input": float(values[i]), "weight": float(weights[i]),
                       "product": float(products[i])} for i in order],
            "omitted": {"count": len(rest), "sum": math.fsum(products[rest].tolist()),
                        "note": (f"the {len(order)} largest |products| of the {len(products)} are listed; the other "
                                 f"{len(rest)} are added up as one number") if len(rest) else ""},
            "total": total, "bias": bias, "sum": total + bias}


def _initial_state(unit: Unit, position: int, row: int, hidden: int) -> tuple[np.ndarray, str]:
    """The initial state the node reads at input ``position`` (1: h0, 2: c0), row ``row``; zeros if not given."""
    node = unit.node
    name = "hc"[position - 1] + "0"
    if len(node.inputs) > position:
        source = node.inputs[position]
        return (unit.trace.activations[source][0][row].astype(np.float64),
                f"the initial state {name} (node '{source}', row {row})")
    return np.zeros(hidden), f"zeros: no initial state {name} given"


def explain_recurrent(unit: Unit) -> dict[str, Any]:
    """Hidden unit ``index`` = (t, j) or (k, t, j) of an rnn / lstm / gru node (see the module's docstring)."""
    node, a, cell = unit.node, unit.op.attrs, unit.op.op
    hidden, layers = a["hidden_size"], a["num_layers"]
    directions = 2 if a["bidirectional"] else 1
    k, t, j = unit.index if layers > 1 else (0, *unit.index)
    d, u = divmod(j, hidden)
    suffix = f"_l{k}{'_reverse' if d else ''}"
    recorded = record_steps(unit.graph, unit.params, unit.trace, node.id)
    steps = len(recorded[f"h{suffix}"])
    if k == 0:
        x, x_from = unit.x[t].astype(np.float64), f"row {t} of '{node.inputs[0]}' (the sequence read)"
    else:
        below = [recorded[f"h_l{k - 1}{s}"][t] for s in ("", "_reverse")[:directions]]
        x = np.concatenate(below).astype(np.float64)
        x_from = f"layer {k - 1}'s output at step {t}" + (" (forward, then reverse direction)" if directions == 2
                                                          else "")
    previous = t + 1 if d else t - 1
    first = not 0 <= previous < steps
    row = k * directions + d  # of h0, c0, h_n, c_n
    if first:
        h_prev, h_from = _initial_state(unit, 1, row, hidden)
    else:
        h_prev, h_from = recorded[f"h{suffix}"][previous].astype(np.float64), f"h at step {previous}"
    p = unit.node_params()
    w_ih, w_hh = p[f"weight_ih{suffix}"].astype(np.float64), p[f"weight_hh{suffix}"].astype(np.float64)
    b_ih = p[f"bias_ih{suffix}"].astype(np.float64) if f"bias_ih{suffix}" in p else np.zeros(len(w_ih))
    b_hh = p[f"bias_hh{suffix}"].astype(np.float64) if f"bias_hh{suffix}" in p else np.zeros(len(w_hh))
    gates: list[dict[str, Any]] = []
    value: dict[str, float] = {}
    for g, name in enumerate(GATES[cell]):
        gate_row = g * hidden + u
        input_side = weighted_sum(x, w_ih[gate_row], float(b_ih[gate_row]))
        recurrent_side = weighted_sum(h_prev, w_hh[gate_row], float(b_hh[gate_row]))
        reset = value["r"] if cell == "gru" and name == "n" else None
        pre = input_side["sum"] + (recurrent_side["sum"] if reset is None else reset * recurrent_side["sum"])
        function = a["nonlinearity"] if cell == "rnn" else ACTIVATIONS[cell][name]
        value[name] = activate(function, pre)
        gates.append({"gate": name, "title": GATE_TITLES[name], "row": gate_row, "activation": function,
                      "input_side": input_side, "recurrent_side": recurrent_side, "reset": reset,
                      "pre_activation": pre, "result": value[name],
                      "engine_value": float(recorded[f"{name}{suffix}"][t][u])})
    out: dict[str, Any] = {
        "cell": cell, "layer": k, "direction": "reverse" if d else "forward", "step": t, "unit": u,
        "hidden_size": hidden, "steps": steps, "previous_step": None if first else previous, "x": x.tolist(),
        "x_from": x_from, "h_prev": h_prev.tolist(), "h_prev_from": h_from, "gates": gates,
        "engine_value": float(recorded[f"h{suffix}"][t][u])}
    if cell == "lstm":
        if first:
            c_prev_row, c_from = _initial_state(unit, 2, row, hidden)
            c_prev = float(c_prev_row[u])
        else:
            c_prev, c_from = float(recorded[f"c{suffix}"][previous][u]), f"c at step {previous}"
        forget_term, input_term = value["f"] * c_prev, value["i"] * value["g"]
        c = forget_term + input_term
        out["cell_state"] = {"previous": c_prev, "previous_from": c_from, "forget_term": forget_term,
                             "input_term": input_term, "result": c, "engine_value": float(recorded[f"c{suffix}"][t][u]),
                             "tanh": math.tanh(c)}
        out["result"] = value["o"] * math.tanh(c)
    elif cell == "gru":
        z, n, h_before = value["z"], value["n"], float(h_prev[u])
        out["update"] = {"z": z, "n": n, "h_prev": h_before, "new_term": (1 - z) * n, "kept_term": z * h_before}
        out["result"] = (1 - z) * n + z * h_before
    else:
        out["result"] = value["h"]
    out["activation_index"] = _activation_index(node, k, t, d, u, steps)
    return out


def _activation_index(node: Node, k: int, t: int, d: int, u: int, steps: int) -> list[int] | None:
    """Where h_t[u] of layer k, direction d sits in the node's output, or None when it is not there."""
    a = node.op.attrs
    directions = 2 if a["bidirectional"] else 1
    if a["output"] == "sequence":
        return [t, d * a["hidden_size"] + u] if k == a["num_layers"] - 1 else None
    last = 0 if d else steps - 1
    if a["output"] == "hidden" and t == last:
        return [k * directions + d, u]
    return None


def unit_of_activation(node: Node, position: tuple[int, ...]) -> tuple[int, ...] | None:
    """The unit index (``recurrent_unit_shape``'s) whose h_t sits at ``position`` of the node's output, or None where
    the output holds no hidden state (a ``cell`` output) or ``position`` is outside it.

    ``output="sequence"`` (T, D·H): (t, j) is the top layer's unit j at step t. ``output="hidden"`` (L·D, H): row
    k·D + d holds layer k's last state in direction d, the state after step T − 1 forward and after step 0 in
    reverse."""
    a = node.op.attrs
    steps = node.op.input_shapes[0][0]
    directions = 2 if a["bidirectional"] else 1
    layers, hidden = a["num_layers"], a["hidden_size"]
    if len(position) != 2 or any(i < 0 or i >= n for i, n in zip(position, node.output_shape)):
        return None
    if a["output"] == "sequence":
        k, (t, j) = layers - 1, position
    elif a["output"] == "hidden":
        k, d = divmod(position[0], directions)
        t, j = (0 if d else steps - 1), d * hidden + position[1]
    else:
        return None
    return (t, j) if layers == 1 else (k, t, j)


EXPLAINERS = {op: Explainer("recurrent", explain_recurrent, unit_shape=recurrent_unit_shape)
              for op in ("rnn", "lstm", "gru")}
