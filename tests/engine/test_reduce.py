"""sum, mean, max: by hand, gradients by central differences (with negative controls), tied maxima, PyTorch sweeps,
the ops' shapes, errors and geometry (receptive fields through them), and graphs: gradients, lean pass, float32."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers import reduce
from engine.ops.base import GLOBAL, IDENTITY, AxisGeometry
from engine.receptive_field import receptive_fields
from tests.engine.graphcheck import graph_gradient_errors

LAYERS = {
    "sum": (reduce.sum_forward, reduce.sum_backward),
    "mean": (reduce.mean_forward, reduce.mean_backward),
    "max": (reduce.max_forward, reduce.max_backward),
}
# (input shape with the batch axis, dims as the layer takes them: NumPy axes, batch = 0)
CASES = [((2, 3, 4), (1,)), ((2, 3, 4), (2,)), ((2, 3, 4, 5), (2, 3)), ((2, 3, 4, 5), (1, 3)),
         ((2, 3, 4, 5), (1, 2, 3)), ((3, 2, 2, 3, 2), (2, 4))]


# --- the layers -----------------------------------------------------------------------------------


def test_by_hand():
    x = np.array([[[1.0, 5.0, 5.0], [2.0, 0.0, 3.0]]])  # (N=1, C=2, L=3)
    ones = np.ones((1, 2))
    expected = {  # kind: (out over L, gradient of sum(out) w.r.t. x)
        "sum": ([[11, 5]], [[[1, 1, 1], [1, 1, 1]]]),
        "mean": ([[11 / 3, 5 / 3]], [[[1 / 3] * 3, [1 / 3] * 3]]),
        "max": ([[5, 3]], [[[0, 0.5, 0.5], [0, 0, 1]]]),  # the tie 5, 5 shares the gradient
    }
    for kind, (values, grads) in expected.items():
        forward, backward = LAYERS[kind]
        out, cache = forward(x, (2,))
        np.testing.assert_allclose(out, values, rtol=1e-15, err_msg=kind)
        np.testing.assert_allclose(backward(ones, cache), grads, rtol=1e-15, err_msg=kind)
        kept, cache = forward(x, (2,), keepdim=True)
        assert kept.shape == (1, 2, 1)
        np.testing.assert_allclose(backward(np.ones((1, 2, 1)), cache), grads, rtol=1e-15, err_msg=kind)


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("shape, dims", CASES)
@pytest.mark.parametrize("keepdim", [False, True])
def test_gradient_check(rng, kind, shape, dims, keepdim):
    forward, backward = LAYERS[kind]
    x = rng.standard_normal(shape)  # distinct values: no ties, so the maximum is differentiable
    (err,) = check_function(lambda a: forward(a, dims, keepdim)[0],
                            lambda d: (backward(d, forward(x, dims, keepdim)[1]),), [x])
    assert err < 1e-8, f"{kind} over {dims}: relative error {err:.2e}"


def test_gradient_check_rejects_wrong_gradients(rng):
    """Negative controls: mean with sum's gradient (no 1/count), and max's gradient spread like mean's."""
    x = rng.standard_normal((2, 3, 4))
    dims = (2,)
    mean = lambda a: reduce.mean_forward(a, dims)[0]  # noqa: E731
    (err,) = check_function(mean, lambda d: (reduce.sum_backward(d, reduce.sum_forward(x, dims)[1]),), [x])
    assert err > 0.1
    amax = lambda a: reduce.max_forward(a, dims)[0]  # noqa: E731
    (err,) = check_function(amax, lambda d: (reduce.mean_backward(d, reduce.mean_forward(x, dims)[1]),), [x])
    assert err > 0.1


