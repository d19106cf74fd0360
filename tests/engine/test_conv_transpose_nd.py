"""conv_transpose1d and conv_transpose3d graph ops (the N-d transposed-convolution layer behind conv_transpose2d):
float64 gradient checks with a negative control, and PyTorch sweeps of forward and backward."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph

TOLERANCE = 1e-6


def _graph(spatial: int, in_channels: int, size: int, **attrs) -> Graph:
    op = {1: "conv_transpose1d", 3: "conv_transpose3d"}[spatial]
    return Graph({"input_shape": [in_channels, *([size] * spatial)], "nodes": [{"id": "t", "op": op, **attrs}]})


def _float64(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in params.items()}


@pytest.mark.parametrize("spatial", [1, 3])
def test_gradients_match_central_differences(spatial):
    graph = _graph(spatial, 4, 3, out_channels=4, kernel_size=3, stride=2, padding=[[1, 0]] * spatial,
                   output_padding=1, dilation=1, groups=2)
    params = _float64(graph.init_params(seed=spatial))
    x = np.random.default_rng(spatial).standard_normal((2, 4, *([3] * spatial)))
    names = ["t.weight", "t.bias"]

    def forward(x, w, b):
        return graph.forward(x, {"t.weight": w, "t.bias": b}, keep_caches=False).output

    def analytic(dout):
        trace = graph.forward(x, params)
        grads = graph.backward(trace, {"t": dout})
        return grads.input, grads.params["t.weight"], grads.params["t.bias"]

    errors = check_function(forward, analytic, [x, *(params[n] for n in names)])
    assert max(errors) < TOLERANCE, errors

    def wrong(dout):  # negative control: the weight gradient of the flipped kernel
        dx, dw, db = analytic(dout)
        return dx, np.flip(dw, axis=-1), db

    assert max(check_function(forward, wrong, [x, *(params[n] for n in names)])) > 1e-2


@pytest.mark.parametrize("spatial", [1, 3])
def test_matches_pytorch_on_random_sweeps(spatial, torch_or_skip):
    torch = torch_or_skip
    F = torch.nn.functional
    conv = {1: F.conv_transpose1d, 3: F.conv_transpose3d}[spatial]
    rng = np.random.default_rng(10 + spatial)
    compared = 0
    for trial in range(12):
        groups = int(rng.choice([1, 2]))
        c_in, c_out = 2 * groups, 2 * groups
        stride, dilation = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        kernel = int(rng.integers(1, 4))
        padding = int(rng.integers(0, kernel))
        output_padding = int(rng.integers(0, max(stride, dilation)))
        size = int(rng.integers(2, 5 if spatial == 3 else 7))
        try:
            graph = _graph(spatial, c_in, size, out_channels=c_out, kernel_size=kernel, stride=stride,
                           padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
        except SpecError:  # a combination the op refuses (an empty output): PyTorch refuses it too
            continue
        params = _float64(graph.init_params(seed=trial))
        x = rng.standard_normal((2, c_in, *([size] * spatial)))
        trace = graph.forward(x, params)
        dout = rng.standard_normal(trace.output.shape)
        grads = graph.backward(trace, {"t": dout})
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(params["t.weight"], requires_grad=True)
        tb = torch.tensor(params["t.bias"], requires_grad=True)
        out = conv(tx, tw, tb, stride, padding, output_padding, groups, dilation)
        out.backward(torch.tensor(dout))
        what = f"{spatial}D trial {trial}: k{kernel} s{stride} p{padding} op{output_padding} d{dilation} g{groups}"
        np.testing.assert_allclose(trace.output, out.detach().numpy(), atol=1e-10, err_msg=what)
        np.testing.assert_allclose(grads.input, tx.grad.numpy(), atol=1e-10, err_msg=what)
        np.testing.assert_allclose(grads.params["t.weight"], tw.grad.numpy(), atol=1e-10, err_msg=what)
        np.testing.assert_allclose(grads.params["t.bias"], tb.grad.numpy(), atol=1e-10, err_msg=what)
        compared += 1
    assert compared >= 8  # the sweep compared most of its trials


def test_shapes_follow_the_formula():
    """L_out = (L − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1, per axis."""
    assert _graph(1, 3, 5, out_channels=2, kernel_size=3, stride=2, padding=1, output_padding=1).nodes[0] \
        .output_shape == (2, 10)
    assert _graph(3, 3, 4, out_channels=2, kernel_size=2, stride=2).nodes[0].output_shape == (2, 8, 8, 8)
