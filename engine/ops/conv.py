"""Graph ops for convolution: ``conv1d``, ``conv2d``, ``conv3d`` and ``conv_transpose2d``.

Attribute names and defaults are PyTorch's (``torch.nn.Conv2d`` / ``ConvTranspose2d``); the maths is
in ``engine.layers.conv``. Shapes exclude the batch axis: a ``conv2d`` node takes ``(C, H, W)`` and
gives ``(out_channels, H_out, W_out)`` with, per spatial axis,

    H_out = floor((H + pad_before + pad_after - dilation * (kernel_size - 1) - 1) / stride) + 1
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from engine.arithmetic import output_length, transposed_output_length
from engine.layers.conv import conv_backward, conv_forward, conv_transpose_backward, conv_transpose_forward
from engine.ops.base import REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op
from engine.padding import normalize_padding, per_axis

AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
SHAPE_NAMES = {1: "(C, L)", 2: "(C, H, W)", 3: "(C, D, H, W)"}


def check_int(op: Op, name: str, minimum: int = 1) -> int:
    """The attribute ``name`` as an int >= ``minimum``, or a SpecError saying what is wrong."""
    value = op.attrs[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise op.fail(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return value


def check_bool(op: Op, name: str) -> bool:
    """The attribute ``name`` as a bool (JSON true/false), or a SpecError."""
    value = op.attrs[name]
    if not isinstance(value, bool):
        raise op.fail(f"{name} must be true or false, got {value!r}")
    return value


def spatial_input(op: Op, spatial: int) -> tuple[int, tuple[int, ...]]:
    """(channels, spatial sizes) of the op's input, which must have ``spatial`` spatial axes."""
    shape = op.input_shapes[0]
    if len(shape) != spatial + 1:
        axes = len(shape) - 1
        instead = (f"use the {axes}D version of the op (e.g. conv{axes}d)" if axes in (1, 2, 3) else
                   "a vector has no spatial axes: use linear, or reshape it first")
        raise op.fail(f"{op.op} takes inputs of shape {SHAPE_NAMES[spatial]}, but its input has shape "
                      f"{list(shape)}; {instead}")
    return shape[0], tuple(shape[1:])


def check_window_fits(op: Op, sizes, kernel, dilation, pads, spatial: int) -> None:
    """A SpecError where a (dilated) kernel is wider than the padded input on some axis."""
    for axis, n, k, d, (before, after) in zip(AXIS_NAMES[spatial], sizes, kernel, dilation, pads):
        span = d * (k - 1) + 1
        padded = n + before + after
        if span > padded:
            raise op.fail(f"kernel {k} with dilation {d} spans {span} pixels along the {axis}, but the padded input "
                          f"is only {padded} wide ({n} + padding {before} + {after}): use a smaller kernel_size or "
                          "dilation, or more padding")


