"""ONNX RNN, LSTM and GRU as the engine's ``rnn``, ``lstm`` and ``gru`` ops, and the time-major tensors around them.

One engine node per ONNX node, with ``num_layers`` 1: torch exports a module of several layers as one ONNX node per
layer, so a two-layer LSTM imports as two ``lstm`` nodes (the numbers of one node of two layers, each layer shown on
its own). ONNX stacks the gates in another order than PyTorch, whose names and order the engine keeps: the blocks of
W, R and B are reordered (LSTM: ONNX's i, o, f, c to PyTorch's i, f, g, o; GRU: z, r, h to r, z, n) into
``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0`` and ``bias_hh_l0``, with ``_reverse`` for the backward direction.
An engine node has one output, so each of Y, Y_h and Y_c that the model reads is its own engine node
(``output`` "sequence", "hidden", "cell"), with the same weights.

ONNX's recurrent nodes read and write time-major tensors (``layout`` 0, the default: X ``[T, N, F]``, Y
``[T, D, N, H]``, Y_h and Y_c ``[D, N, H]``), and exporters put Transposes, Squeezes and Reshapes around them that
bring the batch axis back first. The engine keeps the batch axis first, so such a tensor is held as a
``TimeMajorView`` (the same values, batch axis first, the other axes in ONNX's order) until one of those nodes brings
the batch axis back; ``with_time_major_views`` gives Transpose, Squeeze, Unsqueeze, Reshape, Gather, Slice, Concat,
Shape and Identity converters that take views, and leaves every other input to the ordinary converter. A view read
by anything else is refused (``ImportContext.raw_value``). A view is made from an ordinary tensor only by a Transpose
``[1, 0, 2]`` of a sequence ``[N, T, F]`` (``x.transpose(0, 1)`` before a ``batch_first=False`` module, and the
exporters' own Transpose before every recurrent node), and by the recurrent nodes' outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from app.importers.onnx_import import BATCH_SIZE, ImportContext, NodeError, TimeMajorView, Value, attributes, prod
from app.importers.onnx_safety import tensor_array
from engine.graph import INPUT

Converter = Callable[[ImportContext, onnx.NodeProto, str], None]

_ENGINE_OP = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
#: for each of PyTorch's gate blocks in its order, the ONNX block it is (LSTM: ONNX i, o, f, c; GRU: ONNX z, r, h)
_FROM_ONNX = {"RNN": (0,), "LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2)}
#: ONNX's default activations for one direction: PyTorch's cells
_DEFAULT_ACTIVATIONS = {"RNN": ("tanh",), "LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh")}
#: the engine's ``output`` for ONNX's outputs Y, Y_h, Y_c
_OUTPUTS = ("sequence", "hidden", "cell")
_INITIAL_STATES = {5: "initial_h", 6: "initial_c"}
#: nodes that fold a constant on its way to a recurrent node's initial state (its data input, or any input)
_CONSTANT_FOLDS = ("Slice", "Gather", "Squeeze", "Unsqueeze", "Identity", "Expand", "Split", "Cast")
_ELEMENTWISE_FOLDS = ("Add", "Sub", "Mul", "Div")


# --- the recurrent nodes ----------------------------------------------------------------------------------------
def convert_recurrent(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """RNN, LSTM or GRU: one engine node per output the model reads, PyTorch's gate order, time-major views."""
    kind = node.op_type
    attrs = attributes(node)
    directions = _directions(attrs)
    nonlinearity = _check_cell(kind, attrs, directions)
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise NodeError(f"layout {layout} is neither 0 (time-major [seq_length, batch_size, input_size]) nor 1 "
                        "(batch-major [batch_size, seq_length, input_size])")
    w = np.asarray(cx.const(node, 1, "the input weights W"), dtype=np.float32)
    r = np.asarray(cx.const(node, 2, "the recurrence weights R"), dtype=np.float32)
    b = cx.optional_const(node, 3, "the biases B")
    hidden = _hidden_size(kind, attrs, w, r, b, directions)
    x = _sequence(cx, node, layout)
    steps, features = x.shape
    if w.shape[2] != features:
        raise NodeError(f"W reads {w.shape[2]} features per time step, but X has {features}")
    _check_sequence_lens(cx, node, steps)
    if kind == "LSTM":
        _check_peepholes(cx, node)

    inputs = [x.node_id, *_state_inputs(cx, node, node_id, kind, layout, directions, hidden)]
    spec = {"hidden_size": hidden, "num_layers": 1, "bidirectional": directions == 2, "bias": b is not None}
    if kind == "RNN":
        spec["nonlinearity"] = nonlinearity
    params = _torch_params(kind, w, r, None if b is None else np.asarray(b, dtype=np.float32), directions, hidden)
    used = [i for i, name in enumerate(node.output[:3])
            if name and (name in cx.consumers or name in cx.graph_outputs)]
    made = []
    for index in used:
        engine_id = node_id if index == used[0] else cx.new_id(f"{node_id}_{_OUTPUTS[index]}")
        sequence = index == 0
        value = cx.emit(engine_id, _ENGINE_OP[kind], {**spec, "output": _OUTPUTS[index]}, inputs, params,
                        onnx_shape=(steps, directions, hidden) if sequence else None)
        batch_axis = 0 if layout == 1 else (2 if sequence else 1)  # Y [T, D, N, H]; Y_h, Y_c [D, N, H]
        _put(cx, node.output[index], value, batch_axis, node.name or cx.current_label)
        made.append(f"'{engine_id}' ({_OUTPUTS[index]})")
    if len(made) > 1:
        cx.notes.append(f"{kind} '{node.name or cx.current_label}': {len(made)} of its outputs are read, so it "
                        f"imports as one engine node per output, with the same weights: {', '.join(made)}")


