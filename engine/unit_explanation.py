"""How one unit's number was made, with the real numbers: the arithmetic behind the explorer's operation detail.

``explain_unit(graph, params, trace, node_id, index)`` recomputes one unit of a forward pass from its inputs and
parameters, step by step, and returns every intermediate number as plain JSON-ready Python values:

- conv2d (groups, depthwise, stride, padding pairs, dilation): per input channel of the unit's group, the window's
  input rows and columns (positions in the padding flagged), the input values there (0 in the padding), the kernel
  slice, the element-wise products and their sum; then the total over channels, the bias and the result.
- max_pool2d / avg_pool2d: the window's values, the argmax or the divisor, the result.
- linear: the products input × weight (the largest by magnitude when there are many, the rest summed), bias, result.
- softmax (over classes) / spatial_softmax (over positions): the logits, their exps (shifted by the max), the sum
  of the exps, the probabilities.
- conv_transpose2d (groups, stride, padding pairs, output_padding, dilation), as PyTorch defines it: output
  (k, y, x) = bias[k] + Σ over the input channels c of k's group, input positions (i, j) and kernel offsets (a, b)
  with y = i · stride_h − pad_before_h + a · dilation_h (x likewise) of x[c, i, j] · weight[c, k mod (K / groups),
  a, b]. Per axis the (input position, kernel offset) pairs that reach the unit, with the rule in words ("output row
  5 = input row i · 2 − 1 + kernel row a: (i, a) ∈ {(2, 2), (3, 0)}"); per input channel the terms (input row and
  column, kernel row and column, input value, weight, product) and their sum; then the total, the bias and the
  result. A unit no input reaches (in a gap the stride or dilation leaves, or a row output_padding adds) is the
  bias alone.
- pad (2D): the unit's input position per axis, whether it lies in the border, and the input position its value
  comes from with the rule written out ("row −2 → 2 (mirror at 0)", "column 9 → 7 (clamped to 7)"), or the
  constant; the input value and a small neighbourhood of the input map around it.
- upsample (2D): nearest, the source position ⌊i / s⌋ per axis ("row 5 → ⌊5 / 2⌋ = 2"), its value and the block
  of output units that copy it; bilinear (align_corners false or true), per axis the source coordinate, its two
  neighbours and their weights, then the 4 samples value × weight and their sum; both with a small neighbourhood of
  the input map around the source.
- global_avg_pool: the map's sum and its number of positions; add / mul: the operands; attention_pool: the
  attention weights (small maps) and Σ weight × feature; an elementwise node (batch norm, ReLU, ...): its input
  value and the formula's numbers.
- the chain of elementwise nodes that follows the unit (batch norm with its running statistics, ReLU, ReLU6, ...),
  each step recomputed where it has a formula.

Every explanation carries ``result`` (recomputed here, in float64) beside ``engine_value`` (the forward pass's own
number, ``trace.activations[node_id][0][index]``): the two agree to float32 rounding. Output sizes are bounded
(``MAX_CHANNELS`` channels, ``MAX_TERMS`` products, ``MAX_CLASSES`` classes); what is left out is aggregated and
said so (``omitted``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.graph import Graph, Trace
from engine.layers.pad import source_index
from engine.layers.softmax import softmax_forward
from engine.layers.upsample import linear_sources

MAX_CHANNELS = 16  # input channels listed for a convolution unit (the rest aggregated)
MAX_TERMS = 16  # products listed for a fully connected unit, or a 1x1 convolution (the rest aggregated)
MAX_CLASSES = 10  # classes (or positions) listed for a softmax unit, besides the unit's own
MAX_CHAIN = 4  # elementwise nodes followed after the unit
ELEMENTWISE = ("relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "clip",
               "identity", "dropout", "batch_norm")
EXPLAINED = ("conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "linear", "softmax", "spatial_softmax",
             "global_avg_pool", "add", "mul", "attention_pool", "pad", "upsample", *ELEMENTWISE)
MAX_GRID = 32 * 32  # attention weights listed for attention pooling (larger maps: not listed)
NEIGHBOURHOOD = 2  # rows and columns listed on each side of the input position a pad / upsample unit copies
MAPS_ONLY = ("pad", "upsample")  # explained on 2D maps (C, H, W) only: the explorer draws 2D maps


def explain_unit(graph: Graph, params: Mapping[str, np.ndarray], trace: Trace, node_id: str,
                 index: Sequence[int]) -> dict[str, Any]:
    """The arithmetic behind unit ``index`` (no batch axis, e.g. ``(channel, y, x)``) of ``node_id``, sample 0.

    Returns a dict with ``node``, ``op``, ``index``, ``kind`` (the op explained), ``engine_value``, ``result`` and
    the op's own fields (see the module docstring); ``chain``: the elementwise nodes after it. Raises ShapeError for
    an unknown node, an index outside the node, or an op this module does not explain.
    """
    if node_id not in graph.by_id:
        raise ShapeError(f"the graph has no node '{node_id}' (its nodes: {', '.join(list(graph.by_id)[:30])})")
    node = graph.by_id[node_id]
    shape = node.output_shape
    index = tuple(int(i) for i in index)
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        raise ShapeError(f"unit {list(index)} is outside node '{node_id}' of shape {list(shape)}: give "
                         f"{len(shape)} indices, each from 0 to the size minus 1")
    op = node.op.op
    if op not in EXPLAINED:
        raise ShapeError(f"node '{node_id}' is a {op}; units can be explained for {', '.join(EXPLAINED)}")
    if op in MAPS_ONLY and len(shape) != 3:
        raise ShapeError(f"node '{node_id}' is a {len(shape) - 1}D {op} (shape {list(shape)}); units can be explained "
                         f"for {op} on 2D maps (C, H, W) only")
    if op in ("add", "mul"):
        x = [(name, trace.activations[name][0]) for name in node.inputs]
    elif op in ELEMENTWISE or op == "attention_pool":
        x = [trace.activations[name][0] for name in node.inputs]
    else:
        x = trace.activations[node.inputs[0]][0]
    node_params = {name: params[f"{node_id}.{name}"] for name in node.op.param_shapes()
                   if f"{node_id}.{name}" in params}
    explain = {"conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d, "max_pool2d": _pool2d,
               "avg_pool2d": _pool2d, "linear": _linear,
               "softmax": _softmax, "spatial_softmax": _softmax, "global_avg_pool": _global_avg_pool,
               "add": _merge, "mul": _merge, "attention_pool": _attention_pool, "pad": _pad,
               "upsample": _upsample}.get(op)
    if explain is None:  # an elementwise op: batch norm reads the full params (running statistics)

        def explain(_op, xs, _p, index):
            v = float(xs[0][index])
            return {"input_value": v, **_elementwise(node, params, index, v)}

    out = {"node": node_id, "op": op, "kind": op, "index": list(index), "input": node.inputs[0],
           "inputs": list(node.inputs),
           "engine_value": float(trace.activations[node_id][0][index])}
    out.update(explain(node.op, x, node_params, index))
    out["chain"] = _chain(graph, params, trace, node_id, index, out["engine_value"])
    return out


# --- windows ---------------------------------------------------------------------------------------
def _window_positions(out_pos: int, kernel: int, stride: int, before: int, dilation: int, size: int):
    """Input positions ``out_pos * stride - before + j * dilation`` (j < kernel) and whether each is outside."""
    positions = [out_pos * stride - before + j * dilation for j in range(kernel)]
    return positions, [not 0 <= p < size for p in positions]


def _window(channel_map: np.ndarray, rows: list[int], cols: list[int]) -> np.ndarray:
    """The window of a (H, W) map at ``rows`` x ``cols``, as float64, 0 where a position is outside the map."""
    H, W = channel_map.shape
    out = np.zeros((len(rows), len(cols)), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if 0 <= r < H and 0 <= c < W:
                out[i, j] = channel_map[r, c]
    return out


def _geometry(op, index) -> dict[str, Any]:
    """Rows, columns and padding flags of the unit's window, with the op's canonical attributes."""
    (kh, kw), (sh, sw) = op.kernel, op.stride
    (dh, dw) = getattr(op, "dilation", (1, 1))
    (pt, pb), (pl, pr) = op.padding
    H, W = op.input_shapes[0][1:]
    rows, rows_out = _window_positions(index[1], kh, sh, pt, dh, H)
    cols, cols_out = _window_positions(index[2], kw, sw, pl, dw, W)
    return {"kernel_size": [kh, kw], "stride": [sh, sw], "padding": [[pt, pb], [pl, pr]], "dilation": [dh, dw],
            "rows": rows, "cols": cols, "row_in_padding": rows_out, "col_in_padding": cols_out}


def _grid(a: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in a]


# --- the ops ---------------------------------------------------------------------------------------
def _conv2d(op, x: np.ndarray, p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """x: (C, H, W); weight: (K, C / groups, kh, kw). One unit = Σ over the group's channels of window · kernel."""
    k = index[0]
    geometry = _geometry(op, index)
    groups = op.groups
    per_group = op.in_channels // groups
    group = k // (op.out_channels // groups)
    weight = p["weight"][k].astype(np.float64)  # (C / groups, kh, kw)
    channels = []
    for ci in range(per_group):
        channel = group * per_group + ci
        values = _window(x[channel], geometry["rows"], geometry["cols"])
        products = values * weight[ci]
        channels.append({"channel": channel, "values": values, "kernel": weight[ci], "products": products,
                         "sum": float(products.sum())})
    total = math.fsum(c["sum"] for c in channels)
    listed, running, omitted = _bounded_channels(channels)
    bias = float(p["bias"][k]) if "bias" in p else 0.0
    return {**geometry, "groups": groups, "group": group, "channels_in_group": per_group,
            "channels": [{**c, "values": _grid(c["values"]), "kernel": _grid(c["kernel"]),
                          "products": _grid(c["products"]), "running": r} for c, r in zip(listed, running)],
            "omitted": omitted, "total": total, "bias": bias, "result": total + bias}


