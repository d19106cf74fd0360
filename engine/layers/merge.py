"""Merging several tensors: add (skip connections), mul (gating) and concat, as forward/backward pairs.

``add`` and ``mul`` follow NumPy broadcasting: an input of shape (N, C, 1, 1) gates one of shape
(N, C, H, W) channel by channel. The gradient of a broadcast input is summed back over the axes it
was stretched along (``unbroadcast``), so it always has that input's own shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes along which an array of ``shape`` was broadcast to ``grad.shape``."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def add_forward(*xs: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = x1 + x2 + ...``. Shape: inputs that broadcast together; out: their broadcast shape."""
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out, tuple(x.shape for x in xs)


def add_backward(dout: np.ndarray, cache: Any) -> list[np.ndarray]:
    """Every input receives ``dout``, summed back to its own shape."""
    return [unbroadcast(dout, shape) for shape in cache]


def mul_forward(*xs: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = x1 * x2 * ...``. Shape: inputs that broadcast together; out: their broadcast shape."""
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out, xs


def mul_backward(dout: np.ndarray, cache: Any) -> list[np.ndarray]:
    """Input i receives ``dout`` times the product of the *other* inputs (no division, so zeros are safe)."""
    xs = cache
    grads = []
    for i, x in enumerate(xs):
        g = dout
        for j, other in enumerate(xs):
            if j != i:
                g = g * other
        grads.append(unbroadcast(g, x.shape))
    return grads


def concat_forward(*xs: np.ndarray, dim: int = 1) -> tuple[np.ndarray, Any]:
    """Join along ``dim`` (counting the batch axis; 1 = channels), as ``torch.cat``.

    Shape: inputs (N, C_i, *rest) with equal ``rest``; out: (N, sum C_i, *rest).
    """
    sizes = [x.shape[dim] for x in xs]
    return np.concatenate(xs, axis=dim), (sizes, dim)


def concat_backward(dout: np.ndarray, cache: Any) -> list[np.ndarray]:
    """Each input receives its own slice of ``dout`` along ``dim``."""
    sizes, dim = cache
    return np.split(dout, np.cumsum(sizes)[:-1], axis=dim)
