"""softmax (over classes) / spatial_softmax (over positions) units: the logits, their exps (shifted by the max), the
sum of the exps, the probabilities. Also the softmax of a node's class scores (the prediction's probabilities)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.explain.base import Explainer, Unit
from engine.graph import Node

MAX_CLASSES = 10  # classes (or positions) listed for a softmax unit, besides the unit's own


def refuse_softmax(node: Node) -> str | None:
    """Softmax over dim 1 (classes) is explained; over another dim it is not."""
    op = node.op
    if op.op == "softmax" and getattr(op, "axis", 1) != 1:
        return f"softmax over dim {op.axis} is not explained; softmax over dim 1 (classes) is"
    return None


def explain_softmax(unit: Unit) -> dict[str, Any]:
    """softmax: x (K,) or (C, *spatial) over dim 1; spatial_softmax: x (C, H, W), each channel over its positions.

    ``entries`` lists the largest logits and the unit's own, each with ``exp = e^(logit - max)`` and its probability.
    """
    x, index = unit.x, unit.index
    if unit.op.op == "spatial_softmax":
        logits = x[index[0]].astype(np.float64).ravel()
        own = int(np.ravel_multi_index(index[1:], x.shape[1:]))
        over = "position"
    else:
        logits = x[(slice(None), *index[1:])].astype(np.float64)
        own = index[0]
        over = "class"
    return softmax_numbers(logits, own, over)


def softmax_numbers(logits: np.ndarray, own: int, over: str) -> dict[str, Any]:
    """logits: (K,) float64. The exps (shifted by the max), their sum and the probabilities; ``own`` always listed."""
    top = float(logits.max())
    exps = np.exp(logits - top)
    total = math.fsum(exps.tolist())
    shown = [int(i) for i in np.argsort(-logits, kind="stable")[:MAX_CLASSES]]
    if own not in shown:
        shown.append(own)
    return {"over": over, "count": len(logits), "unit": own, "max": top, "exp_sum": total,
            "entries": [{"index": i, "logit": float(logits[i]), "exp": float(exps[i]),
                         "probability": float(exps[i] / total)} for i in shown],
            "omitted": {"count": len(logits) - len(shown),
                        "note": (f"the {len(shown)} largest logits (and the unit's own) of {len(logits)} are listed; "
                                 "the sum of the exps covers all of them") if len(logits) > len(shown) else ""},
            "exp": float(exps[own]), "result": float(exps[own] / total)}


EXPLAINERS = {"softmax": Explainer("softmax", explain_softmax, refuse_softmax),
              "spatial_softmax": Explainer("softmax", explain_softmax)}
