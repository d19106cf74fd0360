"""Linear probes: how linearly separable the classes are in one node's features (Alain & Bengio, "Understanding
intermediate layers using linear classifier probes", 2016).

A probe is multinomial logistic regression (softmax regression) on a node's feature vectors
(``engine.learned.features``), trained on the training examples and scored on held-out ones:

    z = x W + b,   loss(W, b) = mean_n CE(softmax(z_n), y_n) + (l2 / 2) |W|^2      (b is not penalised)
    dloss/dW = x^T (softmax(z) - onehot(y)) / N + l2 W,   dloss/db = sum_n (softmax(z_n) - onehot(y_n)) / N

with ``x: (N, D)`` the features standardised by the *training* features' mean and standard deviation (a feature
that never varies in training becomes 0), ``W: (D, K)``, ``b: (K,)``. ``l2 = 1e-3``, the same for every node.

Trained by full-batch L-BFGS (``engine.learned.lbfgs``) from ``W = 0, b = 0``. Why: the problem is convex, so
L-BFGS goes to the one minimum in a few hundred steps with no learning rate or batch order to choose; the result
depends on the features alone, not on an optimiser's schedule, which is what a comparison between layers needs;
and it is deterministic (there is nothing random to seed). A probe stops when the largest gradient entry is below
``1e-4`` or after 500 iterations (the answer says which).

``probe_nodes`` picks the nodes to probe in a graph: the input, then each node up to the logits that ends a
stage of the computation. A node is skipped when (a) its only reader is a same-shaped refinement of it (batch
norm, an activation function, a softmax: ``conv -> bn -> relu`` is probed once, after the ReLU), or (b) it only
rearranges values already probed (reshape, flatten, identity, dropout at inference). The logits are the graph's
output, or the input of a final softmax.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.graph import INPUT, Graph
from engine.layers.loss import softmax_cross_entropy
from engine.learned.lbfgs import minimize

L2 = 1e-3
MAX_ITER = 500
TOL = 1e-4
MAX_PROBES = 32

#: single-input ops whose output has its input's shape and refines it in place
REFINEMENTS = frozenset({"batch_norm", "instance_norm", "layer_norm", "relu", "relu6", "leaky_relu", "gelu", "silu",
                         "sigmoid", "tanh", "hardswish", "hardsigmoid", "clip", "softmax", "log_softmax",
                         "spatial_softmax"})
#: ops whose output holds the same values as their input, rearranged
REARRANGEMENTS = frozenset({"reshape", "flatten", "identity", "dropout"})
#: a final op that turns logits into probabilities
PROBABILITIES = frozenset({"softmax", "log_softmax"})


@dataclass(frozen=True)
class ProbeResult:
    """One probe: ``train_accuracy`` and ``test_accuracy`` in [0, 1], the final ``train_loss`` (the objective,
    penalty included) and the test cross-entropy, ``iterations`` of L-BFGS and whether it ``converged``, and the
    trained ``weights: (D, K)`` and ``bias: (K,)`` (for standardised features)."""

    train_accuracy: float
    test_accuracy: float
    train_loss: float
    test_loss: float
    iterations: int
    converged: bool
    weights: np.ndarray
    bias: np.ndarray


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(train - mean) / std`` and ``(test - mean) / std`` with the training features' statistics (float64; a
    feature with ``std = 0`` in training is divided by 1, so it becomes 0 there)."""
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return (train - mean) / std, (np.asarray(test, dtype=np.float64) - mean) / std


def probe_loss(weights: np.ndarray, bias: np.ndarray, x: np.ndarray, labels: np.ndarray,
               l2: float = L2) -> tuple[float, np.ndarray, np.ndarray]:
    """The probe's objective and its gradients: ``x: (N, D)``, ``weights: (D, K)``, ``bias: (K,)``,
    ``labels: (N,)`` -> ``(loss, dW: (D, K), db: (K,))`` (formulas in the module docstring)."""
    ce, dlogits = softmax_cross_entropy(x @ weights + bias, labels)
    loss = ce + 0.5 * l2 * float(np.sum(weights * weights))
    return loss, x.T @ dlogits + l2 * weights, dlogits.sum(axis=0)


def accuracy(weights: np.ndarray, bias: np.ndarray, x: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows of ``x: (N, D)`` whose highest score is their label."""
    return float(np.mean(np.argmax(x @ weights + bias, axis=1) == labels))


def train_probe(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                classes: int, l2: float = L2, max_iter: int = MAX_ITER, tol: float = TOL,
                progress: Callable[[int], None] | None = None) -> ProbeResult:
    """Standardise, train a probe on ``train: (N, D)`` by L-BFGS, score it on ``test: (M, D)``.
    ``progress(iteration)`` is called after each L-BFGS iteration (it may raise to cancel)."""
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test must be (N, D) and (M, D) with the same D, got {list(train.shape)} and "
                         f"{list(test.shape)}")
    x_train, x_test = standardise(train, test)
    d = x_train.shape[1]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = flat[:-classes].reshape(d, classes), flat[-classes:]
        loss, dw, db = probe_loss(weights, bias, x_train, train_labels, l2)
        return loss, np.concatenate([dw.ravel(), db])

    found = minimize(objective, np.zeros(d * classes + classes), max_iter=max_iter, tol=tol, callback=progress)
    weights, bias = found.x[:-classes].reshape(d, classes), found.x[-classes:]
    test_loss, _ = softmax_cross_entropy(x_test @ weights + bias, test_labels)
    return ProbeResult(train_accuracy=accuracy(weights, bias, x_train, train_labels),
                       test_accuracy=accuracy(weights, bias, x_test, test_labels),
                       train_loss=found.value, test_loss=test_loss, iterations=found.iterations,
                       converged=found.converged, weights=weights, bias=bias)


def logits_node(graph: Graph) -> str:
    """The node whose output is the class scores: the graph's output, or the input of a final softmax."""
    last = graph.nodes[-1]
    if last.op.op in PROBABILITIES and last.inputs[0] != INPUT:
        return last.inputs[0]
    return last.id


def probe_nodes(graph: Graph) -> list[str]:
    """``"input"``, then the nodes that end a stage, in graph order, up to and including the logits (see the module
    docstring); at most ``MAX_PROBES``, evenly spread with the input and the logits kept, when there are more."""
    end = logits_node(graph)
    chosen = [INPUT]
    for node in graph.nodes:
        readers = graph.consumers[node.id]
        refined = (node.id != end and len(readers) == 1
                   and graph.node(readers[0]).op.op in REFINEMENTS
                   and graph.node(readers[0]).output_shape == node.output_shape)
        rearranged = node.op.op in REARRANGEMENTS and node.inputs[0] in chosen
        if not refined and not rearranged:
            chosen.append(node.id)
        if node.id == end:
            break
    if len(chosen) > MAX_PROBES:
        picks = np.unique(np.round(np.linspace(0, len(chosen) - 1, MAX_PROBES)).astype(int))
        chosen = [chosen[i] for i in picks]
    return chosen
