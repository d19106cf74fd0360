"""Flatten and reshape as graph ops: the values stay, only the shape changes."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from engine.layers.reshape import flatten_backward, flatten_forward, reshape_backward, reshape_forward
from engine.ops.base import GLOBAL, IDENTITY, REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op
from engine.ops.dims import batch_dim


@register_op("flatten")
class FlattenOp(Op):
    """Merge axes ``start_dim..end_dim`` (counting the batch axis) into one: (C, H, W) -> (C*H*W,) by default.

    Geometry: IDENTITY when no spatial axis is merged (e.g. flattening (F,) or (C, 1...)), else
    GLOBAL: once positions are merged into features, any later unit may read any of them.
    """

    title = "Flatten"
    defaults: ClassVar[dict[str, Any]] = {"start_dim": 1, "end_dim": -1}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        if not shape:
            return shape
        self.start = batch_dim(self.attrs["start_dim"], shape, "start_dim", self.node_id)
        self.end = batch_dim(self.attrs["end_dim"], shape, "end_dim", self.node_id)
        if self.start > self.end:
            raise self.fail(f"start_dim ({self.attrs['start_dim']}) comes after end_dim ({self.attrs['end_dim']}) "
                            f"for an input of shape [N, {', '.join(map(str, shape))}]")
        s, e = self.start - 1, self.end - 1  # without the batch axis
        return (*shape[:s], math.prod(shape[s:e + 1]), *shape[e + 1:])

    def geometry(self):
        shape = self.input_shapes[0]
        if len(shape) <= 1 or (self.start == self.end) or all(n == 1 for n in shape[1:]):
            return IDENTITY
        return GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        if not self.input_shapes[0]:
            return inputs[0], inputs[0].shape
        return flatten_forward(inputs[0], self.start, self.end)

    def backward(self, dout: np.ndarray, cache: Any):
        return [flatten_backward(dout, cache)], {}


@register_op("reshape")
class ReshapeOp(Op):
    """``x.reshape(N, *shape)``: ``shape`` excludes the batch axis and may hold one -1 (inferred).

    Geometry: IDENTITY if the shape is unchanged. A reshape that only regroups the leading (channel-like) axes
    and keeps the trailing ones, as a channel shuffle's (C, H, W) -> (G, C/G, H, W), keeps positions: one
    position-keeping axis per trailing axis kept (the receptive-field analysis uses them when they are the
    graph's spatial axes, and calls the field undefined otherwise). Any other reshape is GLOBAL.
    """

    title = "Reshape"
    defaults: ClassVar[dict[str, Any]] = {"shape": REQUIRED}

    def build(self) -> Shape:
        in_shape = self.input_shapes[0]
        shape = self.attrs["shape"]
        size = math.prod(in_shape)
        if (not isinstance(shape, list | tuple)
                or not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape)):
            raise self.fail(f"shape must be a list of positive ints without the batch axis, with at most one -1 "
                            f"to be inferred (e.g. [-1] or [{size}]); got {shape!r}")
        if list(shape).count(-1) > 1:
            raise self.fail(f"shape {list(shape)} has more than one -1: only one size can be inferred")
        known = math.prod(d for d in shape if d != -1)
        if -1 in shape:
            if size % known:
                raise self.fail(f"cannot reshape {list(in_shape)} ({size} values) to {list(shape)}: "
                                f"{size} is not a multiple of {known}")
            shape = [size // known if d == -1 else d for d in shape]
        elif known != size:
            raise self.fail(f"cannot reshape {list(in_shape)} ({size} values) to {list(shape)} ({known} values): "
                            f"the sizes must multiply to {size} (a -1 infers one size)")
        return tuple(shape)

    def geometry(self):
        before, after = self.input_shapes[0], self.output_shape
        if after == before:
            return IDENTITY
        kept = 0
        while kept < min(len(before), len(after)) - 1 and before[-1 - kept] == after[-1 - kept]:
            kept += 1
        return [AxisGeometry(1, 1, 0)] * kept if kept else GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return reshape_forward(inputs[0], self.output_shape)

    def backward(self, dout: np.ndarray, cache: Any):
        return [reshape_backward(dout, cache)], {}
