"""A slice along one axis as a forward/backward pair: ``x[:, start:end:step]`` on the channels, or any later axis."""

from __future__ import annotations

from typing import Any

import numpy as np


def slice_forward(x: np.ndarray, axis: int, start: int, end: int, step: int) -> tuple[np.ndarray, Any]:
    """Every ``step``-th position from ``start`` up to (not including) ``end`` along ``axis`` (batch axis = 0).

    ``start`` and ``end`` are already resolved (``0 <= start < end <= size``, as ``slice.indices`` gives), and
    ``step >= 1``. The result is a contiguous copy.

    Shape: x: (N, C, H, W) with axis 1 -> out: (N, ceil((end - start) / step), H, W); likewise for other axes.
    """
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, end, step)
    return np.ascontiguousarray(x[tuple(index)]), (x.shape, axis, start, end, step)


def slice_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """The gradient goes back to the positions the slice read; every other position gets 0."""
    shape, axis, start, end, step = cache
    dx = np.zeros(shape, dtype=dout.dtype)
    index = [slice(None)] * len(shape)
    index[axis] = slice(start, end, step)
    dx[tuple(index)] = dout
    return dx
