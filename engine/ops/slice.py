"""Graph op ``slice``: ``x[:, start:end:step]`` along one axis (a channel split, or a crop of a spatial axis).

Shape: the sliced axis gets ``len(range(start, end, step))`` positions after Python's clipping; the rest stay.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.layers.slice import slice_backward, slice_forward
from engine.ops.base import IDENTITY, REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op
from engine.ops.dims import batch_dim


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@register_op("slice")
class SliceOp(Op):
    """Keep positions ``start, start + step, ...`` below ``end`` along ``dim``, as ``x[:, start:end:step]`` for dim 1.

    ``dim`` counts the batch axis, as ``concat``'s and PyTorch's do (1 = channels, -1 = the last axis); the batch
    axis itself is refused. ``start`` and ``end`` follow Python: negative values count from the end, values past
    either end are clipped, ``end`` None means the end. ``step`` is 1 or more (ONNX's negative steps are refused).

    Geometry: IDENTITY along the channels. Along a spatial axis the slice is a crop: output position ``i`` is input
    position ``start + i * step``, i.e. ``AxisGeometry(kernel=1, stride=step, padding=-start)`` on that axis
    (a negative padding: the window starts inside the input), and ``(1, 1, 0)`` on the others.
    """

    title = "Slice"
    defaults: ClassVar[dict[str, Any]] = {"dim": REQUIRED, "start": 0, "end": None, "step": 1}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        self.axis = batch_dim(self.attrs["dim"], shape, "dim", self.node_id)
        start, end, step = self.attrs["start"], self.attrs["end"], self.attrs["step"]
        if not _is_int(start):
            raise self.fail(f"start must be an int (negative counts from the end), got {start!r}")
        if end is not None and not _is_int(end):
            raise self.fail(f"end must be an int (negative counts from the end) or null for the end, got {end!r}")
        if not _is_int(step) or step < 1:
            raise self.fail(f"step must be an int of 1 or more (every step-th position), got {step!r}")
        size = shape[self.axis - 1]
        self.start, self.end, self.step = slice(start, end, step).indices(size)
        kept = len(range(self.start, self.end, self.step))
        if kept == 0:
            raise self.fail(f"start {start}, end {end} keep nothing of dim {self.attrs['dim']}, which has {size} "
                            f"positions (input shape {list(shape)}): give a start before the end, within 0..{size}")
        return (*shape[:self.axis - 1], kept, *shape[self.axis:])

    def describe(self) -> dict[str, Any]:
        return {"dim": self.axis, "start": self.start, "end": self.end, "step": self.step}

    def geometry(self) -> list[AxisGeometry] | str:
        if self.axis == 1:
            return IDENTITY
        rank = len(self.input_shapes[0])
        return [AxisGeometry(1, self.step, -self.start) if a == self.axis else AxisGeometry(1, 1, 0)
                for a in range(2, rank + 1)]

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return slice_forward(inputs[0], self.axis, self.start, self.end, self.step)

    def backward(self, dout: np.ndarray, cache: Any):
        return [slice_backward(dout, cache)], {}
