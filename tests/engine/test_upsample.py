"""upsample (whole factors), nearest and linear / bilinear / trilinear with both align_corners: hand-worked
examples, a naive four-neighbour bilinear reference, float64 gradient checks (with negative controls) for
1D/2D/3D, random sweeps against PyTorch's F.interpolate, and the op inside a Graph."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.upsample import (
    linear_weights,
    upsample_linear_backward,
    upsample_linear_forward,
    upsample_nearest_backward,
    upsample_nearest_forward,
)
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
    (2, {"mode": "bicubic"}, "mode 'bicubic' is not supported: upsample takes 'nearest'"),
    (2, {"mode": "linear"}, r"mode 'linear' interpolates 1 spatial axis, \(C, L\), but the input \[2, 3, 4\] has 2 "
                            r"\(\(C, H, W\)\): use mode 'bilinear'"),
    (2, {"mode": "trilinear"}, "mode 'trilinear' interpolates 3 spatial axes.*use mode 'bilinear'"),
    (2, {"align_corners": True}, "align_corners=true only applies to the interpolating modes"),
    (2, {"mode": "bilinear", "align_corners": 1}, "align_corners 1 must be true or false"),
    (1.5, {"mode": "bilinear"}, "must be whole numbers .*whole multiples of the input size"),
    (0, {"mode": "bilinear"}, r"node 'up': scale_factor must be at least 1 on every axis"),
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


# --- linear, bilinear, trilinear ---------------------------------------------------------------
LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


@pytest.mark.parametrize("align_corners, expected, dx", [
    # align_corners False: sources max((i + 0.5) / 2 - 0.5, 0) = 0, 0.25, 0.75, 1.25 -> clamped to the last pixel
    (False, [1, 1.5, 2.5, 3], [1 + 2 * 0.75 + 3 * 0.25, 2 * 0.25 + 3 * 0.75 + 4]),
    # align_corners True: sources i * (2 - 1) / (4 - 1) = 0, 1/3, 2/3, 1
    (True, [1, 5 / 3, 7 / 3, 3], [1 + 2 * 2 / 3 + 3 / 3, 2 / 3 + 3 * 2 / 3 + 4]),
])
def test_linear_by_hand(align_corners, expected, dx):
    out, cache = upsample_linear_forward(np.array([[[1.0, 3.0]]]), (2,), align_corners)
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-15)
    dout = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    np.testing.assert_allclose(upsample_linear_backward(dout, cache)[0, 0], dx, rtol=1e-15)


def test_bilinear_by_hand():
    """[[1, 2], [3, 4]] by 2: rows and columns both sample at 0, 0.25, 0.75, 1 (the last clamped)."""
    out, _ = upsample_linear_forward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), (2, 2))
    np.testing.assert_allclose(out[0, 0], [[1.0, 1.25, 1.75, 2.0],
                                           [1.5, 1.75, 2.25, 2.5],
                                           [2.5, 2.75, 3.25, 3.5],
                                           [3.0, 3.25, 3.75, 4.0]], rtol=1e-15)


@pytest.mark.parametrize("align_corners", [False, True])
def test_weight_matrices(align_corners):
    for size in range(1, 6):
        for scale in range(1, 5):
            w = linear_weights(size, scale, align_corners)
            assert w.shape == (size * scale, size) and np.all(w >= 0)
            np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-15)
            assert np.count_nonzero(w, axis=1).max() <= 2
            if scale == 1:
                np.testing.assert_array_equal(w, np.eye(size))
            if align_corners:  # the corners coincide
                assert w[0, 0] == 1 and w[-1, -1] == 1


def _naive_bilinear(x: np.ndarray, scale: tuple[int, int], align_corners: bool) -> np.ndarray:
    """Each output pixel from its four neighbours, one at a time: the textbook formula, no matrices."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h * scale[0], w * scale[1]))

    def source(i, size, s):
        if align_corners:
            return i * (size - 1) / (size * s - 1) if size * s > 1 else 0.0
        return max((i + 0.5) / s - 0.5, 0.0)

    for i in range(h * scale[0]):
        y = source(i, h, scale[0])
        y0 = min(int(y), h - 1)
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(w * scale[1]):
            xx = source(j, w, scale[1])
            x0 = min(int(xx), w - 1)
            x1, fx = min(x0 + 1, w - 1), xx - x0
            out[:, :, i, j] = ((1 - fy) * (1 - fx) * x[:, :, y0, x0] + (1 - fy) * fx * x[:, :, y0, x1]
                               + fy * (1 - fx) * x[:, :, y1, x0] + fy * fx * x[:, :, y1, x1])
    return out


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_matches_the_naive_formula(align_corners, rng):
    for shape, scale in [((2, 3, 3, 4), (2, 3)), ((1, 2, 1, 5), (4, 1)), ((1, 1, 2, 2), (3, 3))]:
        x = rng.standard_normal(shape)
        mine, _ = upsample_linear_forward(x, scale, align_corners)
        np.testing.assert_allclose(mine, _naive_bilinear(x, scale, align_corners), rtol=1e-12, atol=1e-12,
                                   err_msg=f"scale {scale} on {shape[2:]}")


