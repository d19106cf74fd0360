"""Activations and softmax: gradient checks, values at the kinks, PyTorch comparisons, ops."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers import activation as act
from engine.layers.softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward
from engine.ops.base import GLOBAL, IDENTITY

# name -> (forward with its attributes, backward)
ACTIVATIONS = {
    "relu": (act.relu_forward, act.relu_backward),
    "relu6": (act.relu6_forward, act.relu6_backward),
    "leaky_relu": (lambda x: act.leaky_relu_forward(x, 0.2), act.leaky_relu_backward),
    "clip": (lambda x: act.clip_forward(x, -1.5, 2.0), act.clip_backward),
    "sigmoid": (act.sigmoid_forward, act.sigmoid_backward),
    "tanh": (act.tanh_forward, act.tanh_backward),
    "silu": (act.silu_forward, act.silu_backward),
    "hardsigmoid": (act.hardsigmoid_forward, act.hardsigmoid_backward),
    "hardsigmoid_onnx": (lambda x: act.hardsigmoid_forward(x, 0.2, 0.5), act.hardsigmoid_backward),
    "hardswish": (act.hardswish_forward, act.hardswish_backward),
    "identity": (act.identity_forward, act.identity_backward),
    "gelu": (act.gelu_forward, act.gelu_backward),
    "gelu_tanh": (lambda x: act.gelu_forward(x, "tanh"), act.gelu_backward),
}
KINKS = np.array([-3.0, -2.5, -1.5, 0.0, 2.0, 3.0, 6.0])


def away_from_kinks(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 4.0) -> np.ndarray:
    """Random float64 values at least 0.01 from every kink, so central differences are meaningful."""
    x = rng.uniform(-scale, scale * 2, size=shape)
    near = np.abs(x[..., None] - KINKS).min(axis=-1) < 0.01
    x[near] += 0.05
    return x


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_gradient_check(name, rng):
    forward, backward = ACTIVATIONS[name]
    x = away_from_kinks(rng, (3, 2, 4, 5))
    (err,) = check_function(lambda a: forward(a)[0], lambda d: (backward(d, forward(x)[1]),), [x])
    assert err < 1e-7, f"{name}: relative error {err:.2e}"


def test_gradient_check_catches_a_wrong_gradient(rng):
    """Negative control: sigmoid's gradient with the wrong sign, or scaled by 1.01, must fail the check."""
    x = away_from_kinks(rng, (2, 3))
    cache = act.sigmoid_forward(x)[1]
    for wrong in (lambda d: -act.sigmoid_backward(d, cache), lambda d: 1.01 * act.sigmoid_backward(d, cache)):
        (err,) = check_function(lambda a: act.sigmoid_forward(a)[0], lambda d, w=wrong: (w(d),), [x])
        assert err > 1e-3


