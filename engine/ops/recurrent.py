"""Recurrent layers as graph ops (PyTorch's ``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) and attention pooling over time.

A sample is a sequence ``(T, F)``: time steps first, features last (PyTorch's ``batch_first=True`` layout; the
batch axis is the engine's first axis, as everywhere). A digit read row by row::

    {"input_shape": [1, 28, 28], "nodes": [
        {"id": "rows", "op": "reshape", "shape": [28, 28]},
        {"id": "lstm", "op": "lstm", "hidden_size": 128, "output": "hidden"},
        {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 10}]}

``output`` picks what the node passes on: the top layer's output at every step (``"sequence"``, torch's
``output``), the final hidden states (``"hidden"``, torch's ``h_n``) or the LSTM's final cell states (``"cell"``,
``c_n``). Every op has ``recorded(cache)``: per-step arrays of a forward pass run with caches kept (the hidden
state, the LSTM's cell state and every gate), which is what the visualiser draws.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from engine.layers.recurrent import GATES, STATES, param_names, recorded_states, recurrent_backward, recurrent_forward
from engine.layers.sequence_attention import SCORES, sequence_attention_backward, sequence_attention_forward
from engine.ops.base import GLOBAL, REQUIRED, ForwardContext, Op, Shape, register_op

OUTPUTS = ("sequence", "hidden", "cell")


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_sequence(op: Op, shape: Shape) -> None:
    if len(shape) != 2:
        hint = (f": put a 'reshape' node to {_shape_text((shape[-2], shape[-1]))} before it (a digit (1, 28, 28) "
                "becomes 28 steps of 28 features, one row per step)" if len(shape) == 3 and shape[0] == 1 else "")
        raise op.fail(f"'{op.op}' reads a sequence (T, F), time steps first and features last, but its input has "
                      f"shape {_shape_text(shape)}{hint}")


class _RecurrentOp(Op):
    """What ``rnn``, ``lstm`` and ``gru`` share: attributes, shapes, torch's parameters, cost, recording."""

    cell: ClassVar[str]
    arity = None
    defaults: ClassVar[dict[str, Any]] = {"hidden_size": REQUIRED, "num_layers": 1, "bidirectional": False,
                                          "bias": True, "dropout": 0.0, "output": "sequence"}

    @property
    def directions(self) -> int:
        return 2 if self.attrs["bidirectional"] else 1

    def build(self) -> Shape:
        a = self.attrs
        for name in ("hidden_size", "num_layers"):
            if not _is_int(a[name]) or a[name] < 1:
                raise self.fail(f"{name} must be a positive int, got {a[name]!r}")
        for name in ("bidirectional", "bias"):
            if not isinstance(a[name], bool):
                raise self.fail(f"{name} must be true or false, got {a[name]!r}")
        dropout = a["dropout"]
        if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise self.fail(f"dropout is the probability of dropping a value between layers (training only) and "
                            f"must be from 0 to 1, got {dropout!r}")
        outputs = OUTPUTS if self.cell == "lstm" else OUTPUTS[:2]
        if a["output"] not in outputs:
            extra = " (only an LSTM has a cell state)" if a["output"] == "cell" else ""
            raise self.fail(f"output must be one of {', '.join(map(repr, outputs))}, got {a['output']!r}{extra}")
        states = STATES[self.cell]
        if not 1 <= len(self.input_shapes) <= 1 + len(states):
            names = ", ".join(["x", *(f"{s}0" for s in states)])
            raise self.fail(f"'{self.op}' takes 1 to {1 + len(states)} inputs ({names}; initial states default to "
                            f"zeros), got {len(self.input_shapes)}")
        _check_sequence(self, self.input_shapes[0])
        steps = self.input_shapes[0][0]
        state_shape = (a["num_layers"] * self.directions, a["hidden_size"])
        for name, shape in zip(states, self.input_shapes[1:]):
            if shape != state_shape:
                raise self.fail(f"initial state {name}0 has shape {_shape_text(shape)}, but {a['num_layers']} "
                                f"layer(s) x {self.directions} direction(s) of hidden_size {a['hidden_size']} need "
                                f"{_shape_text(state_shape)} (num_layers * directions, hidden_size)")
        if a["output"] == "sequence":
            return (steps, self.directions * a["hidden_size"])
        return state_shape

    def param_shapes(self) -> dict[str, Shape]:
        """torch's ``named_parameters()``: per layer, per direction, ``weight_ih``, ``weight_hh``, ``bias_ih``,
        ``bias_hh``; gates stacked, (G·H, F) and (G·H, H); layer k > 0 reads D·H features."""
        hidden, gates = self.attrs["hidden_size"], len(GATES[self.cell])
        shapes: dict[str, Shape] = {}
        for index, names in enumerate(param_names(self.attrs["num_layers"], self.attrs["bidirectional"],
                                                  self.attrs["bias"])):
            features = self.input_shapes[0][1] if index < self.directions else self.directions * hidden
            for name in names:
                kind = name.split("_l")[0]
                shapes[name] = {"weight_ih": (gates * hidden, features), "weight_hh": (gates * hidden, hidden)}.get(
                    kind, (gates * hidden,))
        return shapes

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's default: every weight and bias uniform in ±1/sqrt(hidden_size)."""
        bound = 1 / math.sqrt(self.attrs["hidden_size"])
        return {name: rng.uniform(-bound, bound, shape).astype(np.float32)
                for name, shape in self.param_shapes().items()}

    def macs(self) -> int:
        """Per step, per layer and direction, the input and the recurrent products: G·H·(F_in + H)."""
        steps = self.input_shapes[0][0]
        return sum(steps * shape[0] * shape[1] for name, shape in self.param_shapes().items()
                   if name.startswith("weight_"))

    def geometry(self):
        return GLOBAL  # the output at step t reads every earlier step (and, bidirectional, every later one)

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        a = self.attrs
        initial = [inputs[1 + j] if 1 + j < len(inputs) else None for j in range(len(STATES[self.cell]))]
        options = {"nonlinearity": a["nonlinearity"]} if self.cell == "rnn" else {}
        outs, cache = recurrent_forward(self.cell, inputs[0], initial, params, a["num_layers"], a["bidirectional"],
                                        a["dropout"], ctx.training, ctx.rng, **options)
        return outs[OUTPUTS.index(a["output"])], (cache, len(inputs))

    def backward(self, dout: np.ndarray, cache: Any):
        inner, given = cache
        slots: list[np.ndarray | None] = [None] * (1 + len(STATES[self.cell]))
        slots[OUTPUTS.index(self.attrs["output"])] = dout
        dx, dinitial, dparams = recurrent_backward(slots[0], slots[1:], inner)
        return [dx, *dinitial][:given], dparams

    def recorded(self, cache: Any) -> dict[str, np.ndarray]:
        """Every step of the forward pass that left ``cache``: ``"h_l0"``, ``"c_l0"``, ``"i_l0"``, ...,
        ``"h_l0_reverse"``, each (N, T, H) with t in input order (see ``engine.layers.recurrent.recorded_states``)."""
        return recorded_states(cache[0])