def test_linear_keeps_dtype_and_returns_fresh_arrays():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    out, cache = upsample_linear_forward(x, (2, 3), True)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert upsample_linear_backward(np.ones_like(out), cache).dtype == np.float32
    same, cache = upsample_linear_forward(x, (1, 1))
    np.testing.assert_array_equal(same, x)
    assert same.flags.writeable and not np.shares_memory(same, x)
    dout = np.ones_like(same)
    assert not np.shares_memory(upsample_linear_backward(dout, cache), dout)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_linear_gradient_check(nd, align_corners, rng):
    x = rng.standard_normal(SHAPES[nd])
    scale = SCALES[nd]

    def forward(a):
        return upsample_linear_forward(a, scale, align_corners)[0]

    def analytic(dout):
        return (upsample_linear_backward(dout, upsample_linear_forward(x, scale, align_corners)[1]),)

    def block_sum(dout):  # wrong on purpose: nearest's gradient, as if nothing were interpolated
        return (upsample_nearest_backward(dout, upsample_nearest_forward(x, scale)[1]),)

    (error,) = check_function(forward, analytic, [x])
    assert error < 1e-8, f"{nd}D, align_corners={align_corners}: relative error {error:.3g}"
    assert check_function(forward, block_sum, [x])[0] > 1e-2  # negative control


def test_linear_matches_pytorch_random_sweep(torch_or_skip):
    torch = torch_or_skip
    rng = np.random.default_rng(12)
    for trial in range(60):
        nd = 1 + trial % 3
        align_corners = bool(trial // 3 % 2)
        sizes = [int(rng.integers(1, 6)) for _ in range(nd)]
        scale = tuple(int(rng.integers(1, 5)) for _ in range(nd))
        mode = LINEAR_MODES[nd]
        where = f"{mode}, align_corners={align_corners}, scale {scale} on {sizes}"
        x = rng.standard_normal((2, 3, *sizes))
        mine, cache = upsample_linear_forward(x, scale, align_corners)
        tx = torch.tensor(x, requires_grad=True)
        theirs = torch.nn.functional.interpolate(tx, scale_factor=scale, mode=mode, align_corners=align_corners)
        assert mine.shape == tuple(theirs.shape), f"{where}: mine {mine.shape}, theirs {tuple(theirs.shape)}"
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=where)
        dout = rng.standard_normal(mine.shape)
        theirs.backward(torch.tensor(dout))
        np.testing.assert_allclose(upsample_linear_backward(dout, cache), tx.grad.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=f"gradient, {where}")
        # float32, as the app runs it: PyTorch computes its weights in float32, so agreement is to rounding
        x32 = x.astype(np.float32)
        mine32, _ = upsample_linear_forward(x32, scale, align_corners)
        theirs32 = torch.nn.functional.interpolate(torch.tensor(x32), scale_factor=scale, mode=mode,
                                                   align_corners=align_corners).numpy()
        assert mine32.dtype == np.float32
        np.testing.assert_allclose(mine32, theirs32, rtol=1e-5, atol=1e-6, err_msg=f"float32, {where}")


def test_pytorch_comparison_can_fail(torch_or_skip):
    """Negative control: align_corners the wrong way round differs from PyTorch far beyond the tolerance."""
    torch = torch_or_skip
    x = np.random.default_rng(3).standard_normal((1, 2, 3, 4))
    mine, _ = upsample_linear_forward(x, (2, 2), align_corners=True)
    theirs = torch.nn.functional.interpolate(torch.tensor(x), scale_factor=2, mode="bilinear", align_corners=False)
    assert np.abs(mine - theirs.numpy()).max() > 1e-2


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_in_a_graph_full_and_lean_pass_and_gradients(align_corners, rng):
    from tests.engine.graphcheck import graph_gradient_errors

    graph = Graph({"input_shape": [2, 4, 3], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 3, "kernel_size": 1},
        {"id": "relu", "op": "relu"},
        {"id": "up", "op": "upsample", "scale_factor": [2, 3], "mode": "bilinear", "align_corners": align_corners},
        {"id": "out", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
    ]})
    up = graph.nodes[2].op
    assert up.describe() == {"scale_factor": (2, 3), "mode": "bilinear", "align_corners": align_corners}
    params = graph.init_params(seed=2)
    x = rng.standard_normal((2, 2, 4, 3)).astype(np.float32)
    trace = graph.forward(x, params)
    assert trace.activations["up"].shape == (2, 3, 8, 9) and trace.activations["up"].dtype == np.float32
    expected, _ = upsample_linear_forward(trace.activations["relu"], (2, 3), align_corners)
    np.testing.assert_array_equal(trace.activations["up"], expected)
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(lean.output, trace.output)
    params64 = {k: v.astype(np.float64) for k, v in params.items()}
    errors = graph_gradient_errors(graph, rng.standard_normal((2, 2, 4, 3)), params64)
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("mode, shape, scale, out", [
    ("linear", (2, 5), 3, (2, 15)),
    ("bilinear", (1, 3, 4), [2, 1], (1, 6, 4)),
    ("trilinear", (1, 2, 3, 2), 2, (1, 4, 6, 4)),
])
def test_linear_modes_shapes(mode, shape, scale, out):
    graph = _graph(scale, shape=shape, mode=mode, align_corners=True)
    assert graph.nodes[0].output_shape == out and graph.nodes[0].op.macs() == 0


def test_receptive_field_is_undefined_after_a_bilinear_upsample():
    graph = Graph({"input_shape": [1, 8, 8], "nodes": [
        {"id": "up", "op": "upsample", "scale_factor": 2, "mode": "bilinear"},
        {"id": "after", "op": "conv2d", "out_channels": 1, "kernel_size": 3},
    ]})
    rfs = receptive_fields(graph)
    assert rfs["up"].status == "undefined" and rfs["after"].status == "undefined"


def test_linear_modes_refuse_integer_input():
    """Fractional weights cast to integers would be 0s and 1s: a clear error instead, as PyTorch gives."""
    from engine.layers.upsample import upsample_linear_forward

    with pytest.raises(TypeError, match="floating-point"):
        upsample_linear_forward(np.array([[[[0, 10], [20, 30]]]]), (2, 2), False)
