"""Per-axis arguments in the forms PyTorch and ONNX accept, turned into one canonical form.

``kernel_size=3`` and ``kernel_size=[3, 3]`` both become ``(3, 3)`` for a 2D op; ``padding``
becomes one ``(before, after)`` pair per spatial axis, whichever of the accepted forms was given:

* ``1``                      -> ``((1, 1), (1, 1))``
* ``[1, 2]``                 -> ``((1, 1), (2, 2))``      (one int per axis)
* ``[[0, 1], [0, 1]]``       -> ``((0, 1), (0, 1))``      (a ``[before, after]`` pair per axis)
* ``"valid"``                -> ``((0, 0), (0, 0))``
* ``"same"``                 -> output size ``ceil(in / stride)``; the total padding
  ``max((out - 1) * stride + dilation * (kernel - 1) + 1 - in, 0)`` is split with the odd pixel
  *after* (TensorFlow's "SAME", ONNX's ``SAME_UPPER``). With stride 1 this is PyTorch's ``"same"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.errors import SpecError

Pair = tuple[int, int]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def per_axis(value: Any, ndim: int, name: str, node_id: str | None = None, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int, or a list of ``ndim`` ints) as a tuple of ``ndim`` ints, each >= ``minimum``."""
    if _is_int(value):
        values = (value,) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str) and all(_is_int(v) for v in value):
        values = tuple(value)
        if len(values) != ndim:
            raise SpecError(node_id, f"{name} has {len(values)} values but the op has {ndim} spatial axes: "
                                     f"give one int or a list of {ndim} ints")
    else:
        raise SpecError(node_id, f"{name} must be an int or a list of {ndim} ints, not {value!r}")
    for v in values:
        if v < minimum:
            raise SpecError(node_id, f"{name} must be at least {minimum} on every axis, got {list(values)}")
    return values


def same_padding(in_size: int, kernel: int, stride: int, dilation: int) -> Pair:
    """TensorFlow-style "same" padding for one axis: output ``ceil(in / stride)``, odd pixel after."""
    out = -(-in_size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - in_size, 0)
    return total // 2, total - total // 2


def normalize_padding(
    padding: Any,
    ndim: int,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    in_sizes: Sequence[int],
    node_id: str | None = None,
) -> tuple[Pair, ...]:
    """Any accepted ``padding`` form as one ``(before, after)`` pair per spatial axis."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * ndim
        if padding == "same":
            return tuple(same_padding(n, k, s, d) for n, k, s, d in zip(in_sizes, kernel, stride, dilation))
        raise SpecError(node_id, f"padding '{padding}' is not known: use an int, a list, 'same' or 'valid'")
    if _is_int(padding):
        pairs = [(padding, padding)] * ndim
    elif isinstance(padding, Sequence) and len(padding) == ndim and all(_is_int(p) for p in padding):
        pairs = [(p, p) for p in padding]
    elif (
        isinstance(padding, Sequence)
        and len(padding) == ndim
        and all(isinstance(p, Sequence) and len(p) == 2 and all(_is_int(q) for q in p) for p in padding)
    ):
        pairs = [(p[0], p[1]) for p in padding]
    else:
        raise SpecError(
            node_id,
            f"padding {padding!r} does not fit an op with {ndim} spatial axes: give an int, {ndim} ints, "
            f"{ndim} [before, after] pairs, 'same' or 'valid'",
        )
    if any(b < 0 or a < 0 for b, a in pairs):
        raise SpecError(node_id, f"padding must not be negative, got {padding!r}")
    return tuple(pairs)
