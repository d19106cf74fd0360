"""Graph ops ``sum``, ``mean`` and ``max``: reductions over one or more axes (ONNX's ReduceSum/Mean/Max).

Shape: the input's shape without the axes in ``dim`` (``keepdim=true``: size 1 there). ``dim`` counts the
batch axis as every ``dim`` of the engine does (1 = channels, negative from the end), and may not name it:
``mean`` with ``dim=[2, 3]`` on (C, H, W) gives (C,), or (C, 1, 1) with ``keepdim``: global average pooling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from engine.layers import reduce
from engine.ops.base import GLOBAL, IDENTITY, REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op
from engine.ops.dims import batch_dim


class _ReduceOp(Op):
    """A reduction over the axes ``dim``; ``layer_forward(x, dims, keepdim)`` and ``layer_backward`` do the maths.

    Geometry (what the receptive-field analysis may assume):

    * a spatial axis is reduced: GLOBAL (each output unit sees every position along it);
    * only channels, with ``keepdim``: IDENTITY, positions stay where they are;
    * only channels, without ``keepdim``: the spatial axes move up one place, which the op reports as one
      position-keeping axis (kernel 1) per axis after the channel axis, as ``transpose`` does. Where those are
      the graph's spatial axes the receptive field passes through; otherwise the analysis marks it undefined.

    ``aligned_axes()`` names the axes not reduced, so that the analysis, which knows where a transpose moved the
    positions, keeps the field of each position through a reduction over the channels of a channels-last tensor.
    """

    defaults: ClassVar[dict[str, Any]] = {"dim": REQUIRED, "keepdim": False}
    layer_forward: ClassVar[Callable[..., tuple[np.ndarray, Any]]]
    layer_backward: ClassVar[Callable[[np.ndarray, Any], np.ndarray]]

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        dim, keepdim = self.attrs["dim"], self.attrs["keepdim"]
        if not isinstance(keepdim, bool):
            raise self.fail(f"keepdim must be true or false, got {keepdim!r}")
        if not shape:
            raise self.fail(f"{self.op} needs an axis to reduce, but its input has no axis besides the batch")
        dims = [dim] if isinstance(dim, int) and not isinstance(dim, bool) else dim
        if not isinstance(dims, list | tuple) or not dims:
            raise self.fail(f"dim must be an int or a non-empty list of ints (1 = channels, counting the batch "
                            f"axis; e.g. [2, 3] for the spatial axes of (C, H, W)), got {dim!r}")
        axes = [batch_dim(d, shape, "dim", self.node_id) for d in dims]
        repeated = sorted({a for a in axes if axes.count(a) > 1})
        if repeated:
            raise self.fail(f"dim {list(dims)} names axis {repeated[0]} more than once "
                            f"(for an input of shape [N, {', '.join(map(str, shape))}]): name each axis once")
        self.dims = tuple(sorted(axes))
        if keepdim:
            return tuple(1 if i + 1 in self.dims else n for i, n in enumerate(shape))
        return tuple(n for i, n in enumerate(shape) if i + 1 not in self.dims)

    def describe(self) -> dict[str, Any]:
        return {"dim": self.dims, "keepdim": self.attrs["keepdim"]}

    def geometry(self) -> list[AxisGeometry] | str:
        if self.dims != (1,):
            return GLOBAL
        if self.attrs["keepdim"]:
            return IDENTITY
        return [AxisGeometry(1, 1, 0)] * (len(self.input_shapes[0]) - 1)

    def aligned_axes(self) -> list[dict[int, int]]:
        """The axes not reduced (moving up past the reduced ones without ``keepdim``): over the last axis of a
        channels-last (H, W, C), H and W, as opset 13 writes LayerNorm out."""
        kept = [i for i in range(len(self.input_shapes[0])) if i + 1 not in self.dims]
        if self.attrs["keepdim"]:
            return [{i: i for i in kept}]
        return [dict(enumerate(kept))]

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return type(self).layer_forward(inputs[0], self.dims, self.attrs["keepdim"])

    def backward(self, dout: np.ndarray, cache: Any):
        return [type(self).layer_backward(dout, cache)], {}


@register_op("sum")
class SumOp(_ReduceOp):
    """The sum over ``dim`` (``torch.sum(x, dim, keepdim)``, ONNX's ReduceSum)."""

    title = "Sum"
    layer_forward = staticmethod(reduce.sum_forward)
    layer_backward = staticmethod(reduce.sum_backward)


@register_op("mean")
class MeanOp(_ReduceOp):
    """The mean over ``dim`` (``torch.mean(x, dim, keepdim)``, ONNX's ReduceMean)."""

    title = "Mean"
    layer_forward = staticmethod(reduce.mean_forward)
    layer_backward = staticmethod(reduce.mean_backward)


@register_op("max")
class MaxOp(_ReduceOp):
    """The maximum over ``dim`` (``torch.amax(x, dim, keepdim)``, ONNX's ReduceMax); tied maxima share the
    gradient evenly."""

    title = "Maximum"
    layer_forward = staticmethod(reduce.max_forward)
    layer_backward = staticmethod(reduce.max_backward)
