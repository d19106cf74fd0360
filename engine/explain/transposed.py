"""conv_transpose2d units (groups, stride, padding pairs, output_padding, dilation), as PyTorch defines it:

output (k, y, x) = bias[k] + Σ over the input channels c of k's group, input positions (i, j) and kernel offsets
(a, b) with y = i · stride_h − pad_before_h + a · dilation_h (x likewise) of x[c, i, j] · weight[c, k mod
(K / groups), a, b]. Per axis the (input position, kernel offset) pairs that reach the unit, with the rule in words
("output row 5 = input row i · 2 − 1 + kernel row a: (i, a) ∈ {(2, 2), (3, 0)}"); per input channel the terms (input
row and column, kernel row and column, input value, weight, product) and their sum; then the total, the bias and the
result. A unit no input reaches (in a gap the stride or dilation leaves, or a row output_padding adds) is the bias
alone.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from engine.explain.base import Explainer, Unit, bounded_channels, minus


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


def transposed_axis(name: str, letters: str, out_pos: int, size: int, kernel: int, stride: int, before: int,
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
                f"{f' · {dilation}' if dilation != 1 else ''} = {minus(last)}, so {name} {out_pos} is added by "
                f"output_padding and no input reaches it")
    else:
        rule = (f"{formula}: no pair with 0 ≤ {i} ≤ {size - 1} and 0 ≤ {a} ≤ {kernel - 1} gives {out_pos} (it falls "
                f"in a gap the stride or dilation leaves), so no input reaches it")
    return {"axis": name, "output": out_pos, "taps": [list(t) for t in taps], "rule": rule}


def explain_conv_transpose2d(unit: Unit) -> dict[str, Any]:
    """x: (C, H, W); weight: (C, K / groups, kh, kw). Unit (k, y, x) = bias[k] + Σ over the input channels c of k's
    group and the taps (i, a) of the rows, (j, b) of the columns of x[c, i, j] · weight[c, k mod (K / groups), a, b]."""
    op, x, p, index = unit.op, unit.x, unit.node_params(), unit.index
    k = index[0]
    H, W = x.shape[1:]
    (kh, kw), (sh, sw), (dh, dw) = op.kernel, op.stride, op.dilation
    (pt, pb), (pl, pr) = op.padding
    groups = op.groups
    per_group = op.in_channels // groups
    group, filter_index = divmod(k, op.out_channels // groups)
    axes = [transposed_axis("row", "ia", index[1], H, kh, sh, pt, dh),
            transposed_axis("column", "jb", index[2], W, kw, sw, pl, dw)]
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
    listed, running, omitted = bounded_channels(channels)
    bias = float(p["bias"][k]) if "bias" in p else 0.0
    return {"kernel_size": [kh, kw], "stride": [sh, sw], "padding": [[pt, pb], [pl, pr]],
            "output_padding": list(op.output_padding), "dilation": [dh, dw], "groups": groups, "group": group,
            "channels_in_group": per_group, "weight_index": filter_index, "spatial_shape": [H, W], "axes": axes,
            "reached": bool(axes[0]["taps"] and axes[1]["taps"]),
            "channel_terms": [{**c, "running": r} for c, r in zip(listed, running)],
            "omitted": omitted, "total": total, "bias": bias, "result": total + bias}


EXPLAINERS = {"conv_transpose2d": Explainer("transposed_conv", explain_conv_transpose2d)}
