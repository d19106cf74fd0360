"""Flatten and reshape as forward/backward pairs: the numbers stay, only the shape changes."""

from __future__ import annotations

from typing import Any

import numpy as np


def flatten_forward(x: np.ndarray, start_dim: int = 1, end_dim: int = -1) -> tuple[np.ndarray, Any]:
    """Merge axes ``start_dim..end_dim`` (inclusive, counting the batch axis) into one, as ``torch.flatten``.

    Shape: x: (N, C, H, W) with the defaults -> out: (N, C*H*W).
    """
    ndim = x.ndim
    start = start_dim % ndim
    end = end_dim % ndim
    shape = (*x.shape[:start], int(np.prod(x.shape[start:end + 1], dtype=np.int64)), *x.shape[end + 1:])
    return x.reshape(shape), x.shape


def flatten_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    return dout.reshape(cache)


def reshape_forward(x: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
    """``x.reshape((N, *shape))``: ``shape`` excludes the batch axis and may hold one -1.

    Shape: x: (N, *in_shape) -> out: (N, *shape), with prod(shape) == prod(in_shape).
    """
    return x.reshape((x.shape[0], *shape)), x.shape


def reshape_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    return dout.reshape(cache)
