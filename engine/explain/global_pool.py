"""global_avg_pool units (the map's sum and its number of positions) and attention_pool units (the attention
weights, as a small map, and Σ weight × feature)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.explain.base import Explainer, Unit, grid

MAX_GRID = 32 * 32  # attention weights listed for attention pooling (larger maps: not listed)


def explain_global_avg_pool(unit: Unit) -> dict[str, Any]:
    """x: (C, *spatial). The mean of channel ``index[0]``'s map: its sum / its number of positions."""
    channel_map = unit.x[unit.index[0]].astype(np.float64)
    total = math.fsum(channel_map.ravel().tolist())
    return {"channel": unit.index[0], "spatial_shape": list(channel_map.shape), "sum": total,
            "divisor": channel_map.size, "result": total / channel_map.size}


def explain_attention_pool(unit: Unit) -> dict[str, Any]:
    """features (C, *spatial), weights (1, *spatial): Σ over positions of weight · feature of channel ``index[0]``."""
    (_, features), (_, weights) = unit.inputs()[:2]
    features, weights = features[unit.index[0]].astype(np.float64), weights[0].astype(np.float64)
    products = (features * weights).ravel()
    out: dict[str, Any] = {"channel": unit.index[0], "spatial_shape": list(features.shape),
                           "result": math.fsum(products.tolist())}
    if weights.ndim == 2 and weights.size <= MAX_GRID:
        out["weights"] = grid(weights)
    else:
        out["omitted"] = {"count": weights.size, "note": f"the {weights.size} attention weights are not listed"}
    return out


EXPLAINERS = {"global_avg_pool": Explainer("global_avg_pool", explain_global_avg_pool),
              "attention_pool": Explainer("attention_pool", explain_attention_pool)}
