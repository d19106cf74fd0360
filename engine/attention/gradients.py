"""Gradient attributions on the input pixels. ``S(x)`` is the target's score, ``x: (C, H, W)``.

Maps are per pixel: unsigned methods take the largest magnitude over channels (as Simonyan et al.
do); signed methods sum over channels, so that the sum over the map keeps its meaning. The same holds, position
by position, for a sequence ``x: (C, L)`` or a volume ``x: (C, D, H, W)``; ``region`` (a map output's box,
``common.class_scores``) is passed on to the score.
"""

from __future__ import annotations

import numpy as np

from engine.attention.common import PassCounter, Progress, input_gradients, target_scores
from engine.graph import Graph, Node, Trace

#: elementwise ops whose backward Guided Backpropagation replaces, with the output range they pass
_RECTIFIERS = {"relu", "relu6", "clip", "leaky_relu"}


def saliency(graph: Graph, params: dict, x: np.ndarray, target: int,
             region: tuple[slice, ...] | None = None) -> np.ndarray:
    """Vanilla gradient (Simonyan et al., 2014): ``M_ij = max_c |∂S/∂x_cij|``."""
    grads, _ = input_gradients(graph, params, x, target, region=region)
    return saliency_of(grads)


def saliency_of(grads: np.ndarray) -> np.ndarray:
    """The vanilla gradient map of the input's gradient ``grads: (1, C, *spatial)``: max over channels of |.|."""
    return np.abs(grads[0]).max(axis=0)


def gradient_x_input_of(x: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """The gradient × input map of ``x`` and its gradient ``grads``, each ``(1, C, *spatial)``: Σ over channels."""
    return (x[0] * grads[0]).sum(axis=0)


def gradient_x_input(graph: Graph, params: dict, x: np.ndarray, target: int,
                     region: tuple[slice, ...] | None = None) -> np.ndarray:
    """Gradient × input (Shrikumar et al., 2016): ``M_ij = Σ_c x_cij · ∂S/∂x_cij``, signed. For a network that is
    linear in ``x`` (no bias) the map sums to ``S(x)``; Integrated Gradients extends that to any network."""
    grads, _ = input_gradients(graph, params, x, target, region=region)
    return gradient_x_input_of(x, grads)


def smooth_grad(graph: Graph, params: dict, x: np.ndarray, target: int, samples: int = 25,
                noise_level: float = 0.15, seed: int = 0, batch_size: int = 16,
                progress: Progress | None = None, region: tuple[slice, ...] | None = None) -> np.ndarray:
    """SmoothGrad (Smilkov et al., 2017): ``M̂(x) = (1/n) Σ_i M(x + N(0, σ²))`` with ``M`` the vanilla
    saliency map and ``σ = noise_level · (max(x) − min(x))``. Noisy copies run as batches; ``progress``
    counts them (``samples`` in all)."""
    sigma = noise_level * float(x.max() - x.min())
    noise = np.random.default_rng(seed).standard_normal((samples, *x.shape[1:])).astype(x.dtype) * sigma
    grads, _ = input_gradients(graph, params, x + noise, target, batch_size=batch_size,
                               passed=PassCounter(samples, progress), region=region)
    return np.abs(grads).max(axis=1).mean(axis=0)


def integrated_gradients(graph: Graph, params: dict, x: np.ndarray, target: int, steps: int = 64,
                         baseline: np.ndarray | None = None, batch_size: int = 16,
                         progress: Progress | None = None, region: tuple[slice, ...] | None = None
                         ) -> tuple[np.ndarray, dict]:
    """Integrated Gradients (Sundararajan et al., 2017):
    ``IG_i(x) = (x_i − x'_i) · ∫₀¹ ∂S(x' + α(x − x'))/∂x_i dα``, the integral by the midpoint rule,
    ``α_k = (k + ½) / steps`` (interpolated inputs run as batches; the midpoints avoid the kinks a ReLU
    network has at the baseline itself). Completeness: ``Σ_i IG_i ≈ S(x) − S(x')``.
    The map sums over channels (signed). ``baseline`` defaults to zeros (the dataset mean after normalising).
    ``progress`` counts the passes: the ``steps`` path inputs, then the two ends.
    """
    x_base = np.zeros_like(x) if baseline is None else baseline.astype(x.dtype)
    alphas = ((np.arange(steps) + 0.5) / steps).astype(x.dtype)
    path = x_base + alphas.reshape(-1, *[1] * (x.ndim - 1)) * (x - x_base)
    counter = PassCounter(steps + 2, progress)
    grads, _ = input_gradients(graph, params, path, target, batch_size=batch_size, passed=counter, region=region)
    avg = grads.astype(np.float64).mean(axis=0)
    attributions = ((x[0] - x_base[0]) * avg).astype(x.dtype)
    ends = target_scores(graph, params, np.concatenate([x_base, x]), target, passed=counter, region=region)
    delta = float(ends[1] - ends[0])
    total = float(attributions.sum())
    return attributions.sum(axis=0), {
        "sum_of_attributions": total,
        "score_difference": delta,
        "completeness_error": abs(total - delta) / max(abs(delta), 1e-12),
        "steps": steps,
    }


def guided_rule(node: Node, dout: np.ndarray, trace: Trace) -> list[np.ndarray | None] | None:
    """Guided Backpropagation's rectifier: pass a gradient only where the unit was active
    (forward) *and* the gradient is positive (backward)."""
    if node.op.op not in _RECTIFIERS:
        return None
    out = trace.activations[node.id]
    active = out > 0
    if node.op.op in {"relu6", "clip"}:
        upper = 6.0 if node.op.op == "relu6" else node.op.attrs.get("max")
        if upper is not None:
            active &= out < upper
    return [dout * (active & (dout > 0))]


def guided_backprop(graph: Graph, params: dict, x: np.ndarray, target: int,
                    region: tuple[slice, ...] | None = None) -> np.ndarray:
    """Guided Backpropagation (Springenberg et al., 2015): the input gradient with every ReLU's
    backward replaced by ``R_in = 1[a > 0] · 1[R_out > 0] · R_out``. Map: max over channels of |.|."""
    grads, _ = input_gradients(graph, params, x, target, rule=guided_rule, region=region)
    return np.abs(grads[0]).max(axis=0)
