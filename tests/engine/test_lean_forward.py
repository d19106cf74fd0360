"""The lean inference pass, ``Graph.forward(..., keep_caches=False, keep=...)``: it records only what was asked
for, releases the rest early and lets relu/relu6 write into a buffer nobody reads again. Its numbers must be
the recording pass's, bit for bit, and it must never write into the caller's input, a parameter, a recorded
activation or anything a live activation is a view of."""

from __future__ import annotations

import numpy as np
import pytest

from engine import INPUT, Graph
from engine.ops.activation import Relu6Op, ReluOp

BRANCHY = {  # skip connection, concatenation, gating, a view (flatten) and activations reading "input"
    "input_shape": [3, 9, 9],
    "nodes": [
        {"id": "raw", "op": "relu", "inputs": ["input"]},  # must not overwrite the caller's input
        {"id": "conv1", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "act1", "op": "relu6"},
        {"id": "dw", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "groups": 4},
        {"id": "act2", "op": "relu"},
        {"id": "sum", "op": "add", "inputs": ["act2", "act1"]},
        {"id": "gate", "op": "sigmoid", "inputs": ["sum"]},
        {"id": "gated", "op": "mul", "inputs": ["sum", "gate"]},
        {"id": "cat", "op": "concat", "inputs": ["gated", "act1"], "dim": 1},
        {"id": "mix", "op": "conv2d", "out_channels": 6, "kernel_size": 1},  # negative values for act3
        {"id": "pool", "op": "global_avg_pool"},
        {"id": "flat", "op": "flatten"},
        {"id": "act3", "op": "relu", "inputs": ["flat"]},
        {"id": "fc", "op": "linear", "out_features": 5},
    ],
}


@pytest.fixture
def branchy():
    graph = Graph(BRANCHY)
    params = graph.init_params(seed=1)
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 9)).astype(np.float32)
    return graph, params, x


def test_lean_pass_gives_the_recording_pass_numbers_and_leaves_inputs_alone(branchy):
    graph, params, x = branchy
    x_before, params_before = x.copy(), {k: v.copy() for k, v in params.items()}
    full = graph.forward(x, params, keep_caches=False)
    lean = graph.forward(x, params, keep_caches=False, keep=())
    assert set(lean.activations) == {INPUT, "fc"}
    np.testing.assert_array_equal(lean.output, full.output)
    np.testing.assert_array_equal(x, x_before)
    for name, value in params.items():
        np.testing.assert_array_equal(value, params_before[name], err_msg=name)


def test_kept_nodes_are_recorded_unchanged(branchy):
    graph, params, x = branchy
    full = graph.forward(x, params, keep_caches=False)
    lean = graph.forward(x, params, keep_caches=False, keep=["conv1", "dw", "flat"])
    assert set(lean.activations) == {INPUT, "conv1", "dw", "flat", "fc"}
    for name in ("conv1", "dw", "flat", "fc"):  # conv1 and dw feed relu6/relu, flat feeds relu: none overwritten
        np.testing.assert_array_equal(lean.activations[name], full.activations[name], err_msg=name)


def test_stop_at_ends_the_lean_pass_there(branchy):
    graph, params, x = branchy
    full = graph.forward(x, params, keep_caches=False)
    lean = graph.forward(x, params, keep_caches=False, stop_at="sum", keep=["act1"])
    assert lean.output_id == "sum" and set(lean.activations) == {INPUT, "act1", "sum"}
    np.testing.assert_array_equal(lean.output, full.activations["sum"])
    np.testing.assert_array_equal(lean.activations["act1"], full.activations["act1"])


def _spy(monkeypatch, op_class) -> list[int]:
    """Count the calls of an op's in-place form."""
    calls: list[int] = []
    original = op_class.layer_inplace

    def counted(x):
        calls.append(id(x))
        return original(x)

    monkeypatch.setattr(op_class, "layer_inplace", staticmethod(counted))
    return calls


def test_activations_overwrite_only_buffers_nobody_reads(branchy, monkeypatch):
    graph, params, x = branchy
    relu6, relu = _spy(monkeypatch, Relu6Op), _spy(monkeypatch, ReluOp)
    graph.forward(x, params, keep_caches=False, keep=())
    # act1 (relu6 of conv1) and act2 (relu of dw) may write in place; raw reads the caller's input, and act3
    # reads flat, a view of pool, which nothing else reads: it may too.
    assert len(relu6) == 1 and len(relu) == 2
    relu6.clear(), relu.clear()
    graph.forward(x, params, keep_caches=False, keep=["conv1", "pool"])  # recorded, or viewed by a live node
    assert relu6 == [] and len(relu) == 1
    relu6.clear(), relu.clear()
    graph.forward(x, params, keep_caches=False)  # the recording pass never overwrites
    assert relu6 == [] and relu == []


