"""The fully connected layer as a graph op (PyTorch's ``nn.Linear``)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from engine.layers.linear import linear_backward, linear_forward
from engine.ops.base import GLOBAL, REQUIRED, ForwardContext, Op, Shape, register_op


@register_op("linear")
class LinearOp(Op):
    """``out = x @ weight.T + bias``. Shape: (F_in,) -> (out_features,) per sample.

    Params: weight (out_features, F_in), bias (out_features,) when ``bias`` is true.
    MACs: F_in * out_features. Geometry: GLOBAL (every output sees every input value).
    """

    title = "Fully connected"
    defaults: ClassVar[dict[str, Any]] = {"out_features": REQUIRED, "bias": True}

    def build(self) -> Shape:
        out_features = self.attrs["out_features"]
        if not isinstance(out_features, int) or isinstance(out_features, bool) or out_features < 1:
            raise self.fail(f"out_features must be a positive int, got {out_features!r}")
        if not isinstance(self.attrs["bias"], bool):
            raise self.fail(f"bias must be true or false, got {self.attrs['bias']!r}")
        shape = self.input_shapes[0]
        if len(shape) != 1:
            raise self.fail(f"linear takes one feature vector per sample, (F,), but its input has shape "
                            f"{list(shape)}: put a 'flatten' node before it (giving "
                            f"[{math.prod(shape)}])")
        return (out_features,)

    @property
    def in_features(self) -> int:
        return self.input_shapes[0][0]

    def param_shapes(self) -> dict[str, Shape]:
        shapes = {"weight": (self.attrs["out_features"], self.in_features)}
        if self.attrs["bias"]:
            shapes["bias"] = (self.attrs["out_features"],)
        return shapes

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's default: weight and bias uniform in ±1/sqrt(F_in)."""
        bound = 1 / math.sqrt(self.in_features)
        return {name: rng.uniform(-bound, bound, shape).astype(np.float32)
                for name, shape in self.param_shapes().items()}

    def macs(self) -> int:
        return self.in_features * self.attrs["out_features"]

    def geometry(self):
        return GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return linear_forward(inputs[0], params["weight"], params.get("bias"))

    def backward(self, dout: np.ndarray, cache: Any):
        dx, dweight, dbias = linear_backward(dout, cache)
        dparams = {"weight": dweight}
        if dbias is not None:
            dparams["bias"] = dbias
        return [dx], dparams
