"""Batch normalisation as a graph op (PyTorch's ``nn.BatchNorm1d/2d/3d``, one op for all)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.layers.normalization import batch_norm_backward, batch_norm_forward
from engine.ops.base import ForwardContext, Op, Shape, register_op


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@register_op("batch_norm")
class BatchNormOp(Op):
    """Per-channel normalisation of (C,) or (C, *spatial) inputs; the output has the input's shape.

    Params: weight (C,) = 1 and bias (C,) = 0 when ``affine``; buffers running_mean (C,) = 0 and
    running_var (C,) = 1, which take no gradient and which training mode updates in place.
    ``num_features`` (optional, as PyTorch's constructor) is checked against C.
    MACs: 0 (a per-channel scale and shift, folded into the convolution before it at inference).
    """

    title = "Batch normalisation"
    main_view = "normalisation"
    defaults: ClassVar[dict[str, Any]] = {"eps": 1e-5, "momentum": 0.1, "affine": True, "num_features": None}
    buffer_names = ("running_mean", "running_var")

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        if not shape:
            raise self.fail("batch_norm needs a channel axis: its input must be (C,) or (C, *spatial), got a scalar")
        eps, momentum = self.attrs["eps"], self.attrs["momentum"]
        if not _is_number(eps) or eps <= 0:
            raise self.fail(f"eps must be a positive number (PyTorch's default is 1e-5), got {eps!r}")
        if not _is_number(momentum) or not 0 <= momentum <= 1:
            raise self.fail(f"momentum must be a number from 0 to 1 (PyTorch's default is 0.1), got {momentum!r}")
        if not isinstance(self.attrs["affine"], bool):
            raise self.fail(f"affine must be true or false, got {self.attrs['affine']!r}")
        expected = self.attrs["num_features"]
        if expected is not None and expected != shape[0]:
            raise self.fail(f"num_features is {expected} but the input has {shape[0]} channels "
                            f"(shape {list(shape)}): drop num_features or make it {shape[0]}")
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        c = (self.input_shapes[0][0],)
        shapes = {"weight": c, "bias": c} if self.attrs["affine"] else {}
        return {**shapes, "running_mean": c, "running_var": c}

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        c = self.input_shapes[0][0]
        ones, zeros = np.ones(c, dtype=np.float32), np.zeros(c, dtype=np.float32)
        params = {"weight": ones.copy(), "bias": zeros.copy()} if self.attrs["affine"] else {}
        return {**params, "running_mean": zeros.copy(), "running_var": ones.copy()}

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return batch_norm_forward(inputs[0], params.get("weight"), params.get("bias"), params["running_mean"],
                                  params["running_var"], training=ctx.training, momentum=self.attrs["momentum"],
                                  eps=self.attrs["eps"])

    def backward(self, dout: np.ndarray, cache: Any):
        dx, dweight, dbias = batch_norm_backward(dout, cache)
        dparams = {"weight": dweight, "bias": dbias} if self.attrs["affine"] else {}
        return [dx], dparams
