"""Time steps in a graph: which axis of a node is time, what a recurrent node computed at each step, and what the
classifier would say after each step.

A sequence is ``(T, F)`` per sample, time first (``engine.ops.recurrent``). What the visualiser asks of it:

- ``time_axes(graph)``: the nodes whose output has a time axis (axis 0 of ``(T, F)``): a recurrent node's
  ``"sequence"`` output, whatever a recurrent or attention node reads as its sequence (a digit's ``reshape`` to
  ``(28, 28)``: row t is step t, or the model's input itself), and elementwise nodes that keep it.
- ``sequence_summary(node)``: a recurrent or ``sequence_attention`` node's steps, sizes, recorded arrays and
  parameters (PyTorch's names, in ``named_parameters()`` order).
- ``record_steps(graph, params, trace, node_id)``: the node run again on its inputs from ``trace`` with its cache
  kept, and the op's ``recorded(cache)`` for sample 0: ``h_l0`` ``(T, H)``, ``c_l0``, the gates; ``scores`` and
  ``weights`` ``(T,)`` for attention. A run keeps activations, not caches; one node is cheap to run again, and its
  output is the run's own (the tests check it bit for bit).
- ``step_predictions(graph, params, recorded, node_id)``: the classifier head (every node after the recurrent node)
  applied to the states after each step in place of the final ones, so ``logits[t]`` is the prediction having read
  steps 0..t. Exact for a recurrent node of one direction whose output is its final states (``"hidden"`` or
  ``"cell"``): its state after step t is its final state on the sequence cut after step t. ``head_refusal`` says
  why other nodes have none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.graph import INPUT, Graph, Node, Trace
from engine.layers.recurrent import GATES, STATES
from engine.layers.softmax import softmax_forward
from engine.ops.base import ForwardContext

RECURRENT_OPS = ("rnn", "lstm", "gru")
#: ops that read a sequence (T, F) as their first input and record something per step
SEQUENCE_OPS = (*RECURRENT_OPS, "sequence_attention")
#: ops that keep every value where it is (a time axis through them stays the time axis)
_KEEPS_POSITIONS = ("relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "clip",
                    "gelu", "sqrt", "pow", "identity", "dropout")
#: ops whose output is a probability normalisation of the scores before it
_NORMALISERS = ("softmax", "log_softmax")
#: the gates' names in words, by cell
GATE_TITLES = {"i": "input gate", "f": "forget gate", "g": "candidate cell", "o": "output gate",
               "r": "reset gate", "z": "update gate", "n": "candidate state", "h": "hidden state"}


def is_recurrent(node: Node) -> bool:
    return node.op.op in RECURRENT_OPS


def time_axes(graph: Graph) -> dict[str, int]:
    """Node id (``"input"`` included) -> the axis of its per-sample output that indexes time steps (always 0: a
    sequence is (T, F)), for the nodes whose output is a sequence; other nodes are left out."""
    axes: dict[str, int] = {}
    for node in graph.nodes:
        made = is_recurrent(node) and node.op.attrs["output"] == "sequence"
        kept = node.op.op in _KEEPS_POSITIONS and len(node.inputs) == 1 and axes.get(node.inputs[0]) == 0
        if made or kept:
            axes[node.id] = 0
    for node in graph.nodes:
        if node.op.op in SEQUENCE_OPS:
            axes[node.inputs[0]] = 0
    return axes


def sequence_input_shape(graph: Graph, node: Node) -> tuple[int, int]:
    """(T, F): the sequence ``node`` reads."""
    shape = graph.input_shape if node.inputs[0] == INPUT else graph.by_id[node.inputs[0]].output_shape
    return int(shape[0]), int(shape[1])


def recorded_names(node: Node) -> list[str]:
    """The arrays ``record_steps`` gives for ``node``, in order: per layer and direction ``h``, then ``c`` (LSTM)
    and the gates; ``scores``, ``weights`` for attention."""
    if node.op.op == "sequence_attention":
        return ["scores", "weights"]
    cell = node.op.op
    names = ["h", *(["c"] if cell == "lstm" else []), *([] if cell == "rnn" else GATES[cell])]
    directions = 2 if node.op.attrs["bidirectional"] else 1
    return [f"{name}_l{k}{'_reverse' if d else ''}" for k in range(node.op.attrs["num_layers"])
            for d in range(directions) for name in names]


def sequence_summary(graph: Graph, node: Node) -> dict[str, Any] | None:
    """For a recurrent or ``sequence_attention`` node: what it reads and records per step (None for other nodes).

    ``steps`` T and ``features`` F of the sequence read; ``per_step_shape``: the shape of one step of each recorded
    array ((H,) for a recurrent node's states and gates, () for attention's score and weight); ``recorded``: their
    names; ``params``: (name, shape) in PyTorch's ``named_parameters()`` order.
    """
    if node.op.op not in SEQUENCE_OPS:
        return None
    steps, features = sequence_input_shape(graph, node)
    params = [(name, tuple(int(n) for n in shape)) for name, shape in node.op.param_shapes().items()]
    summary: dict[str, Any] = {"steps": steps, "features": features, "recorded": recorded_names(node),
                               "params": params}
    if node.op.op == "sequence_attention":
        return {**summary, "kind": "attention", "per_step_shape": (), "score": node.op.attrs["score"],
                "attention_size": node.op.attention_size if node.op.attrs["score"] == "additive" else None}
    a = node.op.attrs
    return {**summary, "kind": "recurrent", "cell": node.op.op, "per_step_shape": (a["hidden_size"],),
            "hidden_size": a["hidden_size"], "num_layers": a["num_layers"],
            "directions": 2 if a["bidirectional"] else 1, "output": a["output"],
            "gates": list(GATES[node.op.op]) if node.op.op != "rnn" else [], "states": list(STATES[node.op.op])}


def node_params(node: Node, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``node``'s parameters by their short names (``weight_ih_l0``, ...)."""
    return {name: params[f"{node.id}.{name}"] for name in node.op.param_shapes()}


