"""layer_norm and instance_norm: by hand, gradients by central differences (with negative controls), PyTorch sweeps,
the ops' params, errors and geometry, and graphs: gradients, training = inference, lean pass, float32."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.grad_mode import input_grads_only
from engine.layers.layer_norm import (
    instance_norm_backward,
    instance_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from engine.ops.base import GLOBAL, IDENTITY
from tests.engine.graphcheck import graph_gradient_errors

# --- the layers -----------------------------------------------------------------------------------


def test_layer_norm_by_hand():
    # one sample of 4 features: mean 2.5, biased var (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    out, _ = layer_norm_forward(x, 1, np.array([1.0, 2.0, 1.0, 1.0]), np.array([0.0, 0.0, 0.0, 10.0]), eps=0.0)
    z = np.array([-1.5, -0.5, 0.5, 1.5]) / np.sqrt(1.25)
    np.testing.assert_allclose(out, [[z[0], 2 * z[1], z[2], z[3] + 10]], rtol=1e-15)
    # over the last two axes of (N=1, 2, 2): the whole sample is one group
    out, _ = layer_norm_forward(np.array([[[1.0, 3.0], [1.0, 3.0]]]), 2, None, None, eps=0.0)
    np.testing.assert_allclose(out, [[[-1.0, 1.0], [-1.0, 1.0]]])


def test_instance_norm_by_hand():
    # (N=1, C=2, L=2): channel 0 holds 1, 3 (mean 2, var 1); channel 1 holds 5, 5 (var 0: standardises to 0)
    x = np.array([[[1.0, 3.0], [5.0, 5.0]]])
    out, _ = instance_norm_forward(x, np.array([2.0, 1.0]), np.array([0.5, -1.0]), eps=1e-300)  # eps: no 0 / 0
    np.testing.assert_allclose(out, [[[-1.5, 2.5], [-1.0, -1.0]]])


LAYER_CASES = [((3, 5), 1), ((2, 3, 4), 1), ((2, 3, 4), 2), ((2, 3, 2, 4), 1), ((2, 3, 2, 4), 3)]


@pytest.mark.parametrize("shape, k", LAYER_CASES)
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, False)])
def test_layer_norm_gradient_check(rng, shape, k, affine, bias):
    x = rng.standard_normal(shape) * 2 + 1
    normalized = shape[len(shape) - k:]
    w, b = rng.standard_normal(normalized), rng.standard_normal(normalized)
    arrays = [x] + ([w] if affine else []) + ([b] if bias else [])

    def forward(*a):
        return layer_norm_forward(a[0], k, a[1] if affine else None, a[-1] if bias else None, eps=1e-3)[0]

    def analytic(dout):
        _, cache = layer_norm_forward(x, k, w if affine else None, b if bias else None, eps=1e-3)
        dx, dw, db = layer_norm_backward(dout, cache)
        assert (dw is None) != affine and (db is None) != bias
        return tuple(g for g in (dx, dw, db) if g is not None)

    errors = check_function(forward, analytic, arrays)
    assert max(errors) < 1e-7, errors


@pytest.mark.parametrize("shape", [(2, 3, 5), (3, 2, 3, 4), (2, 2, 2, 3, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_gradient_check(rng, shape, affine):
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    arrays = [x, w, b] if affine else [x]

    def forward(*a):
        return instance_norm_forward(a[0], *(a[1:] if affine else (None, None)), eps=1e-3)[0]

    def analytic(dout):
        dx, dw, db = instance_norm_backward(dout, instance_norm_forward(*arrays, *([] if affine else [None, None]),
                                                                        eps=1e-3)[1])
        return (dx, dw, db) if affine else (dx,)

    errors = check_function(forward, analytic, arrays)
    assert max(errors) < 1e-7, errors


def test_gradient_checks_reject_statistics_taken_as_constants(rng):
    """Negative controls: ignoring that the mean and variance depend on x (batch norm's inference formula) fails,
    and so does a weight gradient that forgets xhat."""
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(4)

    def as_constants(dout):
        _, inv_std, *_ = layer_norm_forward(x, 1, w, b)[1]
        return (dout * w * inv_std,)

    (err,) = check_function(lambda a: layer_norm_forward(a, 1, w, b)[0], as_constants, [x])
    assert err > 1e-2
    (err,) = check_function(lambda a: layer_norm_forward(x, 1, a, b)[0], lambda d: (d.sum(axis=0),), [w])
    assert err > 1e-2
    x4 = rng.standard_normal((2, 3, 4, 4))

    def instance_as_constants(dout):
        _, inv_std, *_ = instance_norm_forward(x4, None, None)[1]
        return (dout * inv_std,)

    (err,) = check_function(lambda a: instance_norm_forward(a, None, None)[0], instance_as_constants, [x4])
    assert err > 1e-2


def test_input_grads_only_skips_the_parameters(rng):
    x = rng.standard_normal((2, 3, 4))
    with input_grads_only():
        _, dw, db = layer_norm_backward(np.ones_like(x), layer_norm_forward(x, 1, np.ones(4), np.zeros(4))[1])
        _, iw, ib = instance_norm_backward(np.ones_like(x), instance_norm_forward(x, np.ones(3), np.zeros(3))[1])
    assert dw is db is iw is ib is None


def test_float32_stays_float32(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    one4, zero4, one3, zero3 = (np.full(n, v, np.float32) for n, v in ((4, 1), (4, 0), (3, 1), (3, 0)))
    for out, cache, backward in ((*layer_norm_forward(x, 1, one4, zero4), layer_norm_backward),
                                 (*instance_norm_forward(x, one3, zero3), instance_norm_backward)):
        assert out.dtype == np.float32
        assert all(g.dtype == np.float32 for g in backward(out, cache))


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_norm_matches_pytorch(torch_or_skip, dtype):
    """Seeded sweep: ranks, normalised axes, eps, with and without weight and bias, against F.layer_norm."""
    torch = torch_or_skip
    F = torch.nn.functional
    rng = np.random.default_rng(21)
    tol = {np.float64: 1e-10, np.float32: 1e-4}[dtype]
    for trial in range(20):
        rank = int(rng.integers(2, 6))
        shape = tuple(int(n) for n in rng.integers(1, 6, size=rank))
        k = int(rng.integers(1, rank))
        normalized = shape[rank - k:]
        eps = float(rng.choice([1e-5, 1e-6, 1e-3]))
        affine, bias = bool(rng.random() < 0.7), bool(rng.random() < 0.5)
        x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
        w = rng.standard_normal(normalized).astype(dtype) if affine else None
        b = rng.standard_normal(normalized).astype(dtype) if affine and bias else None
        dout = rng.standard_normal(shape).astype(dtype)
        out, cache = layer_norm_forward(x, k, w, b, eps=eps)
        grads = layer_norm_backward(dout, cache)
        tx, tw, tb = (None if a is None else torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ref = F.layer_norm(tx, normalized, tw, tb, eps=eps)
        ref.backward(torch.tensor(dout))
        where = f"trial {trial}: x {list(shape)}, normalized_shape {list(normalized)}, eps {eps}"
        np.testing.assert_allclose(out, ref.detach().numpy(), rtol=tol, atol=tol, err_msg=f"{where}: mine vs torch")
        for name, mine, theirs in zip(("dx", "dweight", "dbias"), grads, (tx, tw, tb)):
            assert (mine is None) == (theirs is None), f"{where}: {name}"
            if mine is not None:
                np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=tol, atol=tol,
                                           err_msg=f"{where} {name}: mine vs torch")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_instance_norm_matches_pytorch(torch_or_skip, dtype):
    """Seeded sweep over 1D, 2D and 3D inputs, eps and affine, against nn.InstanceNorm1d/2d/3d."""
    torch = torch_or_skip
    rng = np.random.default_rng(22)
    tol = {np.float64: 1e-10, np.float32: 1e-4}[dtype]
    modules = {3: torch.nn.InstanceNorm1d, 4: torch.nn.InstanceNorm2d, 5: torch.nn.InstanceNorm3d}
    for trial in range(15):
        rank = int(rng.integers(3, 6))
        shape = tuple(int(n) for n in rng.integers(1, 4, size=2)) + tuple(int(n) for n in rng.integers(2, 6, rank - 2))
        eps, affine = float(rng.choice([1e-5, 1e-3])), bool(rng.random() < 0.5)
        x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
        dout = rng.standard_normal(shape).astype(dtype)
        module = modules[rank](shape[1], eps=eps, affine=affine).to(torch.float64 if dtype == np.float64 else
                                                                    torch.float32)
        w = b = None
        if affine:
            w, b = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
            with torch.no_grad():
                module.weight.copy_(torch.tensor(w))
                module.bias.copy_(torch.tensor(b))
        for training in (True, False):  # no running statistics: both modes normalise with the sample's own
            module.train(training)
            tx = torch.tensor(x, requires_grad=True)
            module.zero_grad()
            ref = module(tx)
            ref.backward(torch.tensor(dout))
            out, cache = instance_norm_forward(x, w, b, eps=eps)
            dx, dw, db = instance_norm_backward(dout, cache)
            where = f"trial {trial} ({'train' if training else 'eval'}): x {list(shape)}, eps {eps}, affine {affine}"
            np.testing.assert_allclose(out, ref.detach().numpy(), rtol=tol, atol=tol,
                                       err_msg=f"{where}: mine vs torch")
            np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol, err_msg=f"{where} dx: mine vs torch")
            if affine:
                np.testing.assert_allclose(dw, module.weight.grad.numpy(), rtol=tol, atol=tol,
                                           err_msg=f"{where} dweight: mine vs torch")
                np.testing.assert_allclose(db, module.bias.grad.numpy(), rtol=tol, atol=tol,
                                           err_msg=f"{where} dbias: mine vs torch")


# --- the ops --------------------------------------------------------------------------------------


def _graph(input_shape, op, **attrs) -> Graph:
    return Graph({"input_shape": list(input_shape), "nodes": [{"id": "n", "op": op, **attrs}]})


def test_layer_norm_op_params_and_geometry():
    graph = _graph((7, 7, 16), "layer_norm", normalized_shape=16)
    op = graph.nodes[0].op
    assert op.output_shape == (7, 7, 16) and op.macs() == 0 and op.geometry() == GLOBAL
    assert graph.param_shapes() == {"n.weight": (16,), "n.bias": (16,)} and graph.param_count() == 32
    params = graph.init_params()
    np.testing.assert_array_equal(params["n.weight"], 1)
    np.testing.assert_array_equal(params["n.bias"], 0)
    assert params["n.weight"].dtype == np.float32
    assert op.describe()["normalized_shape"] == (16,)
    assert _graph((3, 8, 8), "layer_norm", normalized_shape=[3, 8, 8]).param_shapes()["n.weight"] == (3, 8, 8)
    assert _graph((3, 8, 8), "layer_norm", normalized_shape=[8, 8], bias=False).param_shapes() == {"n.weight": (8, 8)}
    assert _graph((3, 8, 8), "layer_norm", normalized_shape=[8], elementwise_affine=False).param_shapes() == {}
    assert _graph((10,), "layer_norm", normalized_shape=[10]).nodes[0].op.geometry() == IDENTITY


def test_instance_norm_op_params_and_geometry():
    graph = _graph((3, 8, 8), "instance_norm")
    assert graph.param_shapes() == {} and graph.nodes[0].op.geometry() == GLOBAL
    graph = _graph((3, 8), "instance_norm", affine=True, num_features=3)
    assert graph.param_shapes() == {"n.weight": (3,), "n.bias": (3,)}
    params = graph.init_params()
    np.testing.assert_array_equal(params["n.weight"], 1)
    np.testing.assert_array_equal(params["n.bias"], 0)


@pytest.mark.parametrize("shape, op, attrs, message", [
    ((3, 8, 8), "layer_norm", {}, "needs normalized_shape"),
    ((3, 8, 8), "layer_norm", {"normalized_shape": [3]},
     r"normalized_shape \[3\] must equal the input's last axes: for an input of shape \[3, 8, 8\] use \[8\] or "
     r"\[8, 8\] or \[3, 8, 8\]\. To normalise the 3 channels at each position, transpose the input to "
     r"channels-last first \(perm \[1, 2, 0\]\)"),
    ((3, 8, 8), "layer_norm", {"normalized_shape": [4, 3, 8, 8]}, "must equal the input's last axes"),
    ((3, 8, 8), "layer_norm", {"normalized_shape": []}, "normalized_shape must be an int or a non-empty list"),
    ((3, 8, 8), "layer_norm", {"normalized_shape": [8.0]}, "normalized_shape must be an int or a non-empty list"),
    ((3, 8, 8), "layer_norm", {"normalized_shape": 8, "eps": 0}, "eps must be a positive number"),
    ((3, 8, 8), "layer_norm", {"normalized_shape": 8, "bias": "yes"}, "bias must be true or false"),
    ((3, 8, 8), "layer_norm", {"normalized_shape": 8, "elementwise_affine": 1}, "elementwise_affine must be true"),
    ((3, 8, 8), "layer_norm", {"normalized_shape": 8, "momentum": 0.1}, "does not take momentum"),
    ((5,), "instance_norm", {}, r"input must be \(C, \*spatial\) with at least one spatial axis; got shape \[5\]"),
    ((3, 8), "instance_norm", {"num_features": 4}, "num_features is 4 but the input has 3 channels"),
    ((3, 8), "instance_norm", {"affine": None}, "affine must be true or false"),
    ((3, 8), "instance_norm", {"eps": -1e-5}, "eps must be a positive number"),
])
def test_op_errors_name_the_node(shape, op, attrs, message):
    with pytest.raises(SpecError, match=rf"node 'n'.*{message}"):
        _graph(shape, op, **attrs)


# --- in graphs ------------------------------------------------------------------------------------


def _convnext_like() -> Graph:
    """Depthwise conv, instance norm, a channels-last layer norm as in ConvNeXt, and one over the whole sample.

    No op's shift is cancelled by the normalisation after it (a conv bias before instance norm would be: its
    gradient would be 0 and a relative error meaningless).
    """
    return Graph({"input_shape": [3, 4, 4], "nodes": [
        {"id": "dw", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1, "groups": 3, "bias": False},
        {"id": "inorm", "op": "instance_norm", "affine": True},
        {"id": "last", "op": "transpose", "perm": [1, 2, 0]},
        {"id": "ln", "op": "layer_norm", "normalized_shape": [3], "eps": 1e-6},
        {"id": "first", "op": "transpose", "perm": [2, 0, 1]},
        {"id": "whole", "op": "layer_norm", "normalized_shape": [3, 4, 4], "bias": False}]})


def _random_params(graph: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """float64 parameters away from the trivial 1 and 0, so that their gradients are checked for real."""
    params = {k: v.astype(np.float64) for k, v in graph.init_params(2).items()}
    for name in params:
        if not name.startswith("dw."):
            params[name] = rng.uniform(0.5, 1.5, params[name].shape)
    return params


@pytest.mark.parametrize("training", [False, True])
def test_graph_gradient_check(rng, training):
    graph = _convnext_like()
    params = _random_params(graph, rng)
    errors = graph_gradient_errors(graph, rng.standard_normal((2, 3, 4, 4)), params, training=training)
    assert set(errors) == {"input", *graph.trainable_names()}
    assert max(errors.values()) < 1e-7, errors


def test_graph_gradient_check_catches_a_wrong_layer_norm(rng, monkeypatch):
    """Negative control at graph level: a layer norm whose backward drops the weight's gradient on x is caught."""
    graph = _convnext_like()
    params = _random_params(graph, rng)
    op_class = type(graph.by_id["ln"].op)
    original = op_class.backward

    def unweighted(self, dout, cache):
        xhat, inv_std, _, has_bias, axes = cache
        return original(self, dout, (xhat, inv_std, None, has_bias, axes))[0], {}

    monkeypatch.setattr(op_class, "backward", unweighted)
    errors = graph_gradient_errors(graph, rng.standard_normal((2, 3, 4, 4)), params)
    assert errors["input"] > 1e-2


def test_graph_training_equals_inference_lean_pass_and_float32(rng):
    graph = _convnext_like()
    params = graph.init_params(4)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    trace = graph.forward(x, params)
    np.testing.assert_array_equal(graph.forward(x, params, training=True).output, trace.output)
    np.testing.assert_array_equal(graph.forward(x, params, keep_caches=False, keep=()).output, trace.output)
    assert all(a.dtype == np.float32 for a in trace.activations.values())
    grads = graph.backward(trace, {graph.output_id: np.ones_like(trace.output)})
    assert grads.input.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.params.values())
    # each position's channels of the channels-last tensor have mean 0 and variance 1
    ln = trace.activations["ln"].astype(np.float64)
    np.testing.assert_allclose(ln.mean(axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(ln.var(axis=-1), 1, atol=1e-3)
