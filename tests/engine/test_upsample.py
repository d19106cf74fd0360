"""upsample (nearest, whole factors): a hand-worked example, float64 gradient checks (with negative
controls) for 1D/2D/3D, random sweeps against PyTorch's F.interpolate, and the op inside a Graph."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.upsample import upsample_nearest_backward, upsample_nearest_forward
from engine.receptive_field import receptive_fields


def test_by_hand():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out, cache = upsample_nearest_forward(x, (2, 3))
    np.testing.assert_array_equal(out[0, 0], [[1, 1, 1, 2, 2, 2],
                                              [1, 1, 1, 2, 2, 2],
                                              [3, 3, 3, 4, 4, 4],
                                              [3, 3, 3, 4, 4, 4]])
    dout = np.arange(24.0).reshape(1, 1, 4, 6)
    # block of input (0, 0): rows 0-1, columns 0-2 -> 0+1+2+6+7+8 = 24
    np.testing.assert_array_equal(upsample_nearest_backward(dout, cache)[0, 0], [[24, 42], [96, 114]])


def test_scale_one_is_identity_and_dtype_is_kept():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    out, cache = upsample_nearest_forward(x, (1,))
    np.testing.assert_array_equal(out, x)
    assert out.flags.writeable and not np.shares_memory(out, x)
    assert upsample_nearest_forward(x, (2,))[0].flags.writeable
    assert out.dtype == np.float32 and upsample_nearest_backward(out, cache).dtype == np.float32


SCALES = {1: (3,), 2: (2, 3), 3: (2, 1, 2)}
SHAPES = {1: (2, 2, 4), 2: (2, 2, 3, 2), 3: (1, 2, 2, 3, 2)}


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_gradient_check(nd, rng):
    x = rng.standard_normal(SHAPES[nd])
    scale = SCALES[nd]

    def forward(a):
        return upsample_nearest_forward(a, scale)[0]

    def analytic(dout):
        return (upsample_nearest_backward(dout, upsample_nearest_forward(x, scale)[1]),)

    def first_of_block(dout):  # wrong on purpose: only the block's first position, not the sum
        n, c = dout.shape[:2]
        return (dout[(slice(None), slice(None), *(slice(None, None, s) for s in scale))].reshape(n, c, *x.shape[2:]),)

    (error,) = check_function(forward, analytic, [x])
    assert error < 1e-8, f"{nd}D: relative error {error:.3g}"
    assert check_function(forward, first_of_block, [x])[0] > 1e-2  # negative control


def test_matches_pytorch_random_sweep(torch_or_skip):
    torch = torch_or_skip
    rng = np.random.default_rng(11)
    for trial in range(45):
        nd = 1 + trial % 3
        sizes = [int(rng.integers(1, 6)) for _ in range(nd)]
        scale = tuple(int(rng.integers(1, 5)) for _ in range(nd))
        x = rng.standard_normal((2, 3, *sizes))
        mine, cache = upsample_nearest_forward(x, scale)
        tx = torch.tensor(x, requires_grad=True)
        theirs = torch.nn.functional.interpolate(tx, scale_factor=scale, mode="nearest")
        assert mine.shape == tuple(theirs.shape), f"scale {scale} on {sizes}: mine {mine.shape}, theirs {theirs.shape}"
        np.testing.assert_array_equal(mine, theirs.detach().numpy(), err_msg=f"scale {scale} on {sizes}")
        dout = rng.standard_normal(mine.shape)
        theirs.backward(torch.tensor(dout))
        np.testing.assert_allclose(upsample_nearest_backward(dout, cache), tx.grad.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=f"gradient, scale {scale} on {sizes}")


# --- the op in a graph ---------------------------------------------------------------------------
def _graph(scale_factor, shape=(2, 3, 4), **extra):
    return Graph({"input_shape": list(shape),
                  "nodes": [{"id": "up", "op": "upsample", "scale_factor": scale_factor, **extra}]})


def test_shapes_and_attributes():
    assert _graph(2).nodes[0].output_shape == (2, 6, 8)
    assert _graph([1, 3]).nodes[0].output_shape == (2, 3, 12)
    assert _graph(4, shape=(1, 5)).nodes[0].output_shape == (1, 20)
    assert _graph([2, 1, 3], shape=(1, 2, 2, 2)).nodes[0].output_shape == (1, 4, 2, 6)
    op = _graph([1, 3], mode="nearest").nodes[0].op
    assert op.describe() == {"scale_factor": (1, 3), "mode": "nearest"} and op.macs() == 0


@pytest.mark.parametrize("scale, extra, message", [
    (0, {}, r"node 'up': scale_factor must be at least 1 on every axis"),
    (1.5, {}, "must be whole numbers"),
    ([2.0, 2.0], {}, "must be whole numbers"),
    ([2, 2, 2], {}, "scale_factor has 3 values but the op has 2 spatial axes"),
    (2, {"mode": "bilinear"}, "mode 'bilinear' is not supported"),
    (2, {"size": [8, 8]}, "does not take size"),
])
def test_spec_errors_name_the_node(scale, extra, message):
    with pytest.raises(SpecError, match=message):
        _graph(scale, **extra)


def test_refuses_inputs_without_spatial_axes():
    with pytest.raises(SpecError, match=r"node 'up': upsample takes inputs with 1 to 3 spatial axes"):
        _graph(2, shape=(6,))


def test_in_a_graph_full_and_lean_pass_and_gradients(rng):
    from tests.engine.graphcheck import graph_gradient_errors

    graph = Graph({"input_shape": [2, 4, 3], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 3, "kernel_size": 1},
        {"id": "relu", "op": "relu"},
        {"id": "up", "op": "upsample", "scale_factor": [2, 3]},
        {"id": "out", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
    ]})
    params = graph.init_params(seed=2)
    x = rng.standard_normal((2, 2, 4, 3)).astype(np.float32)
    trace = graph.forward(x, params)
    assert trace.activations["up"].shape == (2, 3, 8, 9)
    np.testing.assert_array_equal(trace.activations["up"], trace.activations["relu"].repeat(2, 2).repeat(3, 3))
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(lean.output, trace.output)
    params64 = {k: v.astype(np.float64) for k, v in params.items()}
    errors = graph_gradient_errors(graph, rng.standard_normal((2, 2, 4, 3)), params64)
    assert max(errors.values()) < 1e-7, errors


def test_receptive_field_is_undefined_from_an_upsample_on():
    """Output units 2i and 2i + 1 read the same input unit: no (r, S, P) describes that, so the analysis says so."""
    graph = Graph({"input_shape": [1, 8, 8], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 1, "kernel_size": 3, "stride": 2},
        {"id": "up", "op": "upsample", "scale_factor": 2},
        {"id": "after", "op": "conv2d", "out_channels": 1, "kernel_size": 3},
    ]})
    rfs = receptive_fields(graph)
    assert rfs["conv"].status == "local"
    assert rfs["up"].status == "undefined" and "'up'" in rfs["up"].reason
    assert rfs["after"].status == "undefined" and rfs["after"].reason == rfs["up"].reason
