"""A model whose numbers overflow float32 answers with a 422 that says where, not with NaN (null in JSON).

Inputs are bounded (app/services/tensors.py), but an uploaded model's finite weights can still be large
enough to overflow a few layers in; every JSON answer built from activations checks them here first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from app.errors import ApiError

HOW = ("its weights, or this input, are too large for float32 (±3.4e38): check the exported weights, or "
       "send the preprocessed input")


def overflow_error(model_id: str, where: str) -> ApiError:
    return ApiError(422, f"model '{model_id}' computes infinity or NaN {where}: {HOW}")


def check_finite(model_id: str, values: np.ndarray, where: str = "in its output") -> None:
    """422 unless every value is finite."""
    if not np.all(np.isfinite(values)):
        raise overflow_error(model_id, where)


def check_stats_finite(model_id: str, node_id: str, stats: Mapping[str, float]) -> None:
    """422 naming ``node_id`` when its min or max (NaN or infinite if any value is) is not finite."""
    if not (math.isfinite(stats["min"]) and math.isfinite(stats["max"])):
        raise overflow_error(model_id, f"from node '{node_id}' on")
