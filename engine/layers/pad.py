"""Padding of the spatial axes (1D, 2D, 3D) as a forward/backward pair: ``torch.nn.functional.pad``'s
three modes.

For spatial axis ``a`` padded by ``(before, after)``

    out_a = S_a + before + after

and output position ``i`` (``0 <= i < out_a``) reads input position ``j = i - before``, where ``j``
outside ``0 .. S_a - 1`` is replaced according to ``mode``:

* ``"constant"``: the fixed ``value`` (no input is read);
* ``"reflect"``: the mirror image without repeating the edge, ``j -> -j`` before the start and
  ``j -> 2 (S_a - 1) - j`` past the end (``[a b c d]`` padded by 2 reads ``c b | a b c d | c b``);
  PyTorch's rule: ``before`` and ``after`` must be smaller than ``S_a``;
* ``"replicate"``: the nearest edge value, ``j -> clip(j, 0, S_a - 1)`` (ONNX's ``"edge"``).

The backward pass adds each padded position's gradient back onto the input position it read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MODES = ("constant", "reflect", "replicate")
_NUMPY_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def source_index(j: int, size: int, mode: str) -> int:
    """The input position that padded position ``j`` (``j < 0`` or ``j >= size``) reads, for reflect/replicate."""
    if mode == "replicate":
        return min(max(j, 0), size - 1)
    if j < 0:
        return -j
    if j >= size:
        return 2 * (size - 1) - j
    return j


def pad_forward(x: np.ndarray, pads: Sequence[tuple[int, int]], mode: str = "constant",
                value: float = 0.0) -> tuple[np.ndarray, Any]:
    """Pad ``x``'s spatial axes.

    Inputs:
    - x: (N, C, *S), with 1 to 3 spatial axes
    - pads: one ``(before, after)`` pair of non-negative ints per spatial axis, in axis order
      (unlike ``F.pad``'s flat tuple, which starts from the last axis)
    - mode: "constant", "reflect" or "replicate"; value: the constant (constant mode only)

    Returns ``out: (N, C, *(S_a + before_a + after_a))`` (x's dtype) and the cache.
    """
    pads = tuple((int(b), int(a)) for b, a in pads)
    sizes = x.shape[2:]
    if len(pads) != len(sizes):
        raise ValueError(f"{len(pads)} (before, after) pairs for {len(sizes)} spatial axes")
    if mode not in MODES:
        raise ValueError(f"padding mode '{mode}' is not one of {', '.join(MODES)}")
    if any(b < 0 or a < 0 for b, a in pads):
        raise ValueError(f"padding {pads} must not be negative")
    if mode == "reflect" and any(max(b, a) >= n for n, (b, a) in zip(sizes, pads)):
        raise ValueError(f"reflect padding {pads} must be smaller than the input's sizes {sizes} on every axis")
    width = ((0, 0), (0, 0), *pads)
    if mode == "constant":
        out = np.pad(x, width, mode="constant", constant_values=np.asarray(value, dtype=x.dtype))
    else:
        out = np.pad(x, width, mode=_NUMPY_MODES[mode])
    return out, (pads, mode, tuple(sizes))


def pad_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """dout: (N, C, *(S_a + before_a + after_a)) -> dx: (N, C, *S). Constant padding takes no gradient;
    reflect and replicate add each padded position's gradient to the input position it copies."""
    pads, mode, sizes = cache
    grad = dout
    for axis, (size, (before, _after)) in enumerate(zip(sizes, pads), start=2):
        inside = [slice(None)] * grad.ndim
        inside[axis] = slice(before, before + size)
        dx = grad[tuple(inside)]
        if mode != "constant":
            dx = dx.copy()
            for i in [*range(before), *range(before + size, grad.shape[axis])]:
                source = source_index(i - before, size, mode)
                into = [slice(None)] * grad.ndim
                into[axis] = source
                take = [slice(None)] * grad.ndim
                take[axis] = i
                dx[tuple(into)] += grad[tuple(take)]
        grad = dx
    return np.ascontiguousarray(grad)
