"""Bring your own model: an ONNX file read into the engine's graph spec and weights.

``import_onnx(data)`` reads an ``.onnx`` model (bytes or a path) with the ``onnx`` package and returns
``(spec, params, info)``: a graph spec that ``engine.graph.Graph`` builds, its weights keyed
``"<node id>.<name>"`` (float32), and a JSON-serialisable ``info`` dict (see ``import_onnx``). The
engine imports only NumPy, so this translation lives in the app layer; the per-operator rules are in
``app/importers/onnx_ops.py`` and ``docs/onnx-import.md``.

What the model must be: one float input with a static shape ``[1 or N, C, *spatial]`` (or ``[N, F]``),
one output, and only operators the importer knows. Everything else is refused with an
``OnnxImportError`` that lists every problem at once, each with the ONNX node it concerns.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from app.importers.onnx_safety import external_tensors, first_undecodable_text, tensor_array
from engine.errors import SpecError
from engine.graph import INPUT, Graph
from engine.ops import OP_REGISTRY

_ID_OK = re.compile(r"[^A-Za-z0-9_.\-]+")
_DEFAULT_DOMAINS = ("", "ai.onnx")
#: stands for a dynamic batch size in shapes computed while importing (Shape -> Gather -> Concat -> Reshape);
#: any arithmetic on it gives a value no valid shape holds, so such a shape is refused, never misread
BATCH_SIZE = -(2**40) - 17
#: graph names exporters write whatever the model is: not worth showing as the model's name
_EXPORTER_GRAPH_NAMES = {"", "torch_jit", "torch-jit-export", "main_graph", "tf2onnx", "graph", "model"}


#: ONNX nodes imported at most (a 2.4 MB file of 100,000 Relus took 7 s to import and 5 s per architecture
#: request; large CNNs have a few thousand)
MAX_ONNX_NODES = 10_000


class OnnxImportError(ValueError):
    """An ONNX model the engine cannot take; the message says what and, where possible, what would work.

    ``unsupported`` lists ``(op_type, node name)`` for every operator the importer does not know;
    ``problems`` lists every message (unsupported operators and unsupported uses of known ones).
    """

    def __init__(self, message: str, unsupported: list[tuple[str, str]] | None = None,
                 problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.unsupported = list(unsupported or [])
        self.problems = list(problems or [message])


class NodeError(Exception):
    """Raised by an operator converter: this node cannot be imported, for the reason given."""


@dataclass
class Value:
    """A run-time tensor of the ONNX graph, as the engine holds it.

    ``node_id`` is the engine node producing it and ``shape`` its engine shape (no batch axis).
    ``onnx_shape`` is the shape ONNX gives it when that differs (global average pooling keeps
    ``(C, 1, 1)`` in ONNX but ``(C,)`` in the engine): a consumer that needs the ONNX shape gets a
    reshape node, made once. ``nonnegative`` is true after ReLU-like ops (lets a zero Pad fold into
    a max pool exactly).
    """

    node_id: str
    shape: tuple[int, ...]
    onnx_shape: tuple[int, ...] | None = None
    nonnegative: bool = False

    @property
    def rank(self) -> int:
        """ONNX rank, batch axis included."""
        return len(self.onnx_shape if self.onnx_shape is not None else self.shape) + 1


@dataclass
class PendingPad:
    """A constant-mode Pad not yet emitted: it is folded into the Conv or pool that reads it, or, for a reader
    that cannot absorb it (or as the model's output), becomes an engine ``pad`` node (``materialise_pad``)."""

    source: str  # the ONNX value it pads
    pairs: tuple[tuple[int, int], ...]  # (before, after) per spatial axis
    value: float
    node_name: str
    wanted_id: str = "pad"  # the engine node id it gets if it becomes a pad node
    label: str = ""  # its ONNX node's label in ``info["node_map"]``


@dataclass
class TimeMajorView:
    """A run-time tensor whose ONNX batch axis is not first: a recurrent node's time-major input ``[T, N, F]``, its
    outputs ``Y`` ``[T, D, N, H]`` and ``Y_h`` ``[D, N, H]``, and what Transposes, Squeezes and Reshapes make of them.

    The engine holds it batch first: ``value`` is the ONNX tensor with its batch axis moved to the front and the other
    axes in ONNX's order (its ``onnx_shape``, or ``shape``, is the ONNX shape without the batch axis). Only the
    converters in ``app/importers/onnx_recurrent.py`` read it (RNN, LSTM, GRU, and the Transpose, Squeeze, Reshape,
    Gather, Slice and Concat that bring the batch axis back first); any other reader is refused.
    """

    value: Value
    batch_axis: int  # where ONNX has the batch axis (1 or more)
    origin: str  # the ONNX node that put the batch axis there, for messages
    #: a Concat's output: its axis and each part's (ONNX name, size), so that a Gather within one part reads that part
    parts: tuple[int, tuple[tuple[str, int], ...]] | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.value.onnx_shape if self.value.onnx_shape is not None else self.value.shape

    def written(self) -> str:
        """The ONNX shape, ``N`` for the batch axis: ``[5, N, 8]``."""
        dims: list[int | str] = list(self.sample_shape)
        dims.insert(self.batch_axis, "N")
        return f"[{', '.join(map(str, dims))}]"


class ImportContext:
    """The state of one import: ONNX values seen so far and the engine spec being written."""

    def __init__(self, model: onnx.ModelProto, opset: int, static_batch: int | None,
                 input_name: str, input_shape: tuple[int, ...]) -> None:
        self.model = model
        self.opset = opset
        self.static_batch = static_batch
        self.consts: dict[str, np.ndarray] = {}
        self.values: dict[str, Value] = {input_name: Value(INPUT, input_shape)}
        self._node_shapes: dict[str, tuple[int, ...]] = {INPUT: input_shape}
        self.pending_pads: dict[str, PendingPad] = {}
        #: tensors flattened with their batch axis of 1 (a Reshape to [-1]) that only Gathers read: the value before
        self.flat_views: dict[str, Value] = {}
        #: tensors whose ONNX batch axis is not first (recurrent nodes' time-major values), read by onnx_recurrent.py
        self.time_major: dict[str, TimeMajorView] = {}
        self.spec_nodes: list[dict[str, Any]] = []
        self.params: dict[str, np.ndarray] = {}
        self.notes: list[str] = []
        self.absorbed: dict[int, str] = {}  # ONNX node index -> engine node id it was merged into
        self.current_label = ""  # the ONNX node being converted, as info["node_map"] names it
        self.late_nodes: dict[str, str] = {}  # engine node made while converting a later node -> its ONNX label
        self._ids: set[str] = {INPUT}
        self._reshaped: dict[str, Value] = {}
        self.consumers: dict[str, list[tuple[int, onnx.NodeProto]]] = {}
        for index, node in enumerate(model.graph.node):
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append((index, node))
        self.graph_outputs = {o.name for o in model.graph.output}

    # --- ids ----------------------------------------------------------------------------------
    def new_id(self, wanted: str) -> str:
        """``wanted`` made unique (``_2``, ``_3``, ... appended) and reserved."""
        candidate, n = wanted, 2
        while candidate in self._ids:
            candidate, n = f"{wanted}_{n}", n + 1
        self._ids.add(candidate)
        return candidate

    def release_id(self, node_id: str) -> None:
        self._ids.discard(node_id)

    # --- values -------------------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, node: onnx.NodeProto, position: int, what: str) -> np.ndarray:
        """Input ``position`` of ``node``, which must be a constant (an initializer or a Constant)."""
        name = node.input[position] if position < len(node.input) else ""
        if not name:
            raise NodeError(f"{what} (input {position}) is missing")
        if name not in self.consts:
            raise NodeError(f"{what} ('{name}') is computed while the model runs; the engine needs it "
                            "stored in the model (an initializer or a Constant)")
        return self.consts[name]

    def optional_const(self, node: onnx.NodeProto, position: int, what: str) -> np.ndarray | None:
        if position >= len(node.input) or not node.input[position]:
            return None
        return self.const(node, position, what)

    def raw_value(self, name: str, consumer: onnx.NodeProto) -> Value:
        """The run-time value ``name`` as it is (a pending ONNX reshape not applied; a pending Pad that
        ``consumer`` cannot fold in made an engine pad node)."""
        if name in self.pending_pads:
            return self.materialise_pad(name, consumer, f"it is read by a {consumer.op_type}, which cannot absorb "
                                                        "padding (only a Conv, MaxPool or AveragePool can)")
        if name in self.time_major:
            raise NodeError(self.time_major_refusal(name, f"a {consumer.op_type} cannot take it"))
        if name in self.consts:
            raise NodeError(f"input '{name}' is a constant, but the engine can only apply "
                            f"{consumer.op_type} to a tensor computed from the model's input")
        if name not in self.values:
            raise NodeError(f"input '{name}' is not produced by any earlier node")
        return self.values[name]

    def time_major_refusal(self, name: str, why: str) -> str:
        """Why the time-major tensor ``name`` cannot be read where it is (``why``: by whom)."""
        view = self.time_major[name]
        message = (f"'{name}' {view.written()} has the batch axis at position {view.batch_axis} (time-major, "
                   f"since node '{view.origin}') and {why}: the engine keeps the batch axis first, and takes such "
                   "tensors only in RNN, LSTM and GRU and in the Transpose, Squeeze, Reshape, Gather, Slice and "
                   "Concat that bring the batch axis back first")
        if not any(n.op_type in ("RNN", "LSTM", "GRU") for n in self.model.graph.node):
            message += (". If this is an nn.RNN: torch.onnx.export(dynamo=True) writes it as a loop of MatMul, Add "
                        "and Tanh over time-major steps; export it with dynamo=False, which writes one ONNX RNN node")
        return message

    def value(self, name: str, consumer: onnx.NodeProto) -> Value:
        """The run-time value ``name`` with its ONNX shape (a reshape node added if needed)."""
        value = self.raw_value(name, consumer)
        if value.onnx_shape is None:
            return value
        if name not in self._reshaped:
            node_id = self.new_id(f"{value.node_id}_reshape")
            self._reshaped[name] = self.emit(node_id, "reshape", {"shape": list(value.onnx_shape)},
                                             [value.node_id], nonnegative=value.nonnegative)
        return self._reshaped[name]

    def materialise_pad(self, name: str, consumer: onnx.NodeProto, why: str) -> Value:
        """The pending Pad whose output is ``name`` as an engine ``pad`` node (made once; an all-zero Pad
        costs no node). ``why`` says, for the import notes, why it was not folded."""
        if name in self.values:
            return self.values[name]
        pad = self.pending_pads[name]
        source = self.value(pad.source, consumer)
        if not any(b or a for b, a in pad.pairs):
            value = Value(source.node_id, source.shape, source.onnx_shape, source.nonnegative)
        else:
            node_id = self.new_id(pad.wanted_id)
            spec = {"padding": [list(p) for p in pad.pairs], "mode": "constant", "value": pad.value}
            try:
                value = self.emit(node_id, "pad", spec, [source.node_id],
                                  nonnegative=source.nonnegative and pad.value >= 0)
            except NodeError as error:
                self.release_id(node_id)
                raise NodeError(f"it reads Pad node '{pad.node_name}', which cannot be folded into it ({why}) nor "
                                f"made an engine pad node: {error}") from None
            self.late_nodes[node_id] = pad.label or pad.node_name
            self.notes.append(f"Pad node '{pad.node_name}' {pad.pairs} (value {pad.value:g}) kept as pad node "
                              f"'{node_id}': {why}")
        self.values[name] = value
        del self.pending_pads[name]
        return value

    def value_or_pad(self, name: str, consumer: onnx.NodeProto) -> tuple[Value, PendingPad | None]:
        """The run-time value ``name``, or the value a pending Pad pads and that Pad."""
        pad = self.pending_pads.get(name)
        if pad is None:
            return self.value(name, consumer), None
        return self.value(pad.source, consumer), pad

    # --- emitting -----------------------------------------------------------------------------
    def emit(self, node_id: str, op: str, attrs: dict[str, Any], inputs: list[str],
             params: dict[str, np.ndarray] | None = None, onnx_shape: tuple[int, ...] | None = None,
             nonnegative: bool = False) -> Value:
        """Append one spec node; build its op now so a bad attribute is reported against this node."""
        input_shapes = [self._node_shapes[i] for i in inputs]
        if op not in OP_REGISTRY:
            raise NodeError(f"it needs the engine op '{op}', which this version of the engine does not have")
        try:
            op_obj = OP_REGISTRY[op](node_id, op, dict(attrs), input_shapes)
        except SpecError as error:
            raise NodeError(f"the engine's {op} refuses it: {error.reason}") from None
        expected = op_obj.param_shapes()
        given = dict(params or {})
        for name, shape in expected.items():
            array = given.get(name)
            if array is None or tuple(array.shape) != tuple(shape):
                got = "nothing" if array is None else list(array.shape)
                raise NodeError(f"{op} expects {name} of shape {list(shape)}, the model gives {got}")
        self.spec_nodes.append({"id": node_id, "op": op, "inputs": list(inputs), **attrs})
        for name, array in given.items():
            self.params[f"{node_id}.{name}"] = np.ascontiguousarray(array, dtype=np.float32)
        shape = tuple(op_obj.output_shape)
        if onnx_shape is not None and tuple(onnx_shape) == shape:
            onnx_shape = None
        value = Value(node_id, shape, onnx_shape, nonnegative)
        self._node_shapes[node_id] = shape
        return value

    def emit_constant(self, base_id: str, array: np.ndarray) -> Value:
        """A ``constant`` node holding ``array`` (shape without batch axis)."""
        node_id = self.new_id(f"{base_id}_const")
        shape = list(array.shape) or [1]
        return self.emit(node_id, "constant", {"shape": shape}, [],
                         {"value": np.asarray(array, dtype=np.float32).reshape(shape)},
                         nonnegative=bool(np.all(array >= 0)))


Converter = Callable[[ImportContext, onnx.NodeProto, str], None]


# --- reading the file ---------------------------------------------------------------------------
def _load(data: bytes | str | os.PathLike) -> onnx.ModelProto:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        try:
            with open(data, "rb") as handle:
                raw = handle.read()
        except OSError as error:
            raise OnnxImportError(f"cannot read the ONNX file: {error}") from None
    if not raw:
        raise OnnxImportError("the file is empty: upload an .onnx model file")
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as error:  # protobuf raises DecodeError and friends
        raise OnnxImportError(f"this is not an ONNX model (it could not be parsed: {error}); export one with "
                              "torch.onnx.export or tf2onnx and upload the .onnx file") from None
    if not model.HasField("graph") or not model.graph.node:
        raise OnnxImportError("this file parses, but holds no ONNX graph with nodes: is it really an .onnx model?")
    undecodable = first_undecodable_text(model)
    if undecodable is not None:
        raise OnnxImportError(f"the file is damaged: a text field ('{undecodable}') holds bytes that are not UTF-8 "
                              "text. Export the model again and upload the new file")
    external = external_tensors(model)  # before anything converts a tensor: never read a file the upload names
    if external:
        listing = "; ".join(external[:10]) + ("; ..." if len(external) > 10 else "")
        raise OnnxImportError(
            f"{len(external)} tensor(s) in the model keep their values in a separate file (ONNX external data), "
            f"which this server never reads: {listing}. Upload the model as one file: "
            "onnx.save_model(model, 'model.onnx', save_as_external_data=False) (any model under 2 GB fits)",
            problems=[f"{where} refers to external data" for where in external])
    return model


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return int(entry.version)
    raise OnnxImportError("the model declares no version of the standard ONNX operator set (opset_import)")


def _check(model: onnx.ModelProto) -> str | None:
    """onnx.checker's first complaint, if any. Not fatal: every node the import uses is checked on its
    own, and exporters write models the checker finds fault with (a missing output shape) but that run."""
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # ValidationError, or whatever else a hostile file makes the checker raise
        lines = str(error).strip().splitlines()
        return f"onnx.checker: {lines[0] if lines else 'invalid model'} (imported anyway)"
    return None


def _graph_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializer_names = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializer_names]
    if len(inputs) != 1:
        names = ", ".join(f"'{i.name}'" for i in inputs) or "none"
        raise OnnxImportError(f"the model has {len(inputs)} inputs ({names}); the visualiser runs models with "
                              "exactly one input, an image or feature tensor")
    return inputs[0]


