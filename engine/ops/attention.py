"""Attention pooling as graph ops: ``spatial_softmax`` makes the attention map, ``attention_pool`` applies it.

A typical head (the residual digit network's)::

    {"id": "att_score", "op": "conv2d", "inputs": ["features"], "out_channels": 1, "kernel_size": 1},
    {"id": "attention", "op": "spatial_softmax"},
    {"id": "pooled", "op": "attention_pool", "inputs": ["features", "attention"]}

The activation of ``attention`` is the learned attention map: one weight per position, summing to 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.layers.attention import (
    attention_pool_backward,
    attention_pool_forward,
    spatial_softmax_backward,
    spatial_softmax_forward,
)
from engine.ops.base import GLOBAL, ForwardContext, Op, Shape, register_op


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


@register_op("spatial_softmax")
class SpatialSoftmaxOp(Op):
    """Softmax of each channel over all its positions: (C, *spatial) -> same shape, each map summing to 1.

    Geometry: GLOBAL (every weight depends on every score, through the normalising sum).
    """

    title = "Attention weights"

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        if len(shape) < 2:
            raise self.fail(f"spatial_softmax takes score maps (C, H, W) (C = 1 for one attention map); "
                            f"got shape {_shape_text(shape)}, which has no spatial axes")
        return shape

    def geometry(self):
        return GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return spatial_softmax_forward(inputs[0])

    def backward(self, dout: np.ndarray, cache: Any):
        return [spatial_softmax_backward(dout, cache)], {}


@register_op("attention_pool")
class AttentionPoolOp(Op):
    """Weighted sum over positions: features (C, *spatial) and weights (1, *spatial) -> (C,).

    Inputs, in order: the features, then the attention weights (e.g. a ``spatial_softmax``).
    MACs: C * (number of positions). Geometry: GLOBAL.
    """

    title = "Attention pooling"
    arity = 2

    def build(self) -> Shape:
        features, weights = self.input_shapes
        if len(features) < 2:
            raise self.fail(f"attention_pool's first input must be feature maps (C, H, W); got {_shape_text(features)}")
        expected = (1, *features[1:])
        if weights != expected:
            raise self.fail(f"attention_pool's weights (second input) have shape {_shape_text(weights)}, but features "
                            f"{_shape_text(features)} need weights {_shape_text(expected)}: one map of the same size")
        return (features[0],)

    def macs(self) -> int:
        features = self.input_shapes[0]
        return features[0] * math.prod(features[1:])

    def geometry(self):
        return GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return attention_pool_forward(inputs[0], inputs[1])

    def backward(self, dout: np.ndarray, cache: Any):
        dfeatures, dweights = attention_pool_backward(dout, cache)
        return [dfeatures, dweights], {}