def _bounded_channels(channels: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[float], dict[str, Any]]:
    """The ``MAX_CHANNELS`` channels with the largest |sum| (in channel order), the running total over them, and the
    others aggregated (``omitted``)."""
    listed = channels
    if len(channels) > MAX_CHANNELS:
        largest = sorted(range(len(channels)), key=lambda i: -abs(channels[i]["sum"]))[:MAX_CHANNELS]
        listed = [channels[i] for i in sorted(largest)]
    rest = [c for c in channels if c not in listed]
    running = np.cumsum([c["sum"] for c in listed]).tolist()
    omitted = {"count": len(rest), "sum": math.fsum(c["sum"] for c in rest),
               "note": (f"the {len(listed)} channels with the largest |sum| of the {len(channels)} are listed; the "
                        f"other {len(rest)} are added up as one number") if rest else ""}
    return listed, running, omitted


def transposed_taps(out_pos: int, size: int, kernel: int, stride: int, before: int,
                    dilation: int) -> list[tuple[int, int]]:
    """Along one axis of a transposed convolution: the (input position i, kernel offset a) pairs with
    ``out_pos = i * stride - before + a * dilation``, 0 ≤ i < size and 0 ≤ a < kernel, by increasing i."""
    taps = []
    for a in range(kernel):
        shifted = out_pos + before - a * dilation
        if shifted % stride == 0 and 0 <= shifted // stride < size:
            taps.append((shifted // stride, a))
    return sorted(taps)


def _transposed_axis(name: str, letters: str, out_pos: int, size: int, kernel: int, stride: int, before: int,
                     dilation: int) -> dict[str, Any]:
    """One axis of a transposed convolution unit: its taps and the rule in words (``letters``: "ia" or "jb")."""
    i, a = letters
    taps = transposed_taps(out_pos, size, kernel, stride, before, dilation)
    shift = f" − {before}" if before > 0 else (f" + {-before}" if before < 0 else "")
    formula = (f"output {name} {out_pos} = input {name} {i}{f' · {stride}' if stride != 1 else ''}{shift} + kernel "
               f"{name} {a}{f' · {dilation}' if dilation != 1 else ''}")
    last = (size - 1) * stride - before + (kernel - 1) * dilation  # the farthest position an input reaches
    if taps:
        rule = f"{formula}: ({i}, {a}) ∈ {{{', '.join(f'({p}, {q})' for p, q in taps)}}}"
    elif out_pos > last:
        rule = (f"{formula}: none; the last input {name} reaches at most {name} {size - 1}"
                f"{f' · {stride}' if stride != 1 else ''}{shift} + {kernel - 1}"
                f"{f' · {dilation}' if dilation != 1 else ''} = {_minus(last)}, so {name} {out_pos} is added by "
                f"output_padding and no input reaches it")
    else:
        rule = (f"{formula}: no pair with 0 ≤ {i} ≤ {size - 1} and 0 ≤ {a} ≤ {kernel - 1} gives {out_pos} (it falls "
                f"in a gap the stride or dilation leaves), so no input reaches it")
    return {"axis": name, "output": out_pos, "taps": [list(t) for t in taps], "rule": rule}


def _conv_transpose2d(op, x: np.ndarray, p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """x: (C, H, W); weight: (C, K / groups, kh, kw). Unit (k, y, x) = bias[k] + Σ over the input channels c of k's
    group and the taps (i, a) of the rows, (j, b) of the columns of x[c, i, j] · weight[c, k mod (K / groups), a, b]."""
    k = index[0]
    H, W = x.shape[1:]
    (kh, kw), (sh, sw), (dh, dw) = op.kernel, op.stride, op.dilation
    (pt, pb), (pl, pr) = op.padding
    groups = op.groups
    per_group = op.in_channels // groups
    group, filter_index = divmod(k, op.out_channels // groups)
    axes = [_transposed_axis("row", "ia", index[1], H, kh, sh, pt, dh),
            _transposed_axis("column", "jb", index[2], W, kw, sw, pl, dw)]
    weight = p["weight"]
    channels = []
    for ci in range(per_group):
        channel = group * per_group + ci
        terms = []
        for (i, a), (j, b) in itertools.product(axes[0]["taps"], axes[1]["taps"]):
            v, w = float(x[channel, i, j]), float(weight[channel, filter_index, a, b])
            terms.append({"row": i, "col": j, "kernel_row": a, "kernel_col": b, "input": v, "weight": w,
                          "product": v * w})
        channels.append({"channel": channel, "terms": terms, "sum": math.fsum(t["product"] for t in terms)})
    total = math.fsum(c["sum"] for c in channels)
    listed, running, omitted = _bounded_channels(channels)
    bias = float(p["bias"][k]) if "bias" in p else 0.0
    return {"kernel_size": [kh, kw], "stride": [sh, sw], "padding": [[pt, pb], [pl, pr]],
            "output_padding": list(op.output_padding), "dilation": [dh, dw], "groups": groups, "group": group,
            "channels_in_group": per_group, "weight_index": filter_index, "spatial_shape": [H, W], "axes": axes,
            "reached": bool(axes[0]["taps"] and axes[1]["taps"]),
            "channel_terms": [{**c, "running": r} for c, r in zip(listed, running)],
            "omitted": omitted, "total": total, "bias": bias, "result": total + bias}


def _pool2d(op, x: np.ndarray, p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """x: (C, H, W). Max: the largest value inside the input; average: the window's sum / the divisor."""
    geometry = _geometry(op, index)
    H, W = x.shape[1:]
    inside = [[not (ro or co) for co in geometry["col_in_padding"]] for ro in geometry["row_in_padding"]]
    values = _window(x[index[0]], geometry["rows"], geometry["cols"])
    is_max = op.op.startswith("max")
    # the running max (or sum) over the window's cells read row by row; None until a cell inside the input is read
    running, so_far = [], None
    for row, oks in zip(values, inside):
        running.append([])
        for v, ok in zip(row, oks):
            if ok:
                so_far = float(v) if so_far is None else (max(so_far, float(v)) if is_max else so_far + float(v))
            running[-1].append(so_far)
    out: dict[str, Any] = {**geometry, "channel": index[0], "running": running}
    if is_max:
        masked = np.where(np.array(inside), values, -np.inf)
        i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)  # the first maximum, as the engine
        out.update(values=[[float(v) if ok else None for v, ok in zip(row, oks)] for row, oks in zip(values, inside)],
                   argmax=[int(i), int(j)], result=float(masked[i, j]))
        return out
    # the divisor: the window clipped to the padded input (count_include_pad) or to the input itself
    (pt, pb), (pl, pr) = geometry["padding"]
    counts = []
    for positions, size, before, after in ((geometry["rows"], H, pt, pb), (geometry["cols"], W, pl, pr)):
        low, high = (-before, size + after) if op.count_include_pad else (0, size)
        counts.append(sum(low <= q < high for q in positions))
    total = float(values.sum())
    divisor = counts[0] * counts[1]
    out.update(values=_grid(values), sum=total, divisor=divisor, count_include_pad=op.count_include_pad,
               result=total / divisor)
    return out


def _linear(op, x: np.ndarray, p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """x: (F,); weight: (out_features, F). One unit = Σ_i x[i] · weight[k, i] + bias[k]."""
    k = index[0]
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


def _softmax(op, x: np.ndarray, p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """softmax: x (K,) or (C, *spatial) over dim 1; spatial_softmax: x (C, H, W), each channel over its positions.

    ``entries`` lists the largest logits and the unit's own, each with ``exp = e^(logit - max)`` and its probability.
    """
    if op.op == "spatial_softmax":
        logits = x[index[0]].astype(np.float64).ravel()
        own = int(np.ravel_multi_index(index[1:], x.shape[1:]))
        over = "position"
    else:
        if getattr(op, "axis", 1) != 1:
            raise ShapeError(f"softmax over dim {op.axis} is not explained; softmax over dim 1 (classes) is")
        logits = x[(slice(None), *index[1:])].astype(np.float64)
        own = index[0]
        over = "class"
    return _softmax_numbers(logits, own, over)


def _softmax_numbers(logits: np.ndarray, own: int, over: str) -> dict[str, Any]:
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


def explain_softmax_of_scores(graph: Graph, trace: Trace, node_id: str, index: Sequence[int]) -> dict[str, Any]:
    """Softmax over a node's class scores (K,), e.g. the output logits: how class ``index[0]``'s probability is made.

    For a model whose output is scores, this is the prediction's softmax; ``engine_value`` is the engine's own
    softmax layer applied to the scores.
    """
    if node_id not in graph.by_id:
        raise ShapeError(f"the graph has no node '{node_id}' (its nodes: {', '.join(list(graph.by_id)[:30])})")
    if graph.by_id[node_id].op.op == "softmax":  # the model ends in its own softmax: explain that one
        return explain_unit(graph, {}, trace, node_id, index)
    scores = trace.activations[node_id]
    if scores.ndim != 2:
        raise ShapeError(f"softmax over scores needs a vector of class scores, but node '{node_id}' has shape "
                         f"{list(scores.shape[1:])}: pick the node that gives the class scores (e.g. the last linear)")
    index = tuple(int(i) for i in index)
    if len(index) != 1 or not 0 <= index[0] < scores.shape[1]:
        raise ShapeError(f"class {list(index)} is outside node '{node_id}' of shape {list(scores.shape[1:])}: give "
                         f"one index from 0 to {scores.shape[1] - 1}")
    probabilities, _ = softmax_forward(scores[:1].astype(np.float64), dim=1)
    out = {"node": node_id, "op": graph.by_id[node_id].op.op, "kind": "softmax", "index": list(index),
           "input": node_id, "inputs": [node_id], "engine_value": float(probabilities[0, index[0]]), "chain": []}
    out.update(_softmax_numbers(scores[0].astype(np.float64), index[0], "class"))
    return out


def _global_avg_pool(op, x: np.ndarray, p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """x: (C, *spatial). The mean of channel ``index[0]``'s map: its sum / its number of positions."""
    channel_map = x[index[0]].astype(np.float64)
    total = math.fsum(channel_map.ravel().tolist())
    return {"channel": index[0], "spatial_shape": list(channel_map.shape), "sum": total, "divisor": channel_map.size,
            "result": total / channel_map.size}


def _merge(op, xs: list[tuple[str, np.ndarray]], p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """add / mul: the inputs' values at the same index (xs: (node id, activation) pairs), added or multiplied."""
    values = [float(x[index]) for _, x in xs]
    return {"operands": [{"node": name, "value": v} for (name, _), v in zip(xs, values)],
            "result": math.fsum(values) if op.op == "add" else math.prod(values)}


def _attention_pool(op, xs: list[np.ndarray], p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """features (C, *spatial), weights (1, *spatial): Σ over positions of weight · feature of channel ``index[0]``."""
    features, weights = xs[0][index[0]].astype(np.float64), xs[1][0].astype(np.float64)
    products = (features * weights).ravel()
    out: dict[str, Any] = {"channel": index[0], "spatial_shape": list(features.shape),
                           "result": math.fsum(products.tolist())}
    if weights.ndim == 2 and weights.size <= MAX_GRID:
        out["weights"] = _grid(weights)
    else:
        out["omitted"] = {"count": weights.size, "note": f"the {weights.size} attention weights are not listed"}
    return out


def _minus(n: int) -> str:
    """An integer as text, with a true minus sign ("−2")."""
    return f"−{-n}" if n < 0 else str(n)


def _neighbourhood(channel_map: np.ndarray, at: tuple[int, int], source: tuple[int, int] | None) -> dict[str, Any]:
    """channel_map: (H, W). The rows and columns within ``NEIGHBOURHOOD`` of ``at`` (clipped to the map), their
    values, and ``source``'s [row, col] inside that grid (None: no input position is read)."""
    H, W = channel_map.shape
    rows = list(range(max(0, at[0] - NEIGHBOURHOOD), min(H, at[0] + NEIGHBOURHOOD + 1)))
    cols = list(range(max(0, at[1] - NEIGHBOURHOOD), min(W, at[1] + NEIGHBOURHOOD + 1)))
    values = channel_map[np.ix_(rows, cols)].astype(np.float64)
    return {"rows": rows, "cols": cols, "values": _grid(values),
            "source": None if source is None else [source[0] - rows[0], source[1] - cols[0]]}


def _pad(op, x: np.ndarray, p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """x: (C, H, W). Output unit (c, i, j) sits on input position (i − top, j − left); inside the input it copies
    that value, in the border it takes the constant or, per axis, the mirrored (reflect) or clamped (replicate)
    position (``engine.layers.pad.source_index``)."""
    channel = index[0]
    H, W = x.shape[1:]
    axes = []
    for name, out_pos, (before, _after), size in zip(("row", "column"), index[1:], op.padding, (H, W)):
        position = out_pos - before
        in_border = not 0 <= position < size
        if not in_border:
            source, rule = position, f"{name} {position} → {position} (inside)"
        elif op.mode == "constant":
            source, rule = None, f"{name} {_minus(position)} → none (in the border: the constant {op.value:g})"
        else:
            source = source_index(position, size, op.mode)
            if op.mode == "replicate":
                rule = f"{name} {_minus(position)} → {source} (clamped to {source})"
            else:
                rule = f"{name} {_minus(position)} → {source} (mirror at {0 if position < 0 else size - 1})"
        axes.append({"axis": name, "output": out_pos, "position": position, "in_border": in_border,
                     "source": source, "rule": rule})
    in_border = any(a["in_border"] for a in axes)
    out: dict[str, Any] = {"channel": channel, "padding": [list(pair) for pair in op.padding], "mode": op.mode,
                           "spatial_shape": [H, W], "in_border": in_border, "axes": axes}
    if op.mode == "constant" and in_border:
        nearest = tuple(min(max(a["position"], 0), size - 1) for a, size in zip(axes, (H, W)))
        out.update(value=op.value, neighbourhood=_neighbourhood(x[channel], nearest, None), result=op.value)
        return out
    source = (axes[0]["source"], axes[1]["source"])
    v = float(x[(channel, *source)])
    if op.mode == "constant":
        out["value"] = op.value
    out.update(source=list(source), input_value=v, neighbourhood=_neighbourhood(x[channel], source, source),
               result=v)
    return out


def _upsample(op, x: np.ndarray, p: dict[str, np.ndarray], index) -> dict[str, Any]:
    """x: (C, H, W). Nearest: output unit (c, i, j) copies input (c, ⌊i / s_h⌋, ⌊j / s_w⌋), as do all the units of
    its s_h × s_w block. Bilinear: a weighted sum of the 4 input values around the source coordinate."""
    mode = op.attrs.get("mode", "nearest")
    if mode == "bilinear":
        return _upsample_bilinear(op, x, index)
    if mode != "nearest":
        raise ShapeError(f"node '{op.node_id}' upsamples with mode '{mode}'; upsample units can be explained for "
                         "mode 'nearest' and 'bilinear'")
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
    return {"channel": channel, "mode": mode, "scale_factor": scale, "spatial_shape": [H, W], "axes": axes,
            "source": list(source), "input_value": v, "neighbourhood": _neighbourhood(x[channel], source, source),
            "result": v}


def _number(v: float) -> str:
    """A coordinate or weight as text: up to 4 significant digits, a true minus sign."""
    text = f"{v:.4g}"
    return f"−{text[1:]}" if text.startswith("-") else text


def linear_source(i: int, size: int, scale: int, align_corners: bool) -> tuple[float, float, int, int]:
    """Output position ``i`` of an axis of ``size`` upsampled by ``scale``: (the coordinate before the clamp, the
    source coordinate, its two neighbours lo and hi), from ``engine.layers.upsample.linear_sources``, the
    function the engine's own weights come from."""
    raw, src, lo, hi = linear_sources(size, scale, align_corners)
    return float(raw[i]), float(src[i]), int(lo[i]), int(hi[i])


def _upsample_bilinear(op, x: np.ndarray, index) -> dict[str, Any]:
    """x: (C, H, W). Per axis the source coordinate, its neighbours lo, hi and weights 1 − t, t (t = src − lo);
    the unit is Σ over the 4 neighbour pairs of value · weight_row · weight_col."""
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
        clamp = f", clamped to {_number(src)}" if raw != src else ""
        pair = (f"{name}s {lo} and {hi}" if lo != hi else
                f"{name} {lo} twice (the last {name}: the next one would lie outside)")
        axes.append({"axis": name, "output": out_pos, "scale": s, "coordinate": src, "neighbours": [lo, hi],
                     "weights": [1.0 - t, t],
                     "rule": f"{name} {out_pos} → {formula} = {_number(raw)}{clamp}: {pair}, weights "
                             f"{_number(1.0 - t)} and {_number(t)}"})
    samples = []
    for r, wr in zip(axes[0]["neighbours"], axes[0]["weights"]):
        for c, wc in zip(axes[1]["neighbours"], axes[1]["weights"]):
            v = float(x[channel, r, c])
            samples.append({"row": r, "col": c, "value": v, "weight": wr * wc, "product": v * wr * wc})
    centre = (axes[0]["neighbours"][0], axes[1]["neighbours"][0])
    return {"channel": channel, "mode": "bilinear", "align_corners": align_corners, "scale_factor": scale,
            "spatial_shape": [H, W], "axes": axes, "samples": samples,
            "neighbourhood": _neighbourhood(x[channel], centre, None),
            "result": math.fsum(s["product"] for s in samples)}


# --- what follows --------------------------------------------------------------------------------------
def _chain(graph: Graph, params: Mapping[str, np.ndarray], trace: Trace, node_id: str, index,
           value: float) -> list[dict[str, Any]]:
    """The elementwise nodes after ``node_id`` while it has exactly one consumer, each with the unit's value."""
    steps = []
    current, previous = node_id, value
    for _ in range(MAX_CHAIN):
        consumers = graph.consumers.get(current, [])
        if len(consumers) != 1 or graph.by_id[consumers[0]].op.op not in ELEMENTWISE:
            break
        nxt = graph.by_id[consumers[0]]
        step: dict[str, Any] = {"node": nxt.id, "op": nxt.op.op, "input_value": previous,
                                "engine_value": float(trace.activations[nxt.id][0][index])}
        step.update(_elementwise(nxt, params, index, previous))
        steps.append(step)
        current, previous = nxt.id, step["engine_value"]
    return steps


def _elementwise(node, params: Mapping[str, np.ndarray], index, v: float) -> dict[str, Any]:
    """The formula's numbers, for the ops that have one here (``result`` recomputed from ``v``)."""
    op = node.op.op
    if op == "batch_norm":
        c = index[0]

        def param(name: str, default: float) -> float:
            key = f"{node.id}.{name}"
            return float(params[key][c]) if key in params else default

        mean, var = param("running_mean", 0.0), param("running_var", 1.0)
        weight, bias, eps = param("weight", 1.0), param("bias", 0.0), float(node.op.attrs["eps"])
        return {"running_mean": mean, "running_var": var, "eps": eps, "weight": weight, "bias": bias,
                "result": (v - mean) / math.sqrt(var + eps) * weight + bias}
    attrs = node.op.attrs
    sigmoid = 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
    formulas = {
        "relu": lambda: max(0.0, v),
        "relu6": lambda: min(max(0.0, v), 6.0),
        "leaky_relu": lambda: v if v > 0 else attrs["negative_slope"] * v,
        "sigmoid": lambda: sigmoid,
        "tanh": lambda: math.tanh(v),
        "silu": lambda: v * sigmoid,
        "hardsigmoid": lambda: min(max(attrs["alpha"] * v + attrs["beta"], 0.0), 1.0),
        "hardswish": lambda: v * min(max(v / 6 + 0.5, 0.0), 1.0),
        "clip": lambda: min(max(v, -math.inf if attrs["min"] is None else attrs["min"]),
                            math.inf if attrs["max"] is None else attrs["max"]),
        "identity": lambda: v,
        "dropout": lambda: v,  # inference: unchanged
    }
    return {"result": float(formulas[op]())} if op in formulas else {}


__all__ = ["EXPLAINED", "MAX_CHANNELS", "MAX_CLASSES", "MAX_TERMS", "explain_softmax_of_scores", "explain_unit",
           "transposed_taps"]