class _ConvBase(Op):
    """What convolution and transposed convolution share: per-axis attributes, groups, bias, init."""

    main_view = "convolution"
    spatial: ClassVar[int] = 2

    def _common(self) -> None:
        n = self.spatial
        self.in_channels, self.in_sizes = spatial_input(self, n)
        self.out_channels = check_int(self, "out_channels")
        self.groups = check_int(self, "groups")
        self.has_bias = check_bool(self, "bias")
        self.kernel = per_axis(self.attrs["kernel_size"], n, "kernel_size", self.node_id)
        self.stride = per_axis(self.attrs["stride"], n, "stride", self.node_id)
        self.dilation = per_axis(self.attrs["dilation"], n, "dilation", self.node_id)
        if self.in_channels % self.groups:
            raise self.fail(f"in_channels {self.in_channels} is not divisible by groups {self.groups}: "
                            f"groups must divide both channel counts")
        if self.out_channels % self.groups:
            raise self.fail(f"out_channels {self.out_channels} is not divisible by groups {self.groups}: "
                            f"groups must divide both channel counts")

    def _fan_in(self) -> int:
        shape = self.param_shapes()["weight"]
        return int(np.prod(shape[1:]))

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5))."""
        bound = 1.0 / math.sqrt(self._fan_in())
        return {name: rng.uniform(-bound, bound, size=shape).astype(np.float32)
                for name, shape in self.param_shapes().items()}

    @staticmethod
    def _params(x: np.ndarray, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        w = params["weight"]
        b = params.get("bias")
        return w.astype(x.dtype, copy=False), None if b is None else b.astype(x.dtype, copy=False)

    def _grads(self, dw: np.ndarray, db: np.ndarray | None) -> dict[str, np.ndarray]:
        return {"weight": dw, "bias": db} if self.has_bias else {"weight": dw}


class ConvNd(_ConvBase):
    """Convolution over ``spatial`` axes; weight ``(out_channels, in_channels / groups, *kernel_size)``."""

    title = "Convolution"
    defaults: ClassVar[dict[str, Any]] = {
        "out_channels": REQUIRED,
        "kernel_size": REQUIRED,
        "stride": 1,
        "padding": 0,
        "dilation": 1,
        "groups": 1,
        "bias": True,
    }

    def build(self) -> Shape:
        self._common()
        self.padding = normalize_padding(self.attrs["padding"], self.spatial, self.kernel, self.stride,
                                         self.dilation, self.in_sizes, self.node_id)
        check_window_fits(self, self.in_sizes, self.kernel, self.dilation, self.padding, self.spatial)
        self.out_sizes = tuple(output_length(*a) for a in zip(self.in_sizes, self.kernel, self.stride,
                                                               self.padding, self.dilation))
        return (self.out_channels, *self.out_sizes)

    def param_shapes(self) -> dict[str, Shape]:
        shapes = {"weight": (self.out_channels, self.in_channels // self.groups, *self.kernel)}
        if self.has_bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs(self) -> int:
        """out_channels * prod(out) * (in_channels / groups) * prod(kernel_size)."""
        return int(np.prod(self.output_shape)) * (self.in_channels // self.groups) * int(np.prod(self.kernel))

    def geometry(self) -> list[AxisGeometry]:
        axes = zip(self.kernel, self.stride, self.padding, self.dilation)
        return [AxisGeometry(k, s, p[0], d) for k, s, p, d in axes]

    def describe(self) -> dict[str, Any]:
        return {"out_channels": self.out_channels, "kernel_size": self.kernel, "stride": self.stride,
                "padding": self.padding, "dilation": self.dilation, "groups": self.groups, "bias": self.has_bias}

    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        x = inputs[0]
        w, b = self._params(x, params)
        return conv_forward(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        dx, dw, db = conv_backward(dout, cache)
        return [dx], self._grads(dw, db)


@register_op("conv1d")
class Conv1d(ConvNd):
    """``conv1d``: (C, L) -> (out_channels, L_out)."""

    spatial = 1


@register_op("conv2d")
class Conv2d(ConvNd):
    """``conv2d``: (C, H, W) -> (out_channels, H_out, W_out)."""

    spatial = 2


@register_op("conv3d")
class Conv3d(ConvNd):
    """``conv3d``: (C, D, H, W) -> (out_channels, D_out, H_out, W_out)."""

    spatial = 3


class ConvTransposeNd(_ConvBase):
    """Transposed convolution over ``spatial`` axes (subclasses set it); weight ``(C, out_channels / groups, *k)``.

    out = (in - 1) * stride - pad_before - pad_after + dilation * (kernel_size - 1) + output_padding + 1 per axis
    """

    title = "Transposed convolution"
    defaults: ClassVar[dict[str, Any]] = {**ConvNd.defaults, "output_padding": 0}

    def build(self) -> Shape:
        self._common()
        n = self.spatial
        if isinstance(self.attrs["padding"], str) and self.attrs["padding"] != "valid":
            raise self.fail(f"padding '{self.attrs['padding']}' is not defined for a transposed convolution "
                            "(as in PyTorch): give an int, one int per axis or [before, after] pairs")
        self.padding = normalize_padding(self.attrs["padding"], n, self.kernel, self.stride, self.dilation,
                                         self.in_sizes, self.node_id)
        self.output_padding = per_axis(self.attrs["output_padding"], n, "output_padding", self.node_id, minimum=0)
        for axis, op_, s, d in zip(AXIS_NAMES[n], self.output_padding, self.stride, self.dilation):
            if op_ >= s and op_ >= d:
                raise self.fail(f"output_padding {op_} along the {axis} must be smaller than the stride {s} or the "
                                f"dilation {d} (it only picks one of the output sizes a strided convolution maps "
                                "onto the same input size)")
        self.out_sizes = tuple(transposed_output_length(*a) for a in zip(
            self.in_sizes, self.kernel, self.stride, self.padding, self.dilation, self.output_padding))
        for axis, size, (b, a) in zip(AXIS_NAMES[n], self.out_sizes, self.padding):
            if size < 1:
                raise self.fail(f"padding {b} + {a} removes the whole output along the {axis} (it would be {size} "
                                "long): use less padding")
        return (self.out_channels, *self.out_sizes)

    def param_shapes(self) -> dict[str, Shape]:
        shapes = {"weight": (self.in_channels, self.out_channels // self.groups, *self.kernel)}
        if self.has_bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs(self) -> int:
        """Every input element meets (out_channels / groups) * prod(kernel_size) weights."""
        per_input = (self.out_channels // self.groups) * int(np.prod(self.kernel))
        return int(np.prod(self.input_shapes[0])) * per_input

    def geometry(self) -> list[AxisGeometry]:
        return [AxisGeometry(k, s, p[0], d, transposed=True)
                for k, s, p, d in zip(self.kernel, self.stride, self.padding, self.dilation)]

    def describe(self) -> dict[str, Any]:
        return {"out_channels": self.out_channels, "kernel_size": self.kernel, "stride": self.stride,
                "padding": self.padding, "output_padding": self.output_padding, "dilation": self.dilation,
                "groups": self.groups, "bias": self.has_bias}

    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        x = inputs[0]
        w, b = self._params(x, params)
        return conv_transpose_forward(x, w, b, self.stride, self.padding, self.output_padding, self.dilation,
                                      self.groups)

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        dx, dw, db = conv_transpose_backward(dout, cache)
        return [dx], self._grads(dw, db)


@register_op("conv_transpose1d")
class ConvTranspose1d(ConvTransposeNd):
    """``conv_transpose1d``: (C, L) -> (out_channels, L_out); weight ``(C, out_channels / groups, k)``."""

    spatial = 1


@register_op("conv_transpose2d")
class ConvTranspose2d(ConvTransposeNd):
    """``conv_transpose2d``: (C, H, W) -> (out_channels, H_out, W_out); weight ``(C, out_channels / groups, kh, kw)``.

    H_out = (H - 1) * stride - pad_before - pad_after + dilation * (kernel_size - 1) + output_padding + 1
    """

    spatial = 2


@register_op("conv_transpose3d")
class ConvTranspose3d(ConvTransposeNd):
    """``conv_transpose3d``: (C, D, H, W) -> (out_channels, D_out, H_out, W_out)."""

    spatial = 3