def _directions(attrs: dict) -> int:
    direction = attrs.get("direction", "forward")
    if direction == "forward":
        return 1
    if direction == "bidirectional":
        return 2
    if direction == "reverse":
        raise NodeError("direction 'reverse' runs only backwards through time; the engine, as PyTorch, runs forward "
                        "or both ways (bidirectional)")
    raise NodeError(f"direction '{direction}' is not one of forward, reverse, bidirectional")


def _check_cell(kind: str, attrs: dict, directions: int) -> str:
    """Refuse what PyTorch's cells do not compute; the nonlinearity of an RNN ("tanh" or "relu")."""
    if attrs.get("clip") is not None:
        raise NodeError(f"clip={attrs['clip']:g} clips the gates' inputs; PyTorch's cells, and the engine's, do not "
                        "clip")
    if kind == "LSTM" and int(attrs.get("input_forget", 0)):
        raise NodeError("input_forget=1 couples the input and forget gates (f = 1 − i); PyTorch's LSTM, and the "
                        "engine's, keeps them apart")
    if kind == "GRU" and not int(attrs.get("linear_before_reset", 0)):
        raise NodeError("linear_before_reset=0 (ONNX's default) applies the reset gate before the recurrence "
                        "weights, n = tanh(W_n x + R_n (r ⊙ h) + ...); the engine computes PyTorch's GRU, "
                        "n = tanh(W_n x + b_in + r ⊙ (R_n h + b_hn)), which is linear_before_reset=1 (what "
                        "torch.onnx.export writes)")
    default = _DEFAULT_ACTIVATIONS[kind]
    given = attrs.get("activations")
    if given is None:
        return "tanh"
    names = [a.decode() if isinstance(a, bytes) else str(a) for a in given]
    per = len(default)
    if len(names) != per * directions:
        way = "bidirectional" if directions == 2 else "forward"
        raise NodeError(f"activations {names} give {len(names)} functions; a {way} {kind} needs {per * directions} "
                        f"({per} per direction)")
    lowered = [tuple(n.lower() for n in names[d * per:(d + 1) * per]) for d in range(directions)]
    if kind == "RNN" and len(set(lowered)) == 1 and lowered[0] in (("tanh",), ("relu",)):
        return lowered[0][0]
    if kind != "RNN" and all(a == default for a in lowered):
        return "tanh"
    allowed = "Tanh or Relu, the same in both directions" if kind == "RNN" else ", ".join(
        a.capitalize() for a in default)
    raise NodeError(f"activations {names}: the engine's {_ENGINE_OP[kind]} computes PyTorch's cell, whose "
                    f"activations are ONNX's defaults ({allowed}); other activations have no engine equivalent")