def test_values_and_kink_gradients_by_hand():
    x = np.array([-4.0, -3.0, 0.0, 3.0, 6.0, 7.0])
    ones = np.ones_like(x)
    cases = {
        # name: (forward values, gradient of sum(out)) worked out from the definitions and PyTorch's kink rules
        "relu": ([0, 0, 0, 3, 6, 7], [0, 0, 0, 1, 1, 1]),
        "relu6": ([0, 0, 0, 3, 6, 6], [0, 0, 0, 1, 0, 0]),
        "hardsigmoid": ([0, 0, 0.5, 1, 1, 1], [0, 0, 1 / 6, 0, 0, 0]),
        "hardswish": ([0, 0, 0, 3, 6, 7], [0, 0, 0.5, 1, 1, 1]),
        "identity": (x, ones),
    }
    for name, (values, grads) in cases.items():
        forward, backward = ACTIVATIONS[name]
        out, cache = forward(x)
        np.testing.assert_allclose(out, values, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(backward(ones, cache), grads, atol=1e-15, err_msg=name)
    out, cache = act.leaky_relu_forward(x, 0.1)
    np.testing.assert_allclose(out, [-0.4, -0.3, 0, 3, 6, 7])
    np.testing.assert_allclose(act.leaky_relu_backward(ones, cache), [0.1, 0.1, 0.1, 1, 1, 1])
    out, cache = act.clip_forward(x, 0.0, 6.0)  # clamp passes the gradient at both ends, unlike relu6
    np.testing.assert_allclose(out, [0, 0, 0, 3, 6, 6])
    np.testing.assert_allclose(act.clip_backward(ones, cache), [0, 0, 1, 1, 1, 0])
    out, cache = act.clip_forward(x, None, 0.0)
    np.testing.assert_allclose(out, [-4, -3, 0, 0, 0, 0])
    np.testing.assert_allclose(act.sigmoid_forward(np.array([0.0, np.log(3.0)]))[0], [0.5, 0.75])
    np.testing.assert_allclose(act.silu_forward(np.array([np.log(3.0)]))[0], [0.75 * np.log(3.0)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_no_overflow(dtype):
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype)
    for name, (forward, backward) in ACTIVATIONS.items():
        out, cache = forward(x)  # RuntimeWarnings are errors in this suite: no overflow allowed
        assert out.dtype == dtype, name
        assert backward(np.ones_like(x), cache).dtype == dtype, name
        assert np.all(np.isfinite(out)), name
    s = act.sigmoid_forward(x)[0]
    assert s[0] == 0 and s[-1] == 1 and s[2] == 0.5


TORCH_NAMES = {
    "relu": lambda F, t: F.relu(t),
    "relu6": lambda F, t: F.relu6(t),
    "leaky_relu": lambda F, t: F.leaky_relu(t, 0.2),
    "clip": lambda F, t: t.clamp(-1.5, 2.0),
    "sigmoid": lambda F, t: t.sigmoid(),
    "tanh": lambda F, t: t.tanh(),
    "silu": lambda F, t: F.silu(t),
    "hardsigmoid": lambda F, t: F.hardsigmoid(t),
    "hardswish": lambda F, t: F.hardswish(t),
    "identity": lambda F, t: t,
    "gelu": lambda F, t: F.gelu(t),
}


@pytest.mark.parametrize("name", sorted(TORCH_NAMES))
def test_matches_pytorch_including_kinks(name, torch_or_skip, rng):
    torch = torch_or_skip
    F = torch.nn.functional
    x = np.concatenate([rng.uniform(-8, 8, size=40), KINKS, [-1.0, 1.0, -6.0]]).reshape(2, 5, 5)
    forward, backward = ACTIVATIONS[name]
    dout = rng.standard_normal(x.shape)
    out, cache = forward(x)
    t = torch.tensor(x, requires_grad=True)
    ref = TORCH_NAMES[name](F, t)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-12, atol=1e-12,
                               err_msg=f"{name} forward: mine vs torch")
    # torch evaluates hardsigmoid's 1/6 slope in float32 even for float64 tensors, hence 1e-7
    np.testing.assert_allclose(backward(dout, cache), t.grad.numpy(), rtol=1e-7, atol=1e-7,
                               err_msg=f"{name} backward: mine vs torch")


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dim", [1, 2, -1])
def test_softmax_gradient_check(rng, log, dim):
    forward, backward = (log_softmax_forward, log_softmax_backward) if log else (softmax_forward, softmax_backward)
    x = rng.standard_normal((2, 3, 4))
    (err,) = check_function(lambda a: forward(a, dim)[0], lambda d: (backward(d, forward(x, dim)[1]),), [x])
    assert err < 1e-7
    shifted = check_function(lambda a: forward(a, dim)[0], lambda d: (backward(d, forward(x, dim)[1]) + 1e-2,), [x])
    assert shifted[0] > 1e-3, "negative control: a gradient off by 0.01 must fail"


def test_softmax_by_hand_and_stable():
    out = softmax_forward(np.array([[0.0, np.log(3.0)]]))[0]
    np.testing.assert_allclose(out, [[0.25, 0.75]])
    big = np.array([[1000.0, 1000.0 + np.log(3.0)]], dtype=np.float32)
    np.testing.assert_allclose(softmax_forward(big)[0], [[0.25, 0.75]], rtol=1e-4)
    np.testing.assert_allclose(log_softmax_forward(big)[0], np.log([[0.25, 0.75]]), rtol=1e-4)
    assert softmax_forward(big)[0].dtype == np.float32


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_softmax_matches_pytorch(torch_or_skip, rng, dim):
    torch = torch_or_skip
    x = rng.standard_normal((2, 3, 4, 5)) * 5
    dout = rng.standard_normal(x.shape)
    for forward, backward, ref_fn in ((softmax_forward, softmax_backward, torch.softmax),
                                      (log_softmax_forward, log_softmax_backward, torch.log_softmax)):
        out, cache = forward(x, dim)
        t = torch.tensor(x, requires_grad=True)
        ref = ref_fn(t, dim)
        ref.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(backward(dout, cache), t.grad.numpy(), rtol=1e-10, atol=1e-12)


# --- ops ------------------------------------------------------------------------------------------

OP_ATTRS = {"leaky_relu": {"negative_slope": 0.2}, "clip": {"min": -1.5, "max": 2.0}}


@pytest.mark.parametrize("name", sorted(TORCH_NAMES))
def test_op_runs_the_layer(name, rng):
    graph = Graph({"input_shape": [2, 3, 3], "nodes": [{"id": "a", "op": name, **OP_ATTRS.get(name, {})}]})
    node = graph.by_id["a"]
    assert node.output_shape == (2, 3, 3)
    assert node.op.macs() == 0 and node.op.geometry() == IDENTITY and graph.param_shapes() == {}
    x = away_from_kinks(rng, (2, 2, 3, 3))
    trace = graph.forward(x, {})
    np.testing.assert_array_equal(trace.output, ACTIVATIONS[name][0](x)[0])
    dout = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(graph.backward(trace, {"a": dout}).input,
                                  ACTIVATIONS[name][1](dout, ACTIVATIONS[name][0](x)[1]))


def test_op_attribute_errors():
    def build(node):
        return Graph({"input_shape": [4], "nodes": [{"id": "a", **node}]})

    with pytest.raises(SpecError, match="negative_slope must be a number"):
        build({"op": "leaky_relu", "negative_slope": "big"})
    with pytest.raises(SpecError, match=r"node 'a'.*does not take alpha"):
        build({"op": "relu", "alpha": 1})
    with pytest.raises(SpecError, match=r"min \(2\) is greater than its max \(1\)"):
        build({"op": "clip", "min": 2, "max": 1})
    build({"op": "clip", "min": 0})  # one open side is fine (ONNX's Clip)
    build({"op": "hardsigmoid", "alpha": 0.2, "beta": 0.5})
    with pytest.raises(SpecError, match="dim=0 is the batch axis"):
        build({"op": "softmax", "dim": 0})
    with pytest.raises(SpecError, match="dim must be an int from 1 to 1"):
        build({"op": "softmax", "dim": 2})


def test_softmax_op_geometry_and_values(rng):
    graph = Graph({"input_shape": [3, 4, 4], "nodes": [
        {"id": "channels", "op": "softmax", "inputs": ["input"]},
        {"id": "rows", "op": "log_softmax", "dim": -2, "inputs": ["input"]}]})
    assert graph.by_id["channels"].op.geometry() == IDENTITY
    assert graph.by_id["rows"].op.geometry() == GLOBAL
    x = rng.standard_normal((2, 3, 4, 4))
    trace = graph.forward(x, {})
    np.testing.assert_allclose(trace.activations["channels"].sum(axis=1), 1)
    np.testing.assert_allclose(np.exp(trace.activations["rows"]).sum(axis=2), 1)


@pytest.mark.parametrize("name", ["relu", "relu6"])
def test_in_place_forms_match_and_keep_nan_and_signed_zero(name):
    """The lean pass's in-place relu/relu6 give the recording pass's values bit for bit; NaN stays NaN and
    -0.0 stays -0.0, as in PyTorch (``torch.relu(-0.0)`` is ``-0.0``)."""
    forms = {"relu": (act.relu_forward, act.relu_inplace), "relu6": (act.relu6_forward, act.relu6_inplace)}
    forward, inplace = forms[name]
    x = np.array([np.nan, -0.0, 0.0, -1.5, 2.5, 6.0, 7.0, np.inf, -np.inf], dtype=np.float32)
    out, _ = forward(x)
    assert out.dtype == np.float32
    same = x.copy()
    assert inplace(same) is same
    np.testing.assert_array_equal(same.view(np.uint32), out.view(np.uint32))
    assert np.isnan(out[0]) and np.signbit(out[1]) and not np.signbit(out[2])
