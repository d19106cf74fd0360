"""``Graph.backward(..., params=False)``: attribution's backward pass skips the parameters' gradients and gives
exactly the same input and activation gradients."""

from __future__ import annotations

import numpy as np

from engine import Graph
from engine.layers.grad_mode import input_grads_only, param_grads_wanted

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
