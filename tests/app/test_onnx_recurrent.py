"""ONNX RNN, LSTM and GRU: hand-built models against onnxruntime, PyTorch's exports against PyTorch and onnxruntime.

Hand-built models (``onnx.helper``) cover every layout, direction and kind of initial state, the final states Y_h and
Y_c, and the time-major tensors around the nodes; the engine's recording and lean passes must match onnxruntime
within 1e-5 of the output's scale, and a swapped gate (or direction) must not. ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU``
(batch_first True and False, one and two layers, uni- and bidirectional, with and without initial states, heads on
``output[:, -1]`` and ``h_n[-1]``) are exported by the TorchScript exporter (opsets 14 and 17) and the dynamo
exporter (opset 18) and must match PyTorch and onnxruntime within 1e-4. Every refusal says why.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from onnx import TensorProto, helper

from app.importers import OnnxImportError, import_onnx
from engine.analysis import analyze
from engine.graph import Graph
from tests.app.onnx_models import Builder, check_against_onnxruntime, run_onnxruntime

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
STEPS, FEATURES, HIDDEN = 4, 3, 5


def ops_of(spec: dict) -> list[str]:
    return [n["op"] for n in spec["nodes"]]


def ints(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def batch_of(b: Builder) -> str:
    """The input's batch size as a 1-D tensor, as exporters compute it: Shape -> Gather."""
    return b.node("Gather", [b.node("Shape", ["x"]), b.const(ints(0))], axis=0)


def batch_sized(b: Builder, state: np.ndarray, layout: int) -> str:
    """A constant initial state [D, 1, H] (layout 0) or [1, D, H] (layout 1) expanded to the batch's size, as the
    TorchScript exporter writes ``h0.expand(...)`` and the zeros of a module called without states."""
    dims = [b.const(ints(state.shape[0] if layout == 0 else state.shape[1])), b.const(ints(state.shape[2]))]
    dims.insert(1 if layout == 0 else 0, batch_of(b))
    return b.node("Expand", [b.const(state), b.node("Concat", dims, axis=0)])


def computed_state(b: Builder, layout: int, directions: int) -> str:
    """An initial state computed from the input: tanh(Gemm(flatten(x))) reshaped to [N, D, H], time-major for
    layout 0."""
    flat = b.node("Flatten", ["x"])
    h = b.node("Tanh", [b.node("Gemm", [flat, b.weight((directions * HIDDEN, STEPS * FEATURES)),
                                        b.weight((directions * HIDDEN,))], transB=1)])
    h = b.node("Reshape", [h, b.const(ints(0, directions, HIDDEN))])
    return h if layout == 1 else b.node("Transpose", [h], perm=[1, 0, 2])


def recurrent(kind: str, layout: int = 0, direction: str = "forward", states: str = "none", read: str = "Y",
              opset: int = 17, batch: int | str = "N", **attrs) -> tuple[Builder, str]:
    """A model around one ONNX ``kind`` node; returns the builder and the output, batch first: Y as [N, T, D, H],
    Y_h and Y_c as [N, D, H]. ``states``: "none", "zeros" or "constant" (expanded to the batch's size), "computed"."""
    b = Builder([batch, STEPS, FEATURES], opset=opset, seed=len(kind))
    directions = 2 if direction == "bidirectional" else 1
    rows = GATES[kind] * HIDDEN
    x = "x" if layout == 1 else b.node("Transpose", ["x"], perm=[1, 0, 2])
    inputs = [x, b.weight((directions, rows, FEATURES)), b.weight((directions, rows, HIDDEN)),
              b.weight((directions, 2 * rows), scale=0.3), ""]
    for count in range(2 if kind == "LSTM" else 1):
        if states == "computed":
            inputs.append(computed_state(b, layout, directions))
        elif states in ("zeros", "constant"):
            shape = (directions, 1, HIDDEN) if layout == 0 else (1, directions, HIDDEN)
            value = b.rng.standard_normal(shape).astype(np.float32) * (states == "constant") * (1 + count)
            inputs.append(batch_sized(b, value, layout))
    if direction != "forward":
        attrs["direction"] = direction
    if kind == "GRU":
        attrs.setdefault("linear_before_reset", 1)
    if layout:
        attrs["layout"] = 1
    outputs = b.node(kind, inputs, outputs=["Y", "Y_h", "Y_c"] if kind == "LSTM" else ["Y", "Y_h"],
                     hidden_size=HIDDEN, name=kind.lower(), **attrs)
    out = outputs[("Y", "Y_h", "Y_c").index(read)]
    if layout == 0:  # back to batch first, as a batch_first module's export does
        out = b.node("Transpose", [out], perm=[2, 0, 1, 3] if read == "Y" else [1, 0, 2])
    return b, out