def _hidden_size(kind: str, attrs: dict, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, directions: int) -> int:
    gates = _GATES[kind]
    if r.ndim != 3:
        raise NodeError(f"R has shape {list(r.shape)}; ONNX's R is [num_directions, {gates}·hidden_size, hidden_size]")
    hidden = int(r.shape[2])
    if "hidden_size" in attrs and int(attrs["hidden_size"]) != hidden:
        raise NodeError(f"hidden_size {attrs['hidden_size']} does not match R's shape {list(r.shape)}")
    gate_rows = f"{gates}·{hidden}" if gates > 1 else str(hidden)
    if w.ndim != 3 or w.shape[:2] != (directions, gates * hidden):
        raise NodeError(f"W has shape {list(w.shape)}; with {directions} direction(s) and hidden size {hidden} it "
                        f"must be [{directions}, {gate_rows}, input_size]")
    if r.shape != (directions, gates * hidden, hidden):
        raise NodeError(f"R has shape {list(r.shape)}; it must be [{directions}, {gate_rows}, {hidden}]")
    if b is not None and np.shape(b) != (directions, 2 * gates * hidden):
        raise NodeError(f"B has shape {list(np.shape(b))}; it must be [{directions}, 2·{gate_rows}] (W's biases, "
                        "then R's)")
    return hidden


def _check_sequence_lens(cx: ImportContext, node: onnx.NodeProto, steps: int) -> None:
    if len(node.input) <= 4 or not node.input[4]:
        return
    padded = ("padded sequences of different lengths (PyTorch's pack_padded_sequence) are not supported: every "
              f"sample runs all {steps} time steps; give no sequence_lens, or {steps} for every sample")
    if not cx.is_const(node.input[4]):
        raise NodeError(f"sequence_lens is computed while the model runs; {padded}")
    lengths = np.asarray(cx.consts[node.input[4]]).reshape(-1)
    if np.any(lengths != steps):
        raise NodeError(f"sequence_lens {lengths.tolist()} differs from the {steps} time steps of X; {padded}")


def _check_peepholes(cx: ImportContext, node: onnx.NodeProto) -> None:
    peepholes = cx.optional_const(node, 7, "the peephole weights P")
    if peepholes is None:
        return
    if np.any(np.asarray(peepholes) != 0):
        raise NodeError("it has peephole weights P (the cell state feeding the gates), which PyTorch's LSTM, and so "
                        "the engine's, does not have")
    cx.notes.append(f"LSTM '{node.name or cx.current_label}': its peephole weights P are all zero, so it computes "
                    "PyTorch's LSTM")