def test_a_view_of_a_kept_activation_is_not_overwritten(branchy, monkeypatch):
    """Negative control for the view rule: with the rule switched off, relu writes through ``flat`` into the
    recorded ``pool``, and the comparison notices."""
    graph, params, x = branchy
    full = graph.forward(x, params, keep_caches=False)
    assert (full.activations["pool"] < 0).any()  # relu would change it
    lean = graph.forward(x, params, keep_caches=False, keep=["pool"])
    np.testing.assert_array_equal(lean.activations["pool"], full.activations["pool"])
    monkeypatch.setattr("engine.graph._may_overwrite", lambda name, live, foreign: True)
    broken = graph.forward(x, params, keep_caches=False, keep=["pool"])
    assert not np.array_equal(broken.activations["pool"], full.activations["pool"])


def test_constant_parameters_are_never_overwritten():
    graph = Graph({"input_shape": [2, 3], "nodes": [
        {"id": "c", "op": "constant", "inputs": [], "shape": [2, 3]},
        {"id": "r", "op": "relu"},
        {"id": "s", "op": "add", "inputs": ["r", "input"]},
    ]})
    params = {"c.value": np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], dtype=np.float32)}
    before = params["c.value"].copy()
    out = graph.forward(np.zeros((1, 2, 3), np.float32), params, keep_caches=False, keep=()).output
    np.testing.assert_array_equal(out[0], np.maximum(before, 0))
    np.testing.assert_array_equal(params["c.value"], before)


def test_lean_pass_asks_for_what_it_needs(branchy):
    graph, params, x = branchy
    with pytest.raises(ValueError, match="keep_caches=False"):
        graph.forward(x, params, keep=())
    with pytest.raises(KeyError, match="nope"):
        graph.forward(x, params, keep_caches=False, keep=["nope"])
    with pytest.raises(TypeError, match=r"keep=\['conv1'\]"):
        graph.forward(x, params, keep_caches=False, keep="conv1")
    with pytest.raises(ValueError, match=r"after stop_at 'sum'.*fc"):
        graph.forward(x, params, keep_caches=False, stop_at="sum", keep=["act1", "fc"])
    lazy = graph.forward(x, params, keep_caches=False, keep=(name for name in ["conv1"]))  # read once
    assert set(lazy.activations) == {INPUT, "conv1", "fc"}


def test_integer_activations_are_never_overwritten_and_relu_stays_exact():
    """The in-place forms clip floats; an integer activation takes the recording pass's path. relu of integers
    is exact beyond 2**53 (no round trip through float64)."""
    graph = Graph({"input_shape": [1, 4, 4], "nodes": [
        {"id": "pool", "op": "max_pool2d", "kernel_size": 2},
        {"id": "act", "op": "relu"},
        {"id": "flat", "op": "flatten"},
    ]})
    x = np.arange(-8, 8).reshape(1, 1, 4, 4) + 2**53
    x[0, 0, 0, 0] = -(2**53) - 1
    full = graph.forward(x, {}, keep_caches=False).output
    lean = graph.forward(x, {}, keep_caches=False, keep=()).output
    np.testing.assert_array_equal(lean, full)
    assert full.dtype == x.dtype and int(full[0, -1]) == 2**53 + 7


@pytest.mark.parametrize("lean", [False, True], ids=["recording", "lean"])
def test_an_unknown_stop_at_is_the_same_clear_error_in_both_passes(branchy, lean):
    """It used to run the whole recording pass (answering with the last node) and raise a bare KeyError in the lean
    one. Both now name the node and list the graph's nodes, as every lookup of a node does."""
    from engine.errors import UnknownNodeError

    graph, params, x = branchy
    options = {"keep_caches": False, "keep": ()} if lean else {}
    with pytest.raises(UnknownNodeError, match=r"no node 'nope' in this model; its nodes: raw, conv1, act1") as caught:
        graph.forward(x, params, stop_at="nope", **options)
    assert caught.value.node_id == "nope" and "fc" in caught.value.known
    trace = graph.forward(x, params, stop_at="sum", **options)  # a known one still stops there
    assert trace.output_id == "sum" and "fc" not in trace.activations


def test_backward_checks_its_stop_at_and_seeds(branchy):
    from engine.errors import UnknownNodeError

    graph, params, x = branchy
    trace = graph.forward(x, params)
    seed = {"fc": np.ones_like(trace.activations["fc"])}
    with pytest.raises(UnknownNodeError, match="no node 'nope'"):
        graph.backward(trace, seed, stop_at="nope")
    with pytest.raises(UnknownNodeError, match="no node 'ghost'"):
        graph.backward(trace, {"ghost": np.ones(1)})
    assert "input" in graph.backward(trace, seed, stop_at="input").activations
