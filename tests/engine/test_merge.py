"""add, mul, concat and constant: broadcast gradients, PyTorch, shape errors, whole graphs with skips and gates."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.merge import (
    add_backward,
    add_forward,
    concat_backward,
    concat_forward,
    mul_backward,
    mul_forward,
    unbroadcast,
)
from engine.ops.base import GLOBAL, IDENTITY, OP_REGISTRY
from tests.engine.graphcheck import graph_gradient_errors

SHAPE_SETS = [
    [(2, 3, 4, 4), (2, 3, 4, 4)],
    [(2, 3, 4, 4), (2, 3, 1, 1)],  # gating: one value per channel
    [(2, 3, 4, 4), (1, 3, 4, 1), (2, 1, 1, 4)],  # three inputs, each broadcast differently
    [(2, 5), (1, 5)],  # a constant with batch 1
]


@pytest.mark.parametrize("shapes", SHAPE_SETS)
@pytest.mark.parametrize("which", ["add", "mul"])
def test_gradient_check_with_broadcasting(rng, shapes, which):
    forward, backward = (add_forward, add_backward) if which == "add" else (mul_forward, mul_backward)
    arrays = [rng.standard_normal(s) for s in shapes]
    errors = check_function(lambda *a: forward(*a)[0], lambda d: tuple(backward(d, forward(*arrays)[1])), arrays)
    assert max(errors) < 1e-7, errors
    grads = backward(np.ones(np.broadcast_shapes(*shapes)), forward(*arrays)[1])
    assert [g.shape for g in grads] == [tuple(s) for s in shapes]


def test_gradient_check_catches_a_gradient_not_summed_over_the_broadcast_axes(rng):
    """Negative control: giving the gate dout * x at one position instead of the sum over positions fails."""
    x, gate = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 1, 1))

    def wrong(dout):
        return (dout * gate, (dout * x)[:, :, :1, :1])

    errors = check_function(lambda a, b: mul_forward(a, b)[0], wrong, [x, gate])
    assert errors[0] < 1e-7 and errors[1] > 1e-2


def test_mul_with_zeros_has_the_right_gradient():
    a, b, c = np.array([0.0, 2.0]), np.array([3.0, 0.0]), np.array([5.0, 7.0])
    grads = mul_backward(np.ones(2), mul_forward(a, b, c)[1])
    np.testing.assert_allclose(grads[0], [15.0, 0.0])
    np.testing.assert_allclose(grads[1], [0.0, 14.0])
    np.testing.assert_allclose(grads[2], [0.0, 0.0])


def test_unbroadcast_by_hand():
    g = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_allclose(unbroadcast(g, (1, 3, 1)), [[[0 + 1 + 6 + 7], [2 + 3 + 8 + 9], [4 + 5 + 10 + 11]]])
    np.testing.assert_allclose(unbroadcast(g, (2,)), [0 + 2 + 4 + 6 + 8 + 10, 1 + 3 + 5 + 7 + 9 + 11])


@pytest.mark.parametrize("dim", [1, 2, -1])
def test_concat_gradient_check(rng, dim):
    shapes = {1: [(2, 1, 3, 2), (2, 3, 3, 2)], 2: [(2, 2, 1, 2), (2, 2, 4, 2)], -1: [(2, 2, 3, 1), (2, 2, 3, 3)]}[dim]
    arrays = [rng.standard_normal(s) for s in shapes]
    errors = check_function(lambda *a: concat_forward(*a, dim=dim)[0],
                            lambda d: tuple(concat_backward(d, concat_forward(*arrays, dim=dim)[1])), arrays)
    assert max(errors) < 1e-7


def test_matches_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    a, gate, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 1, 1)), rng.standard_normal((2, 5, 4, 4))
    dout_mul, dout_cat = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 8, 4, 4))
    ta, tg, tb = (torch.tensor(v, requires_grad=True) for v in (a, gate, b))
    ((ta + tg) * tg * ta).backward(torch.tensor(dout_mul))
    torch.cat([ta, tb], 1).backward(torch.tensor(dout_cat))
    s, s_cache = add_forward(a, gate)
    m, m_cache = mul_forward(s, gate, a)
    c, c_cache = concat_forward(a, b, dim=1)
    ds, dgate_m, da_m = mul_backward(dout_mul, m_cache)
    da_s, dgate_s = add_backward(ds, s_cache)
    da_c, db = concat_backward(dout_cat, c_cache)
    np.testing.assert_allclose(m, ((ta + tg) * tg * ta).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(da_m + da_s + da_c, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgate_m + dgate_s, tg.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(c, torch.cat([ta, tb], 1).detach().numpy())


# --- ops ------------------------------------------------------------------------------------------

def test_op_shapes_and_geometry():
    graph = Graph({"input_shape": [3, 4, 4], "nodes": [
        {"id": "sum", "op": "add", "inputs": ["input", "input", "input"]},
        {"id": "row", "op": "constant", "inputs": [], "shape": [4]},
        {"id": "chan", "op": "constant", "inputs": [], "shape": [3, 1, 1]},
        {"id": "scaled", "op": "mul", "inputs": ["sum", "chan", "row"]},
        {"id": "cat", "op": "concat", "inputs": ["scaled", "input"]},
        {"id": "cat_w", "op": "concat", "inputs": ["scaled", "input"], "dim": 3},
    ]})
    assert graph.by_id["scaled"].output_shape == (3, 4, 4)
    assert graph.by_id["cat"].output_shape == (6, 4, 4) and graph.by_id["cat"].op.geometry() == IDENTITY
    assert graph.by_id["cat_w"].output_shape == (3, 4, 8) and graph.by_id["cat_w"].op.geometry() == GLOBAL
    assert graph.by_id["sum"].op.geometry() == IDENTITY and graph.by_id["sum"].op.macs() == 0
    assert graph.param_shapes()["chan.value"] == (3, 1, 1) and graph.trainable_names() == []


def test_op_shape_errors_name_the_node_and_both_shapes():
    with pytest.raises(SpecError, match=r"node 'sum': cannot add shapes \[3, 4, 4\] and \[2, 1, 1\]"):
        Graph({"input_shape": [3, 4, 4], "nodes": [
            {"id": "c", "op": "constant", "inputs": [], "shape": [2, 1, 1]},
            {"id": "sum", "op": "add", "inputs": ["input", "c"]}]})
    with pytest.raises(SpecError, match=r"node 'gate': cannot multiply shapes \[3, 4, 4\] and \[5\]"):
        Graph({"input_shape": [3, 4, 4], "nodes": [
            {"id": "c", "op": "constant", "inputs": [], "shape": [5]},
            {"id": "gate", "op": "mul", "inputs": ["input", "c"]}]})
    with pytest.raises(SpecError, match=r"node 'cat': cannot concatenate shapes \[3, 4, 4\] and \[3, 4, 2\] along dim"):
        Graph({"input_shape": [3, 4, 4], "nodes": [
            {"id": "c", "op": "constant", "inputs": [], "shape": [3, 4, 2]},
            {"id": "cat", "op": "concat", "inputs": ["input", "c"]}]})
    with pytest.raises(SpecError, match=r"'add' combines 2 or more inputs, got 1"):
        Graph({"input_shape": [3], "nodes": [{"id": "sum", "op": "add"}]})
    with pytest.raises(SpecError, match="shape must be a list of positive ints"):
        Graph({"input_shape": [3], "nodes": [{"id": "c", "op": "constant", "inputs": [], "shape": [0]}]})


def test_constant_broadcasts_over_the_batch_and_takes_no_gradient(rng):
    graph = Graph({"input_shape": [3, 2, 2], "nodes": [
        {"id": "bias", "op": "constant", "inputs": [], "shape": [3, 1, 1]},
        {"id": "shifted", "op": "add", "inputs": ["input", "bias"]},
        {"id": "scale", "op": "mul", "inputs": ["shifted", "bias"]}]})
    params = {"bias.value": np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)}
    x = rng.standard_normal((4, 3, 2, 2))
    trace = graph.forward(x, params)
    assert trace.activations["bias"].shape == (1, 3, 1, 1)
    np.testing.assert_allclose(trace.output, (x + params["bias.value"]) * params["bias.value"])
    grads = graph.backward(trace, {"scale": np.ones_like(trace.output)})
    np.testing.assert_allclose(grads.input, np.broadcast_to(params["bias.value"], x.shape))
    assert grads.params == {}
    assert grads.activations["bias"].shape == (1, 3, 1, 1)


def test_concat_with_a_constant(rng):
    graph = Graph({"input_shape": [2, 3], "nodes": [
        {"id": "extra", "op": "constant", "inputs": [], "shape": [1, 3]},
        {"id": "cat", "op": "concat", "inputs": ["input", "extra"]}]})
    params = {"extra.value": np.array([[7.0, 8.0, 9.0]])}
    x = rng.standard_normal((5, 2, 3))
    trace = graph.forward(x, params)
    assert trace.output.shape == (5, 3, 3)
    np.testing.assert_array_equal(trace.output[:, 2], np.tile([7.0, 8.0, 9.0], (5, 1)))
    grads = graph.backward(trace, {"cat": np.ones((5, 3, 3))})
    np.testing.assert_array_equal(grads.input, np.ones_like(x))
    np.testing.assert_array_equal(grads.activations["extra"], np.full((1, 1, 3), 5.0))


# --- whole graphs: skip connections, concatenation and gating ------------------------------------

DENSE_SPEC = {"input_shape": [6], "nodes": [
    {"id": "fc1", "op": "linear", "out_features": 6},
    {"id": "act1", "op": "tanh"},
    {"id": "skip", "op": "add", "inputs": ["act1", "input"]},
    {"id": "gate_fc", "op": "linear", "out_features": 6, "inputs": ["input"]},
    {"id": "gate", "op": "sigmoid"},
    {"id": "gated", "op": "mul", "inputs": ["skip", "gate"]},
    {"id": "both", "op": "concat", "inputs": ["gated", "fc1"]},
    {"id": "bn", "op": "batch_norm"},
    {"id": "act2", "op": "silu"},
    {"id": "out", "op": "linear", "out_features": 3},
]}


@pytest.mark.parametrize("training", [False, True])
def test_dense_graph_with_skip_gate_and_concat_passes_a_gradient_check(rng, training):
    graph = Graph(DENSE_SPEC)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=5).items()}
    params["bn.running_var"][:] = rng.uniform(0.5, 2, 12)
    params["bn.weight"][:] = rng.uniform(0.5, 2, 12)
    params["bn.bias"][:] = rng.standard_normal(12)
    errors = graph_gradient_errors(graph, rng.standard_normal((4, 6)), params, training=training)
    assert set(errors) == {"input", *graph.trainable_names()}
    assert max(errors.values()) < 1e-6, errors


def test_graph_gradient_check_fails_for_a_wrong_op_gradient(rng, monkeypatch):
    """Negative control at graph level: an add that forgets one input's gradient is caught."""
    graph = Graph(DENSE_SPEC)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=5).items()}
    skip = graph.by_id["skip"].op
    original = type(skip).backward

    def forgetful(self, dout, cache):
        dinputs, dparams = original(self, dout, cache)
        return [dinputs[0], None], dparams

    monkeypatch.setattr(type(skip), "backward", forgetful)
    errors = graph_gradient_errors(graph, rng.standard_normal((4, 6)), params)
    assert errors["input"] > 1e-2


