"""Pointwise (1x1, stride 1, one group) convolution: the input is its own patch matrix.

With a 1x1 kernel and stride 1 every output position reads exactly one input position, so the patch matrix
of sample ``n`` is ``x[n]`` seen as ``(C, prod(S))``: no patches are copied, and the convolution is one
matrix product per sample, ``w (K, C) @ x[n] (C, prod(S))``. Doing it per sample (``np.matmul`` over the
batch) also avoids the transposed copies of the input and output that one product over the whole batch
needs (the batch would have to sit between the channels and the positions). Introduced for the 1x1 layers
of MobileNet-style networks, whose time ``scripts/bench_engine.py --breakdown`` lists as "1x1"; the commit
that made it per sample for batches gave no figure.

Shapes: xp: (N, C, *S), w: (K, C, 1, ...), dout: (N, K, *S). Paths with several groups take the grouped
patch matrices (``engine.layers.fast.im2col``), which also skip the copy for 1x1 kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def is_pointwise(kernel: Sequence[int], stride: Sequence[int], padded: Sequence[int], out: Sequence[int]) -> bool:
    """A 1x1 kernel at stride 1 whose output covers the whole (padded) input: the input is the patch matrix."""
    return all(k == 1 for k in kernel) and all(s == 1 for s in stride) and tuple(padded) == tuple(out)


def forward(
    xp: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int], groups: int,
    out_sizes: Sequence[int],
) -> np.ndarray:
    """xp: (N, C, *S), w: (K, C, 1, ...) -> (N, K, *S): one product per sample, no copies."""
    n, c = xp.shape[:2]
    k_out = w.shape[0]
    return np.matmul(w.reshape(k_out, c), xp.reshape(n, c, -1)).reshape(n, k_out, *out_sizes)


def input_grad(
    dout: np.ndarray, w: np.ndarray, padded_sizes: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """dout: (N, K, *S), w: (K, C, 1, ...) -> dxp: (N, C, *S) = w^T @ dout per sample."""
    n, k_out = dout.shape[:2]
    c = w.shape[1]
    return np.matmul(w.reshape(k_out, c).T, dout.reshape(n, k_out, -1)).reshape(n, c, *padded_sizes)


def weight_grad(
    xp: np.ndarray, dout: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """xp: (N, C, *S), dout: (N, K, *S) -> dw: (K, C, 1, ...), the sum over samples of ``dout[n] @ x[n]^T``."""
    c, k_out = xp.shape[1], dout.shape[1]
    douts, xs = dout.reshape(len(dout), k_out, -1), xp.reshape(len(xp), c, -1)
    dw = douts[0] @ xs[0].T
    for dout_n, x_n in zip(douts[1:], xs[1:]):
        dw += dout_n @ x_n.T
    return dw.reshape(k_out, c, *kernel)
