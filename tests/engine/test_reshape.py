"""flatten and reshape: values kept in PyTorch's order, gradients reshaped back, shape errors, geometry."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.graph import Graph
from engine.layers.reshape import flatten_backward, flatten_forward, reshape_backward, reshape_forward
from engine.ops.base import GLOBAL, IDENTITY


def test_flatten_by_hand():
    x = np.arange(2 * 2 * 2 * 3).reshape(2, 2, 2, 3)
    out, cache = flatten_forward(x)
    assert out.shape == (2, 12)
    np.testing.assert_array_equal(out[1], np.arange(12, 24))  # channel-major, as torch.flatten on NCHW
    np.testing.assert_array_equal(flatten_backward(out, cache), x)
    out2, _ = flatten_forward(x, start_dim=2)
    assert out2.shape == (2, 2, 6)
    out3, _ = flatten_forward(x, start_dim=1, end_dim=2)
    assert out3.shape == (2, 4, 3)


def test_reshape_round_trip():
    x = np.arange(24.0).reshape(2, 3, 4)
    out, cache = reshape_forward(x, (4, 3))
    np.testing.assert_array_equal(out, x.reshape(2, 4, 3))
    np.testing.assert_array_equal(reshape_backward(out * 2, cache), x * 2)


def test_matches_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    x = rng.standard_normal((2, 3, 4, 5))
    for start, end in ((1, -1), (2, 3), (1, 2)):
        np.testing.assert_array_equal(flatten_forward(x, start, end)[0],
                                      torch.flatten(torch.tensor(x), start, end).numpy())


def test_ops_shapes_and_geometry():
    graph = Graph({"input_shape": [3, 4, 5], "nodes": [
        {"id": "flat", "op": "flatten"},
        {"id": "rows", "op": "flatten", "start_dim": 2, "inputs": ["input"]},
        {"id": "same", "op": "flatten", "start_dim": 1, "end_dim": 1, "inputs": ["input"]},
        {"id": "back", "op": "reshape", "shape": [3, -1, 5], "inputs": ["flat"]},
        {"id": "keep", "op": "reshape", "shape": [3, 4, 5], "inputs": ["input"]},
        {"id": "vec", "op": "flatten", "inputs": ["flat"]},
    ]})
    shapes = {n.id: n.output_shape for n in graph.nodes}
    assert shapes == {"flat": (60,), "rows": (3, 20), "same": (3, 4, 5), "back": (3, 4, 5), "keep": (3, 4, 5),
                      "vec": (60,)}
    geometry = {n.id: n.op.geometry() for n in graph.nodes}
    assert geometry == {"flat": GLOBAL, "rows": GLOBAL, "same": IDENTITY, "back": GLOBAL, "keep": IDENTITY,
                        "vec": IDENTITY}


def test_op_forward_backward(rng):
    graph = Graph({"input_shape": [2, 3], "nodes": [{"id": "r", "op": "reshape", "shape": [-1]},
                                                    {"id": "f", "op": "linear", "out_features": 2}]})
    params = graph.init_params()
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    trace = graph.forward(x, params)
    np.testing.assert_array_equal(trace.activations["r"], x.reshape(4, 6))
    grads = graph.backward(trace, {"r": np.arange(24, dtype=np.float32).reshape(4, 6)})
    np.testing.assert_array_equal(grads.input, np.arange(24).reshape(4, 2, 3))


def test_reshape_errors():
    def build(shape):
        return Graph({"input_shape": [3, 4], "nodes": [{"id": "r", "op": "reshape", "shape": shape}]})

    with pytest.raises(SpecError, match=r"node 'r': cannot reshape \[3, 4\] \(12 values\) to \[5, 2\] \(10 values\)"):
        build([5, 2])
    with pytest.raises(SpecError, match="12 is not a multiple of 5"):
        build([5, -1])
    with pytest.raises(SpecError, match="more than one -1"):
        build([-1, -1])
    with pytest.raises(SpecError, match="shape must be a list of positive ints"):
        build([0, 12])
    with pytest.raises(SpecError, match="needs shape"):
        Graph({"input_shape": [3, 4], "nodes": [{"id": "r", "op": "reshape"}]})
    with pytest.raises(SpecError, match="start_dim=0 is the batch axis"):
        Graph({"input_shape": [3, 4], "nodes": [{"id": "f", "op": "flatten", "start_dim": 0}]})
    with pytest.raises(SpecError, match=r"start_dim \(2\) comes after end_dim \(1\)"):
        Graph({"input_shape": [3, 4], "nodes": [{"id": "f", "op": "flatten", "start_dim": 2, "end_dim": 1}]})


def test_flatten_and_reshape_pass_central_difference_checks(rng):
    """float64 gradient checks, with a negative control: a gradient laid out in the wrong order fails."""
    from engine.gradcheck import check_function, numeric_gradient, relative_error

    x = rng.standard_normal((2, 3, 4))
    _, cache = reshape_forward(x, (4, 3))
    errors = check_function(lambda a: reshape_forward(a, (4, 3))[0], lambda d: (reshape_backward(d, cache),), [x])
    assert max(errors) < 1e-8
    _, fcache = flatten_forward(x)
    errors = check_function(lambda a: flatten_forward(a)[0], lambda d: (flatten_backward(d, fcache),), [x])
    assert max(errors) < 1e-8
    dout = rng.standard_normal((2, 4, 3))
    numeric = numeric_gradient(lambda: float(np.sum(reshape_forward(x, (4, 3))[0] * dout)), x)
    wrong = dout.transpose(0, 2, 1).reshape(x.shape)  # the right values in the wrong places
    assert relative_error(wrong, numeric) > 0.1
