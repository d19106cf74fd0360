"""Graph ops for pooling: ``max_pool1d/2d/3d``, ``avg_pool1d/2d/3d`` and ``global_avg_pool``.

Attribute names and defaults are PyTorch's (``stride`` defaults to ``kernel_size``); the maths is in
``engine.layers.pool``. Per spatial axis

    out = floor_or_ceil((size + pad_before + pad_after - dilation * (kernel_size - 1) - 1) / stride) + 1

where ``ceil_mode`` rounds up but drops a last window that would start in the right padding.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.arithmetic import output_length
from engine.layers.pool import (
    avg_pool_backward,
    avg_pool_forward,
    global_avg_pool_backward,
    global_avg_pool_forward,
    max_pool_backward,
    max_pool_forward,
)
from engine.ops.base import GLOBAL, REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op
from engine.ops.conv import AXIS_NAMES, check_bool, check_window_fits, spatial_input
from engine.padding import normalize_padding, per_axis


class _PoolNd(Op):
    """Shared attribute checks of max and average pooling."""

    spatial: ClassVar[int] = 2

    def _window(self, dilation_attr: Any) -> None:
        n = self.spatial
        self.channels, self.in_sizes = spatial_input(self, n)
        self.kernel = per_axis(self.attrs["kernel_size"], n, "kernel_size", self.node_id)
        stride = self.attrs["stride"]
        self.stride = self.kernel if stride is None else per_axis(stride, n, "stride", self.node_id)
        self.dilation = per_axis(dilation_attr, n, "dilation", self.node_id)
        self.ceil_mode = check_bool(self, "ceil_mode")
        self.padding = normalize_padding(self.attrs["padding"], n, self.kernel, self.stride, self.dilation,
                                         self.in_sizes, self.node_id)
        for axis, k, d, pair in zip(AXIS_NAMES[n], self.kernel, self.dilation, self.padding):
            span = d * (k - 1) + 1
            if max(pair) > span // 2:
                raise self.fail(f"padding {list(pair)} along the {axis} is more than half the window ({span} pixels): "
                                f"at most {span // 2} is allowed, so that every window covers the input (PyTorch "
                                f"is stricter still: at most half the undilated kernel, {k // 2})")
        check_window_fits(self, self.in_sizes, self.kernel, self.dilation, self.padding, n)
        self.out_sizes = tuple(output_length(*a, self.ceil_mode) for a in zip(
            self.in_sizes, self.kernel, self.stride, self.padding, self.dilation))
        for axis, size, k, s, (before, _), d, out in zip(AXIS_NAMES[n], self.in_sizes, self.kernel, self.stride,
                                                        self.padding, self.dilation, self.out_sizes):
            for o in range(out):
                if not any(0 <= o * s - before + j * d < size for j in range(k)):
                    raise self.fail(f"window {o} along the {axis} reads only padding (its dilated taps miss the "
                                    f"{size} input pixels): use less padding or a smaller dilation")

    def geometry(self) -> list[AxisGeometry]:
        axes = zip(self.kernel, self.stride, self.padding, self.dilation)
        return [AxisGeometry(k, s, p[0], d) for k, s, p, d in axes]


class MaxPoolNd(_PoolNd):
    """Max pooling: each output is the largest input in its (dilated) window; padding counts as -inf."""

    title = "Max pooling"
    defaults: ClassVar[dict[str, Any]] = {
        "kernel_size": REQUIRED, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
    }

    def build(self) -> Shape:
        self._window(self.attrs["dilation"])
        return (self.channels, *self.out_sizes)

    def describe(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "ceil_mode": self.ceil_mode}

    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        return max_pool_forward(inputs[0], self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [max_pool_backward(dout, cache)], {}


class AvgPoolNd(_PoolNd):
    """Average pooling; ``count_include_pad`` (default true, as PyTorch) counts zero padding in the divisor."""

    title = "Average pooling"
    defaults: ClassVar[dict[str, Any]] = {
        "kernel_size": REQUIRED, "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
    }

    def build(self) -> Shape:
        self._window(1)
        self.count_include_pad = check_bool(self, "count_include_pad")
        return (self.channels, *self.out_sizes)

    def describe(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel, "stride": self.stride, "padding": self.padding,
                "ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad}

    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        return avg_pool_forward(inputs[0], self.kernel, self.stride, self.padding, self.ceil_mode,
                                self.count_include_pad)

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [avg_pool_backward(dout, cache)], {}


@register_op("max_pool1d")
class MaxPool1d(MaxPoolNd):
    spatial = 1


@register_op("max_pool2d")
class MaxPool2d(MaxPoolNd):
    spatial = 2


@register_op("max_pool3d")
class MaxPool3d(MaxPoolNd):
    spatial = 3


@register_op("avg_pool1d")
class AvgPool1d(AvgPoolNd):
    spatial = 1


@register_op("avg_pool2d")
class AvgPool2d(AvgPoolNd):
    spatial = 2


@register_op("avg_pool3d")
class AvgPool3d(AvgPoolNd):
    spatial = 3


@register_op("global_avg_pool")
class GlobalAvgPool(Op):
    """Mean over every spatial axis: (C, *S) -> (C,)."""

    title = "Global average pooling"
    defaults: ClassVar[dict[str, Any]] = {}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        if len(shape) < 2:
            raise self.fail(f"global_avg_pool takes inputs with spatial axes, (C, L), (C, H, W) or (C, D, H, W); "
                            f"its input has shape {list(shape)}")
        return (shape[0],)

    def geometry(self) -> str:
        return GLOBAL

    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        return global_avg_pool_forward(inputs[0])

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        return [global_avg_pool_backward(dout, cache)], {}
