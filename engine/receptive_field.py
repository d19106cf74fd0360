"""Receptive fields of every node of a graph, after Araujo, Norris & Sim, "Computing Receptive Fields
of Convolutional Neural Networks", Distill 2019.

Per spatial axis, relative to the graph's input, a node has a receptive-field size ``r``, an
effective stride ``S`` and an effective padding ``P``. Starting from the input (r₀ = 1, S₀ = 1,
P₀ = 0), an op with kernel k, stride s, padding p (before) and dilation d gives::

    k' = d·(k − 1) + 1          (the span of the dilated kernel)
    r_l = r_{l−1} + (k' − 1)·S_{l−1}
    S_l = S_{l−1}·s
    P_l = P_{l−1} + p·S_{l−1}

Unit ``i`` of the node then reads input positions ``i·S − P`` to ``i·S − P + r − 1`` (the part below
0 or past the end is padding), centred on ``i·S − P + (r − 1)/2``.

Several paths (add, mul, concat) are handled as in the article: when every path has the same
effective stride and the same centre offset ``(r − 1)/2 − P`` (the graph is *aligned*), the node
takes the largest ``r`` (and its ``P``); otherwise there is no single receptive field and
:func:`receptive_fields` raises a SpecError naming the node. An op whose geometry is GLOBAL
(linear, global pooling, a reduction over spatial axes, flatten of positions, spatial softmax) gives
units that see the whole input. Transposed convolutions are not covered by the article: such nodes
(and those after them) are marked ``undefined`` with the reason, rather than given a wrong number.

A *global gate* is an input of a merge whose units see the whole input but which has size 1 on every
spatial axis of the merge's output (as NumPy broadcasts it), so one value per channel is spread over
every position: squeeze-and-excitation's ``x * sigmoid(fc(mean(x)))``. Where such a gate joins a
local path at a node with several positions, the node keeps the local path's field and is marked
``modulated_at`` that node; later nodes inherit the mark. A gate that varies across positions is not
a gate: computed from a global path it makes the node global, from a local path it is a path like
any other.

Positions are the last axes of a shape, (C, *spatial), except where a transpose moved them: ConvNeXt
computes between a transpose to channels-last (H, W, C) and one back. There the analysis follows them
(``NodeRF.position_axes``) through the ops' ``aligned_axes()``, the axes each op keeps index for
index: layer norm over the channels, a matmul contracting them, a per-channel bias and elementwise
ops keep each position's field. Anything that cannot be shown to keep positions is global if its
geometry is, else undefined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from engine.errors import EngineError, SpecError
from engine.graph import INPUT, Graph
from engine.ops.base import GLOBAL, IDENTITY, AxisGeometry

Status = Literal["local", "global", "undefined", "constant"]

LOCAL: Status = "local"  # units read a sliding window of the input: ``axes`` hold r, S, P
WHOLE: Status = "global"  # every unit depends on every input position
UNDEFINED: Status = "undefined"  # no receptive field in the article's sense; ``reason`` says why
CONSTANT: Status = "constant"  # does not depend on the input at all


def axis_names(n: int) -> tuple[str, ...]:
    """PyTorch's names for the spatial axes: (L,), (H, W), (D, H, W)."""
    return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}.get(n, tuple(f"axis {i}" for i in range(n)))


@dataclass(frozen=True)
class AxisRF:
    """Receptive field along one spatial axis: size ``r``, effective stride ``S``, effective padding ``P``."""

    size: int
    stride: int
    padding: int

    @property
    def centre_offset(self) -> float:
        """Unit ``i`` is centred on input position ``i·S + centre_offset`` (= ``(r − 1)/2 − P``)."""
        return (self.size - 1) / 2 - self.padding

    def then(self, g: AxisGeometry) -> AxisRF:
        """This receptive field after one more op of geometry ``g`` (the article's recurrences)."""
        return AxisRF(
            size=self.size + (g.effective_kernel - 1) * self.stride,
            stride=self.stride * g.stride,
            padding=self.padding + g.padding * self.stride,
        )