def _input_shape(value: onnx.ValueInfoProto) -> tuple[list[int], int | None, int | str]:
    """(shape without batch, static batch or None, batch as written) of the graph's input."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise OnnxImportError(f"input '{value.name}' is not a tensor")
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(tensor.elem_type)
        raise OnnxImportError(f"input '{value.name}' holds {kind}; the engine takes float32 (FLOAT) input")
    if not tensor.HasField("shape"):
        raise OnnxImportError(f"input '{value.name}' has no declared shape; re-export it with a fixed shape "
                              "such as [1, 3, 224, 224]")
    dims = list(tensor.shape.dim)
    written = ["?" if not (d.HasField("dim_value") or d.HasField("dim_param")) else
               (str(d.dim_value) if d.HasField("dim_value") else d.dim_param) for d in dims]
    if len(dims) < 2:
        raise OnnxImportError(f"input '{value.name}' has shape [{', '.join(written)}]; the engine needs a batch "
                              "axis then the sample's axes, e.g. [1, 3, 224, 224] or [1, 784]")
    dynamic = [i for i, d in enumerate(dims[1:], 1) if not d.HasField("dim_value") or d.dim_value <= 0]
    if dynamic:
        raise OnnxImportError(f"input '{value.name}' has shape [{', '.join(written)}]: axis "
                              f"{', '.join(map(str, dynamic))} is dynamic. Only the batch axis may be; re-export "
                              "with a fixed image size (e.g. without dynamic_axes for height and width)")
    batch = dims[0]
    static_batch = batch.dim_value if batch.HasField("dim_value") and batch.dim_value > 0 else None
    return [d.dim_value for d in dims[1:]], static_batch, static_batch or written[0]


def _unsupported(model: onnx.ModelProto, converters: dict[str, Converter]) -> list[tuple[str, str]]:
    found = []
    for index, node in enumerate(model.graph.node):
        known = node.domain in _DEFAULT_DOMAINS and node.op_type in converters
        if not known:
            op = node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"
            found.append((op, node.name or f"#{index}"))
    return found


def sanitise_id(name: str) -> str:
    """An ONNX node name as an engine node id: letters, digits, ``_ . -``; '' if nothing is left."""
    cleaned = _ID_OK.sub("_", name).strip("_.-")
    if cleaned and not (cleaned[0].isalpha() or cleaned[0] == "_"):
        cleaned = ""
    return cleaned


# --- the import ---------------------------------------------------------------------------------
def import_onnx(data: bytes | str | os.PathLike,
                name: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Read an ONNX model into ``(spec, params, info)``.

    ``data``: the ``.onnx`` file's bytes, or its path. ``name``: a display name (default: the ONNX
    graph's name unless it is an exporter's stock name such as ``main_graph``, else the file name,
    else None).

    ``spec`` builds with ``engine.graph.Graph(spec)``; ``params`` are float32 arrays keyed
    ``"<node id>.<name>"``. ``info`` (JSON-serialisable) holds ``name``, ``producer``, ``opset``,
    ``input_name``, ``input_shape`` (as ONNX declares it, batch axis included), ``output_name``,
    ``output_shape``, ``node_map`` (ONNX node name -> the engine node ids made from it),
    ``value_map`` (ONNX tensor name -> the engine node id that holds it) and ``notes`` (merges and
    folds made on the way, e.g. a Pad folded into the next Conv).

    Raises ``OnnxImportError`` for a file that is not a usable model, listing every problem.
    """
    from app.importers.onnx_arith import find_gelu_chains, gelu_converter
    from app.importers.onnx_ops import CONVERTERS  # the converters import this module's helpers

    model = _load(data)
    if len(model.graph.node) > MAX_ONNX_NODES:
        raise OnnxImportError(f"the model has {len(model.graph.node):,} ONNX nodes; the visualiser imports at most "
                              f"{MAX_ONNX_NODES:,} (every page and request walks them all): export a smaller model")
    opset = _opset(model)
    unsupported = _unsupported(model, CONVERTERS)
    if unsupported:
        raise OnnxImportError(
            f"the model uses {len(unsupported)} operator node(s) the engine does not support: "
            f"{_grouped_nodes(unsupported)}. Supported: {', '.join(sorted(CONVERTERS))}",
            unsupported=unsupported,
            problems=[f"unsupported operator {op} at node '{node}'" for op, node in unsupported],
        )
    checker_note = _check(model)
    graph_input = _graph_input(model)
    input_shape, static_batch, batch_written = _input_shape(graph_input)
    if len(model.graph.output) != 1:
        names = ", ".join(f"'{o.name}'" for o in model.graph.output)
        raise OnnxImportError(f"the model has {len(model.graph.output)} outputs ({names}); the visualiser shows "
                              "one output: re-export the model returning a single tensor")
    output_name = model.graph.output[0].name

    cx = ImportContext(model, opset, static_batch, graph_input.name, tuple(input_shape))
    if checker_note:
        cx.notes.append(checker_note)
    for init in model.graph.initializer:
        try:
            cx.consts[init.name] = tensor_array(init)
        except ValueError as exc:  # e.g. fewer values stored than its shape declares
            raise OnnxImportError(f"initializer '{init.name}' cannot be read ({exc}): the file is damaged or was "
                                  "written by a broken exporter; export the model again") from None

    problems: list[tuple[str, str, str]] = []  # (op type, ONNX node label, what is wrong)
    broken: set[str] = set()
    node_map: dict[str, list[str]] = {}
    fused: dict[int, Converter] = {}
    skipped: set[int] = set()
    for chain in find_gelu_chains(model):  # GELU written out: its last node becomes one gelu node
        fused[chain.final_index] = gelu_converter(chain)
        skipped.update(chain.skipped)
    for index, node in enumerate(model.graph.node):
        label = node.name or f"#{index}"
        if any(i in broken for i in node.input if i):
            broken.update(o for o in node.output if o)
            continue
        if index in skipped:  # inside a fused pattern: its last node emits the engine node
            node_map[label] = []
            continue
        wanted = sanitise_id(node.name) or f"{node.op_type.lower()}_{index}"
        node_id = cx.new_id(wanted)
        before = len(cx.spec_nodes)
        cx.current_label = label
        try:
            if index in cx.absorbed:
                _alias_absorbed(cx, node, cx.absorbed[index])
            else:
                fused.get(index, CONVERTERS[node.op_type])(cx, node, node_id)
        except NodeError as problem:
            problems.append((node.op_type, label, str(problem)))
            broken.update(o for o in node.output if o)
            del cx.spec_nodes[before:]
            continue
        except (ValueError, IndexError, KeyError, TypeError, OverflowError, ZeroDivisionError) as error:
            # attributes or inputs no exporter writes (a perm of [0, 0], a scale of inf, pads of the wrong length)
            problems.append((node.op_type, label, f"its attributes or inputs are malformed "
                             f"({type(error).__name__}: {error}); export the model again"))
            broken.update(o for o in node.output if o)
            del cx.spec_nodes[before:]
            continue
        node_map[label] = [n["id"] for n in cx.spec_nodes[before:] if n["id"] not in cx.late_nodes]
        if node_id not in node_map[label]:
            cx.release_id(node_id)  # a folded node (Constant, Pad, Shape, ...) does not keep its name

    if not problems and output_name not in broken:
        try:
            output = _output_value(cx, output_name)
        except NodeError as problem:
            problems.append(("output", output_name, str(problem)))
    for late_id, label in cx.late_nodes.items():  # a Pad made a pad node when a later reader could not fold it
        node_map.setdefault(label, []).append(late_id)
    if problems:
        grouped = _grouped_problems(problems)
        raise OnnxImportError(f"the model cannot be imported; {len(problems)} problem(s): {grouped}",
                              problems=[_problem_text(*p) for p in problems])

    spec, params = _prune({"input_shape": list(input_shape), "nodes": cx.spec_nodes}, cx.params, output.node_id)
    not_finite = sorted(key for key, value in params.items()
                        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)))
    if not_finite:
        listed = ", ".join(not_finite[:10]) + (", ..." if len(not_finite) > 10 else "")
        raise OnnxImportError(f"the weights {listed} contain NaN or infinity: every output would be NaN; export "
                              "the model from a trained, finite checkpoint", problems=[f"non-finite weights: {listed}"])
    try:
        graph = Graph(spec)
        graph.check_params(params)
    except SpecError as error:  # the per-node checks above should have caught it: report, never hide
        raise OnnxImportError(f"the imported graph does not build: {error}") from None
    declared = _declared_shape(model.graph.output[0])
    produced = graph.nodes[-1].output_shape
    if declared is not None and declared[1:] and None not in declared[1:] and tuple(declared[1:]) != produced:
        # Not an error: ONNX shape inference ignores the ceil_mode rule onnxruntime and PyTorch follow
        # (a last window that starts in the padding is dropped), so declared shapes can be one too big.
        cx.notes.append(f"the model declares output '{output_name}' of shape {declared[1:]} after the batch axis; "
                        f"the engine computes {list(produced)}, as onnxruntime does for ceil_mode pooling")

    kept = {n["id"] for n in spec["nodes"]}
    from_file = None if isinstance(data, bytes | bytearray | memoryview) else os.path.basename(os.fspath(data))
    graph_name = model.graph.name if model.graph.name not in _EXPORTER_GRAPH_NAMES else None
    info = {
        "name": name or graph_name or from_file,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": opset,
        "ir_version": int(model.ir_version),
        "input_name": graph_input.name,
        "input_shape": [batch_written, *input_shape],
        "output_name": output_name,
        "output_shape": ["N", *graph.nodes[-1].output_shape],
        "node_map": {k: [i for i in v if i in kept] for k, v in node_map.items()},
        "value_map": {k: v.node_id for k, v in cx.values.items() if v.node_id in kept or v.node_id == INPUT},
        "notes": cx.notes,
    }
    return spec, params, info


