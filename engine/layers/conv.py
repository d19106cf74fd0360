"""Convolution (1D, 2D, 3D) and transposed convolution: forward/backward pairs. Start reading here.

Conventions are PyTorch's: ``x: (N, C, *S)`` (NCL, NCHW, NCDHW), weights ``w: (K, C / groups, *k)``,
cross-correlation (the kernel is not flipped). Output position ``o`` on spatial axis ``a`` reads input
position ``o * stride_a - pad_before_a + j * dilation_a`` for kernel offset ``j``, so

    out_a = floor((S_a + pad_before_a + pad_after_a - dilation_a * (k_a - 1) - 1) / stride_a) + 1

``padding`` is the canonical form of ``engine.padding``: one ``(before, after)`` pair per axis.

Three places to read, from the definition to the speed:

* ``engine.layers.naive``: the definition as loops, forward (``conv_naive``) and backward
  (``conv_backward_naive``, every gradient accumulated with ``+=``): what the tests compare with;
* this file: what a layer does, shapes and formulas, calling the fast implementations;
* ``engine.layers.fast``: the fast implementations, one speed trick per module with the measurement that
  justified it, chosen in one place (``engine.layers.fast.dispatch.conv_path``).

Every fast path is the im2col idea (cs231n): copy each window of the padded input into a column of a "patch
matrix" ``cols: (C * prod(k), N * prod(out))``; then

    out = w (K, C * prod(k)) @ cols           (per group: groups split C and K into independent products)
    dw = dout (K, N * prod(out)) @ cols^T      dcols = w^T @ dout, each entry added back where it was read

The paths differ in how they avoid copies (1x1 kernels need none; stride 1 reads contiguous runs;
depthwise convolutions multiply shifted row copies instead).

Inside ``grad_mode.input_grads_only()`` (attribution) the backward pass computes dx only; inside
``grad_mode.without_input_grad()`` (training's first layer) it skips dx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.layers.fast.dispatch import convolve, correlate, correlate_input_grad, correlate_weight_grad, weight_grad_of
from engine.layers.fast.im2col import pad_input, unpad
from engine.layers.grad_mode import input_grad_wanted, param_grads_wanted

Pads = Sequence[tuple[int, int]]


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

    out[n, k, o] = b[k] + sum over the group's channels c and kernel offsets j of
                   w[k, c, j] * x[n, c, o * stride - before + j * dilation]     (0 outside x: padding)

    Inputs:
      x: (N, C, *S)              S = (L,), (H, W) or (D, H, W)
      w: (K, C / groups, *k)     k = (kL,), (kH, kW) or (kD, kH, kW)
      b: (K,) or None
      stride, dilation: one int per spatial axis; padding: one (before, after) pair per axis
      groups: C and K are split into ``groups`` independent convolutions (``groups == C``: depthwise)
    Shape:
      out: (N, K, *out), per spatial axis a
        out_a = floor((S_a + before_a + after_a - dilation_a * (k_a - 1) - 1) / stride_a) + 1
        e.g. H = 32, k = 3, padding (1, 1), stride 2, dilation 1: floor((32 + 2 - 2 - 1) / 2) + 1 = 16
    Returns:
      out, cache (for ``conv_backward``)
    """
    out, xp = convolve(x, w, b, stride, padding, dilation, groups)  # xp: the padded input (None: depthwise)
    return out, (x, xp, w, b is not None, tuple(stride), tuple(padding), tuple(dilation), groups)


def conv_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of ``conv_forward``.

    Inputs:
      dout: (N, K, *out)   d loss / d out
      cache: from ``conv_forward``
    Returns:
      dx: (N, C, *S)               dx[n, c, i] = sum of w[k, c, j] * dout[n, k, o] over every (k, o, j) that read i
      dw: (K, C / groups, *k)      dw[k, c, j] = sum over n, o of x[n, c, o * stride - before + j * dilation]
                                                 * dout[n, k, o]
      db: (K,) or None             db[k] = sum over n, o of dout[n, k, o]

    Inside ``grad_mode.input_grads_only()`` only dx is computed (dw and db are None); inside
    ``grad_mode.without_input_grad()`` dx is None."""
    x, xp, w, has_bias, stride, padding, dilation, groups = cache
    dx = None
    if input_grad_wanted():  # the gradient of the padded input, then the padding cut off
        padded = [n + b + a for n, (b, a) in zip(x.shape[2:], padding)]
        dxp = correlate_input_grad(dout, w, padded, stride, dilation, groups)
        dx = np.ascontiguousarray(unpad(dxp, padding, x.shape[2:]))
    if not param_grads_wanted():  # attribution: the input's gradient only
        return dx, None, None
    dw = weight_grad_of(x, xp, dout, w.shape[2:], stride, padding, dilation, groups)
    db = dout.sum(axis=(0, *range(2, dout.ndim))) if has_bias else None
    return dx, dw, db


# --- transposed convolution -----------------------------------------------------------------------
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
    Shape:
      out: (N, K, *out), per spatial axis a
        out_a = (S_a - 1) * stride_a - before_a - after_a + dilation_a * (k_a - 1) + output_padding_a + 1
        e.g. S = 16, k = 3, stride 2, padding (1, 1), output_padding 1: 15 * 2 - 2 + 2 + 1 + 1 = 32
    Returns:
      out, cache (for ``conv_transpose_backward``)

    Computed as exactly that gradient: ``x`` plays the convolution's ``dout`` (``correlate_input_grad``) on
    the full, uncropped output, then the padding is cut off.
    """
    kernel = w.shape[2:]
    axes = zip(x.shape[2:], kernel, stride, output_padding, dilation)
    full = tuple((n - 1) * s + d * (k - 1) + 1 + op for n, k, s, op, d in axes)
    yfull = correlate_input_grad(x, w, full, stride, dilation, groups)  # (N, K, *full)
    sizes = tuple(f - bf - af for f, (bf, af) in zip(full, padding))
    out = np.ascontiguousarray(unpad(yfull, padding, sizes))
    if b is not None:
        out += b.reshape((1, -1) + (1,) * len(stride))
    return out, (x, w, b is not None, tuple(stride), tuple(padding), tuple(dilation), groups)


def conv_transpose_backward(
    dout: np.ndarray, cache: Any
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of ``conv_transpose_forward``: dout: (N, K, *out) -> dx: (N, C, *S), dw: (C, K/groups, *k), db.

    The transposed convolution is a convolution's input gradient, so its own input gradient is that
    convolution's forward pass on the padded ``dout``, and its weight gradient the convolution's weight
    gradient with the roles of input and ``dout`` swapped.

    As ``conv_backward``: inside ``grad_mode.input_grads_only()`` dw and db are None; inside
    ``grad_mode.without_input_grad()`` dx is None (the convolution is never run).
    """
    x, w, has_bias, stride, padding, dilation, groups = cache
    kernel = w.shape[2:]
    dfull = pad_input(dout, padding)
    dx = None
    if input_grad_wanted():
        dx = correlate(dfull, w, stride, dilation, groups)
        dx = dx[(slice(None), slice(None), *(slice(0, n) for n in x.shape[2:]))]  # output_padding >= stride adds rows
        dx = np.ascontiguousarray(dx)
    if not param_grads_wanted():
        return dx, None, None
    dw = correlate_weight_grad(dfull, x, kernel, stride, dilation, groups)
    db = dout.sum(axis=(0, *range(2, dout.ndim))) if has_bias else None
    return dx, dw, db