@dataclass(frozen=True)
class NodeRF:
    """The receptive field of one node's units.

    ``axes`` has one entry per spatial axis when ``status`` is "local" (None otherwise);
    ``reason`` explains the other statuses in plain words. ``input_size`` is the graph input's
    spatial size and ``spatial_shape`` the node's, both per spatial axis.

    ``modulated_at`` lists, in graph order, the nodes on the way here (this one included) where a
    global gate joined: the unit also depends on the whole input through a value that is the same at
    every position, and ``axes`` is the field of its main path with the gates held fixed. It is empty
    for "global" and "constant" nodes. ``gates`` names this node's inputs taken as global gates.

    ``position_axes`` is set on a local node whose positions are not its last axes (a channels-last (H, W, C)
    between two transposes): the axes of its per-sample shape that hold the spatial axes, in the input's order
    ((0, 1) for (H, W, C)). It is empty where they are the last axes, as usual. ``spatial_shape`` and ``axes``
    are always in the input's order.
    """

    node_id: str
    status: Status
    axes: tuple[AxisRF, ...] | None
    reason: str
    input_size: tuple[int, ...]
    spatial_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    modulated_at: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()
    position_axes: tuple[int, ...] = ()

    @property
    def global_modulation(self) -> bool:
        """Whether a global gate scales (or shifts) this node's units besides their local field."""
        return bool(self.modulated_at)

    def to_dict(self) -> dict[str, Any]:
        names = axis_names(len(self.input_size))
        return {
            "status": self.status,
            "reason": self.reason,
            "axes": None if self.axes is None else [{"axis": name, **asdict(a)} for name, a in zip(names, self.axes)],
            "global_modulation": self.global_modulation,
            "modulated_at": list(self.modulated_at),
            "position_axes": list(self.position_axes),
        }

    def positions(self) -> tuple[int, ...]:
        """The axes of the per-sample shape that hold the spatial axes (the last ones unless ``position_axes``)."""
        n = len(self.input_size)
        return self.position_axes or tuple(range(len(self.output_shape) - n, len(self.output_shape)))


def _describe(rf: AxisRF) -> str:
    sign = "+" if rf.centre_offset >= 0 else "−"
    return (f"r = {rf.size}, S = {rf.stride}, P = {rf.padding}: centres at {rf.stride}·i {sign} "
            f"{abs(rf.centre_offset):g}")


def _spatial_of(shape: tuple[int, ...], n: int, fallback: tuple[int, ...]) -> tuple[int, ...]:
    """The last ``n`` axes of a per-sample shape (channels first); ``fallback`` when they were collapsed."""
    if n == 0:
        return ()
    return tuple(shape[-n:]) if len(shape) - 1 >= n else fallback


def _is_gate(parent: NodeRF, out_shape: tuple[int, ...], n: int) -> bool:
    """Whether ``parent`` joins a node of shape ``out_shape`` as a global gate: its units see the whole input,
    and, aligned as NumPy broadcasts it, it has size 1 on every spatial axis of a node with several positions
    (one value per channel, the same at every position)."""
    if parent.status != WHOLE or n == 0 or len(out_shape) - 1 < n or all(s == 1 for s in out_shape[-n:]):
        return False
    shape = tuple(parent.output_shape)
    if len(shape) > len(out_shape):
        return False
    aligned = (1,) * (len(out_shape) - len(shape)) + shape
    return all(s == 1 for s in aligned[-n:])


def _modulations(node_id: str, paths: list[NodeRF], gated: bool, position: Mapping[str, int]) -> tuple[str, ...]:
    """Where global gates joined on the way to ``node_id``: every path's marks, and this node if it is ``gated``."""
    found = {at for p in paths for at in p.modulated_at} | ({node_id} if gated else set())
    return tuple(sorted(found, key=position.__getitem__))


