"""Max, average and global average pooling (1D, 2D, 3D): forward/backward pairs, PyTorch's semantics.

For spatial axis ``a`` with kernel ``k``, stride ``s``, padding ``(before, after)`` and dilation ``d``
(max pooling only; average pooling has ``d = 1``)

    out_a = floor_or_ceil((S_a + before + after - d * (k - 1) - 1) / s) + 1

and with ``ceil_mode`` the last window must start inside the input or the left padding
(``(out_a - 1) * s < S_a + before``), else it is dropped: PyTorch's rule.

Max pooling pads with -inf and sends the gradient to the first maximum of each window (row-major
order, as PyTorch). Average pooling pads with zeros; the divisor is the window clipped to the padded
input (``count_include_pad=True``, PyTorch's default; windows that ``ceil_mode`` pushes past the
padding are divided by the clipped size) or clipped to the input itself (``count_include_pad=False``).
Every window is a strided view of the padded input, one per kernel offset (see ``engine.layers.fast.im2col``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.arithmetic import output_length
from engine.layers.fast.im2col import pad_input, tap_slices, unpad

Pads = Sequence[tuple[int, int]]


def pool_output_size(
    size: int, kernel: int, stride: int, padding: tuple[int, int], dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output length of one pooled axis (PyTorch's rule, see the module docstring): ``engine.arithmetic``'s
    formula, 0 where the window does not fit."""
    if size + padding[0] + padding[1] < dilation * (kernel - 1) + 1:
        return 0
    return output_length(size, kernel, stride, padding, dilation, ceil_mode)


def _layout(
    x: np.ndarray, kernel: Sequence[int], stride: Sequence[int], padding: Pads, dilation: Sequence[int], ceil_mode: bool
) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """Output sizes, and the padding actually applied: ceil_mode may need extra cells after the input."""
    out_sizes = tuple(
        pool_output_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)
    )
    if any(o <= 0 for o in out_sizes):
        raise ValueError(f"pooling window {tuple(kernel)} does not fit the padded input {x.shape[2:]}")
    pads = tuple(
        (b, max(a, (o - 1) * s + d * (k - 1) + 1 - n - b))
        for n, k, s, (b, a), d, o in zip(x.shape[2:], kernel, stride, padding, dilation, out_sizes)
    )
    return out_sizes, pads


# --- max pooling ----------------------------------------------------------------------------------
def _defaults(kernel: Sequence[int], stride: Sequence[int] | None, padding: Pads | None):
    """PyTorch's defaults: stride = kernel, no padding."""
    stride = tuple(kernel) if stride is None else tuple(stride)
    padding = ((0, 0),) * len(kernel) if padding is None else tuple(tuple(p) for p in padding)
    return stride, padding


def max_pool_forward(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int] | None = None,
    padding: Pads | None = None,
    dilation: Sequence[int] | None = None,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, Any]:
    """Max pooling, as ``torch.nn.functional.max_poolNd``.

    Inputs:
      x: (N, C, *S);  kernel, stride (default: kernel), dilation (default 1): one int per spatial axis;
      padding: (before, after) per axis (default none)
    Returns:
      out: (N, C, *out), out_a = floor_or_ceil((S_a + before + after - dilation * (k - 1) - 1) / stride) + 1
    """
    stride, padding = _defaults(kernel, stride, padding)
    dilation = tuple(dilation) if dilation is not None else (1,) * len(kernel)
    out_sizes, pads = _layout(x, kernel, stride, padding, dilation, ceil_mode)
    xp = pad_input(x, pads, value=-np.inf)
    out = None
    for window in tap_slices(kernel, stride, dilation, out_sizes):
        view = xp[(slice(None), slice(None), *window)]
        if out is None:
            out = view.copy()
        else:
            np.maximum(out, view, out=out)
    return out, (xp, x.shape[2:], out, tuple(kernel), tuple(stride), pads, dilation)


