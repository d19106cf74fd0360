"""pad units (2D): the unit's input position per axis, whether it lies in the border, and the input position its
value comes from with the rule written out ("row −2 → 2 (mirror at 0)", "column 9 → 7 (clamped to 7)"), or the
constant; the input value and a small neighbourhood of the input map around it."""

from __future__ import annotations

from typing import Any

from engine.explain.base import Explainer, Unit, maps_only, minus, neighbourhood
from engine.layers.pad import source_index


def explain_pad(unit: Unit) -> dict[str, Any]:
    """x: (C, H, W). Output unit (c, i, j) sits on input position (i − top, j − left); inside the input it copies
    that value, in the border it takes the constant or, per axis, the mirrored (reflect) or clamped (replicate)
    position (``engine.layers.pad.source_index``)."""
    op, x, index = unit.op, unit.x, unit.index
    channel = index[0]
    H, W = x.shape[1:]
    axes = []
    for name, out_pos, (before, _after), size in zip(("row", "column"), index[1:], op.padding, (H, W)):
        position = out_pos - before
        in_border = not 0 <= position < size
        if not in_border:
            source, rule = position, f"{name} {position} → {position} (inside)"
        elif op.mode == "constant":
            source, rule = None, f"{name} {minus(position)} → none (in the border: the constant {op.value:g})"
        else:
            source = source_index(position, size, op.mode)
            if op.mode == "replicate":
                rule = f"{name} {minus(position)} → {source} (clamped to {source})"
            else:
                rule = f"{name} {minus(position)} → {source} (mirror at {0 if position < 0 else size - 1})"
        axes.append({"axis": name, "output": out_pos, "position": position, "in_border": in_border,
                     "source": source, "rule": rule})
    in_border = any(a["in_border"] for a in axes)
    out: dict[str, Any] = {"channel": channel, "padding": [list(pair) for pair in op.padding], "mode": op.mode,
                           "spatial_shape": [H, W], "in_border": in_border, "axes": axes}
    if op.mode == "constant" and in_border:
        nearest = tuple(min(max(a["position"], 0), size - 1) for a, size in zip(axes, (H, W)))
        out.update(value=op.value, neighbourhood=neighbourhood(x[channel], nearest, None), result=op.value)
        return out
    source = (axes[0]["source"], axes[1]["source"])
    v = float(x[(channel, *source)])
    if op.mode == "constant":
        out["value"] = op.value
    out.update(source=list(source), input_value=v, neighbourhood=neighbourhood(x[channel], source, source),
               result=v)
    return out


EXPLAINERS = {"pad": Explainer("pad", explain_pad, maps_only)}
