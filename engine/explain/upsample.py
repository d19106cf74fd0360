"""upsample units (2D). Nearest: the source position ⌊i / s⌋ per axis ("row 5 → ⌊5 / 2⌋ = 2"), its value and the
block of output units that copy it. Bilinear (align_corners false or true): per axis the source coordinate, its two
neighbours and their weights, then the 4 samples value × weight and their sum. Both with a small neighbourhood of the
input map around the source."""

from __future__ import annotations

import math
from typing import Any

from engine.explain.base import Explainer, Unit, maps_only, neighbourhood, number
from engine.graph import Node
from engine.layers.upsample import linear_sources

MODES = ("nearest", "bilinear")


def refuse_upsample(node: Node) -> str | None:
    """2D maps only, and the modes ``MODES``."""
    reason = maps_only(node)
    mode = node.op.attrs.get("mode", "nearest")
    if reason is None and mode not in MODES:
        reason = (f"node '{node.op.node_id}' upsamples with mode '{mode}'; upsample units can be explained for "
                  "mode 'nearest' and 'bilinear'")
    return reason


def explain_upsample(unit: Unit) -> dict[str, Any]:
    """x: (C, H, W). Nearest: output unit (c, i, j) copies input (c, ⌊i / s_h⌋, ⌊j / s_w⌋), as do all the units of
    its s_h × s_w block. Bilinear: a weighted sum of the 4 input values around the source coordinate."""
    op, x, index = unit.op, unit.x, unit.index
    if op.attrs.get("mode", "nearest") == "bilinear":
        return explain_bilinear(unit)
    channel = index[0]
    H, W = x.shape[1:]
    scale = [int(s) for s in op.describe()["scale_factor"]]
    axes = []
    for name, out_pos, s in zip(("row", "column"), index[1:], scale):
        source = out_pos // s
        axes.append({"axis": name, "output": out_pos, "scale": s, "source": source,
                     "block": [source * s, source * s + s - 1],
                     "rule": f"{name} {out_pos} → ⌊{out_pos} / {s}⌋ = {source}"})
    source = (axes[0]["source"], axes[1]["source"])
    v = float(x[(channel, *source)])
    return {"channel": channel, "mode": "nearest", "scale_factor": scale, "spatial_shape": [H, W], "axes": axes,
            "source": list(source), "input_value": v, "neighbourhood": neighbourhood(x[channel], source, source),
            "result": v}


def linear_source(i: int, size: int, scale: int, align_corners: bool) -> tuple[float, float, int, int]:
    """Output position ``i`` of an axis of ``size`` upsampled by ``scale``: (the coordinate before the clamp, the
    source coordinate, its two neighbours lo and hi), from ``engine.layers.upsample.linear_sources``, the
    function the engine's own weights come from."""
    raw, src, lo, hi = linear_sources(size, scale, align_corners)
    return float(raw[i]), float(src[i]), int(lo[i]), int(hi[i])


def explain_bilinear(unit: Unit) -> dict[str, Any]:
    """x: (C, H, W). Per axis the source coordinate, its neighbours lo, hi and weights 1 − t, t (t = src − lo);
    the unit is Σ over the 4 neighbour pairs of value · weight_row · weight_col."""
    op, x, index = unit.op, unit.x, unit.index
    channel = index[0]
    H, W = x.shape[1:]
    align_corners = bool(op.attrs["align_corners"])
    scale = [int(s) for s in op.describe()["scale_factor"]]
    axes = []
    for name, out_pos, s, size in zip(("row", "column"), index[1:], scale, (H, W)):
        raw, src, lo, hi = linear_source(out_pos, size, s, align_corners)
        t = src - lo
        formula = (f"{out_pos} · ({size} − 1) / ({size * s} − 1)" if align_corners
                   else f"({out_pos} + 0.5) / {s} − 0.5")
        clamp = f", clamped to {number(src)}" if raw != src else ""
        pair = (f"{name}s {lo} and {hi}" if lo != hi else
                f"{name} {lo} twice (the last {name}: the next one would lie outside)")
        axes.append({"axis": name, "output": out_pos, "scale": s, "coordinate": src, "neighbours": [lo, hi],
                     "weights": [1.0 - t, t],
                     "rule": f"{name} {out_pos} → {formula} = {number(raw)}{clamp}: {pair}, weights "
                             f"{number(1.0 - t)} and {number(t)}"})
    samples = []
    for r, wr in zip(axes[0]["neighbours"], axes[0]["weights"]):
        for c, wc in zip(axes[1]["neighbours"], axes[1]["weights"]):
            v = float(x[channel, r, c])
            samples.append({"row": r, "col": c, "value": v, "weight": wr * wc, "product": v * wr * wc})
    centre = (axes[0]["neighbours"][0], axes[1]["neighbours"][0])
    return {"channel": channel, "mode": "bilinear", "align_corners": align_corners, "scale_factor": scale,
            "spatial_shape": [H, W], "axes": axes, "samples": samples,
            "neighbourhood": neighbourhood(x[channel], centre, None),
            "result": math.fsum(s["product"] for s in samples)}


EXPLAINERS = {"upsample": Explainer("upsample", explain_upsample, refuse_upsample)}
