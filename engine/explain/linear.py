"""linear units: the products input × weight (the largest by magnitude when there are many, the rest summed), the
bias and the result."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.explain.base import Explainer, Unit

MAX_TERMS = 16  # products listed for a fully connected unit (the rest aggregated)


def explain_linear(unit: Unit) -> dict[str, Any]:
    """x: (F,); weight: (out_features, F). One unit = Σ_i x[i] · weight[k, i] + bias[k]."""
    x, p = unit.x, unit.node_params()
    k = unit.index[0]
    xs = x.astype(np.float64)
    ws = p["weight"][k].astype(np.float64)
    products = xs * ws
    order = np.argsort(-np.abs(products), kind="stable")[:MAX_TERMS]
    listed = set(int(i) for i in order)
    rest = [i for i in range(len(products)) if i not in listed]
    total = math.fsum(products.tolist())
    bias = float(p["bias"][k]) if "bias" in p else 0.0
    return {"in_features": len(xs),
            "terms": [{"index": int(i), "input": float(xs[i]), "weight": float(ws[i]), "product": float(products[i])}
                      for i in order],
            "omitted": {"count": len(rest), "sum": math.fsum(products[rest].tolist()),
                        "note": (f"the {len(listed)} largest |products| of the {len(xs)} are listed; the other "
                                 f"{len(rest)} are added up as one number") if rest else ""},
            "total": total, "bias": bias, "result": total + bias}


EXPLAINERS = {"linear": Explainer("linear", explain_linear)}