@pytest.mark.skipif("conv2d" not in OP_REGISTRY, reason="conv ops not written yet")
def test_residual_conv_graph_with_gating_passes_a_gradient_check(rng):
    graph = Graph({"input_shape": [2, 5, 5], "nodes": [
        # no bias before batch norm (training-mode BN cancels it: its gradient is 0, relative error meaningless)
        {"id": "conv1", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1, "bias": False},
        {"id": "bn1", "op": "batch_norm"},
        {"id": "relu1", "op": "relu"},
        {"id": "proj", "op": "conv2d", "inputs": ["input"], "out_channels": 3, "kernel_size": 1},
        {"id": "res", "op": "add", "inputs": ["relu1", "proj"]},
        {"id": "squeeze", "op": "global_avg_pool"},
        {"id": "excite_fc", "op": "linear", "out_features": 3},
        {"id": "excite", "op": "hardsigmoid"},
        {"id": "excite_map", "op": "reshape", "shape": [3, 1, 1]},
        {"id": "se", "op": "mul", "inputs": ["res", "excite_map"]},
        {"id": "cat", "op": "concat", "inputs": ["se", "input"]},
        {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 2},
    ]})
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=2).items()}
    errors = graph_gradient_errors(graph, rng.standard_normal((3, 2, 5, 5)), params, training=True)
    assert max(errors.values()) < 1e-6, errors
