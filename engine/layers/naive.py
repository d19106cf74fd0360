"""Slow, obviously-correct loop versions of convolution and pooling, for the tests to compare with.

Every output element is computed straight from its definition with explicit index arithmetic:
output position ``o`` on an axis reads input position ``o * stride - pad_before + j * dilation``
for kernel offset ``j``; positions outside the input are padding. Nothing here is fast, and
nothing here shares code with the fast layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

Pads = Sequence[tuple[int, int]]


def _positions(sizes: Sequence[int]):
    return itertools.product(*(range(n) for n in sizes))


def _read(x: np.ndarray, index: Sequence[int], fill: float) -> float:
    """``x[index]`` for a spatial index, or ``fill`` where it falls in the padding."""
    if all(0 <= i < n for i, n in zip(index, x.shape)):
        return float(x[tuple(index)])
    return fill


def conv_naive(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int = 1,
) -> np.ndarray:
    """out[n, k, o] = b[k] + sum_{c in group(k), j} w[k, c, j] * x[n, c, o * stride - before + j * dilation]."""
    n_batch = x.shape[0]
    k_out, c_group = w.shape[:2]
    kernel = w.shape[2:]
    sizes = x.shape[2:]
    out_sizes = [
        (n + bf + af - d * (k - 1) - 1) // s + 1
        for n, k, s, (bf, af), d in zip(sizes, kernel, stride, padding, dilation)
    ]
    out = np.zeros((n_batch, k_out, *out_sizes), dtype=np.float64)
    k_group = k_out // groups
    for n in range(n_batch):
        for k in range(k_out):
            g = k // k_group
            for o in _positions(out_sizes):
                total = 0.0 if b is None else float(b[k])
                for ci in range(c_group):
                    c = g * c_group + ci
                    for j in _positions(kernel):
                        where = [oa * s - p[0] + ja * d for oa, s, p, ja, d in zip(o, stride, padding, j, dilation)]
                        total += float(w[(k, ci, *j)]) * _read(x[n, c], where, 0.0)
                out[(n, k, *o)] = total
    return out


def conv_transpose_naive(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: Sequence[int],
    padding: Pads,
    output_padding: Sequence[int],
    dilation: Sequence[int],
    groups: int = 1,
) -> np.ndarray:
    """Scatter: input x[n, c, i] adds x * w[c, k, j] to out[n, g*K/G + k, i * stride + j * dilation - before]."""
    n_batch, c_in = x.shape[:2]
    k_group = w.shape[1]
    kernel = w.shape[2:]
    c_group = c_in // groups
    out_sizes = [
        (n - 1) * s - bf - af + d * (k - 1) + op + 1
        for n, k, s, (bf, af), op, d in zip(x.shape[2:], kernel, stride, padding, output_padding, dilation)
    ]
    out = np.zeros((n_batch, k_group * groups, *out_sizes), dtype=np.float64)
    for n in range(n_batch):
        for c in range(c_in):
            g = c // c_group
            for i in _positions(x.shape[2:]):
                for k in range(k_group):
                    for j in _positions(kernel):
                        where = [ia * s - p[0] + ja * d for ia, s, p, ja, d in zip(i, stride, padding, j, dilation)]
                        if all(0 <= q < m for q, m in zip(where, out_sizes)):
                            out[(n, g * k_group + k, *where)] += float(x[(n, c, *i)]) * float(w[(c, k, *j)])
    if b is not None:
        out += np.asarray(b, dtype=np.float64).reshape((1, -1) + (1,) * len(kernel))
    return out


def _pool_out_size(n: int, k: int, s: int, pad: tuple[int, int], d: int, ceil_mode: bool) -> int:
    span = n + pad[0] + pad[1] - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + pad[0]:
        out -= 1
    return out


def max_pool_naive(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    ceil_mode: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling by loops. Returns (out, dx_of_ones): the second is where a gradient of ones lands."""
    sizes = x.shape[2:]
    out_sizes = [_pool_out_size(*args, ceil_mode) for args in zip(sizes, kernel, stride, padding, dilation)]
    out = np.zeros((*x.shape[:2], *out_sizes), dtype=np.float64)
    routed = np.zeros(x.shape, dtype=np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for o in _positions(out_sizes):
                best, best_at = -np.inf, None
                for j in _positions(kernel):  # row-major; a later equal value does not replace the first
                    where = [oa * s - p[0] + ja * d for oa, s, p, ja, d in zip(o, stride, padding, j, dilation)]
                    value = _read(x[n, c], where, -np.inf)
                    if value > best:
                        best, best_at = value, where
                out[(n, c, *o)] = best
                if best_at is not None:
                    routed[(n, c, *best_at)] += 1.0
    return out, routed


def avg_pool_naive(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Pads,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Average pooling by loops, with PyTorch's divisor: the window clipped to the padded input
    (``count_include_pad``) or to the input itself."""
    sizes = x.shape[2:]
    ones = [1] * len(kernel)
    out_sizes = [_pool_out_size(*args, ceil_mode) for args in zip(sizes, kernel, stride, padding, ones)]
    out = np.zeros((*x.shape[:2], *out_sizes), dtype=np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for o in _positions(out_sizes):
                total, inside, in_padded = 0.0, 0, 0
                for j in _positions(kernel):
                    where = [oa * s - p[0] + ja for oa, s, p, ja in zip(o, stride, padding, j)]
                    if all(-p[0] <= q < m + p[1] for q, m, p in zip(where, sizes, padding)):
                        in_padded += 1
                    if all(0 <= q < m for q, m in zip(where, sizes)):
                        inside += 1
                        total += float(x[(n, c, *where)])
                out[(n, c, *o)] = total / (in_padded if count_include_pad else inside)
    return out
