"""What every unit explainer shares: the unit being explained (``Unit``), the explainer's entry in the registry
(``Explainer``), and the small helpers several families use (windows, grids, bounded channel lists, numbers as text,
the input neighbourhood of a copied value)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.graph import Graph, Node, Trace

MAX_CHANNELS = 16  # input channels listed for a convolution unit (the rest aggregated)
NEIGHBOURHOOD = 2  # rows and columns listed on each side of the input position a pad / upsample unit copies


@dataclass(frozen=True)
class Unit:
    """One unit of a forward pass: ``index`` (no batch axis) of ``node``, sample 0 of ``trace``."""

    graph: Graph
    params: Mapping[str, np.ndarray]
    trace: Trace
    node: Node
    index: tuple[int, ...]

    @property
    def op(self):
        """The node's op (its canonical attributes: kernel, stride, padding, ...)."""
        return self.node.op

    @property
    def x(self) -> np.ndarray:
        """The first input's activation, sample 0."""
        return self.trace.activations[self.node.inputs[0]][0]

    def inputs(self) -> list[tuple[str, np.ndarray]]:
        """Every input as (node id, activation of sample 0), in order."""
        return [(name, self.trace.activations[name][0]) for name in self.node.inputs]

    def node_params(self) -> dict[str, np.ndarray]:
        """The node's own parameters by short name (``weight``, ``bias``, ...)."""
        return {name: self.params[f"{self.node.id}.{name}"] for name in self.op.param_shapes()
                if f"{self.node.id}.{name}" in self.params}


def always(_node: Node) -> str | None:
    """Every node of the op can be explained."""
    return None


@dataclass(frozen=True)
class Explainer:
    """How units of one op are explained.

    ``family``: the explanation's shape (one response model and one page view per family); ``explain``: the op's
    own fields for a unit; ``refuse``: why a node of this op cannot be explained (None: it can); ``unit_shape``:
    what a unit index addresses, when it is not the node's output (a recurrent node's (step, unit), whatever it
    outputs). An ``explain`` that sets ``engine_value`` itself gives ``activation_index``, where that value sits in
    the node's output (None: it is not there, and no elementwise chain follows).
    """

    family: str
    explain: Callable[[Unit], dict[str, Any]]
    refuse: Callable[[Node], str | None] = always
    unit_shape: Callable[[Node], tuple[int, ...]] | None = None


def maps_only(node: Node) -> str | None:
    """Explained on 2D maps (C, H, W) only (the explorer draws 2D maps): why another shape is not."""
    shape, op = node.output_shape, node.op.op
    if len(shape) != 3:
        return (f"node '{node.id}' is a {len(shape) - 1}D {op} (shape {list(shape)}); units can be explained for "
                f"{op} on 2D maps (C, H, W) only")
    return None


# --- windows ---------------------------------------------------------------------------------------
def window_positions(out_pos: int, kernel: int, stride: int, before: int, dilation: int, size: int):
    """Input positions ``out_pos * stride - before + j * dilation`` (j < kernel) and whether each is outside."""
    positions = [out_pos * stride - before + j * dilation for j in range(kernel)]
    return positions, [not 0 <= p < size for p in positions]


def window(channel_map: np.ndarray, rows: list[int], cols: list[int]) -> np.ndarray:
    """The window of a (H, W) map at ``rows`` x ``cols``, as float64, 0 where a position is outside the map."""
    H, W = channel_map.shape
    out = np.zeros((len(rows), len(cols)), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if 0 <= r < H and 0 <= c < W:
                out[i, j] = channel_map[r, c]
    return out


def geometry(op, index) -> dict[str, Any]:
    """Rows, columns and padding flags of the unit's window, with the op's canonical attributes."""
    (kh, kw), (sh, sw) = op.kernel, op.stride
    (dh, dw) = getattr(op, "dilation", (1, 1))
    (pt, pb), (pl, pr) = op.padding
    H, W = op.input_shapes[0][1:]
    rows, rows_out = window_positions(index[1], kh, sh, pt, dh, H)
    cols, cols_out = window_positions(index[2], kw, sw, pl, dw, W)
    return {"kernel_size": [kh, kw], "stride": [sh, sw], "padding": [[pt, pb], [pl, pr]], "dilation": [dh, dw],
            "rows": rows, "cols": cols, "row_in_padding": rows_out, "col_in_padding": cols_out}


def grid(a: np.ndarray) -> list[list[float]]:
    """A 2D array as nested lists of Python floats."""
    return [[float(v) for v in row] for row in a]


def bounded_channels(channels: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[float], dict[str, Any]]:
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


# --- numbers as text, the input around a copied value -------------------------------------------------
def minus(n: int) -> str:
    """An integer as text, with a true minus sign ("−2")."""
    return f"−{-n}" if n < 0 else str(n)


def number(v: float) -> str:
    """A coordinate or weight as text: up to 4 significant digits, a true minus sign."""
    text = f"{v:.4g}"
    return f"−{text[1:]}" if text.startswith("-") else text


def neighbourhood(channel_map: np.ndarray, at: tuple[int, int], source: tuple[int, int] | None) -> dict[str, Any]:
    """channel_map: (H, W). The rows and columns within ``NEIGHBOURHOOD`` of ``at`` (clipped to the map), their
    values, and ``source``'s [row, col] inside that grid (None: no input position is read)."""
    H, W = channel_map.shape
    rows = list(range(max(0, at[0] - NEIGHBOURHOOD), min(H, at[0] + NEIGHBOURHOOD + 1)))
    cols = list(range(max(0, at[1] - NEIGHBOURHOOD), min(W, at[1] + NEIGHBOURHOOD + 1)))
    values = channel_map[np.ix_(rows, cols)].astype(np.float64)
    return {"rows": rows, "cols": cols, "values": grid(values),
            "source": None if source is None else [source[0] - rows[0], source[1] - cols[0]]}
