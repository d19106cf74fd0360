"""Graph op ``upsample``: upsampling by whole factors, as ``nn.Upsample(scale_factor=s, mode=..., align_corners=...)``
/ ``F.interpolate(x, scale_factor=s, mode=...)``: ``mode`` "nearest" (repeat), or "linear" (1 spatial axis),
"bilinear" (2) and "trilinear" (3), interpolating; the maths is in ``engine.layers.upsample``.

Shape: ``(C, *S) -> (C, *(S_a * scale_factor_a))`` for 1 to 3 spatial axes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.layers.upsample import (
    upsample_linear_backward,
    upsample_linear_forward,
    upsample_nearest_backward,
    upsample_nearest_forward,
)
from engine.ops.base import REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op
from engine.padding import per_axis

#: the interpolating modes and the number of spatial axes each works on, PyTorch's names
LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}
_INPUTS = {1: "(C, L)", 2: "(C, H, W)", 3: "(C, D, H, W)"}


@register_op("upsample")
class UpsampleOp(Op):
    """Upsample every spatial axis by a whole ``scale_factor``.

    ``mode="nearest"`` repeats each value; ``"linear"`` / ``"bilinear"`` / ``"trilinear"`` (for 1 / 2 / 3
    spatial axes) interpolate between the two nearest input values along each axis, with PyTorch's
    half-pixel source coordinates (``align_corners=false``) or corners on corners (``align_corners=true``).

    Geometry: the stride runs the other way, as in a transposed convolution (``transposed=True``,
    kernel 1, stride ``scale_factor``): output units ``s·i .. s·i + s − 1`` all read input unit ``i``
    (with interpolation, its neighbour too). Output unit ``i``'s window starts at ``floor(i / s)``
    (or near it), which is not ``i·S − P`` for any whole stride S, so Araujo et al.'s receptive field
    (r, S, P) does not exist past an upsample: the receptive-field analysis marks such nodes "undefined"
    instead of giving wrong numbers.
    """

    title = "Upsampling"
    defaults: ClassVar[dict[str, Any]] = {"scale_factor": REQUIRED, "mode": "nearest", "align_corners": False}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        n = len(shape) - 1
        if n not in (1, 2, 3):
            raise self.fail(f"upsample takes inputs with 1 to 3 spatial axes, (C, L), (C, H, W) or (C, D, H, W); "
                            f"its input has shape {list(shape)}")
        mode, align_corners = self.attrs["mode"], self.attrs["align_corners"]
        if mode != "nearest" and mode not in LINEAR_MODES:
            raise self.fail(f"mode {mode!r} is not supported: upsample takes 'nearest' (repeat pixels), 'linear' "
                            "(1 spatial axis), 'bilinear' (2) or 'trilinear' (3); for learned upsampling use "
                            "conv_transpose2d")
        if mode in LINEAR_MODES and LINEAR_MODES[mode] != n:
            right = next(m for m, k in LINEAR_MODES.items() if k == n)
            wanted = LINEAR_MODES[mode]
            raise self.fail(f"mode {mode!r} interpolates {wanted} spatial {'axis' if wanted == 1 else 'axes'}, "
                            f"{_INPUTS[wanted]}, but the input {list(shape)} has {n} "
                            f"({_INPUTS[n]}): use mode {right!r}")
        if not isinstance(align_corners, bool):
            raise self.fail(f"align_corners {align_corners!r} must be true or false")
        if align_corners and mode == "nearest":
            raise self.fail("align_corners=true only applies to the interpolating modes 'linear', 'bilinear' and "
                            "'trilinear' (as in PyTorch); with mode 'nearest' leave it false")
        factor = self.attrs["scale_factor"]
        values = factor if isinstance(factor, list | tuple) else [factor]
        if any(isinstance(v, float) for v in values):
            why = ("nearest upsampling by a fraction would repeat some pixels more often than others"
                   if mode == "nearest" else "the engine interpolates to whole multiples of the input size only")
            raise self.fail(f"scale_factor {factor!r} must be whole numbers (ints): {why}")
        self.scale = per_axis(factor, n, "scale_factor", self.node_id)
        return (shape[0], *(s * f for s, f in zip(shape[1:], self.scale)))

    def describe(self) -> dict[str, Any]:
        if self.attrs["mode"] == "nearest":  # align_corners means nothing here (PyTorch's repr leaves it out too)
            return {"scale_factor": self.scale, "mode": "nearest"}
        return {"scale_factor": self.scale, "mode": self.attrs["mode"], "align_corners": self.attrs["align_corners"]}

    def geometry(self) -> list[AxisGeometry]:
        return [AxisGeometry(1, s, 0, 1, transposed=True) for s in self.scale]

    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        if self.attrs["mode"] == "nearest":
            return upsample_nearest_forward(inputs[0], self.scale)
        return upsample_linear_forward(inputs[0], self.scale, self.attrs["align_corners"])

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        if self.attrs["mode"] == "nearest":
            return [upsample_nearest_backward(dout, cache)], {}
        return [upsample_linear_backward(dout, cache)], {}
