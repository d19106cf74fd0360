"""Class activation maps: a weighted sum of a layer's feature maps, ``L = ReLU(Σ_k w_k A^k)``.

``A^k: (h, w)`` is channel k of the chosen layer, ``S`` the target class's score (the logit before
any softmax), ``g^k = ∂S/∂A^k``. The methods differ in the weights (or, for LayerCAM and EigenCAM, in
what is summed). Each returns the raw map ``(h, w)`` before the ReLU; normalisation is the caller's.

The formulas are written for an image's ``(h, w)``; they read the same for a sequence's ``(l,)`` or a volume's
``(d, h, w)``: every sum or mean "over positions ij" is over all of the layer's spatial axes (``_POSITIONS``).
"""

from __future__ import annotations

import numpy as np

from engine.attention.common import AttributionError, PassCounter, Progress, score_node, target_scores
from engine.attention.resize import resize_linear
from engine.graph import Graph


def _positions(activations: np.ndarray) -> tuple[int, ...]:
    """The spatial axes of ``activations: (K, *s)``: what "over positions" sums over."""
    return tuple(range(1, activations.ndim))


def cam_head(graph: Graph, layer: str) -> str:
    """The linear layer CAM takes its weights from; AttributionError unless the network ends
    ``layer -> global_avg_pool -> [dropout/flatten/identity] -> linear`` (the score node)."""
    node = graph.by_id[score_node(graph)]
    path = [node]
    while node.op.op != "global_avg_pool":
        if len(node.inputs) != 1 or node.inputs[0] not in graph.by_id:
            break
        node = graph.by_id[node.inputs[0]]
        path.append(node)
    ops = [n.op.op for n in path]
    between_ok = all(op in {"dropout", "flatten", "identity"} for op in ops[1:-1])
    if ops[0] != "linear" or ops[-1] != "global_avg_pool" or not between_ok or node.inputs[0] != layer:
        raise AttributionError(
            f"CAM needs '{layer}' -> global_avg_pool -> linear at the end of the network (this one ends "
            f"{' <- '.join(ops)}); Grad-CAM generalises it to any architecture")
    return path[0].id


def cam(graph: Graph, params: dict, layer: str, activations: np.ndarray, target: int) -> np.ndarray:
    """CAM (Zhou et al., 2016): ``L = Σ_k w_k^c A^k`` with ``w^c`` the final linear layer's row for c
    (``cam_head``)."""
    weights = params[f"{cam_head(graph, layer)}.weight"][target]
    return np.tensordot(weights.astype(activations.dtype), activations, axes=1)


def grad_cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017): ``α_k = (1/Z) Σ_ij g^k_ij``, ``L = Σ_k α_k A^k``."""
    alpha = gradients.mean(axis=_positions(gradients))
    return np.tensordot(alpha, activations, axes=1)


def grad_cam_plus_plus(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al., 2018), with the exponential score of the paper's Eq. 19.

    ``a^k_ij = g² / (2 g² + Σ_ab A^k_ab · g³)`` (0 where ``g = 0``), ``w_k = Σ_ij a^k_ij ReLU(g^k_ij)``,
    ``L = Σ_k w_k A^k``.
    """
    g2, g3 = gradients**2, gradients**3
    denominator = 2 * g2 + activations.sum(axis=_positions(activations), keepdims=True) * g3
    safe = np.where(denominator != 0, denominator, 1)
    alpha = np.where(gradients != 0, g2 / safe, 0)
    weights = (alpha * np.maximum(gradients, 0)).sum(axis=_positions(gradients))
    return np.tensordot(weights, activations, axes=1)


def xgrad_cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """XGrad-CAM (Fu et al., 2020): ``w_k = Σ_ij (A^k_ij / Σ_ab A^k_ab) g^k_ij``, ``L = Σ_k w_k A^k``."""
    sums = activations.sum(axis=_positions(activations), keepdims=True)
    weights = (activations / np.where(sums != 0, sums, 1) * gradients).sum(axis=_positions(activations))
    return np.tensordot(weights, activations, axes=1)


def layer_cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """LayerCAM (Jiang et al., 2021): ``L_ij = Σ_k ReLU(g^k_ij) A^k_ij`` (a weight per position)."""
    return (np.maximum(gradients, 0) * activations).sum(axis=0)


def eigen_cam(activations: np.ndarray) -> np.ndarray:
    """EigenCAM (Muhammad & Yeasin, 2020): the projection of the feature maps on their first principal
    component. ``M: (h·w, K)`` centred per channel, ``M = U Σ Vᵀ``, ``L = M v₁`` reshaped to ``(h, w)``;
    the sign (arbitrary in an SVD) is chosen so that the map agrees with the channels' mean.
    Class-agnostic: no gradient and no target.
    """
    k, spatial = activations.shape[0], activations.shape[1:]
    m = activations.reshape(k, -1).T.astype(np.float64)
    m = m - m.mean(axis=0)
    if not np.any(m):
        return np.zeros(spatial, dtype=activations.dtype)
    _, _, vt = np.linalg.svd(m, full_matrices=False)
    projection = (m @ vt[0]).reshape(spatial)
    if np.sum(projection * activations.mean(axis=0)) < 0:
        projection = -projection
    return projection.astype(activations.dtype)


def score_cam(graph: Graph, params: dict, x: np.ndarray, activations: np.ndarray, target: int,
              batch_size: int = 16, max_channels: int | None = 256, progress: Progress | None = None,
              region: tuple[slice, ...] | None = None) -> tuple[np.ndarray, dict]:
    """Score-CAM (Wang et al., 2020): each channel, upsampled and min-max normalised to a mask
    ``H^k`` in [0, 1], weights the input; its weight is the increase in confidence it causes,
    ``α_k = softmax(f(X ∘ H^k))_c − softmax(f(X_b))_c`` with the baseline ``X_b = 0``, and
    ``L = Σ_k α_k A^k``. Masked inputs run as batches.

    ``max_channels`` bounds the work: beyond it only the channels with the largest mean activation
    are scored (the others get weight 0); None scores every channel. ``progress`` counts the passes: one
    per channel scored, then the baseline. For a map output the confidence is the target's per-position
    probability averaged over ``region`` (``common.class_probabilities``).
    """
    k = activations.shape[0]
    order = np.argsort(-activations.mean(axis=_positions(activations)))
    chosen = order if max_channels is None or k <= max_channels else order[:max_channels]
    masks = resize_linear(activations[chosen], x.shape[2:])
    lo = masks.min(axis=_positions(masks), keepdims=True)
    hi = masks.max(axis=_positions(masks), keepdims=True)
    masks = np.where(hi - lo > 0, (masks - lo) / np.where(hi - lo > 0, hi - lo, 1), 0).astype(x.dtype)
    masked = x * masks[:, None]  # (k', C, *S)
    counter = PassCounter(len(chosen) + 1, progress)
    probs = target_scores(graph, params, masked, target, batch_size=batch_size, probabilities=True, passed=counter,
                          region=region)
    baseline = target_scores(graph, params, np.zeros_like(x), target, probabilities=True, passed=counter,
                             region=region)[0]
    alpha = np.zeros(k, dtype=activations.dtype)
    alpha[chosen] = probs - baseline
    return np.tensordot(alpha, activations, axes=1), {"channels_scored": len(chosen), "channels": k}
