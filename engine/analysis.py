"""Per-node analysis of a graph: what each node is, what it outputs, what it costs and what it sees.

This is what ``GET /api/models/{id}`` and ``POST /api/architecture/analyze`` return. Nothing is
re-derived here: shapes, parameter counts, MACs and titles come from the ops, receptive fields from
``engine.receptive_field``, the columns of the "main layers" view from ``engine.main_layers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.arithmetic import OutputSize, output_size
from engine.errors import EngineError
from engine.explain import explainable, unit_shape
from engine.graph import Graph, Node
from engine.main_layers import main_columns
from engine.ops.base import AxisGeometry
from engine.receptive_field import NodeRF, axis_names, receptive_fields
from engine.time_steps import sequence_summary, time_axes


def jsonable(value: Any) -> Any:
    """Tuples as lists, NumPy scalars and arrays as Python numbers and lists, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class NodeSummary:
    """One node: op, inputs, canonical attributes, output shape (no batch axis), cost, receptive field, whether
    its units can be explained, and how it is named and shown."""

    id: str
    op: str
    inputs: list[str]
    attributes: dict[str, Any]
    output_shape: tuple[int, ...]
    params: int  # trainable parameters
    buffers: int  # values kept but not trained (batch norm's running statistics)
    macs: int  # multiply-accumulates for one sample
    receptive_field: NodeRF
    #: sliding-window nodes (conv, pool, transposed conv): the output-size formula per spatial axis
    shape_arithmetic: list[OutputSize] | None = None
    #: its units can be explained, number by number (``engine.explain``)
    explainable: bool = False
    #: the axis of ``output_shape`` that indexes time steps (a sequence (T, F): 0), None without one
    time_axis: int | None = None
    #: recurrent and sequence_attention nodes: steps, sizes, recorded arrays, parameters (``time_steps``)
    sequence: dict[str, Any] | None = None
    #: what the op is called ("Convolution"; the op's ``title``)
    title: str = ""
    #: the node whose column shows this one in the "main layers" view (``engine.main_layers``); None: hidden
    main_column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "title": self.title,
            "inputs": list(self.inputs),
            "attributes": jsonable(self.attributes),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "buffers": self.buffers,
            "macs": self.macs,
            "receptive_field": self.receptive_field.to_dict(),
            "shape_arithmetic": None if self.shape_arithmetic is None else [
                {"axis": name, **jsonable(a.to_dict())}
                for name, a in zip(axis_names(len(self.shape_arithmetic)), self.shape_arithmetic)],
            "explainable": self.explainable,
            "time_axis": self.time_axis,
            "sequence": None if self.sequence is None else {
                **jsonable({k: v for k, v in self.sequence.items() if k != "params"}),
                "params": [{"name": name, "shape": list(shape)} for name, shape in self.sequence["params"]]},
            "main_column": self.main_column,
        }


def shape_arithmetic(node: Node) -> list[OutputSize] | None:
    """The output-size formula of a sliding-window node per spatial axis, with its numbers (else None)."""
    if node.op.op == "pad":  # in + before + after: no window slides, so no convolution formula is shown
        return None
    geometry = node.op.geometry()
    attrs = node.op.describe()
    if not isinstance(geometry, list) or not all(isinstance(g, AxisGeometry) for g in geometry):
        return None
    n = len(geometry)
    pads, in_sizes = attrs.get("padding"), node.op.input_shapes[0][-n:]
    if pads is None or len(pads) != n or len(in_sizes) != n:
        return None
    transposed = any(g.transposed for g in geometry)
    kind = "transposed" if transposed else "pool" if "pool" in node.op.op else "conv"
    output_padding = attrs.get("output_padding", (0,) * n) if transposed else (0,) * n
    ceil_mode = bool(attrs.get("ceil_mode", False)) and kind == "pool"
    try:
        return [output_size(size, g.kernel, g.stride, tuple(pad), g.dilation, kind, ceil_mode, extra, axis=name)
                for size, g, pad, extra, name in zip(in_sizes, geometry, pads, output_padding, axis_names(n))]
    except EngineError:  # the op accepted what the formula refuses: show nothing rather than a wrong formula
        return None


@dataclass(frozen=True)
class Analysis:
    """Every node's summary, in graph order, and the totals."""

    input_shape: tuple[int, ...]
    output_id: str
    nodes: list[NodeSummary]
    total_params: int
    total_buffers: int
    total_macs: int
    spatial_axes: tuple[str, ...]  # names of the receptive-field axes, e.g. ("H", "W")

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "output_id": self.output_id,
            "spatial_axes": list(self.spatial_axes),
            "nodes": [n.to_dict() for n in self.nodes],
            "totals": {"params": self.total_params, "buffers": self.total_buffers, "macs": self.total_macs},
        }


def _sequence(graph: Graph, node: Node) -> dict[str, Any] | None:
    """``time_steps.sequence_summary``, and for a recurrent node the shape its unit explanations are addressed in
    ((T, D·H): step, unit)."""
    summary = sequence_summary(graph, node)
    if summary is not None and summary["kind"] == "recurrent":
        summary["unit_shape"] = unit_shape(node)
    return summary


def analyze(graph: Graph, strict: bool = True) -> Analysis:
    """Summarise every node of ``graph``.

    With ``strict`` (the default) a misaligned multi-path graph raises the SpecError of
    ``receptive_fields`` naming the node; with ``strict=False`` that node's receptive field is
    marked "undefined" and the rest is still reported.
    """
    rfs = receptive_fields(graph, strict=strict)
    times = time_axes(graph)
    columns = main_columns(graph)
    summaries = []
    for node in graph.nodes:
        shapes = node.op.param_shapes()
        trainable = set(node.op.trainable_names)
        params = sum(math.prod(s) for name, s in shapes.items() if name in trainable)
        buffers = sum(math.prod(s) for name, s in shapes.items() if name not in trainable)
        summaries.append(NodeSummary(
            id=node.id,
            op=node.op.op,
            inputs=list(node.inputs),
            attributes=node.op.describe(),
            output_shape=tuple(node.output_shape),
            params=int(params),
            buffers=int(buffers),
            macs=int(node.op.macs()),
            receptive_field=rfs[node.id],
            shape_arithmetic=shape_arithmetic(node),
            explainable=explainable(node),
            time_axis=times.get(node.id),
            sequence=_sequence(graph, node),
            title=node.op.title,
            main_column=columns[node.id],
        ))
    return Analysis(
        input_shape=tuple(graph.input_shape),
        output_id=graph.output_id,
        nodes=summaries,
        total_params=sum(s.params for s in summaries),
        total_buffers=sum(s.buffers for s in summaries),
        total_macs=sum(s.macs for s in summaries),
        spatial_axes=axis_names(len(graph.input_shape) - 1),
    )
