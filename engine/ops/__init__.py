"""Every op a graph spec can name. Importing this package registers them all in ``OP_REGISTRY``.

One module per family; each op class wraps the forward/backward functions of ``engine.layers``
and adds what a graph needs: attribute checks, output shape, parameters, cost and geometry.
"""

from engine.ops import (  # noqa: F401
    activation,
    arith,
    attention,
    conv,
    dropout,
    layer_norm,
    linear,
    merge,
    normalization,
    pad,
    pool,
    recurrent,
    reduce,
    reshape,
    slice,
    transpose,
    upsample,
)
from engine.ops.base import OP_REGISTRY, AxisGeometry, ForwardContext, Op, register_op

__all__ = ["OP_REGISTRY", "AxisGeometry", "ForwardContext", "Op", "register_op"]
