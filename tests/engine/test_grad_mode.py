"""``Graph.backward(..., params=False)``: attribution's backward pass skips the parameters' gradients and gives
exactly the same input and activation gradients. ``Graph.backward(..., input_grad=False)``: training's pass skips
the input's gradient, for a transposed convolution reading the input as for a convolution."""

from __future__ import annotations

import numpy as np

import engine.layers.conv as conv_layer
from engine import INPUT, Graph
from engine.layers.grad_mode import input_grad_wanted, input_grads_only, param_grads_wanted, without_input_grad

SPEC = {"input_shape": [3, 9, 9], "nodes": [
    {"id": "conv", "op": "conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1},
    {"id": "bn", "op": "batch_norm"},
    {"id": "relu", "op": "relu6"},
    {"id": "dw", "op": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1, "groups": 6},
    {"id": "pw", "op": "conv2d", "out_channels": 4, "kernel_size": 1, "bias": False},
    {"id": "up", "op": "conv_transpose2d", "out_channels": 4, "kernel_size": 2, "stride": 2},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}


def test_input_gradients_are_identical_without_parameter_gradients(rng):
    graph = Graph(SPEC)
    params = graph.init_params(seed=3)
    params["bn.running_mean"] = rng.standard_normal(6).astype(np.float32)
    params["bn.running_var"] = rng.random(6).astype(np.float32) + 0.5
    x = rng.standard_normal((2, 3, 9, 9))
    trace = graph.forward(x, params)
    seed = {"fc": np.eye(3)[[0, 2]]}
    full = graph.backward(trace, seed)
    lean = graph.backward(trace, seed, params=False)
    assert lean.params == {}
    assert set(full.params) == set(graph.trainable_names())
    assert set(lean.activations) == set(full.activations)
    for name, grad in full.activations.items():
        np.testing.assert_array_equal(lean.activations[name], grad, err_msg=name)
    assert np.abs(full.input).max() > 0  # the comparison is not between zeros
    assert param_grads_wanted(), "the mode must be restored after the pass"


def test_the_mode_is_restored_after_an_error():
    try:
        with input_grads_only():
            assert not param_grads_wanted()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert param_grads_wanted()


UPSAMPLER = {"input_shape": [3, 5, 5], "nodes": [
    {"id": "up", "op": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1,
     "output_padding": 1},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}


def test_a_transposed_convolution_reading_the_input_skips_its_input_gradient(rng, monkeypatch):
    """Training's pass (``input_grad=False``) on a graph whose first layer is a transposed convolution: its dx
    (a whole convolution of ``dout``) is never computed, and every parameter gradient is unchanged."""
    graph = Graph(UPSAMPLER)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=5).items()}
    trace = graph.forward(rng.standard_normal((2, 3, 5, 5)), params, training=True)
    seed = {"fc": rng.standard_normal((2, 3))}
    calls: list[int] = []
    original = conv_layer.correlate

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(conv_layer, "correlate", counted)
    full = graph.backward(trace, seed)
    assert len(calls) == 1 and np.abs(full.input).max() > 0
    calls.clear()
    lean = graph.backward(trace, seed, input_grad=False)
    assert calls == [] and INPUT not in lean.activations
    assert set(lean.params) == set(full.params) == set(graph.trainable_names())
    for name, value in full.params.items():
        np.testing.assert_array_equal(lean.params[name], value, err_msg=name)


def test_transposed_convolution_backward_returns_no_dx_without_the_input_gradient(rng):
    x = rng.standard_normal((2, 4, 3, 3))
    w = rng.standard_normal((4, 3, 2, 2))
    out, cache = conv_layer.conv_transpose_forward(x, w, np.zeros(6), (2, 2), ((0, 0), (0, 0)), (0, 0), (1, 1),
                                                   groups=2)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv_layer.conv_transpose_backward(dout, cache)
    with without_input_grad():
        lean_dx, lean_dw, lean_db = conv_layer.conv_transpose_backward(dout, cache)
    assert input_grad_wanted(), "the mode must be restored after the block"
    assert dx is not None and dx.shape == x.shape and lean_dx is None
    np.testing.assert_array_equal(lean_dw, dw)
    np.testing.assert_array_equal(lean_db, db)
