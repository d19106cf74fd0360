"""Slow, obviously-correct loop versions of convolution and pooling, for the tests to compare with.

Every output element is computed straight from its definition with explicit index arithmetic:
output position ``o`` on an axis reads input position ``o * stride - pad_before + j * dilation``
for kernel offset ``j``; positions outside the input are padding. The backward passes walk the same
terms and hand each term's upstream gradient to its two factors with ``+=`` (micrograd's way): a
value read by several terms collects a gradient from each. Nothing here is fast, and nothing here
shares code with the fast layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

Pads = Sequence[tuple[int, int]]


def _positions(sizes: Sequence[int]):
    return itertools.product(*(range(n) for n in sizes))


def _inside(index: Sequence[int], sizes: Sequence[int]) -> bool:
    return all(0 <= i < n for i, n in zip(index, sizes))


def _read(x: np.ndarray, index: Sequence[int], fill: float) -> float:
    """``x[index]`` for a spatial index, or ``fill`` where it falls in the padding."""
    if _inside(index, x.shape):
        return float(x[tuple(index)])
    return fill


def _conv_out_sizes(sizes, kernel, stride, padding, dilation) -> list[int]:
    return [(n + bf + af - d * (k - 1) - 1) // s + 1
            for n, k, s, (bf, af), d in zip(sizes, kernel, stride, padding, dilation)]


def _conv_terms(x_shape, w_shape, stride: Sequence[int], padding: Pads, dilation: Sequence[int], groups: int):
    """Every term ``w[k, ci, j] * x[n, c, where]`` of a convolution's sums, as ``(n, k, o, c, ci, j, where)``:
    output ``out[n, k, o]``, input channel ``c`` (``ci`` within its group), kernel offset ``j`` and the input
    position ``where = o * stride - before + j * dilation`` it reads (possibly in the padding)."""
    k_out, c_group = w_shape[:2]
    kernel = w_shape[2:]
    k_group = k_out // groups
    out_sizes = _conv_out_sizes(x_shape[2:], kernel, stride, padding, dilation)
    for n in range(x_shape[0]):
        for k in range(k_out):
            g = k // k_group
            for o in _positions(out_sizes):
                for ci in range(c_group):
                    for j in _positions(kernel):
                        where = [oa * s - p[0] + ja * d for oa, s, p, ja, d in zip(o, stride, padding, j, dilation)]
                        yield n, k, o, g * c_group + ci, ci, j, where


def _bias_grad(dout: np.ndarray) -> np.ndarray:
    """db[k] = the sum of dout[n, k, o] over every sample n and position o."""
    db = np.zeros(dout.shape[1], dtype=np.float64)
    for index in np.ndindex(*dout.shape):
        db[index[1]] += float(dout[index])
    return db


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
    out_sizes = _conv_out_sizes(x.shape[2:], w.shape[2:], stride, padding, dilation)
    out = np.zeros((x.shape[0], w.shape[0], *out_sizes), dtype=np.float64)
    for n, k, o, c, ci, j, where in _conv_terms(x.shape, w.shape, stride, padding, dilation, groups):
        out[(n, k, *o)] += float(w[(k, ci, *j)]) * _read(x[n, c], where, 0.0)
    if b is not None:
        out += np.asarray(b, dtype=np.float64).reshape((1, -1) + (1,) * len(out_sizes))
    return out


def conv_backward_naive(dout: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Sequence[int],
                        padding: Pads, dilation: Sequence[int], groups: int = 1) -> tuple[np.ndarray, ...]:
    """Gradients of ``conv_naive`` term by term (micrograd's ``+=``). dout: (N, K, *out) -> dx: (N, C, *S),
    dw: (K, C/groups, *k), db: (K,) or None (``b`` only says whether there is a bias).

    Each term ``w[k, ci, j] * x[n, c, where]`` of ``out[n, k, o]`` passes ``dout[n, k, o]`` on to both
    factors: ``dx[n, c, where] += dout * w[k, ci, j]`` and ``dw[k, ci, j] += dout * x[n, c, where]``; a term
    that reads the padding reads no input, so it adds nothing to either. ``db[k]`` sums ``dout[:, k]``.
    """
    dx = np.zeros(x.shape, dtype=np.float64)
    dw = np.zeros(w.shape, dtype=np.float64)
    for n, k, o, c, ci, j, where in _conv_terms(x.shape, w.shape, stride, padding, dilation, groups):
        if _inside(where, x.shape[2:]):
            upstream = float(dout[(n, k, *o)])
            dx[(n, c, *where)] += upstream * float(w[(k, ci, *j)])
            dw[(k, ci, *j)] += upstream * float(x[(n, c, *where)])
    return dx, dw, (_bias_grad(dout) if b is not None else None)


def _transpose_terms(x_shape, w_shape, stride, padding: Pads, output_padding, dilation, groups: int):
    """Every term ``x[n, c, i] * w[c, k, j]`` a transposed convolution scatters inside its output, as
    ``(n, c, i, kk, k, j, where)``: output channel ``kk`` (``k`` within its group), output position
    ``where = i * stride + j * dilation - before`` (terms that land in the cropped padding are left out)."""
    c_in, k_group = x_shape[1], w_shape[1]
    kernel = w_shape[2:]
    c_group = c_in // groups
    out_sizes = _transpose_out_sizes(x_shape, w_shape, stride, padding, output_padding, dilation)
    for n in range(x_shape[0]):
        for c in range(c_in):
            g = c // c_group
            for i in _positions(x_shape[2:]):
                for k in range(k_group):
                    for j in _positions(kernel):
                        where = [ia * s - p[0] + ja * d for ia, s, p, ja, d in zip(i, stride, padding, j, dilation)]
                        if _inside(where, out_sizes):
                            yield n, c, i, g * k_group + k, k, j, where


def _transpose_out_sizes(x_shape, w_shape, stride, padding: Pads, output_padding, dilation) -> list[int]:
    return [(n - 1) * s - bf - af + d * (k - 1) + op + 1
            for n, k, s, (bf, af), op, d in zip(x_shape[2:], w_shape[2:], stride, padding, output_padding, dilation)]


def conv_transpose_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Sequence[int], padding: Pads,
                         output_padding: Sequence[int], dilation: Sequence[int], groups: int = 1) -> np.ndarray:
    """Scatter: input x[n, c, i] adds x * w[c, k, j] to out[n, g*K/G + k, i * stride + j * dilation - before]."""
    out_sizes = _transpose_out_sizes(x.shape, w.shape, stride, padding, output_padding, dilation)
    out = np.zeros((x.shape[0], w.shape[1] * groups, *out_sizes), dtype=np.float64)
    terms = _transpose_terms(x.shape, w.shape, stride, padding, output_padding, dilation, groups)
    for n, c, i, kk, k, j, where in terms:
        out[(n, kk, *where)] += float(x[(n, c, *i)]) * float(w[(c, k, *j)])
    if b is not None:
        out += np.asarray(b, dtype=np.float64).reshape((1, -1) + (1,) * len(out_sizes))
    return out


def conv_transpose_backward_naive(dout: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                                  stride: Sequence[int], padding: Pads, output_padding: Sequence[int],
                                  dilation: Sequence[int], groups: int = 1) -> tuple[np.ndarray, ...]:
    """Gradients of ``conv_transpose_naive`` term by term: each scattered ``x[n, c, i] * w[c, k, j]`` passes
    ``dout`` at the position it lands on to both factors. dout: (N, K, *out) -> dx: (N, C, *S),
    dw: (C, K/groups, *k), db: (K,) or None."""
    dx = np.zeros(x.shape, dtype=np.float64)
    dw = np.zeros(w.shape, dtype=np.float64)
    terms = _transpose_terms(x.shape, w.shape, stride, padding, output_padding, dilation, groups)
    for n, c, i, kk, k, j, where in terms:
        upstream = float(dout[(n, kk, *where)])
        dx[(n, c, *i)] += upstream * float(w[(c, k, *j)])
        dw[(c, k, *j)] += upstream * float(x[(n, c, *i)])
    return dx, dw, (_bias_grad(dout) if b is not None else None)


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
