"""Attention over time steps, for models that read a sequence ``(T, F)`` (a digit read row by row): one value per
step, and where each step lies on the input.

- Learned attention over a ``sequence_attention`` node: its softmax weights over the steps (summing to 1), as the
  op's ``recorded(cache)`` gives them.
- Gradient attribution per step, beside ``saliency`` and ``gradient_x_input``'s maps: for the sequence ``s`` the
  model's first recurrent (or attention) node reads, with ``S`` the target's score,

      saliency:          m_t = Σ_f |∂S/∂s_tf|          (unsigned: how strongly step t's values could move S)
      gradient × input:  m_t = Σ_f s_tf · ∂S/∂s_tf     (signed: what step t's values add to S, to first order)

  For a digit whose rows are the steps (a ``reshape`` of the input), these are the per-pixel maps summed over each
  row. Both come from the one backward pass that gives the input's gradient.

Where the steps lie on the input (``steps_on_input``): when only reshapes, flattens and transposes (and recurrent
nodes, whose step t reads step t) stand between the input and the sequence, every input value belongs to one
step; ``step_axis`` names the input axis the steps run along ("H": the digit's rows), and maps over the input give
each value its step's number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.attention.common import AttributionError, score_node, score_seed
from engine.graph import INPUT, Graph
from engine.ops.base import ForwardContext
from engine.receptive_field import axis_names
from engine.time_steps import SEQUENCE_OPS, is_recurrent

#: ops that only move values (their output's entries are entries of their input)
_REARRANGES = ("reshape", "flatten", "transpose")
#: ops that keep values where they are: a sequence through them keeps its steps
_KEEPS_STEPS = ("relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "clip",
                "gelu", "identity", "dropout")
#: the gradient methods that also give one value per step, and the rule each uses
PER_STEP_RULES = {"saliency": "Σ over the step's features of |∂S/∂x|",
                  "gradient_x_input": "Σ over the step's features of x · ∂S/∂x"}


@dataclass
class StepValues:
    """One number per time step of the sequence that ``node`` holds (or that ``node`` pools, for attention).

    ``values`` (T,) raw, ``normalized`` (T,) in [0, 1] (or [-1, 1] if ``signed``); ``step_axis``: the input axis
    the steps run along ("H" for a digit read row by row; "C" when the input is the sequence (T, F) itself, whose
    first axis is time), None when the steps do not lie on the input (a convolution stands between);
    ``rule``: how a step's number was made; ``input_map``: ``normalized`` laid on the input's spatial shape
    (``map_on_input``: a digit's row t filled with step t's number), None where the steps do not lie on the input.
    """

    node: str
    values: np.ndarray
    normalized: np.ndarray
    signed: bool
    step_axis: str | None
    rule: str
    input_map: np.ndarray | None = None


def sequence_read(graph: Graph) -> str | None:
    """The node (or ``"input"``) whose output the model's first recurrent or attention node reads as its sequence;
    None for a model without one."""
    return next((node.inputs[0] for node in graph.nodes if node.op.op in SEQUENCE_OPS), None)


def _input_positions(graph: Graph, node_id: str) -> np.ndarray | None:
    """For each value of ``node_id``'s output (one sample), the flat index of the input value it is, when only
    rearranging ops lie between (None otherwise)."""
    if node_id == INPUT:
        return np.arange(int(np.prod(graph.input_shape)), dtype=np.float64).reshape(graph.input_shape)
    node = graph.by_id[node_id]
    if node.op.op not in _REARRANGES or len(node.inputs) != 1:
        return None
    below = _input_positions(graph, node.inputs[0])
    if below is None:
        return None
    out, _ = node.op.forward([below[None]], {}, ForwardContext())
    return np.asarray(out[0])


def steps_on_input(graph: Graph, node_id: str) -> np.ndarray | None:
    """The time step of ``node_id``'s sequence (T, F) each input value belongs to: an int array of the input's
    shape (-1 for a value no step reads); None when the steps do not lie on the input."""
    current = node_id
    while True:
        positions = _input_positions(graph, current)
        if positions is not None:
            if positions.ndim != 2:
                return None
            step_of = np.full(int(np.prod(graph.input_shape)), -1, dtype=np.int64)
            step_of[positions.astype(np.int64)] = np.arange(positions.shape[0])[:, None]
            return step_of.reshape(graph.input_shape)
        node = graph.by_id[current]
        keeps = (is_recurrent(node) and node.op.attrs["output"] == "sequence") or node.op.op in _KEEPS_STEPS
        if not keeps:
            return None
        current = node.inputs[0]  # step t of a recurrent node's output reads step t of its input


def step_axis(graph: Graph, step_of: np.ndarray | None) -> str | None:
    """The input axis the steps run along (the one axis along which the step changes; "C" for the first), or None."""
    if step_of is None:
        return None
    names = ("C", *axis_names(step_of.ndim - 1))
    varying = [axis for axis in range(step_of.ndim) if (np.diff(step_of, axis=axis) != 0).any()]
    return names[varying[0]] if len(varying) == 1 else None


def map_on_input(values: np.ndarray, step_of: np.ndarray) -> np.ndarray:
    """Each input value given its step's number (0 where no step reads it), averaged over the channel axis: the
    input's spatial shape. A digit read row by row: row t filled with ``values[t]``."""
    spread = np.where(step_of >= 0, np.asarray(values, dtype=np.float64)[np.maximum(step_of, 0)], 0.0)
    return spread.mean(axis=0)


def gradient_steps(graph: Graph, params: dict, x: np.ndarray, target: int, method: str, node_id: str,
                   region: tuple[slice, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The input's gradient ``(1, *input_shape)`` and the per-step numbers ``(T,)`` of ``method`` (see
    ``PER_STEP_RULES``) at sequence ``node_id``: one forward and one backward pass give both."""
    scores = score_node(graph)
    trace = graph.forward(x, params, stop_at=scores)
    grads = graph.backward(trace, {scores: score_seed(trace.activations[scores], target, region)}, params=False)
    sequence = trace.activations[node_id][0]
    at_sequence = grads.activations.get(node_id)
    at_sequence = np.zeros_like(sequence) if at_sequence is None else at_sequence[0]
    per_element = np.abs(at_sequence) if method == "saliency" else sequence * at_sequence
    return grads.input, per_element.sum(axis=1)


def check_attention_steps(graph: Graph, node_id: str) -> None:
    """A ``sequence_attention`` node whose steps can be drawn over the input, or AttributionError saying why."""
    node = graph.by_id[node_id]
    if steps_on_input(graph, node.inputs[0]) is None:
        raise AttributionError(f"the steps of attention node '{node_id}' do not lie on the input (other layers than "
                               "reshapes and recurrent ones stand between), so its weights cannot be drawn over it: "
                               "GET /api/runs/{run_id}/nodes/" + node_id + "/steps gives them per step")