def _merge(node: Any, parents: list[NodeRF], n: int, input_size: tuple[int, ...],
           position: Mapping[str, int]) -> NodeRF:
    """Combine the receptive fields of a node's inputs (before the node's own geometry).

    Global gates (see :func:`_is_gate`) are set apart when another input reads the input: the node takes
    the field of the other inputs, and is marked as modulated here.
    """
    out_shape = tuple(node.output_shape)
    reading = [p for p in parents if p.status != CONSTANT]
    if not reading:
        return NodeRF(node.id, CONSTANT, None, "does not depend on the input", input_size, (), out_shape)
    gates = [p for p in reading if _is_gate(p, out_shape, n)]
    paths = [p for p in reading if not _is_gate(p, out_shape, n)]
    if not paths:  # nothing but gates: the node itself is one
        paths, gates = reading, []
    for status in (WHOLE, UNDEFINED):
        hit = next((p for p in paths if p.status == status), None)
        if hit is not None:
            reason = hit.reason
            if status == WHOLE and len(reading) > 1:
                reason = (f"'{node.id}' combines its inputs with '{hit.node_id}', whose units see the whole input "
                          f"({reason})")
            if status == WHOLE:
                return NodeRF(node.id, WHOLE, None, reason, input_size, (), out_shape)
            return NodeRF(node.id, status, None, reason, input_size, (), out_shape,
                          _modulations(node.id, paths, bool(gates), position), tuple(g.node_id for g in gates))
    modulated_at = _modulations(node.id, paths, bool(gates), position)
    gate_ids = tuple(g.node_id for g in gates)
    if len(paths) == 1 and not gates:
        return replace(paths[0], modulated_at=modulated_at, gates=())
    spatial = _spatial_of(out_shape, n, paths[0].spatial_shape)
    for p in paths:
        if p.spatial_shape != spatial:
            return NodeRF(node.id, UNDEFINED, None,
                          f"'{node.id}' broadcasts '{p.node_id}' (positions {list(p.spatial_shape)}) over positions "
                          f"{list(spatial)}, so its units do not slide together with the other inputs'",
                          input_size, (), out_shape, modulated_at, gate_ids)
    return NodeRF(node.id, LOCAL, _widest(node.id, paths, n), "", input_size, spatial, out_shape, modulated_at,
                  gate_ids)


def _widest(node_id: str, paths: list[NodeRF], n: int) -> tuple[AxisRF, ...]:
    """The field of a node whose local ``paths`` meet at the same positions: per axis the largest, when they are
    aligned (the same effective stride and centres); a SpecError naming the node otherwise."""
    names = axis_names(n)
    first = paths[0]
    assert first.axes is not None
    merged = list(first.axes)
    for p in paths[1:]:
        assert p.axes is not None
        for a, (mine, theirs) in enumerate(zip(merged, p.axes)):
            if mine.stride != theirs.stride or mine.centre_offset != theirs.centre_offset:
                what = "effective strides" if mine.stride != theirs.stride else "centres"
                raise SpecError(
                    node_id,
                    f"its inputs are not aligned on axis {names[a]}, so its units have no single receptive field "
                    f"(Araujo et al., 2019): the {what} differ. Along the path through '{first.node_id}' "
                    f"{_describe(first.axes[a])}; through '{p.node_id}' {_describe(theirs)}. Make the paths' strides "
                    "and paddings agree (an even kernel needs asymmetric padding to keep centres in line)",
                )
            if theirs.size > mine.size:
                merged[a] = theirs
    return tuple(merged)


def _layout(rf: NodeRF, n: int) -> tuple[int, ...] | None:
    """Per axis of a local node's per-sample shape, the axis of the (C, *spatial) layout it holds (0 the channels,
    1..n the spatial axes in order): (1, 2, 0) for a channels-last (H, W, C). None unless it has n + 1 axes."""
    rank = len(rf.output_shape)
    if rank != n + 1:
        return None
    layout = [0] * rank
    for k, axis in enumerate(rf.positions(), start=1):
        layout[axis] = k
    return tuple(layout)


def _where(rf: NodeRF, n: int) -> str:
    """'(H, W, C)': the axes of a node whose positions are not its last ones, named."""
    names = dict(zip(rf.positions(), axis_names(n)))
    return "(" + ", ".join(names.get(a, "C") for a in range(len(rf.output_shape))) + ")"


def _aligned_axes(op: Any) -> list[dict[int, int]] | None:
    """``op.aligned_axes()``; None for an op that does not have the method (a stand-in declaring its geometry)."""
    method = getattr(op, "aligned_axes", None)
    return None if method is None else method()


