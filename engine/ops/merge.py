"""Ops that merge several inputs (add, mul, concat) and the constant operand they may take.

Inputs are per-sample shapes (no batch axis). ``add`` and ``mul`` broadcast them with NumPy's
rules, aligned at the last axis, so ``(C, H, W)`` with ``(C, 1, 1)`` gates channel by channel and
``(C, H, W)`` with ``(W,)`` works as in NumPy. The batch axis is matched separately: an input with
batch 1 (a ``constant``) is shared by every sample. Gradients are summed back to each input's shape.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.layers.merge import (
    add_backward,
    add_forward,
    concat_backward,
    concat_forward,
    mul_backward,
    mul_forward,
    unbroadcast,
)
from engine.ops.base import GLOBAL, IDENTITY, REQUIRED, ForwardContext, Op, Shape, register_op
from engine.ops.dims import batch_dim


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _align(xs: list[np.ndarray], rank: int) -> list[np.ndarray]:
    """Insert axes after the batch axis so every input has ``rank`` per-sample axes (NumPy's alignment)."""
    return [x.reshape((x.shape[0],) + (1,) * (rank + 1 - x.ndim) + x.shape[1:]) for x in xs]


class _BroadcastOp(Op):
    """Two or more inputs combined elementwise with broadcasting."""

    arity = None
    verb: ClassVar[str] = ""
    layer_forward: ClassVar[Any]
    layer_backward: ClassVar[Any]

    def build(self) -> Shape:
        shapes = self.input_shapes
        if len(shapes) < 2:
            raise self.fail(f"'{self.op}' combines 2 or more inputs, got {len(shapes)}: list them in 'inputs'")
        out = shapes[0]
        for shape in shapes[1:]:
            try:
                out = np.broadcast_shapes(out, shape)
            except ValueError:
                raise self.fail(
                    f"cannot {self.verb} shapes {_shape_text(out)} and {_shape_text(shape)}: sizes must be equal or "
                    f"1 on every axis, counted from the last (e.g. [C, H, W] with [C, 1, 1])"
                ) from None
        return tuple(out)

    def aligned_axes(self) -> list[dict[int, int]]:
        """Per input, aligned at the last axis as NumPy broadcasts, the axes where its size is the output's (not
        stretched from 1): a (C,) bias on (H, W, C) is aligned on C only, broadcast along H and W."""
        out = self.output_shape
        found = []
        for shape in self.input_shapes:
            lead = len(out) - len(shape)
            found.append({lead + i: i for i, size in enumerate(shape) if size == out[lead + i]})
        return found

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        rank = len(self.output_shape)
        aligned = _align(inputs, rank)
        out, cache = type(self).layer_forward(*aligned)
        return out, (cache, [x.shape for x in inputs])

    def backward(self, dout: np.ndarray, cache: Any):
        inner, shapes = cache
        grads = type(self).layer_backward(dout, inner)
        return [g.reshape(shape) for g, shape in zip(grads, shapes)], {}


@register_op("add")
class AddOp(_BroadcastOp):
    """x1 + x2 + ... (skip connections)."""

    title = "Add (skip connection)"
    verb = "add"
    layer_forward = staticmethod(add_forward)
    layer_backward = staticmethod(add_backward)


@register_op("mul")
class MulOp(_BroadcastOp):
    """x1 * x2 * ... (gating, e.g. squeeze-and-excitation)."""

    title = "Multiply (gating)"
    verb = "multiply"
    layer_forward = staticmethod(mul_forward)
    layer_backward = staticmethod(mul_backward)


@register_op("concat")
class ConcatOp(Op):
    """Join inputs along ``dim`` (counting the batch axis; 1 = channels); other axes must match.

    Geometry: IDENTITY along channels; GLOBAL when joining along a spatial axis (positions shift).
    """

    title = "Concatenate"
    arity = None
    defaults: ClassVar[dict[str, Any]] = {"dim": 1}

    def build(self) -> Shape:
        shapes = self.input_shapes
        first = shapes[0]
        self.axis = batch_dim(self.attrs["dim"], first, "dim", self.node_id)
        a = self.axis - 1
        for shape in shapes[1:]:
            if len(shape) != len(first) or shape[:a] + shape[a + 1:] != first[:a] + first[a + 1:]:
                raise self.fail(f"cannot concatenate shapes {_shape_text(first)} and {_shape_text(shape)} along "
                                f"dim {self.attrs['dim']}: every other axis must have the same size")
        return (*first[:a], sum(s[a] for s in shapes), *first[a + 1:])

    def geometry(self):
        return IDENTITY if self.axis == 1 else GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        n = max(x.shape[0] for x in inputs)
        shared = [np.broadcast_to(x, (n, *x.shape[1:])) for x in inputs]  # a constant (batch 1) joins every sample
        out, cache = concat_forward(*shared, dim=self.axis)
        return out, (cache, [x.shape for x in inputs])

    def backward(self, dout: np.ndarray, cache: Any):
        inner, shapes = cache
        return [unbroadcast(g, shape) for g, shape in zip(concat_backward(dout, inner), shapes)], {}


@register_op("constant")
class ConstantOp(Op):
    """A fixed tensor with no inputs (``"inputs": []``): one buffer ``value`` of shape ``shape``.

    Its activation is ``value`` with a batch axis of 1, so it broadcasts against any batch in
    add/mul/concat. The ONNX importer uses it for constant operands. It takes no gradient.
    """

    title = "Constant"
    main_view = "hidden"
    arity = 0
    defaults: ClassVar[dict[str, Any]] = {"shape": REQUIRED}
    buffer_names = ("value",)

    def build(self) -> Shape:
        shape = self.attrs["shape"]
        if not isinstance(shape, list | tuple) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise self.fail(f"shape must be a list of positive ints (the value's shape, without a batch axis), "
                            f"got {shape!r}")
        return tuple(shape)

    def param_shapes(self) -> dict[str, Shape]:
        return {"value": self.output_shape}

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return np.array(params["value"])[None], None

    def backward(self, dout: np.ndarray, cache: Any):
        return [], {}
