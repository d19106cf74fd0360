"""Unit explanations of rnn, lstm and gru nodes: hidden unit j at step t, every gate's numbers recomputed here by
hand, agreement with the engine on every unit of many configurations, negative controls, and PyTorch."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import engine.explain.recurrent as recurrent_explainer
from engine.errors import ShapeError
from engine.explain import MAX_TERMS, explain_unit, unit_shape
from engine.graph import Graph

T, F, H = 5, 4, 3


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def spec_of(cell: str, states: bool = False, steps: int = T, **attrs) -> dict:
    """A sequence (steps, F) read by ``cell``; with ``states``, its initial states from constant nodes."""
    directions = 2 if attrs.get("bidirectional") else 1
    state_shape = [attrs.get("num_layers", 1) * directions, H]
    nodes = []
    inputs = ["input"]
    if states:
        names = ["h0", "c0"] if cell == "lstm" else ["h0"]
        nodes += [{"id": name, "op": "constant", "shape": state_shape, "inputs": []} for name in names]
        inputs += names
    nodes.append({"id": "rnn", "op": cell, "hidden_size": H, "inputs": inputs, **attrs})
    return {"input_shape": [steps, F], "nodes": nodes}


def run(spec: dict, seed: int = 0, dtype=np.float32, scale: float = 1.0):
    graph = Graph(spec)
    rng = np.random.default_rng(seed)
    params = {name: (rng.uniform(-1, 1, shape) * scale).astype(dtype) for name, shape in graph.param_shapes().items()}
    x = rng.standard_normal((1, *spec["input_shape"])).astype(dtype)
    return graph, params, graph.forward(x, params, keep_caches=False)


def agrees(value: float, engine_value: float) -> bool:
    return value == pytest.approx(engine_value, rel=1e-4, abs=1e-5)


def assert_matches_engine(e: dict) -> None:
    assert agrees(e["result"], e["engine_value"]), (e["index"], e["result"], e["engine_value"])
    for gate in e["gates"]:
        assert agrees(gate["result"], gate["engine_value"]), (e["index"], gate["gate"])
    if "cell_state" in e:
        assert agrees(e["cell_state"]["result"], e["cell_state"]["engine_value"]), e["index"]


# --- by hand -----------------------------------------------------------------------------------------------------
def side_sum(values, weights, bias):
    return float(np.dot(np.asarray(values, np.float64), np.asarray(weights, np.float64))) + float(bias)


def test_lstm_unit_by_hand_every_gate_from_the_weights():
    graph, params, trace = run(spec_of("lstm", states=True), seed=3)
    t, u = 2, 1
    e = explain_unit(graph, params, trace, "rnn", (t, u))
    x = trace.activations["input"][0].astype(np.float64)
    w_ih, w_hh = params["rnn.weight_ih_l0"].astype(np.float64), params["rnn.weight_hh_l0"].astype(np.float64)
    b_ih, b_hh = params["rnn.bias_ih_l0"].astype(np.float64), params["rnn.bias_hh_l0"].astype(np.float64)
    # the states before step t, by a loop written here in float64 from h0 and c0
    h, c = params["h0.value"][0].astype(np.float64), params["c0.value"][0].astype(np.float64)
    for step in range(t):
        a = w_ih @ x[step] + b_ih + w_hh @ h + b_hh
        i, f, g, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
    np.testing.assert_allclose(e["x"], x[t])
    np.testing.assert_allclose(e["h_prev"], h, rtol=1e-5, atol=1e-6)
    assert e["previous_step"] == t - 1 and e["h_prev_from"] == f"h at step {t - 1}"
    expected = {}
    for gi, name in enumerate("ifgo"):
        row = gi * H + u
        gate = e["gates"][gi]
        assert (gate["gate"], gate["row"]) == (name, row)
        assert gate["input_side"]["sum"] == pytest.approx(side_sum(x[t], w_ih[row], b_ih[row]), rel=1e-12)
        assert gate["input_side"]["bias"] == pytest.approx(b_ih[row])
        assert gate["recurrent_side"]["sum"] == pytest.approx(side_sum(h, w_hh[row], b_hh[row]), rel=1e-5, abs=1e-6)
        assert gate["recurrent_side"]["bias"] == pytest.approx(b_hh[row])
        pre = side_sum(x[t], w_ih[row], b_ih[row]) + side_sum(h, w_hh[row], b_hh[row])
        assert gate["pre_activation"] == pytest.approx(pre, rel=1e-5, abs=1e-6)
        expected[name] = math.tanh(pre) if name == "g" else 1 / (1 + math.exp(-pre))
        assert gate["activation"] == ("tanh" if name == "g" else "sigmoid")
        assert gate["result"] == pytest.approx(expected[name], rel=1e-5, abs=1e-6)
        assert gate["reset"] is None and gate["title"]
    cell = e["cell_state"]
    assert cell["previous"] == pytest.approx(c[u], rel=1e-5, abs=1e-6)
    assert cell["forget_term"] == pytest.approx(expected["f"] * c[u], rel=1e-5, abs=1e-6)
    assert cell["input_term"] == pytest.approx(expected["i"] * expected["g"], rel=1e-5, abs=1e-6)
    c_t = expected["f"] * c[u] + expected["i"] * expected["g"]
    assert cell["result"] == pytest.approx(c_t, rel=1e-5, abs=1e-6)
    assert e["result"] == pytest.approx(expected["o"] * math.tanh(c_t), rel=1e-5, abs=1e-6)
    assert_matches_engine(e)
    # step 0 reads the initial states
    first = explain_unit(graph, params, trace, "rnn", (0, u))
    np.testing.assert_allclose(first["h_prev"], params["h0.value"][0])
    assert first["cell_state"]["previous"] == pytest.approx(params["c0.value"][0, u])
    assert first["previous_step"] is None and "initial state h0 (node 'h0'" in first["h_prev_from"]


def test_gru_unit_by_hand_the_reset_gate_scales_the_recurrent_side():
    graph, params, trace = run(spec_of("gru"), seed=4)
    t, u = 3, 2
    e = explain_unit(graph, params, trace, "rnn", (t, u))
    x = trace.activations["input"][0].astype(np.float64)
    h_prev = trace.activations["rnn"][0, t - 1].astype(np.float64)  # output "sequence": h at every step
    w_ih, w_hh = params["rnn.weight_ih_l0"].astype(np.float64), params["rnn.weight_hh_l0"].astype(np.float64)
    b_ih, b_hh = params["rnn.bias_ih_l0"].astype(np.float64), params["rnn.bias_hh_l0"].astype(np.float64)
    rows = [g * H + u for g in range(3)]
    r = sigmoid(side_sum(x[t], w_ih[rows[0]], b_ih[rows[0]]) + side_sum(h_prev, w_hh[rows[0]], b_hh[rows[0]]))
    z = sigmoid(side_sum(x[t], w_ih[rows[1]], b_ih[rows[1]]) + side_sum(h_prev, w_hh[rows[1]], b_hh[rows[1]]))
    n = np.tanh(side_sum(x[t], w_ih[rows[2]], b_ih[rows[2]]) + r * side_sum(h_prev, w_hh[rows[2]], b_hh[rows[2]]))
    gates = {g["gate"]: g for g in e["gates"]}
    assert list(gates) == ["r", "z", "n"]
    for name, value in (("r", r), ("z", z), ("n", n)):
        assert gates[name]["result"] == pytest.approx(value, rel=1e-6)
    assert gates["n"]["reset"] == pytest.approx(r, rel=1e-6) and gates["r"]["reset"] is None
    assert gates["n"]["pre_activation"] == pytest.approx(
        gates["n"]["input_side"]["sum"] + r * gates["n"]["recurrent_side"]["sum"], rel=1e-9)
    update = e["update"]
    assert update["h_prev"] == pytest.approx(h_prev[u])
    assert update["new_term"] == pytest.approx((1 - z) * n, rel=1e-6)
    assert update["kept_term"] == pytest.approx(z * h_prev[u], rel=1e-6)
    assert e["result"] == pytest.approx((1 - z) * n + z * h_prev[u], rel=1e-6)
    assert e["activation_index"] == [t, u]
    assert e["engine_value"] == float(trace.activations["rnn"][0, t, u])
    assert_matches_engine(e)


def test_relu_rnn_unit_by_hand_and_its_reverse_direction_reads_the_next_step():
    graph, params, trace = run(spec_of("rnn", nonlinearity="relu", bidirectional=True), seed=5)
    x = trace.activations["input"][0].astype(np.float64)
    t, u = 1, 0
    e = explain_unit(graph, params, trace, "rnn", (t, H + u))  # column H + u: the reverse direction's unit u
    assert (e["direction"], e["unit"], e["previous_step"]) == ("reverse", u, t + 1)
    h_next = trace.activations["rnn"][0, t + 1, H:].astype(np.float64)
    w_ih, w_hh = params["rnn.weight_ih_l0_reverse"], params["rnn.weight_hh_l0_reverse"]
    b_ih, b_hh = params["rnn.bias_ih_l0_reverse"], params["rnn.bias_hh_l0_reverse"]
    pre = side_sum(x[t], w_ih[u], b_ih[u]) + side_sum(h_next, w_hh[u], b_hh[u])
    (gate,) = e["gates"]
    assert (gate["gate"], gate["activation"]) == ("h", "relu")
    assert gate["pre_activation"] == pytest.approx(pre, rel=1e-6)
    assert e["result"] == pytest.approx(max(pre, 0.0), rel=1e-6, abs=1e-12)
    assert_matches_engine(e)
    # the reverse direction's first step read is the last one, from zeros
    last = explain_unit(graph, params, trace, "rnn", (T - 1, H + u))
    assert last["previous_step"] is None and last["h_prev"] == [0.0] * H and "zeros" in last["h_prev_from"]


# --- every unit, every configuration ----------------------------------------------------------------------------
CONFIGS = [
    ("rnn", {}, False), ("rnn", {"num_layers": 2, "bidirectional": True, "output": "hidden"}, True),
    ("lstm", {}, False), ("lstm", {"bidirectional": True, "bias": False, "output": "cell"}, True),
    ("lstm", {"num_layers": 2, "output": "hidden"}, False),
    ("gru", {"bidirectional": True}, True), ("gru", {"num_layers": 2, "bidirectional": True}, False),
]


@pytest.mark.parametrize("cell, attrs, states", CONFIGS, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CONFIGS)])
def test_every_unit_matches_the_engine(cell, attrs, states):
    graph, params, trace = run(spec_of(cell, states, **attrs), seed=len(attrs))
    node = graph.by_id["rnn"]
    shape = unit_shape(node)
    layers = attrs.get("num_layers", 1)
    assert shape == ((T, node.op.directions * H) if layers == 1 else (layers, T, node.op.directions * H))
    for index in itertools.product(*(range(n) for n in shape)):
        e = explain_unit(graph, params, trace, "rnn", index)
        assert_matches_engine(e)
        at = e["activation_index"]
        if at is not None:  # where the node's own output holds the value, it is the run's number exactly
            assert e["engine_value"] == float(trace.activations["rnn"][0][tuple(at)])
        elif attrs.get("output", "sequence") == "sequence":
            assert index[0] < layers - 1  # a lower layer's state is not in the output
    with pytest.raises(ShapeError, match="step t, then unit j"):
        explain_unit(graph, params, trace, "rnn", (T, 0) if layers == 1 else (0, T, 0))


def test_final_state_units_point_at_h_n():
    graph, params, trace = run(spec_of("lstm", bidirectional=True, output="hidden"), seed=2)
    forward = explain_unit(graph, params, trace, "rnn", (T - 1, 1))
    reverse = explain_unit(graph, params, trace, "rnn", (0, H + 1))
    assert forward["activation_index"] == [0, 1] and reverse["activation_index"] == [1, 1]
    assert explain_unit(graph, params, trace, "rnn", (1, 1))["activation_index"] is None
    assert forward["chain"] == [] and reverse["engine_value"] == float(trace.activations["rnn"][0, 1, 1])


def test_wide_sums_list_the_largest_products_and_add_up_the_rest():
    spec = {"input_shape": [3, 40], "nodes": [{"id": "rnn", "op": "lstm", "hidden_size": 20}]}
    graph, params, trace = run(spec)
    e = explain_unit(graph, params, trace, "rnn", (2, 7))
    for gate in e["gates"]:
        for side, width in (("input_side", 40), ("recurrent_side", 20)):
            part = gate[side]
            assert len(part["terms"]) == MAX_TERMS and part["omitted"]["count"] == width - MAX_TERMS
            listed = math.fsum(term["product"] for term in part["terms"])
            assert listed + part["omitted"]["sum"] == pytest.approx(part["total"], rel=1e-9, abs=1e-12)
            assert part["sum"] == pytest.approx(part["total"] + part["bias"], rel=1e-12)
            magnitudes = [abs(term["product"]) for term in part["terms"]]
            assert magnitudes == sorted(magnitudes, reverse=True)
    assert_matches_engine(e)


# --- negative controls: the comparison catches a wrong formula ---------------------------------------------------
def test_a_wrong_gate_activation_is_caught(monkeypatch):
    graph, params, trace = run(spec_of("lstm"), seed=6)
    wrong = {**recurrent_explainer.ACTIVATIONS, "lstm": {**recurrent_explainer.ACTIVATIONS["lstm"], "f": "tanh"}}
    monkeypatch.setattr(recurrent_explainer, "ACTIVATIONS", wrong)
    caught = 0
    for t in range(T):
        e = explain_unit(graph, params, trace, "rnn", (t, 0))
        with pytest.raises(AssertionError):
            assert_matches_engine(e)
        caught += 1
    assert caught == T


def test_the_gates_in_another_order_are_caught(monkeypatch):
    """ONNX stacks the GRU's gates z, r, h: read in that order, the rows belong to other gates."""
    graph, params, trace = run(spec_of("gru"), seed=7, scale=2.0)
    monkeypatch.setattr(recurrent_explainer, "GATES", {**recurrent_explainer.GATES, "gru": ("z", "r", "n")})
    for t in range(T):
        e = explain_unit(graph, params, trace, "rnn", (t, 1))
        with pytest.raises(AssertionError):
            assert_matches_engine(e)


