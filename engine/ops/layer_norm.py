"""Graph ops ``layer_norm`` (``torch.nn.LayerNorm``) and ``instance_norm`` (``torch.nn.InstanceNorm1d/2d/3d``).

Both normalise each sample with its own statistics, the same in training and inference (no buffers).
The output has the input's shape. MACs: 0, as for batch norm.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.layers.layer_norm import (
    instance_norm_backward,
    instance_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from engine.ops.base import GLOBAL, IDENTITY, REQUIRED, ForwardContext, Op, Shape, register_op


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_common(op: Op, flags: tuple[str, ...]) -> None:
    eps = op.attrs["eps"]
    if not _is_number(eps) or eps <= 0:
        raise op.fail(f"eps must be a positive number (PyTorch's default is 1e-5), got {eps!r}")
    for name in flags:
        if not isinstance(op.attrs[name], bool):
            raise op.fail(f"{name} must be true or false, got {op.attrs[name]!r}")


@register_op("layer_norm")
class LayerNormOp(Op):
    """Normalise each sample over its trailing axes ``normalized_shape`` (mean and biased variance).

    ``normalized_shape`` must equal the input's last axes (an int for one axis), as in PyTorch: on (H, W, C),
    ``[C]`` normalises each position's channels (ConvNeXt, transformers); on (C, H, W), ``[C, H, W]`` normalises
    the whole sample. Params: weight = 1 and bias = 0 of shape ``normalized_shape`` when ``elementwise_affine``
    (no bias when ``bias`` is false).

    Geometry: the statistics mix every value of the normalised axes, and those are the *last* axes, where the
    graph's spatial axes are. So IDENTITY only on a (C,) input (each sample's features, no positions) and
    GLOBAL otherwise. The op cannot tell a channels-last (H, W, C) from a (C, H, W); ``aligned_axes()`` names
    the axes it leaves alone (those before the normalised ones), so the receptive-field analysis, which knows
    where a transpose moved the positions, keeps the field of each position when only channels are normalised.
    """

    title = "Layer normalisation"
    defaults: ClassVar[dict[str, Any]] = {"normalized_shape": REQUIRED, "eps": 1e-5, "elementwise_affine": True,
                                          "bias": True}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        _check_common(self, ("elementwise_affine", "bias"))
        given = self.attrs["normalized_shape"]
        normalized = [given] if isinstance(given, int) and not isinstance(given, bool) else given
        options = " or ".join(str(list(shape[i:])) for i in reversed(range(len(shape)))) or "none (no axes)"
        if (not isinstance(normalized, list | tuple) or not normalized
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in normalized)):
            raise self.fail(f"normalized_shape must be an int or a non-empty list of ints, the input's last axes "
                            f"({options}); got {given!r}")
        k = len(normalized)
        if k > len(shape) or tuple(normalized) != shape[len(shape) - k:]:
            hint = ""
            if len(shape) > 1 and list(normalized) == [shape[0]]:
                hint = (f". To normalise the {shape[0]} channels at each position, transpose the input to "
                        f"channels-last first (perm {[*range(1, len(shape)), 0]}), as ConvNeXt does")
            raise self.fail(f"normalized_shape {list(normalized)} must equal the input's last axes: for an input "
                            f"of shape {list(shape)} use {options}{hint}")
        self.normalized_shape: Shape = tuple(normalized)
        return shape

    def describe(self) -> dict[str, Any]:
        return {**self.attrs, "normalized_shape": self.normalized_shape}

    def param_shapes(self) -> dict[str, Shape]:
        if not self.attrs["elementwise_affine"]:
            return {}
        shapes = {"weight": self.normalized_shape}
        return {**shapes, "bias": self.normalized_shape} if self.attrs["bias"] else shapes

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        fill = {"weight": 1.0, "bias": 0.0}
        return {name: np.full(shape, fill[name], dtype=np.float32) for name, shape in self.param_shapes().items()}

    def geometry(self) -> str:
        return IDENTITY if len(self.input_shapes[0]) == 1 else GLOBAL

    def aligned_axes(self) -> list[dict[int, int]]:
        """Every axis before the normalised ones: on a channels-last (H, W, C) over [C], H and W."""
        lead = len(self.input_shapes[0]) - len(self.normalized_shape)
        return [{axis: axis for axis in range(lead)}]

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return layer_norm_forward(inputs[0], len(self.normalized_shape), params.get("weight"), params.get("bias"),
                                  eps=self.attrs["eps"])

    def backward(self, dout: np.ndarray, cache: Any):
        dx, dweight, dbias = layer_norm_backward(dout, cache)
        return [dx], {name: grad for name, grad in (("weight", dweight), ("bias", dbias))
                      if name in self.param_shapes()}


@register_op("instance_norm")
class InstanceNormOp(Op):
    """Normalise each channel of each sample over its positions (mean and biased variance) of a (C, *S) input.

    As PyTorch's InstanceNorm with ``track_running_stats=False`` (its default) and ONNX's InstanceNormalization:
    no running statistics, the same in training and inference. Params: weight (C,) = 1 and bias (C,) = 0 when
    ``affine`` (PyTorch's default is false; ONNX always has them). ``num_features`` (optional) is checked
    against C. Geometry: GLOBAL, since every output value depends on its channel's whole map.
    """

    title = "Instance normalisation"
    defaults: ClassVar[dict[str, Any]] = {"eps": 1e-5, "affine": False, "num_features": None}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        _check_common(self, ("affine",))
        if len(shape) < 2:
            raise self.fail(f"instance_norm normalises each channel over its positions, so its input must be "
                            f"(C, *spatial) with at least one spatial axis; got shape {list(shape)}. For a vector "
                            "of features, layer_norm normalises them together")
        expected = self.attrs["num_features"]
        if expected is not None and expected != shape[0]:
            raise self.fail(f"num_features is {expected} but the input has {shape[0]} channels "
                            f"(shape {list(shape)}): drop num_features or make it {shape[0]}")
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        c = (self.input_shapes[0][0],)
        return {"weight": c, "bias": c} if self.attrs["affine"] else {}

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if not self.attrs["affine"]:
            return {}
        c = self.input_shapes[0][0]
        return {"weight": np.ones(c, dtype=np.float32), "bias": np.zeros(c, dtype=np.float32)}

    def geometry(self) -> str:
        return GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return instance_norm_forward(inputs[0], params.get("weight"), params.get("bias"), eps=self.attrs["eps"])

    def backward(self, dout: np.ndarray, cache: Any):
        dx, dweight, dbias = instance_norm_backward(dout, cache)
        return [dx], ({"weight": dweight, "bias": dbias} if self.attrs["affine"] else {})
