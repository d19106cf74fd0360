"""Graph op ``transpose``: reorder the sample's axes (a channel shuffle's (G, C/G, H, W) -> (C/G, G, H, W)).

Shape: ``S -> tuple(S[p] for p in perm)``, where ``perm`` is 0-based over the sample's axes (no batch axis).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.layers.transpose import transpose_backward, transpose_forward
from engine.ops.base import IDENTITY, REQUIRED, AxisGeometry, ForwardContext, Op, Shape, register_op


@register_op("transpose")
class TransposeOp(Op):
    """Output axis ``i`` is input axis ``perm[i]``; the batch axis stays first and is not named in ``perm``.

    ``perm`` counts the sample's axes from 0, as the spec's shapes do (no batch axis): on (G, C/G, H, W),
    ``perm=[1, 0, 2, 3]`` gives (C/G, G, H, W). PyTorch's ``x.permute(0, 2, 1, 3, 4)`` and ONNX's Transpose
    ``perm=[0, 2, 1, 3, 4]`` include the batch axis: drop the leading 0 and subtract 1 from the rest.

    Geometry: IDENTITY for the identity permutation. Otherwise one position-keeping ``AxisGeometry(1, 1, 0)``
    for each trailing axis the permutation leaves in place: when those are the graph's spatial axes (a channel
    shuffle keeps H and W), receptive fields pass through unchanged; when the permutation moves a spatial axis,
    the count differs from the graph's spatial axes. The receptive-field analysis then follows the positions
    through ``aligned_axes()`` (ConvNeXt's (C, H, W) -> (H, W, C) and back), and marks the field undefined
    where it cannot, never guessed.
    """

    title = "Transpose"
    defaults: ClassVar[dict[str, Any]] = {"perm": REQUIRED}

    def build(self) -> Shape:
        shape = self.input_shapes[0]
        perm = self.attrs["perm"]
        rank = len(shape)
        example = list(range(rank))[::-1] if rank > 1 else [0]
        if (not isinstance(perm, list | tuple)
                or not all(isinstance(p, int) and not isinstance(p, bool) for p in perm)):
            raise self.fail(f"perm must be a list of ints, a reordering of the sample's axes 0..{rank - 1} "
                            f"(e.g. {example}); got {perm!r}")
        perm = [int(p) for p in perm]
        if sorted(perm) != list(range(rank)):
            hint = ""
            if len(perm) == rank + 1 and perm[0] == 0 and sorted(perm) == list(range(rank + 1)):
                hint = (f": it looks like PyTorch's or ONNX's perm, which counts the batch axis; here the batch axis "
                        f"is left out, so use {[p - 1 for p in perm[1:]]}")
            raise self.fail(f"perm {perm} is not a reordering of the sample's axes 0..{rank - 1} of an input of "
                            f"shape {list(shape)} (each axis exactly once, no batch axis){hint}")
        self.perm = tuple(perm)
        return tuple(shape[p] for p in self.perm)

    def describe(self) -> dict[str, Any]:
        return {"perm": self.perm}

    def geometry(self) -> list[AxisGeometry] | str:
        if self.perm == tuple(range(len(self.perm))):
            return IDENTITY
        kept = 0
        for i in reversed(range(len(self.perm))):
            if self.perm[i] != i:
                break
            kept += 1
        return [AxisGeometry(1, 1, 0)] * kept

    def aligned_axes(self) -> list[dict[int, int]]:
        """Output axis i is input axis perm[i], index for index."""
        return [dict(enumerate(self.perm))]

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return transpose_forward(inputs[0], self.perm)

    def backward(self, dout: np.ndarray, cache: Any):
        return [transpose_backward(dout, cache)], {}
