"""Arithmetic graph ops: sub and div, pow and sqrt, expand and matmul (what exporters write around CNN blocks).

``sub`` and ``div`` combine two inputs exactly as ``add`` and ``mul`` do (``engine.ops.merge``): NumPy
broadcasting on the per-sample shapes, aligned at the last axis, and an input with batch 1 (a
``constant``) shared by every sample; gradients are summed back to each input's shape.

``pow`` and ``sqrt`` are elementwise (IDENTITY). ``expand`` broadcasts one input to a shape, as
``torch.Tensor.expand`` and ONNX's Expand. ``matmul`` is ``torch.matmul`` on the per-sample shapes,
with the batch axis matched as in add/mul, so a per-position linear layer on a channels-last tensor,
(H, W, C) @ (C, M), and attention's Q @ K^T are one node each.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from engine.layers import arith
from engine.ops.activation import ElementwiseOp
from engine.ops.base import GLOBAL, IDENTITY, REQUIRED, ForwardContext, Op, Shape, register_op
from engine.ops.merge import _BroadcastOp, _shape_text


@register_op("sub")
class SubOp(_BroadcastOp):
    """x1 - x2, broadcasting as ``add`` (either input may be a batch-1 constant). Geometry: IDENTITY."""

    title = "Subtract"
    arity = 2
    verb = "subtract"
    layer_forward = staticmethod(arith.sub_forward)
    layer_backward = staticmethod(arith.sub_backward)


@register_op("div")
class DivOp(_BroadcastOp):
    """x1 / x2, broadcasting as ``mul`` (either input may be a batch-1 constant). Geometry: IDENTITY.

    Division by zero gives ±inf (0 / 0 nan), as in PyTorch.
    """

    title = "Divide"
    arity = 2
    verb = "divide"
    layer_forward = staticmethod(arith.div_forward)
    layer_backward = staticmethod(arith.div_backward)


@register_op("pow")
class PowOp(ElementwiseOp):
    """x ** exponent, as ``torch.pow(x, exponent)`` with a number ``exponent`` (ONNX's Pow with a constant).

    At x = 0 and for negative x the values and gradients are PyTorch's (inf, nan): see ``engine.layers.arith``.
    """

    title = "Power"
    defaults: ClassVar[dict[str, Any]] = {"exponent": REQUIRED}
    layer_forward = staticmethod(arith.pow_forward)
    layer_backward = staticmethod(arith.pow_backward)

    def build(self) -> Shape:
        shape = super().build()
        if not math.isfinite(self.attrs["exponent"]):
            raise self.fail(f"exponent must be a finite number, got {self.attrs['exponent']!r}")
        return shape


@register_op("sqrt")
class SqrtOp(ElementwiseOp):
    """sqrt(x), as ``torch.sqrt``: nan for x < 0; the gradient at 0 is inf."""

    title = "Square root"
    layer_forward = staticmethod(arith.sqrt_forward)
    layer_backward = staticmethod(arith.sqrt_backward)
    layer_inplace = staticmethod(arith.sqrt_inplace)
    can_overwrite = True


@register_op("expand")
class ExpandOp(Op):
    """Broadcast the input to ``shape`` (per sample, no batch axis), as ``x.expand(N, *shape)`` and ONNX's Expand.

    Aligned at the last axis, each output size is: the input's where ``shape`` says -1 or 1 (ONNX's
    bidirectional broadcasting: ``shape`` may also be shorter than the input); ``shape``'s where the input
    has 1 or has no such axis (new leading axes); the common size where both agree. Any other pair is an
    error. So (C, 1, 1) with ``shape=[-1, 7, 7]`` or ``[C, 7, 7]`` or ``[1, 7, 7]`` gives (C, 7, 7).

    The output is a read-only view of the input (``np.broadcast_to``): nothing is copied, however large
    the expansion, and the graph's in-place ops (relu in a lean pass) never write into a read-only array,
    so no copy is needed. The gradient is summed over the broadcast axes.

    Geometry: GLOBAL when an axis after the input's first (a position, in the engine's (C, *S) layout) is
    stretched from 1: one value is then copied across positions. Otherwise (the same positions; the
    channel axis stretched, or new leading axes) IDENTITY.
    """

    title = "Expand"
    defaults: ClassVar[dict[str, Any]] = {"shape": REQUIRED}

    def build(self) -> Shape:
        in_shape = self.input_shapes[0]
        shape = self.attrs["shape"]
        if not isinstance(shape, list | tuple) or not all(
                isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape):
            raise self.fail(f"shape must be a list of positive ints without the batch axis, -1 keeping the input's "
                            f"size (e.g. [-1, 7, 7] for an input [{', '.join(map(str, in_shape))}]); got {shape!r}")
        rank = max(len(in_shape), len(shape))
        sizes = [None] * (rank - len(in_shape)) + list(in_shape)
        targets = [None] * (rank - len(shape)) + list(shape)
        out = []
        for axis, (size, target) in enumerate(zip(sizes, targets)):
            if target is None or target == -1:
                if size is None:
                    raise self.fail(f"cannot expand {_shape_text(in_shape)} to {_shape_text(shape)}: -1 on axis "
                                    f"{axis} keeps the input's size, but the input has no such axis (it is a new "
                                    "leading axis): give its size")
                out.append(size)
            elif size is None or size == 1 or size == target:
                out.append(target)
            elif target == 1:
                out.append(size)  # ONNX's bidirectional broadcasting
            else:
                raise self.fail(f"cannot expand {_shape_text(in_shape)} to {_shape_text(shape)}: axis {axis} has "
                                f"size {size}, and only a size of 1 can be stretched (to {target}). Give {size}, "
                                "1 or -1 there to keep it")
        self.lead = rank - len(in_shape)  # new leading axes
        return tuple(out)

    def geometry(self):
        in_shape, out = self.input_shapes[0], self.output_shape
        stretched = any(n == 1 and out[self.lead + i] > 1 for i, n in enumerate(in_shape) if i > 0)
        return GLOBAL if stretched else IDENTITY

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        x = inputs[0]
        aligned = x.reshape(x.shape[0], *(1,) * self.lead, *x.shape[1:])
        out, cache = arith.expand_forward(aligned, (x.shape[0], *self.output_shape))
        return out, (cache, x.shape)

    def backward(self, dout: np.ndarray, cache: Any):
        inner, shape = cache
        return [arith.expand_backward(dout, inner).reshape(shape)], {}


@register_op("matmul")
class MatmulOp(Op):
    """``torch.matmul(x1, x2)`` on the per-sample shapes; the batch axis is matched as in ``add`` (equal, or 1).

    Shape: (*A, P, K) and (*B, K, M) -> (*broadcast(A, B), P, M). A one-axis operand is promoted as in
    ``torch.matmul``: (K,) @ (*B, K, M) -> (*B, M); (*A, P, K) @ (K,) -> (*A, P); (K,) @ (K,) -> (). So
    x (H, W, C) @ a constant (C, M) is a per-position linear layer (ConvNeXt's, channels-last), and
    (T, D) @ (D, T) is attention's Q @ K^T. A constant (batch 1) of per-sample shape (K, M) multiplies every
    sample's rows in one BLAS call.

    MACs: prod(out) * K. Geometry: GLOBAL. The product contracts the first input's last axis, which in the
    engine's (C, *S) layout is a position axis, so every output unit mixes positions. For a channels-last
    tensor (H, W, C) the positions do stay where they were, but ``geometry()`` reads the last axes of a shape
    as positions and would pair them wrongly; GLOBAL is the claim that holds in every layout.
    ``aligned_axes()`` says which axes keep their index, so the receptive-field analysis, which knows where a
    transpose moved the positions, keeps the field of each position when only channels are contracted.
    """

    title = "Matrix product"
    arity = 2

    def build(self) -> Shape:
        a, b = self.input_shapes
        if not a or not b:
            raise self.fail(f"matmul multiplies tensors with at least one axis, got {_shape_text(a)} and "
                            f"{_shape_text(b)}: for a scalar factor use 'mul'")
        a2 = a if len(a) >= 2 else (1, *a)  # a vector is a one-row matrix ...
        b2 = b if len(b) >= 2 else (*b, 1)  # ... or a one-column matrix
        k = a2[-1]
        if b2[-2] != k:
            which = "second-to-last axis" if len(b) >= 2 else "length"
            hint = ""
            if len(b) >= 2 and b[-1] == k:
                hint = (f". If the second is a weight stored (out, in) as nn.Linear stores it, transpose it to "
                        f"{_shape_text((*b[:-2], b[-1], b[-2]))}")
            raise self.fail(f"cannot multiply {_shape_text(a)} by {_shape_text(b)}: the last axis of the first "
                            f"({k}) must equal the {which} of the second ({b2[-2]}){hint}")
        try:
            lead = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
        except ValueError:
            raise self.fail(f"cannot multiply {_shape_text(a)} by {_shape_text(b)}: the axes before the last two, "
                            f"{_shape_text(a2[:-2])} and {_shape_text(b2[:-2])}, must broadcast (equal or 1, "
                            "counted from the last)") from None
        rank = len(lead) + 2
        self.k = k
        self.a_full = (1,) * (rank - len(a2)) + a2  # per-sample shapes as np.matmul stacks them
        self.b_full = (1,) * (rank - len(b2)) + b2
        self.out_full = (*lead, a2[-2], b2[-1])
        rows = (a2[-2],) if len(a) >= 2 else ()  # a promoted vector's row and column axes are dropped again
        columns = (b2[-1],) if len(b) >= 2 else ()
        return (*lead, *rows, *columns)

    def macs(self) -> int:
        return math.prod(self.output_shape) * self.k

    def geometry(self):
        return GLOBAL

    def aligned_axes(self) -> list[dict[int, int]]:
        """The first input is aligned on its rows P and the second on its columns M; both on the leading axes
        where their size is the output's. The contracted axis K of each is read whole: (H, W, C) @ (C, M) keeps
        H and W of the first input. A promoted vector (one axis, contracted) is aligned on none."""
        a, b = self.input_shapes
        lead = self.out_full[:-2]
        rows = len(a) >= 2
        # per input: its shape, and its own output axis (rows of the first, columns of the second) and input axis
        own = [(a, len(lead), len(a) - 2), (b, len(lead) + rows, len(b) - 1)]
        found = []
        for shape, out_axis, in_axis in own:
            if len(shape) < 2:
                found.append({})
                continue
            offset = len(lead) - (len(shape) - 2)
            mapping = {offset + i: i for i, size in enumerate(shape[:-2]) if size == lead[offset + i]}
            found.append({**mapping, out_axis: in_axis})
        return found

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        x1, x2 = inputs
        a = x1.reshape(x1.shape[0], *self.a_full)
        b = x2.reshape(x2.shape[0], *self.b_full)
        out, cache = arith.matmul_forward(a, b)
        return out.reshape(out.shape[0], *self.output_shape), (cache, x1.shape, x2.shape)

    def backward(self, dout: np.ndarray, cache: Any):
        inner, shape1, shape2 = cache
        da, db = arith.matmul_backward(dout.reshape(dout.shape[0], *self.out_full), inner)
        return [da.reshape(shape1), db.reshape(shape2)], {}