def test_float32_stays_float32(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    for kind, (forward, backward) in LAYERS.items():
        for keepdim in (False, True):
            out, cache = forward(x, (2, 3), keepdim)
            assert out.dtype == np.float32, kind
            dx = backward(np.ones_like(out), cache)
            assert dx.dtype == np.float32 and dx.shape == x.shape and dx.flags.writeable, kind


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch_over_random_axes(torch_or_skip, dtype):
    """A seeded sweep over ranks, axis sets (negative ones too) and keepdim against torch.sum/mean/amax."""
    torch = torch_or_skip
    rng = np.random.default_rng(16)
    tol = {np.float64: 1e-12, np.float32: 2e-6}[dtype]
    refs = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}
    for trial in range(30):
        rank = int(rng.integers(2, 6))  # with the batch axis
        shape = tuple(int(n) for n in rng.integers(1, 5, size=rank))
        count = int(rng.integers(1, rank))
        axes = sorted(int(a) for a in rng.choice(np.arange(1, rank), size=count, replace=False))
        spec_dims = [a - rank if rng.random() < 0.5 else a for a in axes]  # what torch is given
        keepdim = bool(rng.random() < 0.5)
        x = rng.standard_normal(shape).astype(dtype)
        for kind, (forward, backward) in LAYERS.items():
            out, cache = forward(x, tuple(axes), keepdim)
            dout = rng.standard_normal(out.shape).astype(dtype)
            t = torch.tensor(x, requires_grad=True)
            ref = refs[kind](t, dim=spec_dims, keepdim=keepdim)
            ref.backward(torch.tensor(dout))
            where = f"{kind} trial {trial}: x {list(shape)}, dim {spec_dims}, keepdim {keepdim}"
            assert out.shape == tuple(ref.shape), f"{where}: mine {out.shape} vs torch {tuple(ref.shape)}"
            np.testing.assert_allclose(out, ref.detach().numpy(), rtol=tol, atol=tol, err_msg=f"{where}: mine vs torch")
            np.testing.assert_allclose(backward(dout, cache), t.grad.numpy(), rtol=tol, atol=tol,
                                       err_msg=f"{where} gradient: mine vs torch")


@pytest.mark.torch
def test_tied_maxima_share_the_gradient_as_torch_amax(torch_or_skip):
    torch = torch_or_skip
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(3, 4, 5, 5)).astype(np.float64)  # three values: ties everywhere
    for dims in ((1,), (2, 3), (1, 2, 3), (3,)):
        out, cache = reduce.max_forward(x, dims, keepdim=False)
        dout = rng.standard_normal(out.shape)
        t = torch.tensor(x, requires_grad=True)
        torch.amax(t, dim=dims).backward(torch.tensor(dout))
        np.testing.assert_allclose(reduce.max_backward(dout, cache), t.grad.numpy(), rtol=1e-15, atol=1e-15,
                                   err_msg=f"tied maxima over {dims}: mine vs torch.amax")
        # each group's gradients add up to its dout, however many ties
        np.testing.assert_allclose(reduce.max_backward(dout, cache).sum(axis=dims), dout, rtol=1e-13)


# --- the ops --------------------------------------------------------------------------------------


def _op(input_shape, kind="mean", **attrs):
    return Graph({"input_shape": list(input_shape), "nodes": [{"id": "r", "op": kind, **attrs}]}).nodes[0].op


def test_op_shapes_describe_and_geometry():
    assert _op((8, 5, 6), dim=[2, 3]).output_shape == (8,)
    assert _op((8, 5, 6), dim=[-1, -2], keepdim=True).output_shape == (8, 1, 1)
    assert _op((8, 5, 6), "sum", dim=[3]).output_shape == (8, 5)
    assert _op((8, 5, 6), "max", dim=1).output_shape == (5, 6)
    assert _op((8,), "sum", dim=1).output_shape == ()
    assert _op((8, 5, 6), dim=[-1, 2]).describe() == {"dim": (2, 3), "keepdim": False}
    for kind in LAYERS:
        assert _op((8, 5, 6), kind, dim=[2, 3], keepdim=True).geometry() == GLOBAL
        assert _op((8, 5, 6), kind, dim=3).geometry() == GLOBAL  # one spatial axis mixes positions too
        assert _op((8, 5, 6), kind, dim=[1, 2]).geometry() == GLOBAL
        assert _op((8, 5, 6), kind, dim=1, keepdim=True).geometry() == IDENTITY
        assert _op((8, 5, 6), kind, dim=1).geometry() == [AxisGeometry(1, 1, 0)] * 2
        assert _op((8, 5, 6), kind, dim=1).macs() == 0


