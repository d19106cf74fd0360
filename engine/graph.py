"""A CNN as a directed acyclic graph of named nodes, built from a JSON-serialisable spec.

Spec (see docs/graph-spec.md)::

    {"input_shape": [3, 224, 224],
     "nodes": [{"id": "conv1", "op": "conv2d", "inputs": ["input"], "out_channels": 64, "kernel_size": 3},
               {"id": "relu1", "op": "relu"}]}

``inputs`` defaults to the previous node (the graph's input, ``"input"``, for the first node).
The graph's output is its last node. Parameters live in one flat dict keyed ``"<node id>.<name>"``
(``"conv1.weight"``), the layout of the ``.npz`` weight files.

A forward pass records every node's activation (or, in a lean inference pass, only those asked for);
a backward pass from seed gradients on any
nodes (one logit, a loss gradient, a single unit) returns the gradient of every activation,
every trainable parameter and the input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import engine.ops  # noqa: F401  (registers every op)
from engine.errors import ShapeError, SpecError, UnknownNodeError, WeightsError
from engine.layers.grad_mode import input_grads_only, without_input_grad
from engine.ops.base import OP_REGISTRY, ForwardContext, Op, Shape

INPUT = "input"
_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_RESERVED = {"id", "op", "inputs"}


BackwardRule = Callable[["Node", np.ndarray, "Trace"], "list[np.ndarray | None] | None"]


@dataclass
class Node:
    """One node of the graph: its id, its op (which knows shapes, params and maths) and its inputs."""

    id: str
    op: Op
    inputs: list[str]

    @property
    def output_shape(self) -> Shape:
        return self.op.output_shape


@dataclass
class Trace:
    """What a forward pass leaves behind: every node's activation (and ``"input"``), and caches."""

    activations: dict[str, np.ndarray]
    caches: dict[str, Any] = field(default_factory=dict)
    output_id: str = ""

    @property
    def output(self) -> np.ndarray:
        return self.activations[self.output_id]


@dataclass
class Gradients:
    """Gradients from a backward pass: per activation (``"input"`` included) and per trainable parameter."""

    activations: dict[str, np.ndarray]
    params: dict[str, np.ndarray]

    @property
    def input(self) -> np.ndarray:
        return self.activations[INPUT]