def _aligned_positions(node: Any, parents: list[NodeRF], n: int) -> tuple[tuple[int, ...] | None, str]:
    """Where the node's positions are (its axes holding the spatial axes, in order), as ``op.aligned_axes()``
    carries those of its local inputs through; or None and why not."""
    op = f"'{node.id}' ({node.op.op})"
    aligned = _aligned_axes(node.op)
    found: tuple[int, ...] | None = None
    for i, p in enumerate(parents):
        if p.status != LOCAL:
            continue
        layout = _layout(p, n)
        if aligned is None or layout is None:
            return None, (f"{op} is not known to keep positions where they are not the last axes, and reads "
                          f"'{p.node_id}' {_where(p, n)}" if layout is not None else
                          f"{op} reads '{p.node_id}', of shape {list(p.output_shape)}, whose positions cannot be "
                          "followed (only tensors of channels and positions, in any order, are)")
        source = {source: axis for axis, source in aligned[i].items()}  # input axis -> output axis
        axes = tuple(source.get(layout.index(k)) for k in range(1, n + 1))
        if None in axes:
            name = axis_names(n)[axes.index(None)]
            return None, (f"{op} reads '{p.node_id}' {_where(p, n)} whole or broadcast along {name}, one of its "
                          "positions' axes, so its units do not keep to one position")
        if found is not None and axes != found:
            return None, f"{op} pairs the positions of its inputs differently"
        found = axes  # type: ignore[assignment]
    if found is not None and len(node.output_shape) != n + 1:
        return None, (f"{op} gives shape {list(node.output_shape)}: positions are followed only on tensors of "
                      "channels and positions, in any order")
    return found, ""


def _follow_positions(node: Any, parents: list[NodeRF], n: int, input_size: tuple[int, ...],
                      position: Mapping[str, int]) -> NodeRF | None:
    """The field of a node whose inputs' positions are not their last axes (ConvNeXt's channels-last (H, W, C)
    between two transposes), or which moves them there itself, followed through ``op.aligned_axes()``. None when
    neither is so: the usual analysis applies.

    Where positions keep to themselves (layer norm over the channels, a matmul contracting them, a bias broadcast
    along the positions, elementwise ops, a transpose), the field is the inputs' (no window: ``aligned_axes``
    means index i reads index i). Anything else is global if the op's geometry is, else undefined: never a guess.
    """
    out_shape = tuple(node.output_shape)
    local = [p for p in parents if p.status == LOCAL]
    moved = any(p.position_axes for p in local)
    if not local or (not moved and _aligned_axes(node.op) is None):
        return None
    found, why = _aligned_positions(node, parents, n)
    last = tuple(range(len(out_shape) - n, len(out_shape)))
    if not moved and (found is None or found == last):
        return None
    hit = next((p for p in parents if p.status in (WHOLE, UNDEFINED)), None)
    if hit is not None and hit.status == WHOLE:
        return NodeRF(node.id, WHOLE, None, f"'{node.id}' combines its inputs with '{hit.node_id}', whose units see "
                      f"the whole input ({hit.reason})", input_size, (), out_shape)
    marks = _modulations(node.id, local, False, position)
    if hit is not None:
        return NodeRF(node.id, UNDEFINED, None, hit.reason, input_size, (), out_shape, marks)
    if found is None:
        if node.op.geometry() == GLOBAL:
            return NodeRF(node.id, WHOLE, None, f"{why}: taken as depending on the whole input", input_size, (),
                          out_shape)
        return NodeRF(node.id, UNDEFINED, None, f"{why}; transpose back to channels first before it. No r, S, P "
                      "is given", input_size, (), out_shape, marks)
    return NodeRF(node.id, LOCAL, _widest(node.id, local, n), "", input_size, tuple(out_shape[a] for a in found),
                  out_shape, marks, (), () if found == last else found)


