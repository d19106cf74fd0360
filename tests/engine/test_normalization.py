"""Batch normalisation: hand-worked examples, gradient checks in both modes, PyTorch, and the op's buffers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ShapeError, SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.normalization import batch_norm_backward, batch_norm_forward
from engine.ops.base import IDENTITY


def test_training_by_hand_on_a_2x2_batch():
    # x: (N=2, C=2). Channel 0 holds 1, 3: mean 2, biased var 1, unbiased var 2.
    # Channel 1 holds 2, 6: mean 4, biased var 4, unbiased var 8.
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    weight, bias = np.array([2.0, 1.0]), np.array([0.0, 10.0])
    running_mean, running_var = np.zeros(2), np.ones(2)
    out, _ = batch_norm_forward(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=0.0)
    # channel 0: (x - 2) / 1 * 2 + 0 = -2, 2; channel 1: (x - 4) / 2 * 1 + 10 = 9, 11
    np.testing.assert_allclose(out, [[-2.0, 9.0], [2.0, 11.0]])
    # running = 0.9 * old + 0.1 * batch, with the unbiased variance
    np.testing.assert_allclose(running_mean, [0.2, 0.4])
    np.testing.assert_allclose(running_var, [0.9 + 0.2, 0.9 + 0.8])


def test_inference_by_hand():
    x = np.array([[[[1.0, 5.0]]], [[[3.0, -1.0]]]])  # (2, 1, 1, 2)
    out, _ = batch_norm_forward(x, np.array([3.0]), np.array([1.0]), np.array([1.0]), np.array([4.0]),
                                training=False, eps=0.0)
    # (x - 1) / 2 * 3 + 1
    np.testing.assert_allclose(out.ravel(), [1.0, 7.0, 4.0, -2.0])


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 4), (2, 2, 3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_gradient_check(rng, shape, training, affine):
    c = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)
    stats = rng.standard_normal(c), rng.uniform(0.5, 2, c)

    def forward(*arrays):
        w, b = (arrays[1], arrays[2]) if affine else (None, None)
        running = stats[0].copy(), stats[1].copy()  # buffers are updated in place: keep the originals
        return batch_norm_forward(arrays[0], w, b, *running, training=training, eps=1e-5)[0]

    arrays = [x, weight, bias] if affine else [x]

    def analytic(dout):
        w, b = (weight, bias) if affine else (None, None)
        _, cache = batch_norm_forward(x, w, b, stats[0].copy(), stats[1].copy(), training=training, eps=1e-5)
        dx, dw, db = batch_norm_backward(dout, cache)
        if not affine:
            assert dw is None and db is None
        return (dx, dw, db) if affine else (dx,)

    errors = check_function(forward, analytic, arrays)
    assert max(errors) < 1e-6, errors


def test_gradient_check_catches_the_inference_formula_in_training_mode(rng):
    """Negative control: in training, treating the batch statistics as constants gives a wrong dx."""
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(3)
    stats = np.zeros(3), np.ones(3)

    def forward(a):
        return batch_norm_forward(a, w, b, stats[0].copy(), stats[1].copy(), training=True)[0]

    def wrong(dout):
        _, inv_std, *_ = batch_norm_forward(x, w, b, stats[0].copy(), stats[1].copy(), training=True)[1]
        return (dout * w * inv_std,)

    assert check_function(forward, wrong, [x])[0] > 1e-2


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5), (2, 4, 3, 5), (2, 4, 2, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_matches_pytorch(torch_or_skip, rng, shape, training):
    torch = torch_or_skip
    c = shape[1]
    x, dout = rng.standard_normal(shape) * 3 + 2, rng.standard_normal(shape)
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)
    mean0, var0 = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    running_mean, running_var = mean0.copy(), var0.copy()
    out, cache = batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum=0.3, eps=1e-3)
    dx, dw, db = batch_norm_backward(dout, cache)

    t_mean, t_var = torch.tensor(mean0), torch.tensor(var0)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    ref = torch.nn.functional.batch_norm(tx, t_mean, t_var, tw, tb, training=training, momentum=0.3, eps=1e-3)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg="forward: mine vs torch")
    np.testing.assert_allclose(running_mean, t_mean.numpy(), rtol=1e-12, err_msg="running_mean: mine vs torch")
    np.testing.assert_allclose(running_var, t_var.numpy(), rtol=1e-12, err_msg="running_var: mine vs torch")
    for name, mine, theirs in (("dx", dx, tx), ("dweight", dw, tw), ("dbias", db, tb)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=f"{name}: mine vs torch")
    if not training:
        np.testing.assert_array_equal(running_mean, mean0)


def test_training_needs_more_than_one_value_per_channel():
    with pytest.raises(ShapeError, match="more than one value per channel"):
        batch_norm_forward(np.ones((1, 3)), None, None, np.zeros(3), np.ones(3), training=True)
    batch_norm_forward(np.ones((1, 3)), None, None, np.zeros(3), np.ones(3), training=False)


def test_float32_stays_float32(rng):
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    w, b, m, v = (np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32), np.ones(3, np.float32))
    for training in (True, False):
        out, cache = batch_norm_forward(x, w, b, m, v, training)
        assert out.dtype == np.float32 and m.dtype == np.float32
        assert all(g.dtype == np.float32 for g in batch_norm_backward(out, cache))


# --- the op ---------------------------------------------------------------------------------------

def bn_graph(**attrs) -> Graph:
    return Graph({"input_shape": [3, 4, 4], "nodes": [{"id": "bn", "op": "batch_norm", **attrs}]})


def test_op_params_buffers_and_geometry():
    graph = bn_graph()
    op = graph.by_id["bn"].op
    assert graph.param_shapes() == {"bn.weight": (3,), "bn.bias": (3,), "bn.running_mean": (3,), "bn.running_var": (3,)}
    assert graph.trainable_names() == ["bn.weight", "bn.bias"] and graph.param_count() == 6
    assert op.geometry() == IDENTITY and op.macs() == 0 and op.output_shape == (3, 4, 4)
    params = graph.init_params()
    np.testing.assert_array_equal(params["bn.weight"], 1)
    np.testing.assert_array_equal(params["bn.running_var"], 1)
    np.testing.assert_array_equal(params["bn.bias"], 0)
    np.testing.assert_array_equal(params["bn.running_mean"], 0)
    assert set(bn_graph(affine=False).param_shapes()) == {"bn.running_mean", "bn.running_var"}
    flat = Graph({"input_shape": [5], "nodes": [{"id": "bn", "op": "batch_norm", "num_features": 5}]})
    assert flat.param_shapes()["bn.weight"] == (5,)


def test_op_updates_buffers_in_place_in_training_and_gives_them_no_gradient(rng):
    graph = bn_graph(momentum=0.5)
    params = graph.init_params()
    running_mean = params["bn.running_mean"]
    x = (rng.standard_normal((4, 3, 4, 4)) + 5).astype(np.float32)
    trace = graph.forward(x, params, training=True)
    assert params["bn.running_mean"] is running_mean  # the same array, changed in place
    np.testing.assert_allclose(running_mean, 0.5 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(trace.output.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    grads = graph.backward(trace, {"bn": np.ones_like(trace.output)})
    assert set(grads.params) == {"bn.weight", "bn.bias"}
    before = running_mean.copy()
    graph.forward(x, params, training=False)
    np.testing.assert_array_equal(running_mean, before)


def test_op_errors():
    with pytest.raises(SpecError, match=r"node 'bn': num_features is 4 but the input has 3 channels"):
        bn_graph(num_features=4)
    with pytest.raises(SpecError, match="eps must be a positive number"):
        bn_graph(eps=0)
    with pytest.raises(SpecError, match="momentum must be a number from 0 to 1"):
        bn_graph(momentum=2)
