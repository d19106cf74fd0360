"""Attention pooling over time steps as a forward/backward pair: score each step, softmax, weighted sum.

A sequence of T feature vectors becomes one (a recurrent network's outputs become what a classifier reads)::

    additive (Bahdanau):  s_t = vᵀ tanh(W x_t + b)        W: (A, F), b: (A,), v: (A,)  ("context")
    dot:                  s_t = qᵀ x_t / √F                q: (F,)                       ("query")
    a = softmax(s) over t (the weights, summing to 1);    out = Σ_t a_t x_t

The weights ``a`` say which steps the pooled vector reads (for digits read row by row: which rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.layers.grad_mode import input_grad_wanted, param_grads_wanted
from engine.layers.softmax import softmax_backward, softmax_forward

SCORES = ("additive", "dot")


def sequence_attention_forward(x: np.ndarray, score: str, params: Mapping[str, np.ndarray]) -> tuple[np.ndarray, Any]:
    """Attention pooling of ``x`` over its time axis.

    Shape:
        x: (N, T, F); params: ``weight`` (A, F), ``bias`` (A,), ``context`` (A,) for ``score="additive"``, or
        ``query`` (F,) for ``"dot"``; out: (N, F). The cache holds the scores and weights, each (N, T).
    """
    if score == "additive":
        projected = np.tanh(x @ params["weight"].T + params["bias"])  # (N, T, A)
        scores = projected @ params["context"]
        inner: tuple[np.ndarray, ...] = (projected, params["weight"], params["context"])
    elif score == "dot":
        scores = (x @ params["query"]) / np.asarray(math.sqrt(x.shape[2]), dtype=x.dtype)
        inner = (params["query"],)
    else:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    weights, softmax_cache = softmax_forward(scores, dim=1)
    out = (weights[:, None, :] @ x)[:, 0]  # Σ_t a_t x_t for each sample
    return out, {"x": x, "score": score, "scores": scores, "weights": weights, "softmax": softmax_cache,
                 "inner": inner}


def sequence_attention_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """``dout: (N, F)`` -> ``(dx: (N, T, F), {param name: gradient})``; no parameters' inside
    ``input_grads_only()``, dx None inside ``without_input_grad()``.

    x reaches the output twice, as what is summed (``a_t dout``) and through its score (``ds_t ∂s_t/∂x_t``).
    """
    x, weights = cache["x"], cache["weights"]
    dx = weights[:, :, None] * dout[:, None, :]  # through the weighted sum
    dweights = x @ dout[:, :, None]  # (N, T, 1): dout · x_t
    dscores = softmax_backward(dweights[:, :, 0], cache["softmax"])  # (N, T)
    grads: dict[str, np.ndarray] = {}
    if cache["score"] == "additive":
        projected, weight, context = cache["inner"]
        dprojected = dscores[:, :, None] * context  # (N, T, A)
        dpre = dprojected * (1 - projected * projected)
        dx += dpre @ weight
        if param_grads_wanted():
            flat = dpre.reshape(-1, dpre.shape[2])
            grads = {"weight": flat.T @ x.reshape(-1, x.shape[2]), "bias": flat.sum(axis=0),
                     "context": np.tensordot(dscores, projected, axes=([0, 1], [0, 1]))}
    else:
        (query,) = cache["inner"]
        scale = np.asarray(1 / math.sqrt(x.shape[2]), dtype=x.dtype)
        dx += dscores[:, :, None] * (query * scale)
        if param_grads_wanted():
            grads = {"query": np.tensordot(dscores, x, axes=([0, 1], [0, 1])) * scale}
    return (dx if input_grad_wanted() else None), grads