def _node_rf(node: Any, parents: list[NodeRF], n: int, input_size: tuple[int, ...],
             position: Mapping[str, int]) -> NodeRF:
    followed = _follow_positions(node, parents, n, input_size, position)
    if followed is not None:
        return followed
    merged = _merge(node, parents, n, input_size, position)
    out_shape = tuple(node.output_shape)
    if merged.status == CONSTANT:
        return NodeRF(node.id, CONSTANT, None, merged.reason, input_size, (), out_shape)
    geometry = node.op.geometry()
    if geometry == GLOBAL:
        reason = f"every unit of '{node.id}' ({node.op.op}) depends on every position of its input"
        if merged.status == WHOLE:
            return NodeRF(node.id, WHOLE, None, merged.reason, input_size, (), out_shape)
        # positions that each read part of the input, all mixed: the union is the whole input
        return NodeRF(node.id, WHOLE, None, reason + ", hence on the whole input", input_size, (), out_shape)
    marks = (merged.modulated_at, merged.gates)
    if merged.status != LOCAL:
        return NodeRF(node.id, merged.status, None, merged.reason, input_size, (), out_shape,
                      *(marks if merged.status == UNDEFINED else ((), ())))
    assert merged.axes is not None
    spatial = _spatial_of(out_shape, n, merged.spatial_shape)
    if geometry == IDENTITY:
        return NodeRF(node.id, LOCAL, merged.axes, "", input_size, spatial, out_shape, *marks)
    if not isinstance(geometry, Sequence) or len(geometry) != n:
        return NodeRF(node.id, UNDEFINED, None,
                      f"'{node.id}' ({node.op.op}) keeps positions along {len(geometry)} axes but its input has {n} "
                      "spatial axes (positions move between axes or into the channels), so no r, S, P is given",
                      input_size, (), out_shape, *marks)
    if any(g.transposed for g in geometry):
        what = ("an upsample: output unit i reads the input at about i / s (s output units per input unit), a "
                "step of 1/s rather than a whole stride" if node.op.op == "upsample" else
                "a transposed convolution: receptive fields through transposed convolutions are not covered by "
                "Araujo et al. (2019) (one output unit reads a varying number of input units)")
        return NodeRF(node.id, UNDEFINED, None, f"'{node.id}' is {what}, so no r, S, P is given",
                      input_size, (), out_shape, *marks)
    axes = tuple(rf.then(g) for rf, g in zip(merged.axes, geometry))
    return NodeRF(node.id, LOCAL, axes, "", input_size, spatial, out_shape, *marks)


def receptive_fields(graph: Graph, strict: bool = True) -> dict[str, NodeRF]:
    """The receptive field of every node (and of ``"input"``), in graph order.

    Raises SpecError naming the node where the paths of a misaligned graph meet; with
    ``strict=False`` that node (and what follows from it) is marked "undefined" with the reason.
    """
    n = len(graph.input_shape) - 1
    input_size = tuple(graph.input_shape[1:])
    result = {INPUT: NodeRF(INPUT, LOCAL, tuple(AxisRF(1, 1, 0) for _ in range(n)), "", input_size, input_size,
                            tuple(graph.input_shape))}
    position = {node.id: i for i, node in enumerate(graph.nodes)}
    for node in graph.nodes:
        try:
            result[node.id] = _node_rf(node, [result[i] for i in node.inputs], n, input_size, position)
        except SpecError as error:
            if strict:
                raise
            result[node.id] = NodeRF(node.id, UNDEFINED, None, f"'{node.id}': {error.reason}", input_size, (),
                                     tuple(node.output_shape))
    return result


@dataclass(frozen=True)
class AxisBox:
    """One axis of a unit's input-space box, inclusive; ``start``/``end`` may lie in the padding."""

    axis: str
    start: int
    end: int
    clipped_start: int
    clipped_end: int
    centre: float
    padding_before: int  # positions of the box before the input (read as padding)
    padding_after: int  # positions of the box past the input's end


@dataclass(frozen=True)
class UnitBox:
    """Where one unit of a node looks in the input: a box per spatial axis, and a plain-words note."""

    node_id: str
    index: tuple[int, ...]  # spatial position of the unit
    axes: tuple[AxisBox, ...]
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spatial_index(rf: NodeRF, index: Sequence[int]) -> tuple[int, ...]:
    """Accept a spatial index (one int per spatial axis) or a full per-sample index (channel first)."""
    index = tuple(int(i) for i in index)
    n = len(rf.input_size)
    full = len(rf.output_shape)
    if len(index) == full and full != n:
        if any(not 0 <= i < s for i, s in zip(index, rf.output_shape)):
            raise EngineError(f"unit {list(index)} is outside node '{rf.node_id}' of shape {list(rf.output_shape)}")
        return tuple(index[a] for a in rf.positions()) if full - 1 >= n and n else (0,) * n
    if len(index) != n:
        raise EngineError(f"give the unit of '{rf.node_id}' as {n} spatial indices ({', '.join(axis_names(n))}) "
                          f"or a full index into its shape {list(rf.output_shape)}; got {list(index)}")
    shape = rf.spatial_shape if rf.status == LOCAL else (1,) * n
    if rf.status == LOCAL and any(not 0 <= i < s for i, s in zip(index, shape)):
        raise EngineError(f"unit {list(index)} is outside node '{rf.node_id}', whose positions are "
                          f"{' × '.join(map(str, shape))}")
    return index