def record_steps(graph: Graph, params: Mapping[str, np.ndarray], trace: Trace, node_id: str,
                 sample: int = 0) -> dict[str, np.ndarray]:
    """What a recurrent or ``sequence_attention`` node computed at each step, for one sample of ``trace``:
    ``{"h_l0": (T, H), ...}`` or ``{"scores": (T,), "weights": (T,)}`` (see ``recorded_names``), t in input
    order. The node runs again (inference) on its inputs as ``trace`` holds them, with its cache kept."""
    node = graph.node(node_id)
    if node.op.op not in SEQUENCE_OPS:
        raise ShapeError(f"node '{node_id}' is a {node.op.op}: steps are recorded for {', '.join(SEQUENCE_OPS)} "
                         "nodes")
    inputs = [trace.activations[name][sample:sample + 1] for name in node.inputs]
    _, cache = node.op.forward(inputs, node_params(node, params), ForwardContext(training=False))
    return {name: np.asarray(value[0]) for name, value in node.op.recorded(cache).items()}


# --- the prediction after each step ------------------------------------------------------------------------------
def score_node_id(graph: Graph) -> str:
    """The node whose output is the class scores: the last node, or the one before a final softmax."""
    last = graph.nodes[-1]
    return last.inputs[0] if last.op.op in _NORMALISERS else last.id


def head_nodes(graph: Graph, node_id: str) -> list[Node]:
    """The nodes after ``node_id`` in graph order, up to the output: the head a recurrent node's states feed."""
    position = [n.id for n in graph.nodes].index(node_id)
    return graph.nodes[position + 1:]


def head_refusal(graph: Graph, node_id: str) -> str | None:
    """Why the head after ``node_id`` cannot be applied to each step's states (None: it can)."""
    node = graph.node(node_id)
    if not is_recurrent(node):
        return f"node '{node_id}' is a {node.op.op}: predictions per step come from a recurrent node's states"
    attrs = node.op.attrs
    if attrs["bidirectional"]:
        return (f"node '{node_id}' is bidirectional: its reverse direction's state at step t has read steps T−1 down "
                "to t, not the steps so far, so no prediction after each step can be made from it")
    if attrs["output"] == "sequence":
        readers = ", ".join(f"'{c}'" for c in graph.consumers[node_id]) or "nothing"
        return (f"node '{node_id}' passes on its output at every step (output 'sequence'), which {readers} reads "
                "whole: the head cannot be applied to one step's state alone")
    head = head_nodes(graph, node_id)
    if not head:
        return f"node '{node_id}' is the model's output: there is no classifier head after it"
    inside = {node_id} | {n.id for n in head}
    for later in head:
        outside = [name for name in later.inputs if name not in inside]
        if outside:
            return (f"the head after '{node_id}' also reads '{outside[0]}' (at node '{later.id}'), not only the "
                    "recurrent states: it cannot be applied to the states after each step alone")
    scores = graph.by_id[score_node_id(graph)].output_shape
    if len(scores) != 1:
        return (f"the model's output is not class scores (K,) but {list(scores)}: there is no prediction per step "
                "to show")
    return None


def head_graph(graph: Graph, node_id: str) -> Graph:
    """The head after ``node_id`` as a graph of its own, reading what ``node_id`` outputs (same node ids, so the
    same parameter names)."""
    node = graph.node(node_id)
    head = {n.id for n in head_nodes(graph, node_id)}
    nodes = []
    for raw, later in zip(graph.spec["nodes"], graph.nodes):
        if later.id in head:
            nodes.append({**raw, "inputs": [INPUT if name == node_id else name for name in later.inputs]})
    return Graph({"input_shape": list(node.output_shape), "nodes": nodes})


@dataclass(frozen=True)
class StepPredictions:
    """The head applied to the states after each step: ``logits[t]``, ``probabilities[t]`` (T, K)."""

    head: list[str]  # the node ids the states went through
    state: str  # "h" (output "hidden") or "c" (output "cell")
    states: np.ndarray  # (T, L, H): what the head read at each step, in place of the node's output
    logits: np.ndarray
    probabilities: np.ndarray


def step_predictions(graph: Graph, params: Mapping[str, np.ndarray], recorded: Mapping[str, np.ndarray],
                     node_id: str) -> StepPredictions:
    """The prediction after each step of recurrent node ``node_id``: its final states (``h_n``, or ``c_n`` for
    ``output="cell"``) replaced by the states after step t, for every t at once (a batch of T), through the head.
    ``recorded``: ``record_steps``' arrays of that node. Raises ShapeError with ``head_refusal``'s reason."""
    reason = head_refusal(graph, node_id)
    if reason is not None:
        raise ShapeError(reason)
    node = graph.node(node_id)
    state = "c" if node.op.attrs["output"] == "cell" else "h"
    layers = node.op.attrs["num_layers"]
    states = np.stack([recorded[f"{state}_l{k}"] for k in range(layers)], axis=1)  # (T, L, H): h_n's rows per step
    head = head_graph(graph, node_id)
    trace = head.forward(states, params, keep_caches=False)
    logits = trace.activations[score_node_id(head)].astype(np.float64)
    probabilities, _ = softmax_forward(logits, dim=1)
    return StepPredictions(head=[n.id for n in head.nodes], state=state, states=states, logits=logits,
                           probabilities=probabilities)
