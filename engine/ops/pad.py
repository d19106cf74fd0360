"""Graph op ``pad``: padding of the spatial axes in PyTorch's modes (``nn.ZeroPad2d``, ``nn.ConstantPad2d``,
``nn.ReflectionPad2d``, ``nn.ReplicationPad2d`` and their 1D/3D forms); the maths is in ``engine.layers.pad``.

Shape: ``(C, *S) -> (C, *(S_a + before_a + after_a))`` for 1 to 3 spatial axes.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from engine.layers.pad import MODES, pad_backward, pad_forward
from engine.ops.base import REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op
from engine.ops.conv import AXIS_NAMES
from engine.padding import normalize_padding


@register_op("pad")
class PadOp(Op):
    """Pad every spatial axis by ``(before, after)`` with a constant, the mirror image or the edge value.

    ``padding`` takes an int (all sides), one int per spatial axis (both sides) or a ``[before, after]``
    pair per spatial axis, in axis order (PyTorch's ``F.pad`` takes a flat tuple from the *last* axis:
    ``F.pad(x, (left, right, top, bottom))`` is ``padding=[[top, bottom], [left, right]]``).

    Geometry: per axis ``kernel=1, stride=1, padding=before``: output unit ``i`` sits on input
    position ``i - before``, exactly what constant padding does. With reflect and replicate the
    border units copy an input value from inside (mirrored or the edge) rather than reading padding;
    the receptive-field analysis still counts them as padding, so their boxes lie partly outside the
    input while the value they hold comes from the nearest mirrored or edge position.
    """

    title = "Padding"
    defaults: ClassVar[dict[str, Any]] = {"padding": REQUIRED, "mode": "constant", "value": 0.0}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        n = len(shape) - 1
        if n not in (1, 2, 3):
            raise self.fail(f"pad takes inputs with 1 to 3 spatial axes, (C, L), (C, H, W) or (C, D, H, W); its "
                            f"input has shape {list(shape)}")
        self.channels, self.in_sizes = shape[0], tuple(shape[1:])
        mode = self.attrs["mode"]
        if mode not in MODES:
            raise self.fail(f"mode {mode!r} is not known: use 'constant', 'reflect' or 'replicate'")
        value = self.attrs["value"]
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise self.fail(f"value must be a finite number, got {value!r}")
        if mode != "constant" and value != 0:
            raise self.fail(f"value {value} applies to mode 'constant' only; mode '{mode}' pads with input values")
        padding = self.attrs["padding"]
        if isinstance(padding, str):
            raise self.fail(f"padding '{padding}' needs a kernel to mean anything: give an int, {n} ints or {n} "
                            "[before, after] pairs")
        self.mode, self.value = mode, float(value)
        self.padding = normalize_padding(padding, n, (1,) * n, (1,) * n, (1,) * n, self.in_sizes, self.node_id)
        if mode == "reflect":
            for axis, size, pair in zip(AXIS_NAMES[n], self.in_sizes, self.padding):
                if max(pair) >= size:
                    raise self.fail(f"reflect padding {list(pair)} along the {axis} must be smaller than the input's "
                                    f"{size} pixels there (the mirror image does not repeat the edge, so it has "
                                    f"{size - 1} pixels to copy): use at most {size - 1}, or mode 'replicate'")
        return (self.channels, *(s + b + a for s, (b, a) in zip(self.in_sizes, self.padding)))

    def describe(self) -> dict[str, Any]:
        return {"padding": self.padding, "mode": self.mode, "value": self.value}

    def geometry(self) -> list[AxisGeometry]:
        return [AxisGeometry(1, 1, before) for before, _ in self.padding]

    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        return pad_forward(inputs[0], self.padding, self.mode, self.value)

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [pad_backward(dout, cache)], {}