@pytest.mark.parametrize("attrs, message", [
    ({}, "needs dim"),
    ({"dim": 0}, "dim=0 is the batch axis"),
    ({"dim": -4}, "dim=-4 is the batch axis"),
    ({"dim": [2, 0]}, "dim=0 is the batch axis"),
    ({"dim": -5}, r"dim must be an int from 1 to 3 \(or -1 to -3 from the end\)"),
    ({"dim": [2, -2]}, r"dim \[2, -2\] names axis 2 more than once"),
    ({"dim": []}, "dim must be an int or a non-empty list of ints"),
    ({"dim": "spatial"}, "dim must be an int or a non-empty list of ints"),
    ({"dim": [True]}, "dim must be an int from 1 to 3"),
    ({"dim": 2, "keepdim": 1}, "keepdim must be true or false"),
])
def test_op_errors_name_the_node(attrs, message):
    for kind in LAYERS:
        with pytest.raises(SpecError, match=rf"node 'r'.*{message}"):
            _op((8, 5, 6), kind, **attrs)


def test_receptive_fields_through_reductions():
    def rfs(**attrs):
        return receptive_fields(Graph({"input_shape": [3, 8, 8], "nodes": [
            {"id": "c", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
            {"id": "r", "op": "mean", **attrs},
            {"id": "after", "op": "relu"}]}))

    spatial = rfs(dim=[2, 3], keepdim=True)
    assert spatial["c"].status == "local" and spatial["r"].status == spatial["after"].status == "global"
    for attrs in ({"dim": 1, "keepdim": True}, {"dim": 1}):  # a channel mean keeps each position's window
        kept = rfs(**attrs)
        assert kept["r"].status == kept["after"].status == "local", attrs
        assert kept["r"].axes == kept["c"].axes, attrs
    # over a 4D (G, C/G, H, W) input the axes after the channel are not the graph's spatial ones: undefined
    grouped = receptive_fields(Graph({"input_shape": [4, 8, 8], "nodes": [
        {"id": "g", "op": "reshape", "shape": [2, 2, 8, 8]},
        {"id": "r", "op": "sum", "dim": 1}]}))
    assert grouped["r"].status == "undefined"  # not a local outline along the wrong axes


# --- in graphs ------------------------------------------------------------------------------------


def _graph() -> Graph:
    """A squeeze-excite-like block built from reductions: channel max, spatial mean and a spatial sum."""
    return Graph({"input_shape": [2, 4, 4], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"id": "squeeze", "op": "mean", "dim": [2, 3], "keepdim": True},
        {"id": "gate", "op": "sigmoid"},
        {"id": "excite", "op": "mul", "inputs": ["conv", "gate"]},
        {"id": "peak", "op": "max", "dim": 1},
        {"id": "rows", "op": "sum", "dim": -1}]})


def test_graph_gradient_check_and_negative_control(rng, monkeypatch):
    graph = _graph()
    assert graph.by_id["rows"].output_shape == (4,)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(3).items()}
    x = rng.standard_normal((2, 2, 4, 4))
    errors = graph_gradient_errors(graph, x, params)
    assert max(errors.values()) < 1e-7, errors
    # negative control: a mean that forgets to divide by its count is caught at graph level
    monkeypatch.setattr(type(graph.by_id["squeeze"].op), "layer_backward", staticmethod(reduce.sum_backward))
    assert graph_gradient_errors(graph, x, params)["input"] > 1e-2


def test_graph_lean_pass_and_float32(rng):
    graph = _graph()
    params = graph.init_params(1)
    x = rng.standard_normal((3, 2, 4, 4)).astype(np.float32)
    trace = graph.forward(x, params)
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(lean.output, trace.output)
    assert trace.output.dtype == np.float32
    assert all(a.dtype == np.float32 for a in trace.activations.values())
    grads = graph.backward(trace, {"rows": np.ones_like(trace.output)})
    assert grads.input.dtype == np.float32
