"""GELU and the erf under it: erf against math.erf to the last bit or so (with a negative control: a well-known
7-digit approximation must fail the same test), GELU by hand, gradients (with negative controls), PyTorch sweeps in
float64 and float32 for both forms, the op's attribute and a graph (gradients, lean pass, float32).

The generic activation tests (gradient check, dtype, no overflow, PyTorch at the kinks, the op) also cover
``gelu`` through the tables in test_activation.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers import activation as act
from engine.layers.erf import erf
from engine.ops.base import IDENTITY
from tests.engine.graphcheck import graph_gradient_errors

math_erf = np.vectorize(math.erf, otypes=[np.float64])  # the loop form: C's erf, one value at a time


def _abramowitz_stegun(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (max error 1.5e-7): the kind of erf that is too coarse for float64 checks."""
    t = 1 / (1 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1 - poly * np.exp(-x * x))


def _erf_error(candidate, x: np.ndarray) -> float:
    return float(np.max(np.abs(candidate(x) - math_erf(x))))


def test_erf_matches_math_erf_on_a_dense_grid():
    x = np.linspace(-7, 7, 1_400_001)  # every range of the method, and both signs
    assert _erf_error(erf, x) <= 1e-15  # in practice at most one unit in the last place, 1.1e-16
    assert _erf_error(_abramowitz_stegun, x) > 1e-8, "negative control: a 7-digit erf must fail this test"


def test_erf_relative_accuracy_over_many_scales():
    rng = np.random.default_rng(5)
    for scale in (1e-300, 1e-20, 1e-8, 1e-3, 0.5, 1.0, 2.0, 4.0, 30.0, 1e200):
        x = rng.standard_normal(20_000) * scale
        ref = math_erf(x)
        ulps = np.abs(erf(x) - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(np.float64).tiny))
        assert ulps.max() <= 2, f"erf at scale {scale}: {ulps.max()} ulps from math.erf"


def test_erf_special_values_and_shape():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 6.0, -6.0, 1e308, 0.84375, 1.25, 1 / 0.35])
    out = erf(x)
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], math_erf(x[1:]))
    assert np.signbit(out[4]) and not np.signbit(out[3])
    assert erf(np.zeros((2, 3, 4), np.float32)).shape == (2, 3, 4)
    assert erf(np.ones(3, np.float32)).dtype == np.float64


def test_gelu_by_hand():
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    phi = np.array([0.15865525393145707, 0.5, 0.8413447460685429, 0.9772498680518208])  # normal CDF Φ(x)
    out, cache = act.gelu_forward(x)
    np.testing.assert_allclose(out, x * phi, rtol=1e-15)
    density = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(act.gelu_backward(np.ones(4), cache), phi + x * density, rtol=1e-15)
    out, _ = act.gelu_forward(x, "tanh")
    tanh = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) for v in x]
    np.testing.assert_allclose(out, tanh, rtol=1e-15)
    np.testing.assert_allclose(out, x * phi, atol=1e-3)  # the approximation is close, not equal
    with pytest.raises(ValueError, match="approximate must be one of none, tanh, got 'erf'"):
        act.gelu_forward(x, "erf")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gradient_check_over_a_wide_range(rng, approximate):
    x = np.concatenate([rng.uniform(-6, 6, 40), [-9.0, -3.5, 0.0, 3.5, 9.0]])
    (err,) = check_function(lambda a: act.gelu_forward(a, approximate)[0],
                            lambda d: (act.gelu_backward(d, act.gelu_forward(x, approximate)[1]),), [x])
    assert err < 1e-8, f"gelu {approximate}: relative error {err:.2e}"


def test_gradient_check_rejects_wrong_gradients(rng):
    """Negative controls: Φ(x) alone (no x·φ(x) term), and the exact form's gradient for the tanh form."""
    x = rng.uniform(-4, 4, 30)
    _, cache = act.gelu_forward(x)
    (err,) = check_function(lambda a: act.gelu_forward(a)[0], lambda d: (d * cache[1],), [x])
    assert err > 1e-2
    (err,) = check_function(lambda a: act.gelu_forward(a, "tanh")[0],
                            lambda d: (act.gelu_backward(d, act.gelu_forward(x)[1]),), [x])
    assert err > 1e-5


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_matches_pytorch(torch_or_skip, dtype, approximate):
    torch = torch_or_skip
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    tol = {np.float64: 1e-13, np.float32: 5e-6}[dtype]
    for scale in (0.1, 1.0, 3.0, 10.0):
        x = np.concatenate([rng.standard_normal(2000) * scale, [0.0, -0.0, 40.0, -40.0, 1e4, -1e4]]).astype(dtype)
        dout = rng.standard_normal(x.shape).astype(dtype)
        out, cache = act.gelu_forward(x, approximate)
        t = torch.tensor(x, requires_grad=True)
        ref = F.gelu(t, approximate=approximate)
        ref.backward(torch.tensor(dout))
        where = f"gelu {approximate} {np.dtype(dtype).name} at scale {scale}"
        assert out.dtype == dtype
        np.testing.assert_allclose(out, ref.detach().numpy(), rtol=tol, atol=tol, err_msg=f"{where}: mine vs torch")
        np.testing.assert_allclose(act.gelu_backward(dout, cache), t.grad.numpy(), rtol=tol, atol=tol,
                                   err_msg=f"{where} gradient: mine vs torch")


# --- the op ---------------------------------------------------------------------------------------


def test_op_attribute():
    def build(**attrs):
        return Graph({"input_shape": [3, 4], "nodes": [{"id": "g", "op": "gelu", **attrs}]}).nodes[0].op

    assert build().attrs == {"approximate": "none"} and build(approximate="tanh").geometry() == IDENTITY
    for wrong in ("erf", "Tanh", 1, None, True):
        with pytest.raises(SpecError, match=r"node 'g': approximate must be \"none\" or \"tanh\""):
            build(approximate=wrong)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_graph_gradients_lean_pass_and_float32(rng, approximate):
    graph = Graph({"input_shape": [2, 5], "nodes": [
        {"id": "conv", "op": "conv1d", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"id": "act", "op": "gelu", "approximate": approximate},
        {"id": "mix", "op": "conv1d", "out_channels": 2, "kernel_size": 1}]})
    params = {k: v.astype(np.float64) for k, v in graph.init_params(3).items()}
    errors = graph_gradient_errors(graph, rng.standard_normal((2, 2, 5)) * 3, params)
    assert max(errors.values()) < 1e-7, errors
    params32 = graph.init_params(3)
    x = rng.standard_normal((2, 2, 5)).astype(np.float32)
    trace = graph.forward(x, params32)
    assert trace.activations["act"].dtype == np.float32
    np.testing.assert_array_equal(graph.forward(x, params32, keep_caches=False, keep=()).output, trace.output)