def check(build: Callable[[int], tuple[Builder, str]], layout: int) -> tuple[dict, dict, dict]:
    """Import ``build(layout)`` and hold the engine's recording and lean passes to onnxruntime within 1e-5 of the
    output's scale. onnxruntime's CPU kernels refuse layout 1 ("Batchwise recurrent operations (layout == 1) are not
    supported"), so a layout-1 model is held to its layout-0 twin, ``build(0)``: the same weights, with X, the states
    and the outputs transposed around a time-major node, which is what layout 1 means in the ONNX spec."""
    if layout == 0:
        return check_against_onnxruntime(*build(0))
    b, out = build(1)
    twin, twin_out = build(0)
    x = b.sample(2)
    reference = run_onnxruntime(twin.build(twin_out), x)
    spec, params, info = import_onnx(b.build(out))
    graph = Graph(spec)
    mine = graph.forward(x, params).output
    assert mine.shape == reference.shape, f"engine {mine.shape} vs onnxruntime {reference.shape}"
    error = float(np.abs(mine - reference).max() / np.abs(reference).max())
    assert error <= 1e-5, f"engine vs onnxruntime (layout-0 twin): relative difference {error:.3g}\n{spec}"
    np.testing.assert_array_equal(graph.forward(x, params, keep_caches=False, keep=()).output, mine)
    analyze(graph, strict=False)
    return spec, params, info


