"""Upsampling by whole factors (1D, 2D, 3D) as forward/backward pairs, as ``F.interpolate(x, scale_factor=s,
mode=...)`` for integer ``s``: nearest-neighbour, and linear / bilinear / trilinear (``align_corners`` False or True).

Nearest: for spatial axis ``a`` with factor ``s_a >= 1``

    out_a = S_a * s_a,        out[..., i, ...] = x[..., floor(i / s_a), ...]

so each input value becomes an ``s_1 x s_2 x ...`` block of copies. The backward pass sums the
gradient over each block.

Linear (any number of axes): the same output sizes; along each axis, output ``i`` is a mix of the two
input values around a source coordinate (see ``linear_weights``). Interpolation is separable, so the
forward pass applies one small ``(S_a·s_a, S_a)`` weight matrix per axis, and the backward pass its transpose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _blocked(sizes: Sequence[int], scale: Sequence[int]) -> tuple[int, ...]:
    """The spatial shape with a block axis after each axis: (S_1, s_1, S_2, s_2, ...)."""
    return tuple(d for n, s in zip(sizes, scale) for d in (n, s))


def upsample_nearest_forward(x: np.ndarray, scale: Sequence[int]) -> tuple[np.ndarray, Any]:
    """x: (N, C, *S) -> out: (N, C, *(S_a * scale_a)), x's dtype; ``scale``: one int >= 1 per spatial axis."""
    scale = tuple(int(s) for s in scale)
    sizes = x.shape[2:]
    if len(scale) != len(sizes) or any(s < 1 for s in scale):
        raise ValueError(f"scale {scale} must hold one whole factor >= 1 for each of the {len(sizes)} spatial axes")
    n, c = x.shape[:2]
    if all(s == 1 for s in scale):  # a fresh array, as for any other factor (never a read-only view of x)
        return x.copy(), (scale, tuple(sizes))
    # a block axis of length 1 after each spatial axis, broadcast to the factor, then merged into it
    spread = x.reshape(n, c, *_blocked(sizes, (1,) * len(sizes)))
    out = np.broadcast_to(spread, (n, c, *_blocked(sizes, scale)))
    return out.reshape(n, c, *(m * s for m, s in zip(sizes, scale))), (scale, tuple(sizes))


def upsample_nearest_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """dout: (N, C, *(S_a * scale_a)) -> dx: (N, C, *S), the sum of each block's gradient."""
    scale, sizes = cache
    n, c = dout.shape[:2]
    blocks = dout.reshape(n, c, *_blocked(sizes, scale))
    return blocks.sum(axis=tuple(3 + 2 * a for a in range(len(sizes))))


# --- linear, bilinear, trilinear ------------------------------------------------------------------
def linear_sources(size: int, scale: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where each output position of one axis samples the input: ``(raw, src, lo, hi)``, arrays of size·scale.

        align_corners False:  raw = (i + 0.5) / scale − 0.5                 (half-pixel centres)
        align_corners True:   raw = i · (size − 1) / (size·scale − 1)        (0 when the output has one element)

    ``src = max(raw, 0)`` (the clamp at 0), ``lo = floor(src)`` and ``hi = min(lo + 1, size − 1)``.
    """
    out_size = size * scale
    i = np.arange(out_size, dtype=np.float64)
    if align_corners:
        raw = i * (size - 1) / (out_size - 1) if out_size > 1 else np.zeros(out_size)
    else:
        raw = (i + 0.5) / scale - 0.5
    src = np.maximum(raw, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), size - 1)
    return raw, src, lo, np.minimum(lo + 1, size - 1)


def linear_weights(size: int, scale: int, align_corners: bool) -> np.ndarray:
    """The (size·scale, size) float64 matrix W of 1D linear interpolation: ``out = W @ x`` along one axis.

    Output ``i`` samples the input at ``src`` (``linear_sources``) and mixes its two neighbours ``lo`` and
    ``hi`` with weights ``1 − (src − lo)`` and ``src − lo``; every row sums to 1.
    """
    _, src, lo, hi = linear_sources(size, scale, align_corners)
    frac = src - lo
    rows = np.arange(size * scale)
    weights = np.zeros((size * scale, size))
    weights[rows, lo] += 1.0 - frac  # each row appears once per statement, so += is exact here
    weights[rows, hi] += frac        # (lo == hi at the upper edge: the two weights add up)
    return weights


def _along_axis(x: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """x ×_axis matrix: x's ``axis`` (length S = matrix.shape[1]) becomes matrix.shape[0] long, C-contiguous.

    As x viewed (P, S, Q): one GEMM ``matrix @ x[p]`` per p, or a single ``x @ matrixᵀ`` for the last axis (Q = 1).
    """
    x = np.ascontiguousarray(x)
    size, rest = x.shape[axis], math.prod(x.shape[axis + 1:])
    out = x.reshape(-1, size) @ matrix.T if rest == 1 else np.matmul(matrix, x.reshape(-1, size, rest))
    return out.reshape(*x.shape[:axis], matrix.shape[0], *x.shape[axis + 1:])


def upsample_linear_forward(x: np.ndarray, scale: Sequence[int], align_corners: bool = False) -> tuple[np.ndarray, Any]:
    """x: (N, C, *S) -> out: (N, C, *(S_a * scale_a)), x's dtype; ``scale``: one int >= 1 per spatial axis.

    ``F.interpolate(x, scale_factor=scale, mode="linear" | "bilinear" | "trilinear", align_corners=...)``:
    separable, one 1D linear interpolation per spatial axis, ``out = x ×_1 W_1 ×_2 W_2 ...`` with
    ``W_a = linear_weights(S_a, scale_a, align_corners)``. A factor of 1 leaves its axis as it is.
    """
    scale = tuple(int(s) for s in scale)
    sizes = x.shape[2:]
    if len(scale) != len(sizes) or any(s < 1 for s in scale):
        raise ValueError(f"scale {scale} must hold one whole factor >= 1 for each of the {len(sizes)} spatial axes")
    if x.dtype.kind != "f":
        raise TypeError(f"linear upsampling takes floating-point input (as PyTorch's), got {x.dtype}: its weights "
                        "are fractions")
    matrices = [None if s == 1 else linear_weights(n, s, align_corners).astype(x.dtype)
                for n, s in zip(sizes, scale)]
    out = x
    for a, matrix in enumerate(matrices):
        if matrix is not None:
            out = _along_axis(out, matrix, 2 + a)
    return (out.copy() if out is x else out), matrices  # a fresh array, never x itself (factor 1 everywhere)


def upsample_linear_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """dout: (N, C, *(S_a * scale_a)) -> dx: (N, C, *S): the transpose, ``dx = dout ×_1 W_1ᵀ ×_2 W_2ᵀ ...``.

    Each output gradient is scattered to its two source positions on every axis with the forward weights.
    """
    dx = dout
    for a, matrix in enumerate(cache):
        if matrix is not None:
            dx = _along_axis(dx, matrix.T, 2 + a)
    return dx.copy() if dx is dout else dx