def _torch_params(kind: str, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, directions: int,
                  hidden: int) -> dict[str, np.ndarray]:
    """ONNX's W, R, B as PyTorch's parameters of layer 0, gate blocks in PyTorch's order, in its order of names."""

    def torch_order(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([rows[g * hidden:(g + 1) * hidden] for g in _FROM_ONNX[kind]], axis=0)

    half = _GATES[kind] * hidden
    params = {}
    for d in range(directions):
        suffix = "_reverse" if d else ""
        params[f"weight_ih_l0{suffix}"] = torch_order(w[d])
        params[f"weight_hh_l0{suffix}"] = torch_order(r[d])
        if b is not None:
            params[f"bias_ih_l0{suffix}"] = torch_order(b[d][:half])
            params[f"bias_hh_l0{suffix}"] = torch_order(b[d][half:])
    return params


# --- inputs: X and the initial states ---------------------------------------------------------------------------
def _time_major_value(cx: ImportContext, node: onnx.NodeProto, position: int, what: str, sample_rank: int) -> Value:
    """Input ``position`` read time-major (layout 0): a view with the batch axis at 1, as the engine holds it."""
    name = node.input[position]
    view = cx.time_major.get(name)
    if view is None:
        value = cx.raw_value(name, node)  # refuses constants and what no node makes
        whose = "the model's input, which is time-major" if value.node_id == INPUT else "it has the batch axis first"
        raise NodeError(f"{what} '{name}' is read time-major (layout 0, batch on axis 1), but {whose}: the engine "
                        "keeps the batch axis first. Export the module with batch_first=True, or give the model a "
                        "batch-first input and transpose it inside (x.transpose(0, 1))")
    if view.batch_axis != 1 or len(view.sample_shape) != sample_rank:
        raise NodeError(f"{what} '{name}' {view.written()} does not have the batch axis at position 1 of "
                        f"{sample_rank + 1} axes, as layout 0 reads it")
    return _materialised(cx, view)


def _sequence(cx: ImportContext, node: onnx.NodeProto, layout: int) -> Value:
    if layout == 0:
        return _time_major_value(cx, node, 0, "X", 2)
    x = cx.value(node.input[0], node)
    if len(x.shape) != 2:
        raise NodeError(f"X has shape [N, {', '.join(map(str, x.shape))}]; layout 1 reads "
                        "[batch_size, seq_length, input_size]")
    return x


def _initial_state(cx: ImportContext, node: onnx.NodeProto, position: int, layout: int, directions: int,
                   hidden: int) -> np.ndarray | Value | None:
    """An initial state: None if not given, a constant the samples share ``(D, H)``, or a computed Value."""
    if position >= len(node.input) or not node.input[position]:
        return None
    what = _INITIAL_STATES[position]
    name = node.input[position]
    batch_axis = 1 if layout == 0 else 0
    written = ("[num_directions, batch_size, hidden_size]" if layout == 0 else
               "[batch_size, num_directions, hidden_size]")
    if cx.is_const(name):
        state = np.asarray(cx.consts[name], dtype=np.float32)
        if state.ndim != 3 or tuple(np.delete(state.shape, batch_axis)) != (directions, hidden):
            raise NodeError(f"{what} has shape {list(state.shape)}; it must be {written} with {directions} "
                            f"direction(s) and hidden size {hidden}")
        samples = np.moveaxis(state, batch_axis, 0)
        if not np.all(samples == samples[:1]):
            raise NodeError(f"{what} holds a different state for each of the {samples.shape[0]} samples of the "
                            "batch; the engine takes a constant initial state that every sample shares, or one "
                            "computed from the input")
        return samples[0]
    value = (_time_major_value(cx, node, position, what, 2) if layout == 0 else cx.value(name, node))
    if value.shape != (directions, hidden):
        raise NodeError(f"{what} has shape {written} = [N, {', '.join(map(str, value.shape))}] (batch axis first); "
                        f"it must hold ({directions}, {hidden}) per sample")
    return value


def _state_inputs(cx: ImportContext, node: onnx.NodeProto, node_id: str, kind: str, layout: int, directions: int,
                  hidden: int) -> list[str]:
    """The engine node's h0 (and c0) inputs: zeros, the engine's default, are left out unless a later one is given."""
    positions = (5, 6) if kind == "LSTM" else (5,)
    states = [_initial_state(cx, node, p, layout, directions, hidden) for p in positions]
    given = [s is not None and not (isinstance(s, np.ndarray) and not s.any()) for s in states]
    last = max((i for i, g in enumerate(given) if g), default=-1)
    inputs = []
    for index, state in enumerate(states[:last + 1]):
        if isinstance(state, Value):
            inputs.append(state.node_id)
            continue
        array = np.zeros((directions, hidden), np.float32) if state is None else state
        label = ("h0", "c0")[index]
        constant = cx.emit(cx.new_id(f"{node_id}_{label}"), "constant", {"shape": [directions, hidden]}, [],
                           {"value": array})
        inputs.append(constant.node_id)
    return inputs


# --- time-major views -------------------------------------------------------------------------------------------
def _put(cx: ImportContext, name: str, value: Value, batch_axis: int, origin: str) -> None:
    """Record ONNX tensor ``name``: an ordinary value if its batch axis is first, else a time-major view."""
    if batch_axis == 0:
        cx.values[name] = value
    else:
        cx.time_major[name] = TimeMajorView(value, batch_axis, origin)


def _materialised(cx: ImportContext, view: TimeMajorView) -> Value:
    """The view's value with its ONNX axes (a reshape node made once if the engine holds them merged)."""
    value = view.value
    if value.onnx_shape is None:
        return value
    view.value = cx.emit(cx.new_id(f"{value.node_id}_reshape"), "reshape", {"shape": list(value.onnx_shape)},
                         [value.node_id], nonnegative=value.nonnegative)
    return view.value


def _regrouped(value: Value, sample: list[int] | tuple[int, ...]) -> Value:
    """``value`` with other ONNX axes (the same values in the same order): no node until a reader needs them."""
    sample = tuple(int(d) for d in sample)
    return Value(value.node_id, value.shape, None if sample == value.shape else sample, value.nonnegative)


def _source(cx: ImportContext, name: str, node: onnx.NodeProto) -> tuple[Value, int, str, TimeMajorView | None]:
    """Input ``name`` of ``node``: its value, where ONNX has the batch axis, the view's origin, and the view (or None).
    """
    view = cx.time_major.get(name)
    if view is not None:
        return view.value, view.batch_axis, view.origin, view
    return cx.raw_value(name, node), 0, cx.current_label, None


def _engine_input(cx: ImportContext, node: onnx.NodeProto, view: TimeMajorView | None) -> Value:
    return _materialised(cx, view) if view is not None else cx.value(node.input[0], node)


def _sample(value: Value) -> list[int]:
    return list(value.onnx_shape if value.onnx_shape is not None else value.shape)


def _is_sequence_transpose(cx: ImportContext, name: str, perm: list[int] | None) -> bool:
    value = cx.values.get(name)
    return value is not None and perm == [1, 0, 2] and value.rank == 3


def _transpose(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    """Transpose of a view (any perm), or ``[1, 0, 2]`` of a sequence ``[N, T, F]`` (it becomes one)."""
    name = node.input[0]
    perm = attributes(node).get("perm")
    perm = None if perm is None else [int(p) for p in perm]
    if name not in cx.time_major and not _is_sequence_transpose(cx, name, perm):
        base(cx, node, node_id)
        return
    source, batch_axis, origin, view = _source(cx, name, node)
    rank = len(_sample(source)) + 1
    if perm is None:
        perm = list(range(rank))[::-1]
    if sorted(perm) != list(range(rank)):
        raise NodeError(f"perm {perm} is not a reordering of the input's {rank} axes")
    new_batch = perm.index(batch_axis)
    moved = [p if p < batch_axis else p - 1 for i, p in enumerate(perm) if i != new_batch]
    if moved == sorted(moved):  # the sample's axes keep their order: only the batch axis moves, which costs nothing
        out = Value(source.node_id, source.shape, source.onnx_shape, source.nonnegative)
    else:
        x = _engine_input(cx, node, view)
        out = cx.emit(node_id, "transpose", {"perm": moved}, [x.node_id], nonnegative=x.nonnegative)
    _put(cx, node.output[0], out, new_batch, origin)


def _axes_given(cx: ImportContext, node: onnx.NodeProto) -> list[int] | None:
    """Squeeze/Unsqueeze ``axes``: an attribute before opset 13, an input after (None: not given)."""
    given = attributes(node).get("axes") if cx.opset < 13 else cx.optional_const(node, 1, "axes")
    return None if given is None else [int(a) for a in np.atleast_1d(given)]


def _squeeze(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    view = cx.time_major.get(node.input[0])
    if view is None:
        base(cx, node, node_id)
        return
    full: list[int | None] = list(view.sample_shape)
    full.insert(view.batch_axis, None)  # None: the batch axis
    given = _axes_given(cx, node)
    axes = [i for i, d in enumerate(full) if d == 1] if given is None else sorted(a % len(full) for a in given)
    if view.batch_axis in axes:
        raise NodeError(f"it squeezes axis {view.batch_axis} of {view.written()}, the batch axis")
    if any(full[a] != 1 for a in axes):
        raise NodeError(f"axes {axes} of {view.written()} are not all of size 1")
    kept = [d for i, d in enumerate(full) if i not in axes]
    new_batch = kept.index(None)
    _put(cx, node.output[0], _regrouped(view.value, [d for d in kept if d is not None]), new_batch, view.origin)


def _unsqueeze(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    view = cx.time_major.get(node.input[0])
    if view is None:
        base(cx, node, node_id)
        return
    full: list[int | None] = list(view.sample_shape)
    full.insert(view.batch_axis, None)
    given = _axes_given(cx, node)
    if not given:
        raise NodeError("axes are missing")
    rank = len(full) + len(given)
    for axis in sorted(a % rank for a in given):  # ascending: each index already counts the ones inserted before
        full.insert(axis, 1)
    new_batch = full.index(None)
    _put(cx, node.output[0], _regrouped(view.value, [d for d in full if d is not None]), new_batch, view.origin)


def _reshape(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    """Reshape of a view: the axes before the batch axis and those after it regroup on their own (the batch axis
    stays between them), which is a reshape of the sample as the engine holds it, free until a reader needs it."""
    view = cx.time_major.get(node.input[0])
    if view is None:
        base(cx, node, node_id)
        return
    target: list[int | None] = [int(s) for s in np.atleast_1d(cx.const(node, 1, "shape"))]
    sample = list(view.sample_shape)
    full: list[int | None] = [*sample[:view.batch_axis], None, *sample[view.batch_axis:]]
    allow_zero = bool(attributes(node).get("allowzero", 0))
    for i, s in enumerate(target):
        if s == BATCH_SIZE:
            target[i] = None
        elif s == 0 and not allow_zero:
            if i >= len(full):
                raise NodeError(f"shape {target} copies axis {i} (a 0), but the input has only {len(full)} axes")
            target[i] = full[i]
    before, after = prod(sample[:view.batch_axis]), prod(sample[view.batch_axis:])
    marked = [i for i, s in enumerate(target) if s is None]
    if not marked:  # the batch given as its static size, or as the -1: where the axes before it hold `before` values
        marked = [i for i, s in enumerate(target) if s in (cx.static_batch, -1)
                  and all(d is not None and d >= 1 for d in target[:i]) and prod(target[:i]) == before]
    written = ["N" if s is None else s for s in target]
    if not marked:
        raise NodeError(f"target shape {written} does not keep the batch axis of {view.written()} between the "
                        f"axes before it ({before} values) and those after it ({after} values)")
    new_batch = view.batch_axis if view.batch_axis in marked else marked[0]
    parts = []
    for part, size in ((target[:new_batch], before), (target[new_batch + 1:], after)):
        dims = [int(d) for d in part if d is not None]
        if len(dims) != len(part) or dims.count(-1) > 1 or any(d < -1 or d == 0 for d in dims):
            raise NodeError(f"target shape {written} cannot keep the batch axis of {view.written()} in one place")
        known = prod(d for d in dims if d != -1)
        if -1 in dims and known and size % known == 0:
            dims[dims.index(-1)] = size // known
        if prod(dims) != size:
            raise NodeError(f"target shape {written} mixes the batch axis of {view.written()} with other axes: the "
                            f"axes before it must hold {before} values and those after it {after}")
        parts.append(dims)
    _put(cx, node.output[0], _regrouped(view.value, parts[0] + parts[1]), new_batch, view.origin)


def _gather(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    """Gather of a computed tensor (a view or not) along an axis after the batch, with constant indices that form a
    slice: ``output[:, -1]``, ``h_n[-1]``, ``output[-1]``. Indices within one part of a Concat read that part (h_n[-1]
    of the layers' Y_h joined reads the last layer's, and the others' nodes go unused)."""
    name = node.input[0]
    computed = name in cx.time_major or name in cx.values
    if not computed or name in cx.flat_views or not cx.is_const(node.input[1]):
        base(cx, node, node_id)
        return
    source, batch_axis, origin, view = _source(cx, name, node)
    sample = _sample(source)
    rank = len(sample) + 1
    axis = int(attributes(node).get("axis", 0))
    if not -rank <= axis < rank:
        raise NodeError(f"axis {axis} is out of range for an input of rank {rank}")
    axis %= rank
    if axis == batch_axis:
        raise NodeError(f"it gathers along axis {axis}, the batch axis: it would pick samples, and the engine runs "
                        "every sample of a batch through the same graph")
    dim = axis if axis < batch_axis else axis - 1  # the axis in the engine's sample
    size = sample[dim]
    indices = np.asarray(cx.consts[node.input[1]])
    flat = indices.reshape(-1).astype(np.int64)
    if indices.ndim > 1 or flat.size == 0 or np.any(flat < -size) or np.any(flat >= size):
        raise NodeError(f"indices {indices.tolist()} on an axis of {size}: the engine takes one index, or a list of "
                        "them in range")
    flat = flat % size
    steps = np.diff(flat)
    if flat.size > 1 and not (np.all(steps == steps[0]) and steps[0] > 0):
        raise NodeError(f"indices {flat.tolist()} do not form a slice (start, start + step, ... in increasing order),"
                        " the only gathers of a computed tensor the engine takes")
    if view is not None and view.parts is not None and view.parts[0] == axis:
        offset = 0
        for part, part_size in view.parts[1]:
            if offset <= flat[0] and flat[-1] < offset + part_size:
                source, _, _, view = _source(cx, part, node)
                flat, size = flat - offset, part_size
                break
            offset += part_size
    start, step = int(flat[0]), int(steps[0]) if flat.size > 1 else 1
    stop = int(flat[-1]) + 1
    x = _materialised(cx, view) if view is not None else cx.value(name, node)
    if (start, stop, step) == (0, size, 1):
        out = Value(x.node_id, x.shape, None, x.nonnegative)
    else:
        out = cx.emit(node_id, "slice", {"dim": dim + 1, "start": start, "end": stop, "step": step}, [x.node_id],
                      nonnegative=x.nonnegative)
    kept = list(out.shape)
    new_batch = batch_axis
    if indices.ndim == 0:  # one index: the axis goes
        del kept[dim]
        new_batch -= axis < batch_axis
        if not kept:
            raise NodeError(f"it takes one value per sample (shape [N]); the engine needs a sample shape, e.g. "
                            f"[N, 1]: index with a list, [{start}], to keep the axis")
    _put(cx, node.output[0], _regrouped(out, kept), new_batch, origin)


def _slice(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    """Slice of a view: one engine ``slice`` per sliced axis, as for any tensor; the batch axis kept whole."""
    view = cx.time_major.get(node.input[0])
    if view is None:
        base(cx, node, node_id)
        return
    from app.importers.onnx_ops import _slice_arguments, _whole_batch  # onnx_ops imports this module

    starts, ends, axes, steps = _slice_arguments(cx, node)
    rank = len(view.sample_shape) + 1
    axes = list(range(len(starts))) if axes is None else axes
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise NodeError(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must have one entry per axis")
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise NodeError(f"axes {axes} must be distinct axes of the input {view.written()}")
    current = _materialised(cx, view)
    for start, end, axis, step in sorted(zip(starts, ends, axes, steps), key=lambda t: t[2] % rank):
        axis %= rank
        if axis == view.batch_axis:
            if _whole_batch(cx, start, end, step):
                continue
            raise NodeError(f"it takes samples {start}:{end}:{step} of the batch axis (axis {axis} of "
                            f"{view.written()}); only the other axes can be sliced")
        if step < 1:
            raise NodeError(f"step {step} {'is not allowed' if step == 0 else 'runs backwards along the axis'}; the "
                            "engine's slice takes steps of 1 or more")
        dim = axis if axis < view.batch_axis else axis - 1
        size = current.shape[dim]
        first, last, stride = slice(start, end, step).indices(size)
        if (first, last, stride) == (0, size, 1):
            continue
        part_id = node_id if current.node_id == view.value.node_id else cx.new_id(f"{node_id}_axis{axis}")
        current = cx.emit(part_id, "slice", {"dim": dim + 1, "start": first, "end": last, "step": stride},
                          [current.node_id], nonnegative=current.nonnegative)
    _put(cx, node.output[0], Value(current.node_id, current.shape, None, current.nonnegative), view.batch_axis,
         view.origin)


def _concat(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    """Concat of views with the batch axis in the same place (the layers' Y_h joined into h_n), along another axis."""
    names = [n for n in node.input if n]
    views = [cx.time_major.get(n) for n in names]
    if all(v is None for v in views):
        base(cx, node, node_id)
        return
    first = next(v for v in views if v is not None)
    for name, view in zip(names, views):
        if view is None or view.batch_axis != first.batch_axis or len(view.sample_shape) != len(first.sample_shape):
            raise NodeError(f"it joins '{name}' with time-major tensors {first.written()}; the engine joins them only "
                            "with tensors of the same rank and the batch axis in the same place")
    rank = len(first.sample_shape) + 1
    axis = int(attributes(node)["axis"])
    if not -rank <= axis < rank:
        raise NodeError(f"axis {axis} is out of range for inputs of rank {rank}")
    axis %= rank
    if axis == first.batch_axis:
        raise NodeError(f"axis {axis} is the batch axis of {first.written()}: joining along it would mix samples")
    values = [_materialised(cx, v) for v in views if v is not None]
    dim = axis if axis < first.batch_axis else axis - 1
    out = cx.emit(node_id, "concat", {"dim": dim + 1}, [v.node_id for v in values],
                  nonnegative=all(v.nonnegative for v in values))
    _put(cx, node.output[0], out, first.batch_axis, first.origin)
    cx.time_major[node.output[0]].parts = (axis, tuple((n, v.sample_shape[dim]) for n, v in zip(names, views)))


def _shape(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    view = cx.time_major.get(node.input[0])
    if view is None:
        base(cx, node, node_id)
        return
    shape = list(view.sample_shape)
    shape.insert(view.batch_axis, cx.static_batch if cx.static_batch is not None else BATCH_SIZE)
    attrs = attributes(node)
    cx.consts[node.output[0]] = np.array(shape[attrs.get("start", 0):attrs.get("end")], dtype=np.int64)


def _identity(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    view = cx.time_major.get(node.input[0])
    if view is None:
        base(cx, node, node_id)
        return
    cx.time_major[node.output[0]] = TimeMajorView(view.value, view.batch_axis, view.origin)


# --- constants the size of the batch: the exporters' zero initial states ----------------------------------------
def _feeds_initial_states(cx: ImportContext, name: str) -> bool:
    """Whether every use of ``name`` ends, through constant folds (Slice, ...), in a recurrent node's initial state."""
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        readers = cx.consumers.get(current, [])
        if current in cx.graph_outputs or not readers:
            return False
        for _, reader in readers:
            if reader.op_type in _ENGINE_OP:
                if any(n == current and i not in _INITIAL_STATES for i, n in enumerate(reader.input)):
                    return False
            elif ((reader.op_type in _CONSTANT_FOLDS and reader.input[0] == current)
                  or reader.op_type in _ELEMENTWISE_FOLDS):  # values equal along the batch axis stay so
                pending.extend(o for o in reader.output if o)
            else:
                return False
    return True


def _batch_sized(cx: ImportContext, node: onnx.NodeProto, shape: list[int]) -> list[int] | None:
    """``shape`` with the batch size as 1, if it holds the (dynamic) batch size and only initial states read the
    result: a state every sample shares, as the exporters' zeros of shape [D, N, H] are."""
    if BATCH_SIZE not in shape or not _feeds_initial_states(cx, node.output[0]):
        return None
    cx.notes.append(f"{node.op_type} '{node.name or cx.current_label}' makes a constant of the batch's size, read only "
                    "as a recurrent node's initial state: one state every sample shares")
    return [1 if d == BATCH_SIZE else d for d in shape]


def _constant_of_shape(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    shape = [int(v) for v in np.atleast_1d(cx.consts[node.input[0]])] if cx.is_const(node.input[0]) else []
    target = _batch_sized(cx, node, shape)
    if target is None:
        base(cx, node, node_id)
        return
    attrs = attributes(node)
    fill = tensor_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
    cx.consts[node.output[0]] = np.full(target, fill[0], dtype=fill.dtype)


def _expand(cx: ImportContext, node: onnx.NodeProto, node_id: str, base: Converter) -> None:
    both_constant = cx.is_const(node.input[0]) and cx.is_const(node.input[1])
    shape = [int(v) for v in np.atleast_1d(cx.consts[node.input[1]])] if both_constant else []
    target = _batch_sized(cx, node, shape)
    if target is None:
        base(cx, node, node_id)
        return
    data = np.asarray(cx.consts[node.input[0]])
    cx.consts[node.output[0]] = data * np.ones(target, dtype=data.dtype)


_VIEW_AWARE: dict[str, Callable[[ImportContext, onnx.NodeProto, str, Converter], None]] = {
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Reshape": _reshape,
    "Gather": _gather,
    "Slice": _slice,
    "Concat": _concat,
    "Shape": _shape,
    "Identity": _identity,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
}


def with_time_major_views(converters: dict[str, Converter]) -> dict[str, Converter]:
    """``converters`` with Transpose, Squeeze, Reshape, Gather, ... also taking time-major views (and the batch-sized
    constants of initial states); every other input goes to the converter given."""

    def aware(op_type: str) -> Converter:
        special, base = _VIEW_AWARE[op_type], converters[op_type]

        def convert(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
            special(cx, node, node_id, base)

        convert.__doc__ = special.__doc__ or base.__doc__
        return convert

    return {**converters, **{op_type: aware(op_type) for op_type in _VIEW_AWARE}}


CONVERTERS: dict[str, Converter] = {"RNN": convert_recurrent, "LSTM": convert_recurrent, "GRU": convert_recurrent}
