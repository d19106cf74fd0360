"""Attention pooling as forward/backward pairs: a softmax over positions, then a weighted sum of features.

In the residual digit network a 1x1 convolution scores every position; ``spatial_softmax``
turns the scores into weights that sum to 1 over the image (the attention map the visualiser
draws), and ``attention_pool`` pools the features as their weighted sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.layers.softmax import softmax_backward, softmax_forward


def spatial_softmax_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """Softmax of each channel over all its positions.

    Shape: x: (N, C, *spatial) scores (C = 1 for one attention map) -> out: same shape, each
    (n, c) map summing to 1 over its H*W (or D*H*W) positions.
    """
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    out, cache = softmax_forward(flat, dim=2)
    return out.reshape(x.shape), (cache, x.shape)


def spatial_softmax_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    inner, shape = cache
    flat = dout.reshape(shape[0], shape[1], -1)
    return softmax_backward(flat, inner).reshape(shape)


def attention_pool_forward(features: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out[n, c] = sum over positions p of weights[n, 0, p] * features[n, c, p]``.

    Shape: features: (N, C, *spatial); weights: (N, 1, *spatial); out: (N, C).
    """
    f = features.reshape(features.shape[0], features.shape[1], -1)
    w = weights.reshape(weights.shape[0], 1, -1)
    out = (f * w).sum(axis=2)
    return out, (f, w, features.shape, weights.shape)


def attention_pool_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray]:
    """``dout: (N, C)`` -> ``(dfeatures = dout * w, dweights = sum over c of dout * features)``."""
    f, w, f_shape, w_shape = cache
    g = dout[:, :, None]
    dfeatures = (g * w).reshape(f_shape)
    dweights = (g * f).sum(axis=1, keepdims=True).reshape(w_shape)
    return dfeatures, dweights