@register_op("rnn")
class RNNOp(_RecurrentOp):
    """``nn.RNN(batch_first=True)``: h_t = tanh or relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    Inputs: x (T, F), optional h0 (num_layers·D, H). Shape: (T, F) -> (T, D·H) (``output="sequence"``) or
    (num_layers·D, H) (``"hidden"``). Params (per layer k, direction): weight_ih_l{k} (H, F), weight_hh_l{k}
    (H, H), bias_ih_l{k}, bias_hh_l{k} (H,). MACs: T·H·(F_in + H) per layer and direction. Geometry: GLOBAL.
    """

    title = "Recurrent layer"
    cell = "rnn"
    defaults: ClassVar[dict[str, Any]] = {**_RecurrentOp.defaults, "nonlinearity": "tanh"}

    def build(self) -> Shape:
        if self.attrs["nonlinearity"] not in ("tanh", "relu"):
            raise self.fail(f"nonlinearity must be 'tanh' or 'relu', got {self.attrs['nonlinearity']!r}")
        return super().build()


@register_op("lstm")
class LSTMOp(_RecurrentOp):
    """``nn.LSTM(batch_first=True)``, gates i, f, g, o stacked in that order.

    Inputs: x (T, F), optional h0 and c0 (num_layers·D, H). Shape: (T, F) -> (T, D·H) (``output="sequence"``) or
    (num_layers·D, H) (``"hidden"``: h_n, ``"cell"``: c_n). Params: weight_ih_l{k} (4H, F), weight_hh_l{k} (4H, H),
    bias_ih_l{k}, bias_hh_l{k} (4H,). MACs: T·4H·(F_in + H) per layer and direction. Geometry: GLOBAL.
    """

    title = "LSTM"
    cell = "lstm"


