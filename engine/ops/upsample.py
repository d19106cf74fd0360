"""Graph op ``upsample``: nearest-neighbour upsampling by whole factors, as ``nn.Upsample(scale_factor=s)`` /
``F.interpolate(x, scale_factor=s, mode="nearest")``; the maths is in ``engine.layers.upsample``.

Shape: ``(C, *S) -> (C, *(S_a * scale_factor_a))`` for 1 to 3 spatial axes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.layers.upsample import upsample_nearest_backward, upsample_nearest_forward
from engine.ops.base import REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op
from engine.padding import per_axis


@register_op("upsample")
class UpsampleOp(Op):
    """Repeat each value ``scale_factor`` times along every spatial axis (``mode`` "nearest", the only one).

    Geometry: the stride runs the other way, as in a transposed convolution (``transposed=True``,
    kernel 1, stride ``scale_factor``): output units ``s·i .. s·i + s − 1`` all read input unit ``i``.
    Output unit ``i``'s window starts at ``floor(i / s)``, which is not ``i·S − P`` for any whole
    stride S, so Araujo et al.'s receptive field (r, S, P) does not exist past an upsample: the
    receptive-field analysis marks such nodes "undefined" instead of giving wrong numbers.
    """

    defaults: ClassVar[dict[str, Any]] = {"scale_factor": REQUIRED, "mode": "nearest"}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        n = len(shape) - 1
        if n not in (1, 2, 3):
            raise self.fail(f"upsample takes inputs with 1 to 3 spatial axes, (C, L), (C, H, W) or (C, D, H, W); "
                            f"its input has shape {list(shape)}")
        if self.attrs["mode"] != "nearest":
            raise self.fail(f"mode {self.attrs['mode']!r} is not supported: upsample repeats pixels ('nearest'); "
                            "for learned upsampling use conv_transpose2d")
        factor = self.attrs["scale_factor"]
        values = factor if isinstance(factor, list | tuple) else [factor]
        if any(isinstance(v, float) for v in values):
            raise self.fail(f"scale_factor {factor!r} must be whole numbers (ints): nearest upsampling by a "
                            "fraction would repeat some pixels more often than others")
        self.scale = per_axis(factor, n, "scale_factor", self.node_id)
        return (shape[0], *(s * f for s, f in zip(shape[1:], self.scale)))

    def describe(self) -> dict[str, Any]:
        return {"scale_factor": self.scale, "mode": "nearest"}

    def geometry(self) -> list[AxisGeometry]:
        return [AxisGeometry(1, s, 0, 1, transposed=True) for s in self.scale]

    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        return upsample_nearest_forward(inputs[0], self.scale)

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [upsample_nearest_backward(dout, cache)], {}
