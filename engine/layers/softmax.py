"""Softmax and log-softmax over one axis, as forward/backward pairs, numerically stable."""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax_forward(x: np.ndarray, dim: int = 1) -> tuple[np.ndarray, Any]:
    """``out = exp(x - max) / sum(exp(x - max))`` along ``dim`` (the max is subtracted so exp never overflows).

    Shape: x: (N, K) or (N, C, *spatial) with ``dim`` counting the batch axis (1: classes or
    channels); out: same as x, summing to 1 along ``dim``.
    """
    shifted = x - x.max(axis=dim, keepdims=True)
    e = np.exp(shifted)
    out = e / e.sum(axis=dim, keepdims=True)
    return out, (out, dim)


def softmax_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """``dx = out * (dout - sum(dout * out))`` along ``dim``."""
    out, dim = cache
    return out * (dout - (dout * out).sum(axis=dim, keepdims=True))


def log_softmax_forward(x: np.ndarray, dim: int = 1) -> tuple[np.ndarray, Any]:
    """``out = x - max - log(sum(exp(x - max)))`` along ``dim``. Shapes as ``softmax_forward``."""
    shifted = x - x.max(axis=dim, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    return out, (out, dim)


def log_softmax_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """``dx = dout - softmax * sum(dout)`` along ``dim``."""
    out, dim = cache
    return dout - np.exp(out) * dout.sum(axis=dim, keepdims=True)
