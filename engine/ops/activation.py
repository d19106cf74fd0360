"""Activations as graph ops: elementwise ones, and softmax / log_softmax over one axis.

The output has the input's shape. Elementwise ops map positions one to one (IDENTITY).

MACs are 0: as in the MAC counts papers quote (MobileNet, EfficientNet), only convolutions,
linear layers and attention pooling count multiply-accumulates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from engine.layers import activation as act
from engine.layers.softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward
from engine.ops.base import GLOBAL, IDENTITY, ForwardContext, MainView, Op, Shape, register_op
from engine.ops.dims import batch_dim


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class ElementwiseOp(Op):
    """One input, same shape out; ``layer_forward(x, **attrs)`` and ``layer_backward(dout, cache)`` do the maths."""

    layer_forward: ClassVar[Callable[..., tuple[np.ndarray, Any]]]
    layer_backward: ClassVar[Callable[[np.ndarray, Any], np.ndarray]]
    #: ``layer_forward`` without a cache, written into its input (None: the op has no such form)
    layer_inplace: ClassVar[Callable[[np.ndarray], np.ndarray] | None] = None

    def build(self) -> Shape:
        for name, value in self.attrs.items():
            if not (_is_number(value) or (value is None and self.defaults[name] is None)):
                raise self.fail(f"{name} must be a number, got {value!r}")
        return self.input_shapes[0]

    def aligned_axes(self) -> list[dict[int, int]]:
        """Every axis: each value maps to its own."""
        return [{axis: axis for axis in range(len(self.input_shapes[0]))}]

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        inplace = type(self).layer_inplace
        if ctx.overwrite and inplace is not None:
            return inplace(inputs[0]), None
        return type(self).layer_forward(inputs[0], **self.attrs)

    def backward(self, dout: np.ndarray, cache: Any):
        return [type(self).layer_backward(dout, cache)], {}


def _elementwise(name: str, title: str, forward, backward, defaults: dict[str, Any] | None = None, doc: str = "",
                 inplace: Callable[[np.ndarray], np.ndarray] | None = None,
                 main_view: MainView | None = "activation") -> type[Op]:
    cls = type(f"{name.title().replace('_', '')}Op", (ElementwiseOp,), {
        "layer_forward": staticmethod(forward),
        "layer_backward": staticmethod(backward),
        "layer_inplace": None if inplace is None else staticmethod(inplace),
        "can_overwrite": inplace is not None,
        "defaults": dict(defaults or {}),
        "title": title,
        "main_view": main_view,
        "__doc__": doc,
    })
    return register_op(name)(cls)


ReluOp = _elementwise("relu", "ReLU", act.relu_forward, act.relu_backward, doc="max(x, 0).",
                      inplace=act.relu_inplace)
Relu6Op = _elementwise("relu6", "ReLU6", act.relu6_forward, act.relu6_backward, doc="min(max(x, 0), 6).",
                       inplace=act.relu6_inplace)
LeakyReluOp = _elementwise("leaky_relu", "Leaky ReLU", act.leaky_relu_forward, act.leaky_relu_backward,
                           {"negative_slope": 0.01}, "x if x > 0 else negative_slope * x.")
SigmoidOp = _elementwise("sigmoid", "Sigmoid", act.sigmoid_forward, act.sigmoid_backward, doc="1 / (1 + exp(-x)).")
TanhOp = _elementwise("tanh", "Tanh", act.tanh_forward, act.tanh_backward, doc="tanh(x).")
SiluOp = _elementwise("silu", "SiLU", act.silu_forward, act.silu_backward, doc="x * sigmoid(x).")
HardsigmoidOp = _elementwise("hardsigmoid", "Hard sigmoid", act.hardsigmoid_forward, act.hardsigmoid_backward,
                             {"alpha": 1 / 6, "beta": 0.5}, "clip(alpha * x + beta, 0, 1).")
HardswishOp = _elementwise("hardswish", "Hard swish", act.hardswish_forward, act.hardswish_backward,
                           doc="x * clip(x / 6 + 1/2, 0, 1).")
IdentityOp = _elementwise("identity", "Identity", act.identity_forward, act.identity_backward, doc="x.",
                          main_view="pass_through")


@register_op("clip")
class ClipOp(ElementwiseOp):
    """min(max(x, min), max); ``null`` leaves a side open."""

    defaults: ClassVar[dict[str, Any]] = {"min": None, "max": None}
    title = "Clip"
    main_view = "activation"
    layer_forward = staticmethod(act.clip_forward)
    layer_backward = staticmethod(act.clip_backward)

    def build(self) -> Shape:
        shape = super().build()
        lo, hi = self.attrs["min"], self.attrs["max"]
        if lo is not None and hi is not None and lo > hi:
            raise self.fail(f"clip's min ({lo}) is greater than its max ({hi}): swap them")
        return shape


@register_op("gelu")
class GeluOp(ElementwiseOp):
    """x * Phi(x), the normal CDF (``approximate="none"``), or its tanh approximation (``"tanh"``), as nn.GELU."""

    defaults: ClassVar[dict[str, Any]] = {"approximate": "none"}
    title = "GELU"  # main_view None: the main layers view has always given GELU a column of its own
    layer_forward = staticmethod(act.gelu_forward)
    layer_backward = staticmethod(act.gelu_backward)

    def build(self) -> Shape:  # a string attribute: ElementwiseOp.build checks numbers only
        if self.attrs["approximate"] not in act.GELU_APPROXIMATIONS:
            choices = " or ".join(f'"{a}"' for a in act.GELU_APPROXIMATIONS)
            raise self.fail(f"approximate must be {choices} (PyTorch's nn.GELU), got {self.attrs['approximate']!r}")
        return self.input_shapes[0]


class _SoftmaxBase(Op):
    """Softmax-like op over one axis ``dim`` (counting the batch axis; 1 = classes or channels)."""

    defaults: ClassVar[dict[str, Any]] = {"dim": 1}
    layer_forward: ClassVar[Callable[..., tuple[np.ndarray, Any]]]
    layer_backward: ClassVar[Callable[[np.ndarray, Any], np.ndarray]]
    #: ``layer_forward`` without a cache, written into its input (None: the op has no such form)
    layer_inplace: ClassVar[Callable[[np.ndarray], np.ndarray] | None] = None

    def build(self) -> Shape:
        self.axis = batch_dim(self.attrs["dim"], self.input_shapes[0], "dim", self.node_id)
        return self.input_shapes[0]

    def geometry(self):
        """Over channels each position keeps to itself (IDENTITY); over a spatial axis every position mixes."""
        return IDENTITY if self.axis == 1 else GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return type(self).layer_forward(inputs[0], dim=self.axis)

    def backward(self, dout: np.ndarray, cache: Any):
        return [type(self).layer_backward(dout, cache)], {}


@register_op("softmax")
class SoftmaxOp(_SoftmaxBase):
    """exp(x) / sum(exp(x)) along ``dim``."""

    title = "Softmax"
    layer_forward = staticmethod(softmax_forward)
    layer_backward = staticmethod(softmax_backward)


@register_op("log_softmax")
class LogSoftmaxOp(_SoftmaxBase):
    """x - log(sum(exp(x))) along ``dim``."""

    title = "Log softmax"
    layer_forward = staticmethod(log_softmax_forward)
    layer_backward = staticmethod(log_softmax_backward)
