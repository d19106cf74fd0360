"""Reductions over axes as forward/backward pairs: ``torch.sum``, ``torch.mean`` and ``torch.amax``.

``dims`` is a tuple of distinct axes of ``x`` (the batch axis counts as 0, as NumPy's ``axis``); the
graph op turns a spec's ``dim`` into it. With ``keepdim`` the reduced axes stay with size 1, otherwise
they are removed: for ``x: (N, C, H, W)``, ``dims=(2, 3)`` gives ``(N, C, 1, 1)`` or ``(N, C)``.

Gradients: every input value takes ``dout`` (sum) or ``dout / count`` (mean, over the ``count`` values
reduced into it). For the maximum only the values equal to it take a gradient, and tied maxima share it
evenly, ``dout / (number of ties)``, as PyTorch's ``amax`` (``torch.max(x, dim)`` instead gives it all to
one index).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _restore(dout: np.ndarray, dims: tuple[int, ...], keepdim: bool) -> np.ndarray:
    """``dout`` with the reduced axes put back (size 1), so that it broadcasts against the input."""
    return dout if keepdim else np.expand_dims(dout, dims)


def sum_forward(x: np.ndarray, dims: tuple[int, ...], keepdim: bool = False) -> tuple[np.ndarray, Any]:
    """``out = x.sum(dims)``. x: (N, ...); out: x's shape without ``dims`` (size 1 there with ``keepdim``)."""
    return x.sum(axis=dims, keepdims=keepdim), (x.shape, dims, keepdim)


def sum_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Each input value's gradient is the gradient of the sum it went into: ``dout`` spread over ``dims``."""
    shape, dims, keepdim = cache
    return np.broadcast_to(_restore(dout, dims, keepdim), shape).copy()


def mean_forward(x: np.ndarray, dims: tuple[int, ...], keepdim: bool = False) -> tuple[np.ndarray, Any]:
    """``out = x.mean(dims)``, the sum over the ``count = prod(x.shape[d] for d in dims)`` values / count.

    Shapes as ``sum_forward``. Over the spatial axes with ``keepdim`` it is global average pooling.
    """
    return x.mean(axis=dims, keepdims=keepdim), (x.shape, dims, keepdim)


def mean_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """``dx = dout / count`` spread over ``dims``."""
    shape, dims, keepdim = cache
    count = math.prod(shape[d] for d in dims)
    return np.broadcast_to(_restore(dout, dims, keepdim) / np.asarray(count, dtype=dout.dtype), shape).copy()


def max_forward(x: np.ndarray, dims: tuple[int, ...], keepdim: bool = False) -> tuple[np.ndarray, Any]:
    """``out = x.max(dims)`` (``torch.amax``; NaN wins, as in PyTorch). Shapes as ``sum_forward``."""
    top = x.max(axis=dims, keepdims=True)
    out = top if keepdim else np.squeeze(top, axis=dims)
    return out, (x, top, dims, keepdim)


def max_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """``dx = dout / ties`` where ``x`` equals the maximum, 0 elsewhere; ``ties`` counts the maxima of each
    reduced group (PyTorch's ``amax`` rule)."""
    x, top, dims, keepdim = cache
    winners = x == top
    ties = winners.sum(axis=dims, keepdims=True)
    share = _restore(dout, dims, keepdim) / np.maximum(ties, 1).astype(dout.dtype)
    return np.where(winners, share, np.zeros((), dtype=dout.dtype))
