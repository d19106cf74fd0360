"""max_pool2d / avg_pool2d units: the window's values, the running max (or sum) cell by cell, then the argmax or the
divisor, and the result."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.explain.base import Explainer, Unit, geometry, grid, window


def explain_pool2d(unit: Unit) -> dict[str, Any]:
    """x: (C, H, W). Max: the largest value inside the input; average: the window's sum / the divisor."""
    op, x, index = unit.op, unit.x, unit.index
    where = geometry(op, index)
    H, W = x.shape[1:]
    inside = [[not (ro or co) for co in where["col_in_padding"]] for ro in where["row_in_padding"]]
    values = window(x[index[0]], where["rows"], where["cols"])
    is_max = op.op.startswith("max")
    # the running max (or sum) over the window's cells read row by row; None until a cell inside the input is read
    running, so_far = [], None
    for row, oks in zip(values, inside):
        running.append([])
        for v, ok in zip(row, oks):
            if ok:
                so_far = float(v) if so_far is None else (max(so_far, float(v)) if is_max else so_far + float(v))
            running[-1].append(so_far)
    out: dict[str, Any] = {**where, "channel": index[0], "running": running}
    if is_max:
        masked = np.where(np.array(inside), values, -np.inf)
        i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)  # the first maximum, as the engine
        out.update(values=[[float(v) if ok else None for v, ok in zip(row, oks)] for row, oks in zip(values, inside)],
                   argmax=[int(i), int(j)], result=float(masked[i, j]))
        return out
    # the divisor: the window clipped to the padded input (count_include_pad) or to the input itself
    (pt, pb), (pl, pr) = where["padding"]
    counts = []
    for positions, size, before, after in ((where["rows"], H, pt, pb), (where["cols"], W, pl, pr)):
        low, high = (-before, size + after) if op.count_include_pad else (0, size)
        counts.append(sum(low <= q < high for q in positions))
    total = float(values.sum())
    divisor = counts[0] * counts[1]
    out.update(values=grid(values), sum=total, divisor=divisor, count_include_pad=op.count_include_pad,
               result=total / divisor)
    return out


EXPLAINERS = {"max_pool2d": Explainer("pool", explain_pool2d), "avg_pool2d": Explainer("pool", explain_pool2d)}
