"""add / mul units: each input's value at the unit's index, added or multiplied."""

from __future__ import annotations

import math
from typing import Any

from engine.explain.base import Explainer, Unit


def explain_merge(unit: Unit) -> dict[str, Any]:
    """add / mul: the inputs' values at the same index, added or multiplied."""
    xs = unit.inputs()
    values = [float(x[unit.index]) for _, x in xs]
    return {"operands": [{"node": name, "value": v} for (name, _), v in zip(xs, values)],
            "result": math.fsum(values) if unit.op.op == "add" else math.prod(values)}


EXPLAINERS = {"add": Explainer("merge", explain_merge), "mul": Explainer("merge", explain_merge)}