def unit_box(rf: NodeRF, index: Sequence[int]) -> UnitBox:
    """The input-space box and centre of unit ``index`` of the node ``rf`` describes.

    Per axis: ``start = i·S − P``, ``end = start + r − 1``, ``centre = i·S − P + (r − 1)/2``, and
    the box clipped to the input. With dilation the box is the bounding box of what is read.
    """
    spatial = _spatial_index(rf, index)
    names = axis_names(len(rf.input_size))
    if rf.status == WHOLE:
        axes = tuple(AxisBox(name, 0, w - 1, 0, w - 1, (w - 1) / 2, 0, 0) for name, w in zip(names, rf.input_size))
        return UnitBox(rf.node_id, spatial, axes, f"the whole input: {rf.reason}")
    if rf.status != LOCAL or rf.axes is None:
        raise EngineError(f"node '{rf.node_id}' has no receptive-field box: {rf.reason}")
    boxes = []
    for name, i, a, w in zip(names, spatial, rf.axes, rf.input_size):
        start = i * a.stride - a.padding
        end = start + a.size - 1
        boxes.append(AxisBox(name, start, end, max(start, 0), min(end, w - 1), start + (a.size - 1) / 2,
                             max(0, -start), max(0, end - (w - 1))))
    padded = [b for b in boxes if b.padding_before or b.padding_after]
    note = ""
    if padded:
        parts = [f"{b.axis}: {b.padding_before} before and {b.padding_after} past the end" for b in padded]
        note = ("the box extends into the padding (" + "; ".join(parts) + "); the clipped box is the part "
                "inside the input")
    if rf.modulated_at:
        note = "; ".join(filter(None, [note, modulation_note(rf)]))
    return UnitBox(rf.node_id, spatial, tuple(boxes), note)


def modulation_note(rf: NodeRF) -> str:
    """In plain words, how a global gate modulates the units of a node marked ``modulated_at`` ("" if none)."""
    if not rf.modulated_at:
        return ""
    *earlier, last = rf.modulated_at
    more = f", and {len(earlier)} earlier" if earlier else ""
    return (f"besides this box, a global gate modulates the unit (it joins at '{last}'{more}): one value per "
            "channel, the same at every position, computed from the whole input; the box is the field with the "
            "gate held fixed")


def footprints(graph: Graph, rfs: dict[str, NodeRF], node_id: str, index: Sequence[int]
               ) -> dict[str, list[tuple[int, int]]]:
    """Where unit ``index`` of ``node_id`` looks on every earlier layer: per ancestor node (with
    ``"input"``, and the node itself: the unit) whose receptive field is local, the range of that
    layer's positions, per spatial axis, that the unit depends on (inclusive, clipped to the layer).

    For an ancestor with (r_L, S_L, P_L) and the unit's input box [start, end], those are the positions
    whose own boxes lie inside the unit's: ``⌈(start + P_L) / S_L⌉ .. ⌊(end − r_L + 1 + P_L) / S_L⌋``
    (for an aligned graph the divisions are exact, and on a chain this is the unit's window through
    the layers between). A unit with a global field depends on every position of every ancestor. A unit
    modulated by a global gate gets boxes on its main paths only: the gate's branch is not followed.
    """
    whole = rfs[node_id].status == WHOLE
    ancestors = {INPUT, node_id}
    stack = [node_id]
    while stack:
        current = stack.pop()
        # a local unit depends on a gate's branch as a whole, not on a box of it: follow its main paths only
        skip = () if whole else rfs[current].gates
        for parent in graph.by_id[current].inputs:
            if parent not in ancestors and parent not in skip:
                ancestors.add(parent)
                if parent != INPUT:
                    stack.append(parent)
    box = unit_box(rfs[node_id], index)
    result: dict[str, list[tuple[int, int]]] = {}
    for ancestor in [INPUT, *(n.id for n in graph.nodes if n.id in ancestors)]:
        rf = rfs[ancestor]
        if rf.status != LOCAL or rf.axes is None:
            continue
        ranges = []
        for axis_box, a, size in zip(box.axes, rf.axes, rf.spatial_shape):
            if whole:
                ranges.append((0, size - 1))
                continue
            first = -(-(axis_box.start + a.padding) // a.stride)
            last = (axis_box.end - a.size + 1 + a.padding) // a.stride
            ranges.append((max(first, 0), min(last, size - 1)))
        result[ancestor] = ranges
    return result
