"""The linear layer: gradient checks, a hand-worked example, PyTorch, and the op."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.linear import linear_backward, linear_forward
from engine.ops.base import GLOBAL


@pytest.mark.parametrize("with_bias", [True, False])
def test_gradient_check(rng, with_bias):
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    arrays = [x, w, b] if with_bias else [x, w]

    def forward(*a):
        return linear_forward(a[0], a[1], a[2] if with_bias else None)[0]

    def analytic(dout):
        dx, dw, db = linear_backward(dout, linear_forward(*arrays if with_bias else (x, w, None))[1])
        return (dx, dw, db) if with_bias else (dx, dw)

    errors = check_function(forward, analytic, arrays)
    assert max(errors) < 1e-7, errors
    if not with_bias:
        assert analytic(np.ones((4, 3)))[1].shape == (3, 5)


def test_gradient_check_catches_a_transposed_weight_gradient(rng):
    """Negative control: dW computed as x.T @ dout (transposed, for a square weight) must fail."""
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 3))

    def wrong(dout):
        return (dout @ w, x.T @ dout)

    errors = check_function(lambda a, b: linear_forward(a, b)[0], wrong, [x, w])
    assert errors[0] < 1e-7 and errors[1] > 1e-3


def test_by_hand():
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 0.0], [3.0, -1.0], [0.5, 0.5]])
    b = np.array([0.0, 1.0, -1.0])
    out, cache = linear_forward(x, w, b)
    np.testing.assert_allclose(out, [[1.0, 2.0, 0.5]])  # [1, 3 - 2 + 1, 0.5 + 1 - 1]
    dx, dw, db = linear_backward(np.array([[1.0, 0.0, 2.0]]), cache)
    np.testing.assert_allclose(dx, [[2.0, 1.0]])
    np.testing.assert_allclose(dw, [[1, 2], [0, 0], [2, 4]])
    np.testing.assert_allclose(db, [1, 0, 2])


def test_matches_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    x, w, b = rng.standard_normal((6, 7)), rng.standard_normal((4, 7)), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))
    out, cache = linear_forward(x, w, b)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = torch.nn.functional.linear(tx, tw, tb)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-12)
    for mine, theirs in zip(linear_backward(dout, cache), (tx, tw, tb)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_float32_stays_float32(rng):
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3), (4, 3), (4,)))
    out, cache = linear_forward(x, w, b)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in linear_backward(out, cache))


def test_op_shapes_params_init_macs():
    graph = Graph({"input_shape": [50], "nodes": [{"id": "fc", "op": "linear", "out_features": 10},
                                                  {"id": "fc2", "op": "linear", "out_features": 3, "bias": False}]})
    assert graph.by_id["fc"].output_shape == (10,)
    assert graph.param_shapes() == {"fc.weight": (10, 50), "fc.bias": (10,), "fc2.weight": (3, 10)}
    assert graph.param_count() == 10 * 50 + 10 + 3 * 10
    assert graph.by_id["fc"].op.macs() == 500 and graph.by_id["fc"].op.geometry() == GLOBAL
    params = graph.init_params(seed=3)
    bound = 1 / np.sqrt(50)  # PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    for name in ("fc.weight", "fc.bias"):
        assert params[name].dtype == np.float32
        assert np.abs(params[name]).max() <= bound and np.abs(params[name]).max() > 0.8 * bound
    assert np.abs(params["fc2.weight"]).max() <= 1 / np.sqrt(10)
    np.testing.assert_array_equal(graph.init_params(seed=3)["fc.weight"], params["fc.weight"])


def test_op_errors():
    with pytest.raises(SpecError, match=r"node 'fc'.*put a 'flatten' node before it \(giving \[48\]\)"):
        Graph({"input_shape": [3, 4, 4], "nodes": [{"id": "fc", "op": "linear", "out_features": 2}]})
    with pytest.raises(SpecError, match="needs out_features"):
        Graph({"input_shape": [3], "nodes": [{"id": "fc", "op": "linear"}]})
    with pytest.raises(SpecError, match="out_features must be a positive int"):
        Graph({"input_shape": [3], "nodes": [{"id": "fc", "op": "linear", "out_features": 0}]})
