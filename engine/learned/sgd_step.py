"""One step of stochastic gradient descent on one input, made visible: a filter before, its gradient, the learning
rate, the filter after, and the loss before and after (the forward pass run again with the new weights).

    w ← w − lr · dL/dw

``scope="filter"`` moves only the chosen filter (its weights and bias): the loss then changes because of that
filter alone. ``scope="all"`` moves every trainable parameter by its own gradient, as a training step on this one
input would (plain SGD: no momentum, no weight decay); the filter's numbers are the same either way.

To first order the loss falls by ``lr · |g|²`` (``g``: the gradient of what moves), so a small enough rate always
lowers it. The loss is not a straight line, though: a rate far past ``|g|² / (gᵀ H g)`` overshoots the valley and
the loss rises. ``sweep`` measures the loss after one step for each of a list of rates, to show both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.graph import Graph
from engine.learned.backprop import Backprop, loss_of
from engine.learned.weight_gradient import check_filter

Scope = Literal["filter", "all"]


@dataclass(frozen=True)
class StepOutcome:
    """What one step with learning rate ``lr`` did: the loss after it (measured), the loss the first-order
    approximation predicts (``loss − lr · |g|²``), the label's probability after it, and the class predicted."""

    lr: float
    loss_after: float
    predicted_loss: float
    label_probability: float
    prediction: int


def moved_names(graph: Graph, node_id: str, scope: Scope) -> list[str]:
    """The parameters a step moves: the node's weight and bias (``filter``: one filter of them), or all."""
    if scope == "all":
        return graph.trainable_names()
    return [name for name in (f"{node_id}.weight", f"{node_id}.bias") if name in graph.param_shapes()]


def stepped_params(params: Mapping[str, np.ndarray], gradients: Mapping[str, np.ndarray], names: Sequence[str],
                   lr: float, k: int | None) -> dict[str, np.ndarray]:
    """``params`` after one step ``p − lr · g`` of ``names`` (only index ``k`` of their first axis when ``k`` is
    given, a filter); the others shared, not copied."""
    out = dict(params)
    for name in names:
        p = params[name].copy()
        g = gradients[name].astype(p.dtype)
        if k is None:
            p -= np.asarray(lr, dtype=p.dtype) * g
        else:
            p[k] -= np.asarray(lr, dtype=p.dtype) * g[k]
        out[name] = p
    return out


def squared_norm(gradients: Mapping[str, np.ndarray], names: Sequence[str], k: int | None) -> float:
    """``|g|²`` of what moves: the filter's gradient (weights and bias), or every moved parameter's."""
    return math.fsum(float(np.sum(np.square(gradients[n].astype(np.float64) if k is None else
                                            gradients[n][k].astype(np.float64)))) for n in names)


def step_outcome(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, result: Backprop, node_id: str,
                 k: int, lr: float, scope: Scope) -> tuple[StepOutcome, dict[str, np.ndarray]]:
    """The outcome of one step with rate ``lr``, and the parameters after it."""
    names = moved_names(graph, node_id, scope)
    index = k if scope == "filter" else None
    after = stepped_params(params, result.param_gradients, names, lr, index)
    loss, probabilities = loss_of(graph, after, x, result.label)
    predicted = result.loss - lr * squared_norm(result.param_gradients, names, index)
    return StepOutcome(lr=float(lr), loss_after=loss, predicted_loss=predicted,
                       label_probability=float(probabilities[result.label]),
                       prediction=int(np.argmax(probabilities))), after


def sweep(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, result: Backprop, node_id: str, k: int,
          rates: Sequence[float], scope: Scope = "filter") -> list[StepOutcome]:
    """One step from the same start for each learning rate in ``rates``: the loss after each."""
    check_filter(graph, node_id, k)
    with np.errstate(over="ignore", invalid="ignore"):  # a rate far too large may overflow: the loss is then inf/NaN
        return [step_outcome(graph, params, x, result, node_id, k, lr, scope)[0] for lr in rates]


def sgd_step(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, result: Backprop, node_id: str, k: int,
             lr: float, scope: Scope = "filter") -> dict:
    """Filter ``k`` of ``node_id`` before one step with rate ``lr``, its gradient and after, with the bias, and
    what the step did to the loss (``outcome``). ``moved``: how many numbers the step changed."""
    check_filter(graph, node_id, k)
    with np.errstate(over="ignore", invalid="ignore"):
        outcome, after = step_outcome(graph, params, x, result, node_id, k, lr, scope)
    names = moved_names(graph, node_id, scope)
    weight, bias = f"{node_id}.weight", f"{node_id}.bias"
    has_bias = bias in params
    shapes = graph.param_shapes()
    moved = sum(math.prod(shapes[n][1:]) for n in names) if scope == "filter" else \
        sum(math.prod(shapes[n]) for n in names)
    return {"node": node_id, "filter": k, "scope": scope, "lr": float(lr), "moved": int(moved),
            "weight_before": params[weight][k], "gradient": result.param_gradients[weight][k],
            "weight_after": after[weight][k],
            "bias_before": float(params[bias][k]) if has_bias else None,
            "bias_gradient": float(result.param_gradients[bias][k]) if has_bias else None,
            "bias_after": float(after[bias][k]) if has_bias else None,
            "loss_before": result.loss, "outcome": outcome}