def max_pool_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of ``max_pool_forward``: each window's gradient goes to its first maximum. -> dx: (N, C, *S)"""
    xp, sizes, out, kernel, stride, pads, dilation = cache
    # windows that tile the padded input (kernel = stride, e.g. 2x2 pooling) write every cell exactly once
    tiles = all(k == s and d == 1 and o * s == n for k, s, d, o, n in zip(kernel, stride, dilation, out.shape[2:],
                                                                          xp.shape[2:]))
    dxp = np.empty_like(xp) if tiles else np.zeros_like(xp)
    taken = np.zeros(out.shape, dtype=bool)  # windows whose maximum has been found already
    hit = np.empty(out.shape, dtype=bool)
    for window in tap_slices(kernel, stride, dilation, out.shape[2:]):
        index = (slice(None), slice(None), *window)
        np.equal(xp[index], out, out=hit)
        np.greater(hit, taken, out=hit)  # hit and not taken: the first maximum only
        taken |= hit
        if tiles:
            dxp[index] = np.where(hit, dout, 0)
        else:
            dxp[index] += np.where(hit, dout, 0)
    return np.ascontiguousarray(unpad(dxp, pads, sizes))


# --- average pooling ------------------------------------------------------------------------------
def _avg_divisor(
    sizes: Sequence[int],
    out_sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Pads,
    count_include_pad: bool,
    dtype: np.dtype,
) -> np.ndarray:
    """Per output position, how many cells its window averages: the product of one count per axis."""
    divisor = np.ones((1,) * len(sizes), dtype=dtype)
    for axis, (n, o, k, s, (before, after)) in enumerate(zip(sizes, out_sizes, kernel, stride, padding)):
        start = np.arange(o) * s - before
        end = np.minimum(start + k, n + after)
        count = end - start if count_include_pad else np.minimum(end, n) - np.maximum(start, 0)
        shape = [1] * len(sizes)
        shape[axis] = o
        divisor = divisor * count.astype(dtype).reshape(shape)
    return divisor


def avg_pool_forward(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int] | None = None,
    padding: Pads | None = None,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> tuple[np.ndarray, Any]:
    """Average pooling, as ``torch.nn.functional.avg_poolNd``.

    Inputs:
      x: (N, C, *S);  kernel, stride (default: kernel): one int per spatial axis;
      padding: (before, after) per axis (default none)
    Returns:
      out: (N, C, *out), out_a = floor_or_ceil((S_a + before + after - k) / stride) + 1
    """
    stride, padding = _defaults(kernel, stride, padding)
    ones = (1,) * len(kernel)
    out_sizes, pads = _layout(x, kernel, stride, padding, ones, ceil_mode)
    xp = pad_input(x, pads)
    out = np.zeros((*x.shape[:2], *out_sizes), dtype=x.dtype)
    for window in tap_slices(kernel, stride, ones, out_sizes):
        out += xp[(slice(None), slice(None), *window)]
    divisor = _avg_divisor(x.shape[2:], out_sizes, kernel, stride, padding, count_include_pad, x.dtype)
    out /= divisor
    return out, (x.shape, xp.shape[2:], divisor, tuple(kernel), tuple(stride), pads)


def avg_pool_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of ``avg_pool_forward``: each window's gradient, divided by its divisor, spread over it."""
    x_shape, padded_sizes, divisor, kernel, stride, pads = cache
    share = dout / divisor
    dxp = np.zeros((*x_shape[:2], *padded_sizes), dtype=dout.dtype)
    for window in tap_slices(kernel, stride, (1,) * len(kernel), dout.shape[2:]):
        dxp[(slice(None), slice(None), *window)] += share
    return np.ascontiguousarray(unpad(dxp, pads, x_shape[2:]))


# --- global average pooling -----------------------------------------------------------------------
def global_avg_pool_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """Mean over every spatial axis. x: (N, C, *S) -> out: (N, C)."""
    return x.mean(axis=tuple(range(2, x.ndim))), x.shape


def global_avg_pool_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of ``global_avg_pool_forward``: dout: (N, C) -> dx: (N, C, *S), each cell dout / prod(S)."""
    shape = cache
    count = int(np.prod(shape[2:]))
    share = (dout / count).reshape(*shape[:2], *(1,) * (len(shape) - 2))
    return np.ascontiguousarray(np.broadcast_to(share, shape))
