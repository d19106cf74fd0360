"""Backpropagation made visible: for one input and its label, the loss and the gradient of the loss with respect to
every node's output, node by node from the loss back to the input.

The loss is the one training minimises (``engine.training``): the softmax cross-entropy of the logits, where the
logits are the graph's output or, for a graph that ends in ``softmax``, that softmax's input
(``engine.training.logits_node``). The softmax is then part of the loss, as in training, so the first gradient is the
loss's own, ``dL/dz = p − onehot(label)``, and backpropagation runs from the logits back to the input.

The pass is the engine's own (``Graph.forward`` in inference mode, then ``Graph.backward`` seeded with that
gradient): batch norm uses its running statistics and dropout is off, as when the model predicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from engine.errors import ShapeError
from engine.graph import INPUT, Graph, Trace
from engine.layers.loss import softmax_cross_entropy
from engine.training import logits_node


@dataclass
class Backprop:
    """One input's forward pass, its loss against ``label`` and every gradient of that loss.

    ``activations`` and ``gradients`` are keyed by node id (``"input"`` included), each ``(1, *node shape)``;
    ``param_gradients`` by parameter name (``"conv1.weight"``). ``order`` lists the nodes whose output the loss
    depends on, in the order backpropagation reaches them: the logits first, the input last. ``logits`` and
    ``probabilities``: ``(K,)`` float64.
    """

    label: int
    logits_node: str
    loss: float
    logits: np.ndarray
    probabilities: np.ndarray
    trace: Trace
    gradients: dict[str, np.ndarray]
    param_gradients: dict[str, np.ndarray]
    order: list[str]

    @property
    def activations(self) -> dict[str, np.ndarray]:
        return self.trace.activations

    @property
    def prediction(self) -> int:
        return int(np.argmax(self.probabilities))


def check_label(graph: Graph, label: int) -> int:
    """``label`` as a class index of ``graph``'s logits, or a ShapeError saying which labels exist."""
    node = logits_node(graph)
    shape = graph.by_id[node].output_shape
    if len(shape) != 1:
        raise ShapeError(f"the loss needs a vector of class scores, but the model's logits (node '{node}') have shape "
                         f"{list(shape)}: backpropagation from a cross-entropy loss is shown for classifiers only")
    if not 0 <= int(label) < shape[0]:
        raise ShapeError(f"label {label} is not a class of this model: give a class index from 0 to {shape[0] - 1}")
    return int(label)


def backward_order(graph: Graph, start: str) -> list[str]:
    """The nodes the output of ``start`` depends on (``start`` and ``"input"`` included), in the order a backward
    pass completes their gradients: the reverse of the graph's order, ending with the input."""
    needed = {start}
    for node in reversed(graph.nodes):
        if node.id in needed:
            needed.update(node.inputs)
    return [node.id for node in reversed(graph.nodes) if node.id in needed] + ([INPUT] if INPUT in needed else [])


def backpropagate(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, label: int | None = None) -> Backprop:
    """The loss of ``x: (1, *input_shape)`` against ``label`` (default: the model's prediction) and its gradient
    with respect to every node's output, every trainable parameter and the input."""
    if x.shape[:1] != (1,):
        raise ShapeError(f"backpropagation is shown for one input, shape [1, ...]; got {list(x.shape)}")
    node = logits_node(graph)
    trace = graph.forward(x, params)
    scores = trace.activations[node]
    if label is None:
        check_label(graph, 0)  # a vector of class scores
        label = int(np.argmax(scores[0]))
    label = check_label(graph, label)
    loss, dlogits = softmax_cross_entropy(scores.astype(np.float64), np.array([label]))
    grads = graph.backward(trace, {node: dlogits.astype(scores.dtype)})
    order = backward_order(graph, node)
    logits = scores[0].astype(np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return Backprop(label=label, logits_node=node, loss=loss, logits=logits, probabilities=probabilities,
                    trace=trace, gradients={name: grads.activations[name] for name in order},
                    param_gradients=grads.params, order=order)


def loss_of(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, label: int) -> tuple[float, np.ndarray]:
    """The loss of ``x: (1, *input_shape)`` against ``label`` and the probabilities ``(K,)``: a lean forward pass
    to the logits (no caches, nothing recorded), as after an SGD step."""
    node = logits_node(graph)
    scores = graph.forward(x, params, keep_caches=False, stop_at=node, keep=()).output
    loss, dlogits = softmax_cross_entropy(scores.astype(np.float64), np.array([label]))
    probabilities = dlogits[0].copy()
    probabilities[label] += 1  # dL/dz = p − onehot: p, without a second softmax
    return loss + 0.0, probabilities  # + 0.0: a loss of −0.0 reads as 0


def gradient_summary(gradient: np.ndarray) -> dict[str, float]:
    """What a gradient map's legend needs: ``min``, ``max``, ``max_abs`` (the colour scale's ends are ±max_abs),
    ``mean_abs`` (how much gradient reached the node) and the ``norm`` (its L2 length)."""
    flat = np.asarray(gradient, dtype=np.float64).reshape(-1)
    low, high = float(flat.min()), float(flat.max())
    return {"min": low, "max": high, "max_abs": max(-low, high), "mean_abs": float(np.abs(flat).mean()),
            "norm": math.sqrt(float(flat @ flat))}
