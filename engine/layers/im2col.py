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

from engine.layers.strided_copy import copy_columns

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
        rows = xp[(slice(None), slice(None), *window[:-1])].swapaxes(0, 1)
        copy_columns(cols[:, t], rows, window[-1])  # step-2 columns read in pairs
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


# --- stride 1: "wide" patch matrices, one contiguous run per kernel offset ------------------------------
def wide_grid(padded_sizes: Sequence[int], out_sizes: Sequence[int]) -> tuple[int, ...]:
    """The output grid a stride-1 product fills: ``(out_0, padded_1, ..., padded_last)``.

    On it, output position ``o`` of kernel offset ``j`` reads the padded input's flat index
    ``flat(o) + flat(j * dilation)``, so every offset reads one contiguous run; the extra columns
    (``out_a <= o_a < padded_a`` on the trailing axes) are computed and cut off afterwards.
    """
    return (out_sizes[0], *padded_sizes[1:])


def _offsets(padded_sizes: Sequence[int], kernel: Sequence[int], dilation: Sequence[int]) -> list[int]:
    strides = [int(np.prod(padded_sizes[a + 1:], dtype=np.int64)) for a in range(len(padded_sizes))]
    return [sum(j * d * s for j, d, s in zip(offsets, dilation, strides))
            for offsets in itertools.product(*(range(k) for k in kernel))]


def wide_im2col(xp: np.ndarray, kernel: Sequence[int], dilation: Sequence[int], out_sizes: Sequence[int]) -> np.ndarray:
    """Stride-1 patch matrices per sample: xp: (N, C, *S) -> cols: (N, C * prod(kernel), prod(wide_grid)),
    ``cols[n, c * taps + t, flat(o)] = xp[n, c, o + j_t * dilation]`` (the wide grid's extra columns read
    whatever follows; they are never kept)."""
    n, c = xp.shape[:2]
    length = int(np.prod(wide_grid(xp.shape[2:], out_sizes)))
    offsets = _offsets(xp.shape[2:], kernel, dilation)
    flat = xp.reshape(n, c, -1)
    cols = np.empty((n, c, len(offsets), length), dtype=xp.dtype)
    for t, start in enumerate(offsets):
        run = min(length, flat.shape[2] - start)
        cols[:, :, t, :run] = flat[:, :, start:start + run]
        if run < length:  # the run passes the input's end: only extra columns read there, which are cut off
            cols[:, :, t, run:] = 0
    return cols.reshape(n, c * len(offsets), length)


def wide_col2im(dcols: np.ndarray, padded_sizes: Sequence[int], kernel: Sequence[int], dilation: Sequence[int],
                out_sizes: Sequence[int]) -> np.ndarray:
    """The adjoint of ``wide_im2col`` for columns that are zero on the wide grid's extra columns:
    dcols: (N, C * prod(kernel), prod(wide_grid)) -> dxp: (N, C, *padded_sizes)."""
    n = dcols.shape[0]
    offsets = _offsets(padded_sizes, kernel, dilation)
    c = dcols.shape[1] // len(offsets)
    length = dcols.shape[2]
    size = int(np.prod(padded_sizes))
    flat = np.zeros((n, c, max(size, offsets[-1] + length)), dtype=dcols.dtype)
    blocks = dcols.reshape(n, c, len(offsets), length)
    for t, start in enumerate(offsets):
        flat[:, :, start:start + length] += blocks[:, :, t]
    return flat[:, :, :size].reshape(n, c, *padded_sizes)


def to_wide_grid(y: np.ndarray, padded_sizes: Sequence[int]) -> np.ndarray:
    """y: (N, K, *out) -> (N, K, prod(wide_grid)), zeros on the extra columns."""
    n, k = y.shape[:2]
    grid = wide_grid(padded_sizes, y.shape[2:])
    if tuple(grid) == tuple(y.shape[2:]):
        return np.ascontiguousarray(y).reshape(n, k, -1)
    wide = np.zeros((n, k, *grid), dtype=y.dtype)
    wide[(slice(None), slice(None), *(slice(0, m) for m in y.shape[2:]))] = y
    return wide.reshape(n, k, -1)


def from_wide_grid(wide: np.ndarray, padded_sizes: Sequence[int], out_sizes: Sequence[int]) -> np.ndarray:
    """(N, K, prod(wide_grid)) -> (N, K, *out), contiguous."""
    n, k = wide.shape[:2]
    grid = wide.reshape(n, k, *wide_grid(padded_sizes, out_sizes))
    return np.ascontiguousarray(grid[(slice(None), slice(None), *(slice(0, m) for m in out_sizes))])