#: node names listed per group in a refusal; the rest are counted ("and 16 more")
NAMES_PER_GROUP = 3


def _some_names(labels: list[str]) -> str:
    shown = ", ".join(f"'{label}'" for label in labels[:NAMES_PER_GROUP])
    return shown + (f" and {len(labels) - NAMES_PER_GROUP} more" if len(labels) > NAMES_PER_GROUP else "")


def _grouped_nodes(found: list[tuple[str, str]]) -> str:
    """``[(op type, node)]`` as one entry per op type, in order of first appearance:
    ``LayerNormalization ×19 (nodes 'a', 'b', 'c' and 16 more)``."""
    groups: dict[str, list[str]] = {}
    for op, node in found:
        groups.setdefault(op, []).append(node)
    return "; ".join(f"{op} (node {_some_names(nodes)})" if len(nodes) == 1 else
                     f"{op} ×{len(nodes)} (nodes {_some_names(nodes)})" for op, nodes in groups.items())


def _problem_text(op: str, label: str, reason: str) -> str:
    return f"output '{label}': {reason}" if op == "output" else f"{op} node '{label}': {reason}"


def _grouped_problems(problems: list[tuple[str, str, str]]) -> str:
    """Problems with the same op type and reason said once, naming a few of their nodes."""
    groups: dict[tuple[str, str], list[str]] = {}
    for op, label, reason in problems:
        groups.setdefault((op, reason), []).append(label)
    parts = []
    for (op, reason), labels in groups.items():
        if len(labels) == 1:
            parts.append(_problem_text(op, labels[0], reason))
        else:
            parts.append(f"{len(labels)} {op} nodes ({_some_names(labels)}): {reason}")
    return "; ".join(parts)


