"""conv2d units (groups, depthwise, stride, padding pairs, dilation): per input channel of the unit's group, the
window's input rows and columns (positions in the padding flagged), the input values there (0 in the padding), the
kernel slice, the element-wise products and their sum; then the total over channels, the bias and the result."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.explain.base import Explainer, Unit, bounded_channels, geometry, grid, window


def explain_conv2d(unit: Unit) -> dict[str, Any]:
    """x: (C, H, W); weight: (K, C / groups, kh, kw). One unit = Σ over the group's channels of window · kernel."""
    op, x, p, index = unit.op, unit.x, unit.node_params(), unit.index
    k = index[0]
    where = geometry(op, index)
    groups = op.groups
    per_group = op.in_channels // groups
    group = k // (op.out_channels // groups)
    weight = p["weight"][k].astype(np.float64)  # (C / groups, kh, kw)
    channels = []
    for ci in range(per_group):
        channel = group * per_group + ci
        values = window(x[channel], where["rows"], where["cols"])
        products = values * weight[ci]
        channels.append({"channel": channel, "values": values, "kernel": weight[ci], "products": products,
                         "sum": float(products.sum())})
    total = math.fsum(c["sum"] for c in channels)
    listed, running, omitted = bounded_channels(channels)
    bias = float(p["bias"][k]) if "bias" in p else 0.0
    return {**where, "groups": groups, "group": group, "channels_in_group": per_group,
            "channels": [{**c, "values": grid(c["values"]), "kernel": grid(c["kernel"]),
                          "products": grid(c["products"]), "running": r} for c, r in zip(listed, running)],
            "omitted": omitted, "total": total, "bias": bias, "result": total + bias}


EXPLAINERS = {"conv2d": Explainer("conv", explain_conv2d)}
