"""Convolution (1D, 2D, 3D) and transposed convolution: forward/backward pairs.

Conventions are PyTorch's: ``x: (N, C, *S)`` (NCL, NCHW, NCDHW), weights ``w: (K, C / groups, *k)``,
cross-correlation (the kernel is not flipped), and for spatial axis ``a``

    out_a = floor((S_a + pad_before_a + pad_after_a - dilation_a * (k_a - 1) - 1) / stride_a) + 1

``padding`` is the canonical form of ``engine.padding``: one ``(before, after)`` pair per axis.

How it is computed (the fast path; ``engine.layers.naive`` has the loop version the tests compare with):

* general: the patch matrix of each group, ``(C/groups * prod(k), N * prod(out))``, built one kernel
  offset at a time (``im2col``), times the group's weights ``(K/groups, C/groups * prod(k))``: one
  matrix product per group;
* stride 1, one group, few output channels: per sample a "wide" patch matrix over the grid
  ``(out_0, padded_1, ...)``, where every kernel offset is one contiguous run of the flattened padded input
  (``wide_im2col``); the extra columns are cut off (forward) or multiplied by zeros (gradients);
* 1x1 kernels with stride 1 (pointwise): the input itself is the patch matrix, one product per sample, no copy;
* depthwise (``groups == C``, one input channel per group): per channel, small products over ``kw``
  shifted copies of the input rows, read as long contiguous runs (``engine.layers.depthwise``).

Backward: ``dw = dout @ patches^T`` and ``dpatches = w^T @ dout``, added back onto the input by ``col2im``
(one strided slice per kernel offset; one contiguous run for the wide stride-1 matrices). Depthwise: the
weight gradient per channel; the input gradient is, per stride phase, the forward correlation of the
zero-padded ``dout`` with that phase's kernel offsets flipped.

Inside ``grad_mode.input_grads_only()`` (attribution) the backward pass computes dx only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.arithmetic import output_length, transposed_output_length
from engine.layers.depthwise import depthwise_forward, depthwise_input_grad, depthwise_weight_grad, plan_depthwise
from engine.layers.grad_mode import input_grad_wanted, param_grads_wanted
from engine.layers.im2col import (
    col2im,
    from_wide_grid,
    im2col,
    pad_input,
    to_wide_grid,
    unpad,
    wide_col2im,
    wide_im2col,
)

Pads = Sequence[tuple[int, int]]


def conv_output_sizes(
    padded_sizes: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> tuple[int, ...]:
    """``floor((S_padded - dilation * (k - 1) - 1) / stride) + 1`` per axis (``engine.arithmetic``'s formula)."""
    return tuple(output_length(n, k, s, (0, 0), d) for n, k, s, d in zip(padded_sizes, kernel, stride, dilation))


def _is_depthwise(c_in: int, w: np.ndarray, groups: int) -> bool:
    return groups == c_in and w.shape[1] == 1 and groups > 1


def _is_pointwise(kernel: Sequence[int], stride: Sequence[int], padded: Sequence[int], out: Sequence[int]) -> bool:
    return all(k == 1 for k in kernel) and all(s == 1 for s in stride) and tuple(padded) == tuple(out)


#: the wide stride-1 path pays extra columns in the matrix product to save copies: worth it for few output
#: channels (the product's cost grows with them, the copies' does not); measured: 8-16 faster, 32+ slower
WIDE_MAX_CHANNELS = 16


def _use_wide(k_out: int, groups: int, stride: Sequence[int]) -> bool:
    return groups == 1 and k_out <= WIDE_MAX_CHANNELS and all(s == 1 for s in stride)


def _bcast(values: np.ndarray, ndim: int) -> np.ndarray:
    """``values: (K,)`` shaped to broadcast over ``(N, K, *spatial)`` with ``ndim`` spatial axes."""
    return values.reshape((1, -1) + (1,) * ndim)


# --- the three kernels of a convolution on an already padded input --------------------------------
def conv_padded(
    xp: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int], groups: int
) -> np.ndarray:
    """Convolution without padding or bias. xp: (N, C, *S), w: (K, C/groups, *k) -> (N, K, *out)."""
    n, c = xp.shape[:2]
    k_out = w.shape[0]
    kernel = w.shape[2:]
    out_sizes = conv_output_sizes(xp.shape[2:], kernel, stride, dilation)
    if _is_depthwise(c, w, groups):
        return _depthwise(xp, w, None, stride, dilation)
    if groups == 1 and _is_pointwise(kernel, stride, xp.shape[2:], out_sizes):  # one product per sample, no copies
        return np.matmul(w.reshape(k_out, c), xp.reshape(n, c, -1)).reshape(n, k_out, *out_sizes)
    if _use_wide(k_out, groups, stride):  # one contiguous run per kernel offset, per sample
        cols = wide_im2col(xp, kernel, dilation, out_sizes)  # (N, C * taps, wide positions)
        return from_wide_grid(np.matmul(w.reshape(k_out, -1), cols), xp.shape[2:], out_sizes)
    cols = _patch_matrices(xp, kernel, stride, dilation, out_sizes, groups)  # (G, C/G * taps, N * P)
    weights = w.reshape(groups, k_out // groups, -1)  # (G, K/G, C/G * taps)
    out = np.matmul(weights[0], cols[0]) if groups == 1 else np.matmul(weights, cols)  # (G, K/G, N * P)
    return _batch_first(out.reshape(k_out, n, *out_sizes))


def _depthwise(
    x: np.ndarray,
    w: np.ndarray,
    pads: Pads | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """Depthwise convolution (+ bias) of x: (N, C, *S) padded by ``pads`` (None: already padded) -> (N, K, *out)."""
    k_out, kernel = w.shape[0], w.shape[2:]
    multiplier = k_out // x.shape[1]
    if multiplier > 1:  # output channel k reads input channel k // multiplier
        x = np.repeat(x, multiplier, axis=1)
    pads = pads if pads is not None else ((0, 0),) * len(kernel)
    padded = [n + b + a for n, (b, a) in zip(x.shape[2:], pads)]
    plan = plan_depthwise(padded, kernel, stride, dilation, conv_output_sizes(padded, kernel, stride, dilation))
    return depthwise_forward(x, w.reshape(k_out, -1), plan, pads, bias)


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
    if _is_pointwise(kernel, stride, xp.shape[2:], out_sizes):
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


def conv_padded_input_grad(
    dout: np.ndarray,
    w: np.ndarray,
    padded_sizes: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """d loss / d xp of ``conv_padded``. dout: (N, K, *out), w: (K, C/groups, *k) -> (N, C, *padded_sizes).

    Output positions beyond ``dout``'s extent are never read (the transposed convolution relies on it).
    """
    n, k_out = dout.shape[:2]
    c_group = w.shape[1]
    c = c_group * groups
    kernel = w.shape[2:]
    out_sizes = dout.shape[2:]
    if _is_depthwise(c, w, groups):
        multiplier = k_out // c
        dxp = depthwise_input_grad(dout, w.reshape(k_out, *kernel), padded_sizes, stride, dilation)
        if multiplier > 1:
            dxp = dxp.reshape(n, c, multiplier, *padded_sizes).sum(axis=2)
        return dxp
    if groups == 1 and _is_pointwise(kernel, stride, padded_sizes, out_sizes):
        return np.matmul(w.reshape(k_out, c).T, dout.reshape(n, k_out, -1)).reshape(n, c, *padded_sizes)
    if _use_wide(k_out, groups, stride):
        dcols = np.matmul(w.reshape(k_out, -1).T, to_wide_grid(dout, padded_sizes))  # (N, C * taps, wide)
        return wide_col2im(dcols, padded_sizes, kernel, dilation, out_sizes)
    weights_t = w.reshape(groups, k_out // groups, -1).transpose(0, 2, 1)  # (G, C/G * taps, K/G)
    douts = _channels_first(dout, groups)  # (G, K/G, N * P)
    dcols = np.matmul(weights_t[0], douts[0]) if groups == 1 else np.matmul(weights_t, douts)
    if _is_pointwise(kernel, stride, padded_sizes, out_sizes):
        return _batch_first(dcols.reshape(c, n, *padded_sizes))
    return col2im(dcols.reshape(c, -1, n, *out_sizes), padded_sizes, kernel, stride, dilation)


def conv_padded_weight_grad(
    xp: np.ndarray,
    dout: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    pads: Pads | None = None,
) -> np.ndarray:
    """d loss / d w of ``conv_padded``. xp: (N, C, *S) padded (or to be padded by ``pads``),
    dout: (N, K, *out) -> (K, C/groups, *kernel)."""
    c = xp.shape[1]
    k_out = dout.shape[1]
    out_sizes = dout.shape[2:]
    pads = pads if pads is not None else ((0, 0),) * len(kernel)
    if groups == c and k_out % c == 0 and groups > 1:  # depthwise: one channel per group
        multiplier = k_out // c
        if multiplier > 1:
            xp = np.repeat(xp, multiplier, axis=1)
        padded = [n + b + a for n, (b, a) in zip(xp.shape[2:], pads)]
        dw = depthwise_weight_grad(xp, dout, plan_depthwise(padded, kernel, stride, dilation, out_sizes), pads)
        return dw.reshape(k_out, 1, *kernel)
    xp = pad_input(xp, pads)
    if groups == 1 and _is_pointwise(kernel, stride, xp.shape[2:], out_sizes):  # sum over samples of dout x^T
        douts, xs = dout.reshape(len(dout), k_out, -1), xp.reshape(len(xp), c, -1)
        dw = douts[0] @ xs[0].T
        for dout_n, x_n in zip(douts[1:], xs[1:]):
            dw += dout_n @ x_n.T
        return dw.reshape(k_out, c, *kernel)
    if _use_wide(k_out, groups, stride):  # dout is zero on the wide grid's extra columns
        douts, cols = to_wide_grid(dout, xp.shape[2:]), wide_im2col(xp, kernel, dilation, out_sizes)
        return np.matmul(douts, cols.transpose(0, 2, 1)).sum(axis=0).reshape(k_out, c, *kernel)
    cols = _patch_matrices(xp, kernel, stride, dilation, out_sizes, groups)  # (G, C/G * taps, N * P)
    douts = _channels_first(dout, groups)  # (G, K/G, N * P)
    dw = np.matmul(douts, cols.swapaxes(-1, -2))  # (G, K/G, C/G * taps)
    return dw.reshape(k_out, c // groups, *kernel)


# --- convolution ----------------------------------------------------------------------------------
def conv_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int = 1,
) -> tuple[np.ndarray, Any]:
    """Convolution (cross-correlation) in 1, 2 or 3 spatial dimensions, as ``torch.nn.functional.convNd``.

    Inputs:
      x: (N, C, *S)              S = (L,), (H, W) or (D, H, W)
      w: (K, C / groups, *k)
      b: (K,) or None
      stride, dilation: one int per spatial axis; padding: one (before, after) pair per axis
      groups: C and K are split into ``groups`` independent convolutions (``groups == C``: depthwise)
    Returns:
      out: (N, K, *out) with out_a = floor((S_a + before_a + after_a - dilation_a * (k_a - 1) - 1) / stride_a) + 1
      cache: for ``conv_backward``
    """
    if _is_depthwise(x.shape[1], w, groups):  # pads while splitting by stride phase: no padded copy
        xp, out = None, _depthwise(x, w, padding, stride, dilation, b)
    else:
        xp = pad_input(x, padding)
        out = conv_padded(xp, w, stride, dilation, groups)
        if b is not None:
            out += _bcast(b, len(stride))
    return out, (x, xp, w, b is not None, tuple(stride), tuple(padding), tuple(dilation), groups)


def conv_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of ``conv_forward``. dout: (N, K, *out) -> dx: (N, C, *S), dw: (K, C/groups, *k), db: (K,) or None.

    Inside ``grad_mode.input_grads_only()`` only dx is computed (dw and db are None); inside
    ``grad_mode.without_input_grad()`` dx is None."""
    x, xp, w, has_bias, stride, padding, dilation, groups = cache
    padded = [n + b + a for n, (b, a) in zip(x.shape[2:], padding)]
    dx = None
    if input_grad_wanted():
        dxp = conv_padded_input_grad(dout, w, padded, stride, dilation, groups)
        dx = np.ascontiguousarray(unpad(dxp, padding, x.shape[2:]))
    if not param_grads_wanted():  # attribution: the input's gradient only
        return dx, None, None
    if xp is None:  # depthwise: pads again while splitting by phase
        dw = conv_padded_weight_grad(x, dout, w.shape[2:], stride, dilation, groups, pads=padding)
    else:
        dw = conv_padded_weight_grad(xp, dout, w.shape[2:], stride, dilation, groups)
    db = dout.sum(axis=(0, *range(2, dout.ndim))) if has_bias else None
    return dx, dw, db


# --- transposed convolution -----------------------------------------------------------------------
def conv_transpose_output_sizes(
    in_sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Pads,
    output_padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """``(S - 1) * stride - before - after + dilation * (k - 1) + output_padding + 1`` per axis
    (``engine.arithmetic``'s formula)."""
    return tuple(
        transposed_output_length(n, k, s, pair, d, op)
        for n, k, s, pair, op, d in zip(in_sizes, kernel, stride, padding, output_padding, dilation)
    )


def conv_transpose_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: Sequence[int],
    padding: Pads,
    output_padding: Sequence[int],
    dilation: Sequence[int],
    groups: int = 1,
) -> tuple[np.ndarray, Any]:
    """Transposed convolution, as ``torch.nn.functional.conv_transposeNd`` (any number of spatial axes).

    It is the gradient of a convolution with respect to its input: every input pixel scatters
    ``x[n, c, i] * w[c, k, j]`` onto output position ``i * stride + j * dilation - before``.

    Inputs:
      x: (N, C, *S)
      w: (C, K / groups, *k)      (PyTorch's layout: in_channels first)
      b: (K,) or None
      padding: one (before, after) pair per axis, removed from the full output;
      output_padding: extra size added after the last position, per axis (< stride or < dilation)
    Returns:
      out: (N, K, *out) with out_a = (S_a - 1) * stride_a - before_a - after_a + dilation_a * (k_a - 1)
                                    + output_padding_a + 1
    """
    kernel = w.shape[2:]
    axes = zip(x.shape[2:], kernel, stride, output_padding, dilation)
    full = tuple((n - 1) * s + d * (k - 1) + 1 + op for n, k, s, op, d in axes)
    yfull = conv_padded_input_grad(x, w, full, stride, dilation, groups)
    sizes = tuple(f - bf - af for f, (bf, af) in zip(full, padding))
    out = np.ascontiguousarray(unpad(yfull, padding, sizes))
    if b is not None:
        out += _bcast(b, len(stride))
    return out, (x, w, b is not None, tuple(stride), tuple(padding), tuple(dilation), groups)


def conv_transpose_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of ``conv_transpose_forward``: dout: (N, K, *out) -> dx: (N, C, *S), dw: (C, K/groups, *k), db."""
    x, w, has_bias, stride, padding, dilation, groups = cache
    kernel = w.shape[2:]
    dfull = pad_input(dout, padding)
    dx = conv_padded(dfull, w, stride, dilation, groups)
    dx = dx[(slice(None), slice(None), *(slice(0, n) for n in x.shape[2:]))]  # output_padding >= stride adds rows
    if not param_grads_wanted():
        return np.ascontiguousarray(dx), None, None
    dw = conv_padded_weight_grad(dfull, x, kernel, stride, dilation, groups)
    db = dout.sum(axis=(0, *range(2, dout.ndim))) if has_bias else None
    return np.ascontiguousarray(dx), dw, db


def conv_transpose2d_forward(x, w, b, stride, padding, output_padding, dilation, groups=1):
    """``conv_transpose_forward`` for x: (N, C, H, W) (the name the spec's op uses)."""
    if x.ndim != 4:
        raise ValueError(f"conv_transpose2d takes x: (N, C, H, W), got shape {x.shape}")
    return conv_transpose_forward(x, w, b, stride, padding, output_padding, dilation, groups)


conv_transpose2d_backward = conv_transpose_backward
