"""Dropout as a graph op: inverted dropout in training mode, the identity in inference mode."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.layers.dropout import dropout_backward, dropout_forward
from engine.ops.base import ForwardContext, Op, Shape, register_op


@register_op("dropout")
class DropoutOp(Op):
    """Zero each value with probability ``p`` in training (survivors scaled by 1/(1-p)); same shape out.

    The mask is drawn from the forward pass's ``ctx.rng``, so a seeded pass is reproducible.
    """

    title = "Dropout"
    main_view = "pass_through"
    defaults: ClassVar[dict[str, Any]] = {"p": 0.5}

    def build(self) -> Shape:
        p = self.attrs["p"]
        if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p <= 1:
            raise self.fail(f"p is the probability of dropping a value and must be from 0 to 1, got {p!r}")
        return self.input_shapes[0]

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return dropout_forward(inputs[0], self.attrs["p"], ctx.training, ctx.rng)

    def backward(self, dout: np.ndarray, cache: Any):
        return [dropout_backward(dout, cache)], {}