# --- PyTorch ---------------------------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_units_match_pytorch(torch_or_skip, cell):
    torch = torch_or_skip
    attrs = {"num_layers": 2, "bidirectional": True}
    graph, params, trace = run(spec_of(cell, **attrs), seed=11, dtype=np.float64)
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        F, H, num_layers=2, bidirectional=True, batch_first=True).double()
    with torch.no_grad():
        for name, value in module.named_parameters():
            value.copy_(torch.from_numpy(params[f"rnn.{name}"]))
        out = module(torch.from_numpy(trace.activations["input"]))[0][0].numpy()  # (T, 2H), the top layer
    for t, j in itertools.product(range(T), range(2 * H)):
        e = explain_unit(graph, params, trace, "rnn", (1, t, j))
        assert e["result"] == pytest.approx(out[t, j], rel=1e-9, abs=1e-12), f"mine vs torch at step {t}, column {j}"


@pytest.mark.parametrize("cell, attrs, states", CONFIGS, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CONFIGS)])
def test_a_position_of_the_output_is_the_unit_whose_state_sits_there(cell, attrs, states):
    """unit_of_activation inverts activation_index: every position of an output of hidden states names the unit
    whose explanation points back at it, and a cell output names none."""
    graph, params, trace = run(spec_of(cell, states, **attrs), seed=3)
    node = graph.by_id["rnn"]
    for position in itertools.product(*(range(n) for n in node.output_shape)):
        unit = recurrent_explainer.unit_of_activation(node, position)
        if attrs.get("output") == "cell":
            assert unit is None
            continue
        e = explain_unit(graph, params, trace, "rnn", unit)
        assert e["activation_index"] == list(position), (position, unit)
        assert e["engine_value"] == float(trace.activations["rnn"][0][position])
    assert recurrent_explainer.unit_of_activation(node, (node.output_shape[0], 0)) is None  # outside
