"""Stride-1 convolution on "wide" patch matrices: one contiguous run of the input per kernel offset.

At stride 1, output position ``o`` of kernel offset ``j`` reads the padded input at ``o + j * dilation``.
Computed on the grid ``(out_0, padded_1, ..., padded_last)`` instead of ``out``, that read is the flat index
``flat(o) + flat(j * dilation)``: every kernel offset reads ONE contiguous run of the flattened input (a
copy at memory speed) instead of ``prod(out[:-1])`` short strided rows. The price is the extra columns
(``out_a <= o_a < padded_a`` on the trailing axes), which the matrix product computes and the forward pass
cuts off (the gradients multiply them by zeros). Per sample: ``out[n] = w (K, C * taps) @ cols[n]``.

Measured (commits 2fd38c8, 3d86730): the digit network's convolution backward 1.3-1.6x faster; for layers
with many output channels the product's extra columns cost more than the copies save (2-7% slower for
VGG-sized layers), so ``engine.layers.fast.dispatch`` takes this path for at most ``WIDE_MAX_CHANNELS``.

Shapes: xp: (N, C, *S) padded, w: (K, C, *k) (one group), dout: (N, K, *out).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

#: the wide stride-1 path pays extra columns in the matrix product to save copies: worth it for few output
#: channels (the product's cost grows with them, the copies' does not); measured: 8-16 faster, 32+ slower
WIDE_MAX_CHANNELS = 16


def use_wide(k_out: int, groups: int, stride: Sequence[int]) -> bool:
    """Whether a convolution takes this path: one group, stride 1, at most ``WIDE_MAX_CHANNELS`` outputs."""
    return groups == 1 and k_out <= WIDE_MAX_CHANNELS and all(s == 1 for s in stride)


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


def forward(
    xp: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int], groups: int,
    out_sizes: Sequence[int],
) -> np.ndarray:
    """xp: (N, C, *S), w: (K, C, *k) -> (N, K, *out): per sample ``w @ wide_im2col``, extra columns cut off."""
    cols = wide_im2col(xp, w.shape[2:], dilation, out_sizes)  # (N, C * taps, wide positions)
    return from_wide_grid(np.matmul(w.reshape(w.shape[0], -1), cols), xp.shape[2:], out_sizes)


def input_grad(
    dout: np.ndarray, w: np.ndarray, padded_sizes: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """dout: (N, K, *out), w: (K, C, *k) -> dxp: (N, C, *padded_sizes): ``wide_col2im(w^T @ dout)``."""
    dcols = np.matmul(w.reshape(w.shape[0], -1).T, to_wide_grid(dout, padded_sizes))  # (N, C * taps, wide)
    return wide_col2im(dcols, padded_sizes, w.shape[2:], dilation, dout.shape[2:])


def weight_grad(
    xp: np.ndarray, dout: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """xp: (N, C, *S), dout: (N, K, *out) -> dw: (K, C, *kernel); dout is zero on the extra columns."""
    c, k_out, out_sizes = xp.shape[1], dout.shape[1], dout.shape[2:]
    douts, cols = to_wide_grid(dout, xp.shape[2:]), wide_im2col(xp, kernel, dilation, out_sizes)
    return np.matmul(douts, cols.transpose(0, 2, 1)).sum(axis=0).reshape(k_out, c, *kernel)