def _alias_absorbed(cx: ImportContext, node: onnx.NodeProto, node_id: str) -> None:
    """A node merged into an earlier engine node (an Add bias into its MatMul's linear): alias its output."""
    producer = next(v for v in cx.values.values() if v.node_id == node_id)
    cx.values[node.output[0]] = producer


def _output_value(cx: ImportContext, name: str) -> Value:
    if name in cx.consts:
        raise NodeError("the output is a constant that does not depend on the input")
    if name in cx.pending_pads:
        return cx.materialise_pad(name, helper.make_node("Identity", [name], ["_"], name="output"),
                                  "it is the model's output")
    if name in cx.time_major:
        raise NodeError(cx.time_major_refusal(name, "it is the model's output, whose batch axis the engine puts "
                                                    "first (return it batch first, e.g. output.transpose(0, 1))"))
    if name not in cx.values:
        raise NodeError("no node produces it")
    value = cx.values[name]
    if value.onnx_shape is not None:
        dummy = helper.make_node("Identity", [name], ["_"], name="output")
        value = cx.value(name, dummy)
    return value


def _declared_shape(value: onnx.ValueInfoProto) -> list[int | None] | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]


def _prune(spec: dict[str, Any], params: dict[str, np.ndarray],
           output_id: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Keep only the nodes the output depends on, ending with the output node (the engine's output is the last node)."""
    by_id = {n["id"]: n for n in spec["nodes"]}
    needed, stack = set(), [output_id]
    while stack:
        node_id = stack.pop()
        if node_id in needed or node_id == INPUT:
            continue
        needed.add(node_id)
        stack.extend(by_id[node_id]["inputs"])
    if output_id == INPUT:
        raise OnnxImportError("the model's output is its input: there is nothing to visualise")
    nodes = [n for n in spec["nodes"] if n["id"] in needed and n["id"] != output_id] + [by_id[output_id]]
    kept = {n["id"] for n in nodes}
    kept_params = {k: v for k, v in params.items() if k.rsplit(".", 1)[0] in kept}
    return {"input_shape": spec["input_shape"], "nodes": nodes}, kept_params


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded)."""
    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        out[attr.name] = value
    return out


def prod(values) -> int:
    return math.prod(int(v) for v in values)
