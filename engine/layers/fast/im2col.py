"""Patch matrices ("im2col") for convolution and pooling, built one kernel offset ("tap") at a time, and the
general convolution path on them: one matrix product per group.

For a padded input ``xp: (N, C, *S)`` and a kernel of size ``k`` per spatial axis, tap ``t``
(a multi-index ``j`` into the kernel, row-major) reads the strided slice

    xp[:, :, j_a * dilation_a :: stride_a  (out_a items)]   on every spatial axis a,

so that ``cols[:, :, t] = xp[..., j * dilation + o * stride]`` for every output position ``o``.
Copying ``prod(k)`` such slices is much faster than a Python loop over output positions and
needs no index arrays; ``col2im`` runs the same loop backwards, adding the slices up (no
``np.add.at``).

The convolution (``forward``, ``input_grad``, ``weight_grad``) is then cs231n's im2col form, every group at
once: ``out = w (G, K/G, C/G * taps) @ cols (G, C/G * taps, N * P)`` with the batch inside the columns,
``dw = dout @ cols^T`` and ``dcols = w^T @ dout``, added back by ``col2im``. This is the path every
convolution can take; ``engine.layers.fast.dispatch`` sends the cases that have a faster one elsewhere.
Step-2 columns are copied in pairs (``engine.layers.fast.strided_copy``).

Measured: the VGG-style network at 64 x 64, whose convolutions (64 to 256 output channels) take this path,
runs its forward pass within 1.25x PyTorch's time on one thread (README, "Benchmarks"); in a training
epoch of the digit network, im2col/col2im were about 35% of the engine's time (docs/models.md). One product
per group with the batch inside the columns came without a figure (f42ce2e).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from engine.layers.fast.pointwise import is_pointwise
from engine.layers.fast.strided_copy import copy_columns

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




# --- the general convolution: one product per group over the patch matrices ---------------------------
def _patch_matrices(
    xp: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_sizes: Sequence[int],
    groups: int,
) -> np.ndarray:
    """Each group's patch matrix: xp: (N, C, *S) -> (groups, C/groups * prod(k), N * prod(out)).

    A 1x1 kernel with stride 1 needs no patches: the input is its own patch matrix (no copy when N = 1).
    """
    n, c = xp.shape[:2]
    if is_pointwise(kernel, stride, xp.shape[2:], out_sizes):
        cols = xp.reshape(n, c, -1).swapaxes(0, 1)
    else:
        cols = im2col(xp, kernel, stride, dilation, out_sizes)
    return cols.reshape(groups, -1, n * int(np.prod(out_sizes)))


def _batch_first(y: np.ndarray) -> np.ndarray:
    """(C, N, *S) -> (N, C, *S), contiguous (free when N = 1)."""
    return y.reshape(1, *y.shape[:1], *y.shape[2:]) if y.shape[1] == 1 else np.ascontiguousarray(y.swapaxes(0, 1))


def _channels_first(y: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, *S) -> (groups, C/groups, N * prod(S)) (free when N = 1)."""
    n, c = y.shape[:2]
    return y.reshape(n, c, -1).swapaxes(0, 1).reshape(groups, c // groups, -1)


def forward(
    xp: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int], groups: int,
    out_sizes: Sequence[int],
) -> np.ndarray:
    """xp: (N, C, *S), w: (K, C/groups, *k) -> (N, K, *out): one product per group over the patch matrices."""
    n = xp.shape[0]
    k_out = w.shape[0]
    cols = _patch_matrices(xp, w.shape[2:], stride, dilation, out_sizes, groups)  # (G, C/G * taps, N * P)
    weights = w.reshape(groups, k_out // groups, -1)  # (G, K/G, C/G * taps)
    out = np.matmul(weights[0], cols[0]) if groups == 1 else np.matmul(weights, cols)  # (G, K/G, N * P)
    return _batch_first(out.reshape(k_out, n, *out_sizes))


def input_grad(
    dout: np.ndarray, w: np.ndarray, padded_sizes: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """dout: (N, K, *out), w: (K, C/groups, *k) -> dxp: (N, C, *padded_sizes): ``col2im(w^T @ dout)``."""
    n, k_out = dout.shape[:2]
    c = w.shape[1] * groups
    kernel = w.shape[2:]
    out_sizes = dout.shape[2:]
    weights_t = w.reshape(groups, k_out // groups, -1).transpose(0, 2, 1)  # (G, C/G * taps, K/G)
    douts = _channels_first(dout, groups)  # (G, K/G, N * P)
    dcols = np.matmul(weights_t[0], douts[0]) if groups == 1 else np.matmul(weights_t, douts)
    if is_pointwise(kernel, stride, padded_sizes, out_sizes):
        return _batch_first(dcols.reshape(c, n, *padded_sizes))
    return col2im(dcols.reshape(c, -1, n, *out_sizes), padded_sizes, kernel, stride, dilation)


def weight_grad(
    xp: np.ndarray, dout: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """xp: (N, C, *S), dout: (N, K, *out) -> dw: (K, C/groups, *kernel) = ``dout @ cols^T`` per group."""
    c, k_out = xp.shape[1], dout.shape[1]
    cols = _patch_matrices(xp, kernel, stride, dilation, dout.shape[2:], groups)  # (G, C/G * taps, N * P)
    douts = _channels_first(dout, groups)  # (G, K/G, N * P)
    dw = np.matmul(douts, cols.swapaxes(-1, -2))  # (G, K/G, C/G * taps)
    return dw.reshape(k_out, c // groups, *kernel)
