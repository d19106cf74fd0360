"""Patch matrices for convolution and pooling, built one kernel offset ("tap") at a time.

For a padded input ``xp: (N, C, *S)`` and a kernel of size ``k`` per spatial axis, tap ``t``
(a multi-index ``j`` into the kernel, row-major) reads the strided slice

    xp[:, :, j_a * dilation_a :: stride_a  (out_a items)]   on every spatial axis a,

so that ``cols[:, :, t] = xp[..., j * dilation + o * stride]`` for every output position ``o``.
Copying ``prod(k)`` such slices is much faster than a Python loop over output positions and
needs no index arrays; ``col2im`` runs the same loop backwards, adding the slices up (no
``np.add.at``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

Pads = Sequence[tuple[int, int]]


def tap_slices(
    kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out_sizes: Sequence[int]
) -> Iterator[tuple[slice, ...]]:
    """For each kernel offset (row-major), the spatial slices of the padded input it reads."""
    for offsets in itertools.product(*(range(k) for k in kernel)):
        yield tuple(
            slice(j * d, j * d + s * (o - 1) + 1, s)
            for j, s, d, o in zip(offsets, stride, dilation, out_sizes)
        )


def pad_input(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """``x: (N, C, *S)`` padded by ``pads[a] = (before, after)`` on spatial axis ``a`` (no copy if all 0)."""
    if not any(b or a for b, a in pads):
        return x
    shape = x.shape[:2] + tuple(n + b + a for n, (b, a) in zip(x.shape[2:], pads))
    xp = np.full(shape, value, dtype=x.dtype)
    xp[(slice(None), slice(None), *(slice(b, b + n) for n, (b, _) in zip(x.shape[2:], pads)))] = x
    return xp


def unpad(xp: np.ndarray, pads: Pads, sizes: Sequence[int]) -> np.ndarray:
    """The inverse of ``pad_input``: the ``sizes`` window of ``xp`` that starts after the padding."""
    if not any(b or a for b, a in pads) and tuple(xp.shape[2:]) == tuple(sizes):
        return xp
    return xp[(slice(None), slice(None), *(slice(b, b + n) for n, (b, _) in zip(sizes, pads)))]


def im2col(
    xp: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out_sizes: Sequence[int]
) -> np.ndarray:
    """Patch tensor of a padded input.

    xp: (N, C, *S) -> cols: (C, prod(kernel), N, *out_sizes), with
    ``cols[c, t, n, *o] = xp[n, c, *(j_t * dilation + o * stride)]``. Reshaped to
    ``(C * prod(kernel), N * prod(out_sizes))`` it is the patch matrix of the convolution: one row per
    (channel, kernel offset), one column per output position of every sample.
    """
    n, c = xp.shape[:2]
    taps = int(np.prod(kernel))
    cols = np.empty((c, taps, n, *out_sizes), dtype=xp.dtype)
    for t, window in enumerate(tap_slices(kernel, stride, dilation, out_sizes)):
        cols[:, t] = xp[(slice(None), slice(None), *window)].swapaxes(0, 1)
    return cols


def col2im(
    dcols: np.ndarray,
    padded_sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> np.ndarray:
    """The adjoint of ``im2col``: every patch entry added back where it was read from.

    dcols: (C, prod(kernel), N, *out) -> dxp: (N, C, *padded_sizes)
    """
    c, _, n = dcols.shape[:3]
    out_sizes = dcols.shape[3:]
    dxp = np.zeros((n, c, *padded_sizes), dtype=dcols.dtype)
    for t, window in enumerate(tap_slices(kernel, stride, dilation, out_sizes)):
        dxp[(slice(None), slice(None), *window)] += dcols[:, t].swapaxes(0, 1)
    return dxp