class Graph:
    """A built, shape-checked graph. Build it with ``Graph(spec)``; errors name the node at fault."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise SpecError(None, "a graph spec is an object with 'input_shape' and 'nodes'")
        input_shape = spec.get("input_shape")
        if (
            not isinstance(input_shape, list | tuple)
            or not input_shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
        ):
            raise SpecError(None, f"input_shape must be a list of positive ints without the batch axis "
                                  f"(e.g. [3, 224, 224]), got {input_shape!r}")
        nodes = spec.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            raise SpecError(None, "nodes must be a non-empty list of node objects")
        self.spec = {
            "input_shape": list(input_shape),
            "nodes": [dict(n) if isinstance(n, Mapping) else n for n in nodes],
        }
        self.input_shape: Shape = tuple(input_shape)
        self.nodes: list[Node] = []
        self.by_id: dict[str, Node] = {}
        shapes: dict[str, Shape] = {INPUT: self.input_shape}
        previous = INPUT
        for position, raw in enumerate(nodes):
            node = self._build_node(position, raw, previous, shapes)
            self.nodes.append(node)
            self.by_id[node.id] = node
            shapes[node.id] = node.output_shape
            previous = node.id
        self.output_id = self.nodes[-1].id
        self.consumers: dict[str, list[str]] = {INPUT: []}
        for node in self.nodes:
            self.consumers[node.id] = []
            for name in node.inputs:
                self.consumers[name].append(node.id)
        # position of the last node that reads each activation (lean passes release it after that)
        self._position = {node.id: i for i, node in enumerate(self.nodes)}
        self._last_reader = {name: self._position[readers[-1]] if readers else -1
                             for name, readers in self.consumers.items()}
        # nodes that may compute into their input in a lean pass, if it is not recorded (see _may_overwrite)
        self._overwriters = {node.id for i, node in enumerate(self.nodes)
                             if node.op.can_overwrite and len(node.inputs) == 1 and node.inputs[0] != INPUT
                             and self._last_reader[node.inputs[0]] == i}
        self._param_names = {node.id: list(node.op.param_shapes()) for node in self.nodes}

    @staticmethod
    def _build_node(position: int, raw: Any, previous: str, shapes: dict[str, Shape]) -> Node:
        if not isinstance(raw, Mapping):
            raise SpecError(None, f"node #{position} must be an object with 'id' and 'op', got {raw!r}")
        node_id = raw.get("id")
        if not isinstance(node_id, str) or not _ID_PATTERN.match(node_id):
            raise SpecError(None, f"node #{position} needs an 'id': letters, digits, '_', '.', '-', "
                                  f"starting with a letter or '_' (got {node_id!r})")
        if node_id == INPUT or node_id in shapes:
            raise SpecError(node_id, "this id is already taken: every node needs its own id, and 'input' is reserved")
        op_name = raw.get("op")
        if op_name not in OP_REGISTRY:
            known = ", ".join(sorted(OP_REGISTRY))
            raise SpecError(node_id, f"unknown op {op_name!r}; known ops: {known}")
        inputs = raw.get("inputs", [previous])
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise SpecError(node_id, f"inputs must be a list of node ids, got {inputs!r}")
        for name in inputs:
            if name not in shapes:
                raise SpecError(node_id, f"input '{name}' is not 'input' or the id of an earlier node "
                                         "(nodes must be listed after the nodes they read)")
        attrs = {k: v for k, v in raw.items() if k not in _RESERVED}
        op = OP_REGISTRY[op_name](node_id, op_name, attrs, [shapes[i] for i in inputs])
        return Node(node_id, op, list(inputs))

    # --- parameters ---------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, Shape]:
        """Every parameter and buffer, ``"<node>.<name>" -> shape``, in node order."""
        return {f"{n.id}.{name}": tuple(shape) for n in self.nodes for name, shape in n.op.param_shapes().items()}

    def trainable_names(self) -> list[str]:
        return [f"{n.id}.{name}" for n in self.nodes for name in n.op.trainable_names]

    def activation_count(self) -> int:
        """Activation values one input makes, summed over every node: what a recording pass keeps per sample."""
        return int(sum(math.prod(node.output_shape) for node in self.nodes))

    def param_count(self) -> int:
        """Trainable parameters (buffers such as running statistics are not counted, as in PyTorch)."""
        shapes = self.param_shapes()
        return int(sum(np.prod(shapes[name], dtype=np.int64) for name in self.trainable_names()))

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Fresh parameters, reproducible for a given seed."""
        rng = np.random.default_rng(seed)
        params: dict[str, np.ndarray] = {}
        for node in self.nodes:
            for name, value in node.op.init_params(rng).items():
                params[f"{node.id}.{name}"] = value
        return params

    def check_params(self, params: Mapping[str, np.ndarray]) -> None:
        """Raise WeightsError listing every missing, extra and mis-shaped parameter."""
        expected = self.param_shapes()
        missing = [k for k in expected if k not in params]
        extra = [k for k in params if k not in expected]
        misshaped = [f"{k}: expected {list(expected[k])}, got {list(np.shape(params[k]))}"
                     for k in expected if k in params and tuple(np.shape(params[k])) != expected[k]]
        problems = []
        if missing:
            problems.append("missing: " + ", ".join(missing))
        if extra:
            problems.append("extra: " + ", ".join(extra))
        if misshaped:
            problems.append("mis-shaped: " + "; ".join(misshaped))
        if problems:
            raise WeightsError("weights do not match the graph. " + ". ".join(problems))

    def _node_params(self, node: Node, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: params[f"{node.id}.{name}"] for name in self._param_names[node.id]}

    # --- passes -------------------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        """The node called ``node_id``; ``UnknownNodeError`` (listing the graph's nodes) when there is none."""
        found = self.by_id.get(node_id)
        if found is None:
            raise UnknownNodeError(node_id, list(self.by_id))
        return found

    def check_node_or_input(self, node_id: str) -> str:
        """``node_id`` when it is ``"input"`` or one of the graph's nodes; else ``UnknownNodeError`` listing them
        (``"input"`` first)."""
        if node_id != INPUT and node_id not in self.by_id:
            raise UnknownNodeError(node_id, [INPUT, *self.by_id])
        return node_id

    def check_input(self, x: np.ndarray) -> None:
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"input has shape {list(x.shape)}, but this model takes "
                             f"[N, {', '.join(map(str, self.input_shape))}] (a batch of N inputs)")

    def forward(
        self,
        x: np.ndarray,
        params: Mapping[str, np.ndarray],
        training: bool = False,
        rng: np.random.Generator | None = None,
        keep_caches: bool = True,
        stop_at: str | None = None,
        keep: Collection[str] | None = None,
    ) -> Trace:
        """Run the graph on ``x: (N, *input_shape)``, recording every node's activation.

        ``training`` switches batch norm to batch statistics (updating running statistics in
        place) and turns dropout on. ``keep_caches=False`` saves memory when no backward pass
        follows. ``stop_at`` ends the pass after that node.

        ``keep`` makes a lean inference pass (with ``keep_caches=False``): the trace records only the
        input, the output (``stop_at`` or the last node) and the nodes in ``keep`` (``()``: none).
        Every other activation is released as soon as its last reader has run, and ops that can
        (relu, relu6) write their result into an input nobody reads afterwards. Same numbers, less
        memory, and faster: the buffers stay in cache. What a prediction needs; the visualiser's
        pictures need the full record.
        """
        self.check_input(x)
        if stop_at is not None:
            self.node(stop_at)  # an unknown stop_at is an error, not a silent pass to the end
        ctx = ForwardContext(training=training, rng=rng if rng is not None else np.random.default_rng(0))
        if keep is not None:
            return self._forward_lean(x, params, ctx, self._check_keep(keep, keep_caches, stop_at), stop_at)
        trace = Trace(activations={INPUT: x}, output_id=self.output_id)
        for node in self.nodes:
            inputs = [trace.activations[i] for i in node.inputs]
            out, cache = node.op.forward(inputs, self._node_params(node, params), ctx)
            trace.activations[node.id] = out
            if keep_caches:
                trace.caches[node.id] = cache
            if node.id == stop_at:
                trace.output_id = node.id
                break
        return trace

    def _check_keep(self, keep: Collection[str], keep_caches: bool, stop_at: str | None) -> set[str]:
        """``keep`` as a set of node ids that a lean pass can record, or a clear error."""
        if keep_caches:
            raise ValueError("a lean pass (keep=...) keeps no caches: pass keep_caches=False, "
                             "or keep=None to record everything for a backward pass")
        if isinstance(keep, str):
            raise TypeError(f"keep takes a list of node ids, e.g. keep=[{keep!r}], not a string")
        wanted = set(keep)
        for node_id in sorted(wanted):
            self.check_node_or_input(node_id)
        if stop_at is not None:
            end = self._position[stop_at]
            later = sorted(name for name in wanted - {INPUT} if self._position[name] > end)
            if later:
                raise ValueError(f"keep names nodes after stop_at '{stop_at}', which do not run: {', '.join(later)}")
        return wanted

    def _forward_lean(self, x: np.ndarray, params: Mapping[str, np.ndarray], ctx: ForwardContext,
                      keep: set[str], stop_at: str | None) -> Trace:
        """``forward(keep=...)``: release activations after their last reader; overwrite where safe."""
        output_id = stop_at if stop_at is not None else self.output_id
        wanted = keep | {output_id, INPUT}
        foreign: set[int] | None = None  # the memory of x and of the parameters, found when first needed
        live: dict[str, np.ndarray] = {INPUT: x}
        last_reader = self._last_reader
        for position, node in enumerate(self.nodes):
            inputs = [live[i] for i in node.inputs]
            overwrite = False
            if node.id in self._overwriters and node.inputs[0] not in wanted:
                if foreign is None:
                    foreign = {id(_root(x))} | {id(_root(p)) for p in params.values() if isinstance(p, np.ndarray)}
                overwrite = _may_overwrite(node.inputs[0], live, foreign)
            ctx.overwrite = overwrite
            out, _ = node.op.forward(inputs, self._node_params(node, params), ctx)
            del inputs
            if last_reader[node.id] >= 0 or node.id in wanted:  # an activation nobody reads is dropped
                live[node.id] = out
            for name in node.inputs:
                if last_reader[name] == position and name not in wanted:
                    live.pop(name, None)
            if node.id == output_id:
                break
        ctx.overwrite = False
        return Trace(activations={name: live[name] for name in live if name in wanted}, output_id=output_id)

    def backward(
        self,
        trace: Trace,
        seeds: Mapping[str, np.ndarray],
        stop_at: str | None = None,
        rule: BackwardRule | None = None,
        params: bool = True,
        input_grad: bool = True,
    ) -> Gradients:
        """Chain rule from seed gradients ``{node_id: d(scalar)/d(activation)}`` back to the input.

        Returns the gradient of the scalar with respect to every activation upstream of a seed,
        every trainable parameter (zeros for parameters the scalar does not depend on) and the input.
        ``stop_at`` ends the pass once that node's gradient is complete (nodes listed before it are
        skipped, so the input's gradient is then zero). ``rule(node, dout, trace)`` may replace an op's
        backward: it returns the gradients of the node's inputs, or None to use the op's own
        (Guided Backpropagation's modified ReLU uses this). ``params=False`` skips the parameters' gradients
        (attribution needs the input's only): ``Gradients.params`` is then empty. ``input_grad=False`` skips
        the input's gradient (training needs the parameters' only): the nodes that read the graph's input compute
        no gradient for it, and ``Gradients.activations`` has no ``"input"``.
        """
        if not trace.caches:
            raise ValueError("this trace kept no caches: run forward(..., keep_caches=True) before backward")
        if stop_at is not None and stop_at != INPUT:
            self.node(stop_at)
        grads: dict[str, np.ndarray] = {}
        for node_id, seed in seeds.items():
            if node_id not in trace.activations:
                raise UnknownNodeError(node_id, list(trace.activations))
            if np.shape(seed) != trace.activations[node_id].shape:
                raise ShapeError(f"seed for '{node_id}' has shape {list(np.shape(seed))}, "
                                 f"expected {list(trace.activations[node_id].shape)}")
            grads[node_id] = np.array(seed, dtype=trace.activations[node_id].dtype)
        param_grads: dict[str, np.ndarray] = {}
        with nullcontext() if params else input_grads_only():
            self._backward_nodes(trace, grads, param_grads, stop_at, rule, input_grad)
        if params:
            shapes = self.param_shapes()
            for name in self.trainable_names():
                if name not in param_grads:
                    param_grads[name] = np.zeros(shapes[name], dtype=trace.activations[INPUT].dtype)
        if not input_grad:
            grads.pop(INPUT, None)
        elif INPUT not in grads:
            grads[INPUT] = np.zeros_like(trace.activations[INPUT])
        return Gradients(activations=grads, params=param_grads if params else {})

    def _backward_nodes(self, trace: Trace, grads: dict[str, np.ndarray], param_grads: dict[str, np.ndarray],
                        stop_at: str | None, rule: BackwardRule | None, input_grad: bool = True) -> None:
        for node in reversed(self.nodes):
            if node.id == stop_at:
                break
            dout = grads.get(node.id)
            if dout is None or node.id not in trace.caches:
                continue
            replaced = rule(node, dout, trace) if rule is not None else None
            if replaced is not None:
                dinputs, dparams = replaced, {}
            elif not input_grad and all(name == INPUT for name in node.inputs):
                with without_input_grad():  # nothing upstream but the input, whose gradient is not wanted
                    dinputs, dparams = node.op.backward(dout, trace.caches[node.id])
            else:
                dinputs, dparams = node.op.backward(dout, trace.caches[node.id])
            for name, dx in zip(node.inputs, dinputs):
                if dx is None:
                    continue
                if name in grads:
                    grads[name] = grads[name] + dx
                else:
                    grads[name] = dx
            for name, dp in dparams.items():
                if dp is not None:  # None: skipped (params=False)
                    param_grads[f"{node.id}.{name}"] = dp

    def unit_seed(self, trace: Trace, node_id: str, index: tuple[int, ...]) -> dict[str, np.ndarray]:
        """A seed selecting one unit (``index`` without the batch axis) of ``node_id`` in every sample."""
        act = trace.activations[node_id]
        if len(index) != act.ndim - 1 or any(not 0 <= i < n for i, n in zip(index, act.shape[1:])):
            raise ShapeError(f"unit {list(index)} is outside node '{node_id}' of shape {list(act.shape[1:])}")
        seed = np.zeros_like(act)
        seed[(slice(None), *index)] = 1
        return {node_id: seed}


def _may_overwrite(name: str, live: dict[str, np.ndarray], foreign: set[int]) -> bool:
    """Whether activation ``name``, which no later node reads and the trace does not record, may be written
    over: it holds floats (the in-place forms clip floats), it is writeable, it is not the memory of the
    caller's input or of a parameter (an op may return a view of either), and no other live activation is a
    view of it."""
    target = live[name]
    if target.dtype.kind != "f" or not target.flags.writeable or id(_root(target)) in foreign:
        return False
    return not any(np.may_share_memory(target, other) for key, other in live.items() if key != name)


def _root(array: np.ndarray) -> object:
    """The object that owns ``array``'s memory (the end of its chain of ``.base``)."""
    root: object = array
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    return root