@register_op("gru")
class GRUOp(_RecurrentOp):
    """``nn.GRU(batch_first=True)``, gates r, z, n stacked in that order.

    Inputs: x (T, F), optional h0 (num_layers·D, H). Shape: (T, F) -> (T, D·H) or (num_layers·D, H). Params:
    weight_ih_l{k} (3H, F), weight_hh_l{k} (3H, H), bias_ih_l{k}, bias_hh_l{k} (3H,). MACs: T·3H·(F_in + H) per
    layer and direction. Geometry: GLOBAL.
    """

    title = "GRU"
    cell = "gru"


@register_op("sequence_attention")
class SequenceAttentionOp(Op):
    """Attention pooling over time steps: (T, F) -> (F,), the steps' weighted sum with weights summing to 1.

    ``score="additive"`` (Bahdanau): s_t = context · tanh(weight x_t + bias), params weight (A, F), bias (A,),
    context (A,), A = ``attention_size`` (null: F). ``score="dot"``: s_t = query · x_t / √F, param query (F,).
    MACs: T·(A·F + A + F) additive, 2·T·F dot. Geometry: GLOBAL.
    """

    title = "Attention over time"
    defaults: ClassVar[dict[str, Any]] = {"score": "additive", "attention_size": None}

    def build(self) -> Shape:
        score, size = self.attrs["score"], self.attrs["attention_size"]
        if score not in SCORES:
            raise self.fail(f"score must be 'additive' (Bahdanau: context · tanh(W x_t + b)) or 'dot' "
                            f"(query · x_t / sqrt(F)), got {score!r}")
        if score == "dot" and size is not None:
            raise self.fail("attention_size is the width of the additive score's hidden layer; a 'dot' score has "
                            "none: leave it out, or use score 'additive'")
        if size is not None and (not _is_int(size) or size < 1):
            raise self.fail(f"attention_size must be a positive int (or null: the number of features), got {size!r}")
        _check_sequence(self, self.input_shapes[0])
        return (self.input_shapes[0][1],)

    @property
    def attention_size(self) -> int:
        size = self.attrs["attention_size"]
        return self.input_shapes[0][1] if size is None else size

    def param_shapes(self) -> dict[str, Shape]:
        features = self.input_shapes[0][1]
        if self.attrs["score"] == "dot":
            return {"query": (features,)}
        size = self.attention_size
        return {"weight": (size, features), "bias": (size,), "context": (size,)}

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """As PyTorch's linear layers: weight and bias (and query) in ±1/sqrt(F), context in ±1/sqrt(A)."""
        shapes = self.param_shapes()
        fan_in = {name: self.input_shapes[0][1] for name in shapes} | {"context": self.attention_size}
        return {name: rng.uniform(-1 / math.sqrt(fan_in[name]), 1 / math.sqrt(fan_in[name]), shape).astype(np.float32)
                for name, shape in shapes.items()}

    def macs(self) -> int:
        steps, features = self.input_shapes[0]
        if self.attrs["score"] == "dot":
            return 2 * steps * features
        return steps * (self.attention_size * features + self.attention_size + features)

    def geometry(self):
        return GLOBAL

    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext):
        return sequence_attention_forward(inputs[0], self.attrs["score"], params)

    def backward(self, dout: np.ndarray, cache: Any):
        dx, dparams = sequence_attention_backward(dout, cache)
        return [dx], dparams

    def recorded(self, cache: Any) -> dict[str, np.ndarray]:
        """The forward pass's scores s and weights a = softmax(s), each (N, T)."""
        return {"scores": cache["scores"], "weights": cache["weights"]}