# --- against onnxruntime --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("states", ["none", "constant"])
def test_output_sequence_matches_onnxruntime(kind: str, layout: int, direction: str, states: str) -> None:
    spec, params, _ = check(lambda lay: recurrent(kind, lay, direction, states), layout)
    node = next(n for n in spec["nodes"] if n["op"] == kind.lower())
    assert node["hidden_size"] == HIDDEN and node["bidirectional"] is (direction == "bidirectional")
    assert node["output"] == "sequence" and node["num_layers"] == 1
    assert len(node["inputs"]) == (1 if states == "none" else 3 if kind == "LSTM" else 2)
    suffixes = ["", "_reverse"] if direction == "bidirectional" else [""]
    assert sorted(k.split(".", 1)[1] for k in params if k.startswith(f"{node['id']}.")) == sorted(
        f"{w}_l0{s}" for s in suffixes for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


@pytest.mark.parametrize("kind, read", [("RNN", "Y_h"), ("GRU", "Y_h"), ("LSTM", "Y_h"), ("LSTM", "Y_c")])
@pytest.mark.parametrize("layout", [0, 1])
def test_final_states_match_onnxruntime(kind: str, read: str, layout: int) -> None:
    spec, _, _ = check(lambda lay: recurrent(kind, lay, "bidirectional", "constant", read=read), layout)
    assert [n["output"] for n in spec["nodes"] if n["op"] == kind.lower()] == [
        {"Y_h": "hidden", "Y_c": "cell"}[read]]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("layout", [0, 1])
def test_initial_states_computed_from_the_input(kind: str, layout: int) -> None:
    spec, _, _ = check(lambda lay: recurrent(kind, lay, "bidirectional", "computed"), layout)
    node = next(n for n in spec["nodes"] if n["op"] == kind.lower())
    assert "constant" not in ops_of(spec) and len(node["inputs"]) == (3 if kind == "LSTM" else 2)


def test_zero_initial_states_are_the_engine_default() -> None:
    b, out = recurrent("LSTM", 0, "forward", "zeros")
    spec, _, info = check_against_onnxruntime(b, out)
    assert ops_of(spec)[0] == "lstm" and spec["nodes"][0]["inputs"] == ["input"]
    assert any("initial state" in note for note in info["notes"])


def test_a_state_for_every_sample_of_a_static_batch() -> None:
    """With a static batch the exporters write the states at its size; equal rows are one shared state."""
    b = Builder([2, STEPS, FEATURES])
    h0 = np.repeat(b.rng.standard_normal((1, 1, HIDDEN)).astype(np.float32), 2, axis=1)
    x = b.node("Transpose", ["x"], perm=[1, 0, 2])
    y = b.node("GRU", [x, b.weight((1, 3 * HIDDEN, FEATURES)), b.weight((1, 3 * HIDDEN, HIDDEN)), "", "",
                       b.const(h0)], hidden_size=HIDDEN, linear_before_reset=1)
    spec, _, _ = check_against_onnxruntime(b, b.node("Transpose", [b.node("Squeeze", [y, b.const(ints(1))])],
                                                     perm=[1, 0, 2]))
    assert ops_of(spec) == ["constant", "gru"] and spec["nodes"][1]["bias"] is False


@pytest.mark.parametrize("kind, attrs", [
    ("RNN", {"activations": ["Relu"]}),
    ("RNN", {"activations": ["Tanh", "Tanh"], "direction": "bidirectional"}),
    ("LSTM", {"activations": ["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Tanh"], "direction": "bidirectional"}),
    ("GRU", {"activations": ["sigmoid", "tanh"]}),
])
def test_activations_written_out(kind: str, attrs: dict) -> None:
    spec, _, _ = check_against_onnxruntime(*recurrent(kind, 0, **attrs))
    if kind == "RNN":
        assert spec["nodes"][0]["nonlinearity"] == attrs["activations"][0].lower()


def test_sequence_lens_of_every_step_and_zero_peepholes() -> None:
    b = Builder([2, STEPS, FEATURES])
    x = b.node("Transpose", ["x"], perm=[1, 0, 2])
    y = b.node("LSTM", [x, b.weight((1, 4 * HIDDEN, FEATURES)), b.weight((1, 4 * HIDDEN, HIDDEN)),
                        b.weight((1, 8 * HIDDEN)), b.const(np.full(2, STEPS, np.int32)), "", "",
                        b.const(np.zeros((1, 3 * HIDDEN), np.float32))], hidden_size=HIDDEN)
    _, _, info = check_against_onnxruntime(b, b.node("Transpose", [b.node("Squeeze", [y, b.const(ints(1))])],
                                                     perm=[1, 0, 2]))
    assert any("peephole weights P are all zero" in note for note in info["notes"])


# --- negative controls: ONNX's gate order and directions, read as they are, fail the tolerance ------------------
def _swapped(params: dict[str, np.ndarray], node_id: str, kind: str, first: int, second: int) -> dict:
    """``params`` with gate blocks ``first`` and ``second`` of every weight and bias of ``node_id`` exchanged."""
    out = dict(params)
    for key, value in params.items():
        if key.startswith(f"{node_id}."):
            blocks = np.split(value, GATES[kind], axis=0)
            assert not np.array_equal(blocks[first], blocks[second])
            blocks[first], blocks[second] = blocks[second], blocks[first]
            out[key] = np.concatenate(blocks, axis=0)
    assert out.keys() == params.keys() and any(out[k] is not params[k] for k in out), "nothing was swapped"
    return out


def _node_id(spec: dict, kind: str) -> str:
    return next(n["id"] for n in spec["nodes"] if n["op"] == kind.lower())


def _error(b: Builder, out: str, change) -> float:
    model = b.build(out)
    x = b.sample(2)
    spec, params, _ = import_onnx(model)
    reference = run_onnxruntime(model, x)
    mine = Graph(spec).forward(x, change(spec, params)).output
    return float(np.abs(mine - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("kind, first, second", [("LSTM", 0, 1), ("LSTM", 1, 3), ("LSTM", 2, 3), ("GRU", 0, 1),
                                                 ("GRU", 1, 2)])
def test_a_swapped_gate_fails_the_tolerance(kind: str, first: int, second: int) -> None:
    b, out = recurrent(kind, 0, "forward", "constant")
    assert _error(b, out, lambda spec, params: params) <= 1e-5
    error = _error(b, out, lambda spec, params: _swapped(params, _node_id(spec, kind), kind, first, second))
    assert error > 1e-2, f"gates {first} and {second} of {kind} exchanged: relative difference only {error:.3g}"


def test_swapped_directions_fail_the_tolerance() -> None:
    b, out = recurrent("RNN", 0, "bidirectional")

    def reversed_directions(spec: dict, params: dict) -> dict:
        swapped = {}
        for key, value in params.items():
            if key.endswith("_reverse"):
                swapped[key.removesuffix("_reverse")], swapped[key] = value, params[key.removesuffix("_reverse")]
        return {**params, **swapped}

    assert _error(b, out, reversed_directions) > 1e-2


# --- what is read around the nodes: views of time-major tensors -------------------------------------------------
def test_last_step_of_a_batch_first_output_is_a_slice() -> None:
    """``output[:, -1]`` of a batch_first module: Gather along the time axis of a tensor with the batch first."""

    def build(layout: int) -> tuple[Builder, str]:
        b, y = recurrent("GRU", layout, "bidirectional")
        last = b.node("Gather", [b.node("Reshape", [y, b.const(ints(0, STEPS, 2 * HIDDEN))]), b.const(np.int64(-1))],
                      axis=1)
        return b, b.node("Gemm", [last, b.weight((2, 2 * HIDDEN)), b.weight((2,))], transB=1)

    assert ops_of(check(build, 1)[0]) == ["gru", "slice", "reshape", "linear"]
    assert ops_of(check(build, 0)[0]) == ["gru", "slice", "reshape", "linear"]


def test_h_n_of_the_last_layer_reads_that_layer_alone() -> None:
    """Two layers, Y_h joined along the direction axis (torch's h_n), then h_n[-1]: the first layer's final state is
    never computed (its node goes unused and is pruned)."""
    b = Builder(["N", STEPS, FEATURES])
    x = b.node("Transpose", ["x"], perm=[1, 0, 2])
    y0, h0 = b.node("LSTM", [x, b.weight((1, 4 * HIDDEN, FEATURES)), b.weight((1, 4 * HIDDEN, HIDDEN))],
                    outputs=["y0", "h0"], hidden_size=HIDDEN)
    y1 = b.node("Squeeze", [y0, b.const(ints(1))])
    _, h1 = b.node("LSTM", [y1, b.weight((1, 4 * HIDDEN, HIDDEN)), b.weight((1, 4 * HIDDEN, HIDDEN))],
                   outputs=["y1", "h1"], hidden_size=HIDDEN)
    h_n = b.node("Concat", [h0, h1], axis=0)
    spec, _, _ = check_against_onnxruntime(b, b.node("Gather", [h_n, b.const(np.int64(-1))], axis=0))
    assert ops_of(spec) == ["lstm", "lstm", "reshape"]
    assert [n["output"] for n in spec["nodes"][:2]] == ["sequence", "hidden"]


def test_both_outputs_read_make_two_nodes_with_the_same_weights() -> None:
    b, y = recurrent("RNN", 0)
    h = b.node("Reshape", [b.node("Transpose", [b.node("Identity", ["Y_h"])], perm=[1, 0, 2]),
                           b.const(ints(0, 1, 1, HIDDEN))])
    spec, params, info = check_against_onnxruntime(b, b.node("Add", [y, h]))
    assert [n["output"] for n in spec["nodes"] if n["op"] == "rnn"] == ["sequence", "hidden"]
    assert np.array_equal(params["rnn.weight_hh_l0"], params["rnn_hidden.weight_hh_l0"])
    assert any("one engine node per output" in note for note in info["notes"])


def test_time_steps_sliced_and_reshaped_while_time_major() -> None:
    """Slice and Reshape of a view keep the batch axis in place; Shape sees it; Unsqueeze puts an axis before it."""
    b, _ = recurrent("GRU", 0, "bidirectional")
    steps = b.node("Slice", ["Y", b.const(ints(1)), b.const(ints(3)), b.const(ints(0))])  # [2, 2, N, H]
    flat = b.node("Reshape", [b.node("Transpose", [steps], perm=[0, 2, 1, 3]),
                              b.node("Concat", [b.const(ints(2)), batch_of(b), b.const(ints(-1))], axis=0)])
    wide = b.node("Unsqueeze", [flat, b.const(ints(0))])  # [1, 2, N, 2H]
    spec, _, _ = check_against_onnxruntime(b, b.node("Transpose", [wide], perm=[2, 0, 1, 3]))
    assert ops_of(spec) == ["gru", "reshape", "slice", "reshape"]


# --- refusals ---------------------------------------------------------------------------------------------------
def _refusal(b: Builder, out: str) -> str:
    with pytest.raises(OnnxImportError, match="cannot be imported") as caught:
        import_onnx(b.build(out))
    return str(caught.value)


@pytest.mark.parametrize("kind, attrs, words", [
    ("GRU", {"linear_before_reset": 0}, "linear_before_reset=0 (ONNX's default) applies the reset gate before"),
    ("LSTM", {"activations": ["HardSigmoid", "Tanh", "Tanh"]}, "other activations have no engine equivalent"),
    ("RNN", {"activations": ["LeakyRelu"]}, "Tanh or Relu, the same in both directions"),
    ("GRU", {"activations": ["Sigmoid"]}, "needs 2 (2 per direction)"),
    ("LSTM", {"clip": 3.0}, "clip=3 clips the gates' inputs"),
    ("LSTM", {"input_forget": 1}, "couples the input and forget gates"),
    ("RNN", {"direction": "reverse"}, "runs only backwards through time"),
])
def test_refused_cells_say_why(kind: str, attrs: dict, words: str) -> None:
    b, out = recurrent(kind, 1, **attrs)
    assert words in _refusal(b, out)


def test_peepholes_are_refused() -> None:
    b = Builder(["N", STEPS, FEATURES])
    y = b.node("LSTM", ["x", b.weight((1, 4 * HIDDEN, FEATURES)), b.weight((1, 4 * HIDDEN, HIDDEN)), "", "", "", "",
                        b.weight((1, 3 * HIDDEN))], hidden_size=HIDDEN, layout=1)
    assert "peephole weights P (the cell state feeding the gates)" in _refusal(b, y)


@pytest.mark.parametrize("lengths", [[STEPS, STEPS - 1], [STEPS - 2, STEPS - 2]])
def test_sequences_shorter_than_the_input_are_refused(lengths: list[int]) -> None:
    b = Builder([2, STEPS, FEATURES])
    y = b.node("GRU", ["x", b.weight((1, 3 * HIDDEN, FEATURES)), b.weight((1, 3 * HIDDEN, HIDDEN)), "",
                       b.const(np.array(lengths, np.int32))], hidden_size=HIDDEN, linear_before_reset=1, layout=1)
    refusal = _refusal(b, y)
    assert f"sequence_lens {lengths} differs from the {STEPS} time steps" in refusal
    assert "padded sequences of different lengths" in refusal


def test_a_time_major_model_input_is_refused() -> None:
    """nn.LSTM(batch_first=False) exported on its own: the model's input is [T, N, F], the batch axis second."""
    b = Builder([STEPS, 1, FEATURES])
    y = b.node("LSTM", ["x", b.weight((1, 4 * HIDDEN, FEATURES)), b.weight((1, 4 * HIDDEN, HIDDEN))],
               hidden_size=HIDDEN)
    refusal = _refusal(b, y)
    assert "X 'x' is read time-major (layout 0, batch on axis 1), but the model's input, which is time-major" in refusal
    assert "Export the module with batch_first=True" in refusal


def test_a_time_major_tensor_read_by_another_op_is_refused() -> None:
    b, _ = recurrent("RNN", 0)
    refusal = _refusal(b, b.node("Relu", ["Y"]))
    assert "'Y' [4, 1, N, 5] has the batch axis at position 2 (time-major, since node 'rnn') and a Relu cannot take" \
        in refusal
    b, _ = recurrent("RNN", 0)
    assert "it is the model's output, whose batch axis the engine puts first" in _refusal(b, "Y")


def test_states_that_differ_between_samples_are_refused() -> None:
    b = Builder([2, STEPS, FEATURES])
    y = b.node("RNN", ["x", b.weight((1, HIDDEN, FEATURES)), b.weight((1, HIDDEN, HIDDEN)), "", "",
                       b.weight((2, 1, HIDDEN))], hidden_size=HIDDEN, layout=1)
    assert "initial_h holds a different state for each of the 2 samples" in _refusal(b, y)


@pytest.mark.parametrize("build, words", [
    (lambda b: b.node("Gather", ["Y", b.const(np.int64(0))], axis=2), "gathers along axis 2, the batch axis"),
    (lambda b: b.node("Gather", ["Y", b.const(ints(3, 0))], axis=0), "indices [3, 0] do not form a slice"),
    (lambda b: b.node("Squeeze", ["Y", b.const(ints(2))]), "it squeezes axis 2 of [4, 1, N, 5], the batch axis"),
    (lambda b: b.node("Reshape", ["Y", b.const(ints(4, -1))]), "mixes the batch axis of [4, 1, N, 5] with other axes"),
    (lambda b: b.node("Concat", ["Y", "Y"], axis=2), "axis 2 is the batch axis of [4, 1, N, 5]"),
    (lambda b: b.node("Slice", ["Y", b.const(ints(0)), b.const(ints(1)), b.const(ints(2))]),
     "it takes samples 0:1:1 of the batch axis"),
])
def test_what_cannot_bring_the_batch_axis_back_is_refused(build, words: str) -> None:
    b, _ = recurrent("RNN", 0)
    assert words in _refusal(b, build(b))


def test_a_transpose_moving_the_batch_axis_elsewhere_is_still_refused() -> None:
    """Only [1, 0, 2] of a sequence becomes a time-major view; other perms that move the batch axis stay refused."""
    b = Builder(["N", 2, STEPS, FEATURES])
    assert "moves the batch axis (axis 0) to position 1" in _refusal(b, b.node("Transpose", ["x"], perm=[1, 0, 2, 3]))


def test_an_unsupported_node_is_listed_with_the_recurrent_ones_known() -> None:
    b, out = recurrent("LSTM", 1)
    b.nodes.append(helper.make_node("Celu", [out], ["celu"], name="celu"))
    model = helper.make_model(helper.make_graph(
        b.nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", STEPS, FEATURES])],
        [helper.make_tensor_value_info("celu", TensorProto.FLOAT, None)], b.initializers),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError) as caught:
        import_onnx(model.SerializeToString())
    supported = str(caught.value).split("Supported: ")[1].split(", ")
    assert caught.value.unsupported == [("Celu", "celu")] and {"RNN", "LSTM", "GRU"} <= set(supported)


# --- PyTorch's exports ----------------------------------------------------------------------------------------
def _module(torch, kind: str, batch_first: bool, layers: int, bidirectional: bool, states: bool, head: str,
            relu: bool = False):
    nn = torch.nn

    class Sequence(nn.Module):
        """A recurrent module as users write one: ``batch_first`` or a transpose before it, optional initial states
        (a buffer expanded to the batch), then the sequence, ``output[:, -1]`` or ``h_n[-1]`` into a linear head."""

        def __init__(self) -> None:
            super().__init__()
            extra = {"nonlinearity": "relu"} if relu else {}
            self.rnn = getattr(nn, kind)(FEATURES, HIDDEN, num_layers=layers, bidirectional=bidirectional,
                                         batch_first=batch_first, **extra)
            directions = 2 if bidirectional else 1
            self.register_buffer("h0", torch.randn(layers * directions, 1, HIDDEN))
            self.head = nn.Linear(HIDDEN * (directions if head == "last" else 1), 3)

        def forward(self, x):
            if not batch_first:
                x = x.transpose(0, 1)
            given = ()
            if states:
                h0 = self.h0.expand(-1, x.shape[0 if batch_first else 1], -1).contiguous()
                given = ((h0, 0.5 * h0),) if kind == "LSTM" else (h0,)
            output, h_n = self.rnn(x, *given)
            h_n = h_n[0] if kind == "LSTM" else h_n
            if head == "sequence":
                return output if batch_first else output.transpose(0, 1)
            if head == "last":
                return self.head(output[:, -1] if batch_first else output[-1])
            return self.head(h_n[-1])

    torch.manual_seed(len(kind) + 10 * layers + bidirectional)
    return Sequence().eval()


def _export(torch, model, x, exporter: str, dynamic: bool) -> bytes:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if exporter.startswith("torchscript"):
                buffer = io.BytesIO()
                torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=int(exporter.rsplit("-", 1)[1]),
                                  input_names=["x"], dynamic_axes={"x": {0: "batch"}} if dynamic else None)
                return buffer.getvalue()
            shapes = ({0: torch.export.Dim("batch", min=2)},) if dynamic else None
            return torch.onnx.export(model, (x,), dynamo=True, opset_version=18, verbose=False,
                                     dynamic_shapes=shapes).model_proto.SerializeToString()
        except (ImportError, ModuleNotFoundError) as error:  # the dynamo exporter needs onnxscript
            pytest.skip(f"the {exporter} exporter is not usable here: {error}")


# (kind, batch_first, layers, bidirectional, initial states, head, exporter, dynamic batch): each kind, layout,
# depth, direction, head, exporter and batch kind appears with the others' values varied, not every combination
TORCH_CASES = [
    ("LSTM", True, 1, False, False, "sequence", "torchscript-17", False),
    ("LSTM", False, 2, True, True, "last", "torchscript-17", True),
    ("LSTM", True, 2, True, False, "hidden", "torchscript-14", True),
    ("LSTM", False, 1, False, True, "hidden", "torchscript-14", False),
    ("GRU", True, 2, False, True, "last", "torchscript-17", False),
    ("GRU", False, 1, True, False, "sequence", "torchscript-17", True),
    ("GRU", True, 1, True, True, "hidden", "torchscript-14", True),
    ("GRU", False, 2, True, False, "hidden", "torchscript-14", False),
    ("RNN", True, 2, True, True, "sequence", "torchscript-17", True),
    ("RNN", False, 1, False, False, "last", "torchscript-17", False),
    ("RNN", True, 1, True, False, "hidden", "torchscript-14", False),
    ("RNN", False, 2, False, True, "hidden", "torchscript-14", True),
    ("LSTM", True, 2, True, True, "last", "dynamo", False),
    ("LSTM", False, 1, False, False, "hidden", "dynamo", True),
    ("GRU", True, 1, False, False, "hidden", "dynamo", True),
    ("GRU", False, 2, True, True, "sequence", "dynamo", False),
]


@pytest.mark.torch
@pytest.mark.parametrize("kind, batch_first, layers, bidirectional, states, head, exporter, dynamic", TORCH_CASES,
                         ids=["-".join(map(str, case)) for case in TORCH_CASES])
def test_pytorch_exports_match_pytorch_and_onnxruntime(torch_or_skip, kind, batch_first, layers, bidirectional,
                                                       states, head, exporter, dynamic) -> None:
    torch = torch_or_skip
    model = _module(torch, kind, batch_first, layers, bidirectional, states, head, relu=kind == "RNN" and layers == 2)
    x = torch.randn(3 if dynamic else 1, STEPS, FEATURES, generator=torch.Generator().manual_seed(2))
    data = _export(torch, model, x, exporter, dynamic)
    with torch.no_grad():
        expected = model(x).numpy()
    reference = run_onnxruntime(data, x.numpy())
    spec, params, _ = import_onnx(data)
    graph = Graph(spec)
    mine = graph.forward(x.numpy(), params).output
    scale = float(np.abs(expected).max())
    for name, theirs in (("torch", expected), ("onnxruntime", reference)):
        assert mine.shape == theirs.shape, f"mine {mine.shape} vs {name} {theirs.shape}"
        error = float(np.abs(mine - theirs).max()) / scale
        assert error <= 1e-4, f"mine vs {name}: relative difference {error:.3g}\n{ops_of(spec)}"
    np.testing.assert_array_equal(graph.forward(x.numpy(), params, keep_caches=False, keep=()).output, mine)
    assert ops_of(spec).count(kind.lower()) == layers, "one engine node per layer (h_n[-1] reads the last alone)"


@pytest.mark.torch
@pytest.mark.parametrize("batch_first, bidirectional", [(True, False), (False, True)])
def test_dynamo_writes_nn_rnn_as_a_loop_which_is_refused(torch_or_skip, batch_first, bidirectional) -> None:
    """The dynamo exporter has no ONNX RNN for nn.RNN: it unrolls the steps into MatMul, Add and Tanh on time-major
    tensors. The refusal says so and names the exporter that writes an RNN node."""
    torch = torch_or_skip
    model = _module(torch, "RNN", batch_first, 1, bidirectional, False, "last")
    data = _export(torch, model, torch.randn(1, STEPS, FEATURES), "dynamo", False)
    with pytest.raises(OnnxImportError) as caught:
        import_onnx(data)
    message = str(caught.value)
    assert "has the batch axis at position 1 (time-major" in message and "a MatMul cannot take it" in message
    assert "If this is an nn.RNN: torch.onnx.export(dynamo=True) writes it as a loop" in message
    assert "export it with dynamo=False, which writes one ONNX RNN node" in message
