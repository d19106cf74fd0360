"""Convolution and transposed convolution: hand-worked examples, gradient checks (with negative controls),
fast vs naive loops, PyTorch comparisons over random sweeps, and the graph ops' shapes, costs and errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Graph, SpecError
from engine.gradcheck import check_function
from engine.layers.conv import conv_backward, conv_forward, conv_transpose_backward, conv_transpose_forward
from engine.layers.naive import conv_naive, conv_transpose_naive
from engine.ops.base import AxisGeometry

TOL = 1e-6  # float64 central differences pass far below this


def _same(a: np.ndarray, b: np.ndarray, what: str, atol: float = 1e-10) -> None:
    assert a.shape == b.shape, f"{what}: shape mine {a.shape} vs theirs {b.shape}"
    err = float(np.max(np.abs(a - b), initial=0.0))
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    assert err <= atol * scale, f"{what}: max |mine - theirs| = {err:.3g} (scale {scale:.3g})"


# --- hand-worked examples -------------------------------------------------------------------------
X44 = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)  # x[i, j] = 4 i + j
W22 = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)


def test_conv2d_hand_worked_stride_1():
    # out[i, j] = x[i,j] + 2 x[i,j+1] + 3 x[i+1,j] + 4 x[i+1,j+1] = 40 i + 10 j + 34
    out, _ = conv_forward(X44, W22, None, (1, 1), ((0, 0), (0, 0)), (1, 1))
    expected = [[34, 44, 54], [74, 84, 94], [114, 124, 134]]
    np.testing.assert_array_equal(out[0, 0], expected)


def test_conv2d_hand_worked_stride_2_padding_1_bias():
    # padded to 6x6, windows start at -1, 1, 3 on each axis; e.g. out[1, 1] = 5 + 2*6 + 3*9 + 4*10 = 84
    out, _ = conv_forward(X44, W22, np.array([0.5]), (2, 2), ((1, 1), (1, 1)), (1, 1))
    expected = np.array([[0, 11, 9], [40, 84, 40], [24, 41, 15]]) + 0.5
    np.testing.assert_array_equal(out[0, 0], expected)


def test_conv2d_hand_worked_dilation_2():
    # taps at (0,0), (0,2), (2,0), (2,2): out[i,j] = x[i,j] + 2 x[i,j+2] + 3 x[i+2,j] + 4 x[i+2,j+2] = 40 i + 10 j + 68
    out, _ = conv_forward(X44, W22, None, (1, 1), ((0, 0), (0, 0)), (2, 2))
    np.testing.assert_array_equal(out[0, 0], [[68, 78], [108, 118]])


def test_conv_transpose2d_hand_worked():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    # stride 1: every input pixel stamps x * w at its position ("full" convolution)
    out, _ = conv_transpose_forward(x, W22, None, (1, 1), ((0, 0), (0, 0)), (0, 0), (1, 1))
    np.testing.assert_array_equal(out[0, 0], [[1, 4, 4], [6, 20, 16], [9, 24, 16]])
    # stride 2 with a kernel of ones: each pixel becomes a 2x2 block
    out, _ = conv_transpose_forward(x, np.ones((1, 1, 2, 2)), None, (2, 2), ((0, 0), (0, 0)), (0, 0), (1, 1))
    np.testing.assert_array_equal(out[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    # padding 1 crops one pixel off every side; output_padding 1 adds a row/column after (only bias there)
    out, _ = conv_transpose_forward(x, np.ones((1, 1, 2, 2)), np.array([0.5]), (2, 2), ((1, 1), (1, 1)), (1, 1),
                                      (1, 1))
    np.testing.assert_array_equal(out[0, 0], np.array([[1, 2, 2], [3, 4, 4], [3, 4, 4]]) + 0.5)


def test_conv1d_and_conv3d_hand_worked():
    out, _ = conv_forward(np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]]), np.array([[[1.0, 0.0, -1.0]]]), None,
                          (1,), ((0, 0),), (1,))
    np.testing.assert_array_equal(out[0, 0], [-2, -2, -2])
    x = np.arange(8, dtype=np.float64).reshape(1, 1, 2, 2, 2)  # a 2x2x2 cube, kernel of ones: the sum
    out, _ = conv_forward(x, np.ones((1, 1, 2, 2, 2)), None, (1, 1, 1), ((0, 0),) * 3, (1, 1, 1))
    assert out.shape == (1, 1, 1, 1, 1) and out.item() == 28.0


# --- gradient checks -------------------------------------------------------------------------------
CONV_CASES = [
    # (x shape, w shape, stride, padding pairs, dilation, groups, bias)
    ((2, 3, 6), (4, 3, 3), (2,), ((1, 2),), (1,), 1, True),
    ((1, 4, 7), (4, 1, 2), (1,), ((0, 1),), (3,), 4, False),  # depthwise 1D, dilated
    ((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1, True),
    ((1, 4, 7, 6), (6, 2, 3, 2), (2, 1), ((0, 1), (2, 0)), (1, 2), 2, True),  # groups, asymmetric padding
    ((2, 3, 6, 6), (6, 1, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 3, True),  # depthwise, multiplier 2
    ((1, 4, 5, 5), (4, 1, 3, 3), (1, 2), ((1, 0), (0, 1)), (2, 1), 4, False),  # depthwise, dilated
    ((2, 4, 4, 5), (6, 4, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1, True),  # pointwise
    ((1, 3, 5, 5), (2, 3, 1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), 1, True),  # strided pointwise
    ((1, 2, 4, 5, 4), (3, 2, 2, 3, 2), (1, 2, 1), ((1, 0), (0, 1), (1, 1)), (1, 1, 2), 1, True),
    ((1, 2, 4, 4, 4), (2, 1, 3, 3, 3), (2, 1, 2), ((1, 1), (1, 1), (0, 0)), (1, 1, 1), 2, True),  # depthwise 3D
    ((2, 3, 6, 5), (6, 1, 3, 2), (1, 1), ((2, 0), (1, 2)), (2, 1), 3, True),  # depthwise stride 1, dilated
    ((1, 2, 9), (2, 1, 4), (1,), ((0, 3),), (2,), 2, False),  # depthwise 1D stride 1
    ((1, 2, 3, 4, 3), (2, 1, 2, 2, 2), (1, 1, 1), ((1, 0), (0, 1), (1, 1)), (1, 2, 1), 2, True),  # depthwise 3D
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"x{c[0]}-w{c[1]}-g{c[5]}")
def test_conv_gradients_match_central_differences(case):
    x_shape, w_shape, stride, padding, dilation, groups, bias = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    arrays = [x, w] + ([rng.standard_normal(w_shape[0])] if bias else [])

    def forward(*arrays):
        return conv_forward(arrays[0], arrays[1], arrays[2] if bias else None, stride, padding, dilation, groups)[0]

    def analytic(dout):
        _, cache = conv_forward(*arrays[:2], arrays[2] if bias else None, stride, padding, dilation, groups)
        dx, dw, db = conv_backward(dout, cache)
        assert (db is None) == (not bias)
        return (dx, dw, db) if bias else (dx, dw)

    errors = check_function(forward, analytic, arrays)
    assert max(errors) < TOL, f"relative errors (x, w, b): {errors}"


TRANSPOSE_CASES = [
    # (x shape, w shape (C, K/groups, kh, kw), stride, padding pairs, output_padding, dilation, groups, bias)
    ((2, 3, 3, 4), (3, 2, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), (1, 1), 1, True),
    ((1, 4, 3, 3), (4, 1, 2, 3), (2, 3), ((0, 1), (1, 0)), (1, 2), (1, 2), 2, True),
    ((1, 2, 3, 3), (2, 2, 3, 2), (1, 1), ((0, 0), (0, 0)), (0, 0), (2, 1), 1, False),
    ((1, 3, 2, 3), (3, 1, 3, 3), (2, 2), ((1, 1), (0, 0)), (0, 1), (1, 1), 3, True),  # depthwise
    ((2, 2, 3, 3), (2, 1, 2, 3), (1, 1), ((0, 1), (1, 0)), (1, 0), (2, 1), 2, True),  # depthwise, stride 1
]


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: f"x{c[0]}-w{c[1]}-s{c[2]}")
def test_conv_transpose2d_gradients_match_central_differences(case):
    x_shape, w_shape, stride, padding, output_padding, dilation, groups, bias = case
    rng = np.random.default_rng(8)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    arrays = [x, w] + ([rng.standard_normal(w_shape[1] * groups)] if bias else [])
    args = (stride, padding, output_padding, dilation, groups)

    def forward(*arrays):
        return conv_transpose_forward(arrays[0], arrays[1], arrays[2] if bias else None, *args)[0]

    def analytic(dout):
        _, cache = conv_transpose_forward(*arrays[:2], arrays[2] if bias else None, *args)
        dx, dw, db = conv_transpose_backward(dout, cache)
        return (dx, dw, db) if bias else (dx, dw)

    errors = check_function(forward, analytic, arrays)
    assert max(errors) < TOL, f"relative errors (x, w, b): {errors}"


def _conv_errors_with(corrupt) -> list[float]:
    """Gradient-check errors of a 2D conv whose analytic gradients pass through ``corrupt(dx, dw, db)``."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    conf = ((2, 1), ((1, 0), (1, 1)), (1, 1), 1)

    def analytic(dout):
        _, cache = conv_forward(x, w, b, *conf)
        return corrupt(*conv_backward(dout, cache))

    return check_function(lambda x, w, b: conv_forward(x, w, b, *conf)[0], analytic, [x, w, b])


def test_negative_control_a_wrong_gradient_fails_the_check():
    """The check can fail: dx 1% too large, a spatially flipped dw (the convolution/correlation mix-up),
    and a db off by one element are each caught, while the true gradients pass."""
    assert max(_conv_errors_with(lambda dx, dw, db: (dx, dw, db))) < TOL
    assert _conv_errors_with(lambda dx, dw, db: (dx * 1.01, dw, db))[0] > 1e-3
    assert _conv_errors_with(lambda dx, dw, db: (dx, dw[:, :, ::-1, ::-1], db))[1] > 1e-2
    assert _conv_errors_with(lambda dx, dw, db: (dx, dw, db + np.eye(3)[0]))[2] > 1e-2


# --- fast vs naive loops ---------------------------------------------------------------------------
def _random_conv_config(rng: np.random.Generator, spatial: int, max_size: int = 7) -> dict:
    groups = int(rng.choice([1, 1, 2, 3]))
    depthwise = rng.random() < 0.25
    c_group = 1 if depthwise else int(rng.integers(1, 3))
    k_group = int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4, spatial))
    dilation = tuple(int(d) for d in rng.integers(1, 3, spatial))
    padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (spatial, 2)))
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    sizes = tuple(int(rng.integers(max(1, s - p[0] - p[1]), max_size + 1)) for s, p in zip(span, padding))
    return {
        "x": (int(rng.integers(1, 3)), c_group * groups, *sizes),
        "w": (k_group * groups, c_group, *kernel),
        "stride": tuple(int(s) for s in rng.integers(1, 4, spatial)),
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "bias": bool(rng.random() < 0.7),
    }


@pytest.mark.parametrize("spatial", [1, 2, 3])
def test_conv_fast_matches_naive_loops_on_random_sweeps(spatial):
    rng = np.random.default_rng(100 + spatial)
    for trial in range(12 if spatial < 3 else 6):
        cfg = _random_conv_config(rng, spatial, max_size=7 if spatial < 3 else 5)
        x, w = rng.standard_normal(cfg["x"]), rng.standard_normal(cfg["w"])
        b = rng.standard_normal(cfg["w"][0]) if cfg["bias"] else None
        args = (cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
        mine, _ = conv_forward(x, w, b, *args)
        _same(mine, conv_naive(x, w, b, *args), f"trial {trial} {cfg}")


def test_conv_transpose2d_fast_matches_naive_loops_on_random_sweeps():
    rng = np.random.default_rng(99)
    for trial in range(12):
        groups = int(rng.choice([1, 2]))
        kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
        stride = tuple(int(s) for s in rng.integers(1, 4, 2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        padding = tuple((int(rng.integers(0, k)), int(rng.integers(0, k))) for k in kernel)
        x = rng.standard_normal((1, 2 * groups, *rng.integers(2, 5, 2)))
        w = rng.standard_normal((2 * groups, int(rng.integers(1, 3)), *kernel))
        b = rng.standard_normal(w.shape[1] * groups)
        args = (stride, padding, output_padding, dilation, groups)
        mine, _ = conv_transpose_forward(x, w, b, *args)
        _same(mine, conv_transpose_naive(x, w, b, *args), f"trial {trial} {args}")


# --- PyTorch ----------------------------------------------------------------------------------------
def _torch_pad(torch, x, padding):
    """F.pad with PyTorch's order: last axis first, (before, after) each."""
    flat = [p for pair in reversed(padding) for p in pair]
    return torch.nn.functional.pad(x, flat)


@pytest.mark.torch
@pytest.mark.parametrize("spatial", [1, 2, 3])
def test_conv_matches_pytorch_forward_and_backward(torch_or_skip, spatial):
    torch = torch_or_skip
    F = torch.nn.functional
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    rng = np.random.default_rng(200 + spatial)
    for trial in range(25 if spatial < 3 else 12):
        cfg = _random_conv_config(rng, spatial, max_size=9 if spatial < 3 else 6)
        x, w = rng.standard_normal(cfg["x"]), rng.standard_normal(cfg["w"])
        b = rng.standard_normal(cfg["w"][0]) if cfg["bias"] else None
        args = (cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
        mine, cache = conv_forward(x, w, b, *args)
        dout = rng.standard_normal(mine.shape)
        dx, dw, db = conv_backward(dout, cache)

        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        tb = torch.tensor(b, requires_grad=True) if b is not None else None
        theirs = conv(_torch_pad(torch, tx, cfg["padding"]), tw, tb, cfg["stride"], 0, cfg["dilation"], cfg["groups"])
        theirs.backward(torch.tensor(dout))
        what = f"conv{spatial}d trial {trial} {cfg}"
        _same(mine, theirs.detach().numpy(), f"{what} forward")
        _same(dx, tx.grad.numpy(), f"{what} dx")
        _same(dw, tw.grad.numpy(), f"{what} dw")
        if b is not None:
            _same(db, tb.grad.numpy(), f"{what} db")
        else:
            assert db is None


@pytest.mark.torch
def test_conv_matches_pytorch_with_symmetric_padding_in_float32(torch_or_skip):
    """The app's dtype: float32 in, float32 out, within float32 rounding of PyTorch."""
    torch = torch_or_skip
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    for w_shape, groups in [((16, 8, 3, 3), 1), ((8, 1, 3, 3), 8), ((16, 4, 3, 3), 2), ((12, 8, 1, 1), 1)]:
        w = rng.standard_normal(w_shape).astype(np.float32)
        b = rng.standard_normal(w_shape[0]).astype(np.float32)
        mine, _ = conv_forward(x, w, b, (2, 1), ((1, 1), (1, 1)), (1, 1), groups)
        assert mine.dtype == np.float32
        theirs = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), (2, 1), 1, 1, groups)
        _same(mine, theirs.numpy(), f"float32 w{w_shape} groups {groups}", atol=1e-5)


@pytest.mark.torch
def test_conv_transpose2d_matches_pytorch_forward_and_backward(torch_or_skip):
    torch = torch_or_skip
    F = torch.nn.functional
    rng = np.random.default_rng(300)
    for trial in range(25):
        groups = int(rng.choice([1, 2, 3]))
        kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
        stride = tuple(int(s) for s in rng.integers(1, 4, 2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        padding = tuple((int(rng.integers(0, k)), int(rng.integers(0, k))) for k in kernel)
        x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 3)) * groups, *rng.integers(2, 6, 2)))
        w = rng.standard_normal((x.shape[1], int(rng.integers(1, 3)), *kernel))
        b = rng.standard_normal(w.shape[1] * groups) if rng.random() < 0.7 else None
        args = (stride, padding, output_padding, dilation, groups)
        mine, cache = conv_transpose_forward(x, w, b, *args)
        dout = rng.standard_normal(mine.shape)
        dx, dw, db = conv_transpose_backward(dout, cache)

        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        tb = torch.tensor(b, requires_grad=True) if b is not None else None
        full = F.conv_transpose2d(tx, tw, tb, stride, 0, output_padding, groups, dilation)
        # per-side padding: PyTorch's symmetric padding p crops p from both ends; crop each side by hand
        (ht, hb), (wl, wr) = padding
        theirs = full[:, :, ht:full.shape[2] - hb, wl:full.shape[3] - wr]
        theirs.backward(torch.tensor(dout))
        what = f"conv_transpose2d trial {trial} {args} x{x.shape} w{w.shape}"
        _same(mine, theirs.detach().numpy(), f"{what} forward")
        _same(dx, tx.grad.numpy(), f"{what} dx")
        _same(dw, tw.grad.numpy(), f"{what} dw")
        if b is not None:
            _same(db, tb.grad.numpy(), f"{what} db")


@pytest.mark.torch
def test_conv_transpose2d_symmetric_padding_matches_pytorch(torch_or_skip):
    torch = torch_or_skip
    rng = np.random.default_rng(301)
    x, w, b = rng.standard_normal((1, 4, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(6)
    mine, _ = conv_transpose_forward(x, w, b, (2, 2), ((1, 1), (1, 1)), (1, 1), (1, 1), 2)
    theirs = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), 2, 1, 1, 2, 1)
    _same(mine, theirs.numpy(), "conv_transpose2d stride 2 padding 1 output_padding 1 groups 2")


# --- graph ops --------------------------------------------------------------------------------------
def _node(spec_node: dict, input_shape: list[int]):
    return Graph({"input_shape": input_shape, "nodes": [{"id": "n", **spec_node}]}).by_id["n"].op


def test_conv_ops_output_shapes_params_macs_and_geometry():
    op = _node({"op": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}, [3, 32, 31])
    assert op.output_shape == (8, 16, 16)
    assert op.param_shapes() == {"weight": (8, 3, 3, 3), "bias": (8,)}
    assert op.macs() == 8 * 16 * 16 * 3 * 9
    assert op.geometry() == [AxisGeometry(3, 2, 1, 1)] * 2
    assert op.describe() == {"out_channels": 8, "kernel_size": (3, 3), "stride": (2, 2), "padding": ((1, 1), (1, 1)),
                             "dilation": (1, 1), "groups": 1, "bias": True}

    op = _node({"op": "conv2d", "out_channels": 6, "kernel_size": [3, 1], "groups": 3, "bias": False,
                "padding": [[0, 1], [2, 0]], "dilation": [2, 1]}, [6, 10, 10])
    assert op.output_shape == (6, 7, 12)  # (10 + 1 - 4) + 1, (10 + 2 - 0 - 1) + 1
    assert op.param_shapes() == {"weight": (6, 2, 3, 1)}
    assert op.macs() == 6 * 7 * 12 * 2 * 3
    assert op.geometry() == [AxisGeometry(3, 1, 0, 2), AxisGeometry(1, 1, 2, 1)]

    op = _node({"op": "conv1d", "out_channels": 4, "kernel_size": 5, "padding": "same"}, [2, 20])
    assert op.output_shape == (4, 20)
    op = _node({"op": "conv3d", "out_channels": 2, "kernel_size": [1, 3, 3], "stride": [1, 2, 2]}, [3, 4, 9, 9])
    assert op.output_shape == (2, 4, 4, 4)
    assert op.param_shapes()["weight"] == (2, 3, 1, 3, 3)

    op = _node({"op": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1,
                "output_padding": 1, "groups": 2}, [6, 5, 7])
    assert op.output_shape == (4, 10, 14)  # (5 - 1) * 2 - 2 + 2 + 1 + 1
    assert op.param_shapes() == {"weight": (6, 2, 3, 3), "bias": (4,)}
    assert op.macs() == 6 * 5 * 7 * 2 * 9
    assert op.geometry() == [AxisGeometry(3, 2, 1, 1, transposed=True)] * 2


def test_conv_init_is_pytorchs_default_uniform_bound():
    graph = Graph({"input_shape": [16, 8, 8], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 64, "kernel_size": 3, "groups": 4},
        {"id": "t", "op": "conv_transpose2d", "out_channels": 32, "kernel_size": 2, "stride": 2}]})
    params = graph.init_params(seed=0)
    for name, fan_in in [("c.weight", 4 * 9), ("c.bias", 4 * 9), ("t.weight", 32 * 4), ("t.bias", 32 * 4)]:
        p, bound = params[name], 1 / np.sqrt(fan_in)
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound, name
        if p.size > 1000:  # U(-a, a) has standard deviation a / sqrt(3)
            assert abs(p.std() - bound / np.sqrt(3)) < 0.05 * bound, name
    assert not np.array_equal(params["c.weight"], graph.init_params(seed=1)["c.weight"])


def test_conv_op_forward_and_backward_through_a_graph(rng):
    graph = Graph({"input_shape": [2, 6, 6], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": [[1, 0], [0, 1]], "stride": 2},
        {"id": "t", "op": "conv_transpose2d", "out_channels": 2, "kernel_size": 2, "stride": 2, "bias": False}]})
    params = graph.init_params(seed=0)
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    trace = graph.forward(x, params)
    assert trace.activations["c"].dtype == np.float32 and trace.output.shape == (2, 2, 6, 6)
    expected, _ = conv_forward(x, params["c.weight"], params["c.bias"], (2, 2), ((1, 0), (0, 1)), (1, 1))
    np.testing.assert_array_equal(trace.activations["c"], expected)
    grads = graph.backward(trace, {"t": np.ones_like(trace.output)})
    assert set(grads.params) == {"c.weight", "c.bias", "t.weight"}
    assert grads.input.shape == x.shape and grads.params["c.weight"].shape == (3, 2, 3, 3)


@pytest.mark.parametrize("node, shape, message", [
    ({"op": "conv2d", "out_channels": 4, "kernel_size": 3, "groups": 2}, [3, 8, 8],
     "in_channels 3 is not divisible by groups 2"),
    ({"op": "conv2d", "out_channels": 5, "kernel_size": 3, "groups": 2}, [4, 8, 8],
     "out_channels 5 is not divisible by groups 2"),
    ({"op": "conv2d", "out_channels": 4, "kernel_size": 5}, [3, 4, 8],
     "kernel 5 with dilation 1 spans 5 pixels along the height, but the padded input is only 4 wide"),
    ({"op": "conv1d", "out_channels": 4, "kernel_size": 3, "dilation": 3}, [3, 6],
     "kernel 3 with dilation 3 spans 7 pixels along the length"),
    ({"op": "conv2d", "out_channels": 4, "kernel_size": 3}, [3, 8], "takes inputs of shape (C, H, W)"),
    ({"op": "conv2d", "out_channels": 4}, [3, 8, 8], "needs kernel_size"),
    ({"op": "conv2d", "out_channels": 0, "kernel_size": 3}, [3, 8, 8], "out_channels must be a whole number"),
    ({"op": "conv2d", "out_channels": 4, "kernel_size": [3, 3, 3]}, [3, 8, 8], "kernel_size has 3 values"),
    ({"op": "conv2d", "out_channels": 4, "kernel_size": 3, "bias": "yes"}, [3, 8, 8], "bias must be true or false"),
    ({"op": "conv2d", "out_channels": 4, "kernel_size": 3, "output_padding": 1}, [3, 8, 8], "does not take"),
    ({"op": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "output_padding": 2}, [3, 4, 4],
     "output_padding 2 along the height must be smaller than the stride 2 or the dilation 1"),
    ({"op": "conv_transpose2d", "out_channels": 4, "kernel_size": 1, "padding": 1}, [3, 1, 4],
     "removes the whole output"),
    ({"op": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "padding": "same"}, [3, 4, 4],
     "not defined for a transposed convolution"),
])
def test_conv_ops_reject_bad_specs_with_clear_errors(node, shape, message):
    with pytest.raises(SpecError) as err:
        _node(node, shape)
    assert message in str(err.value)
    assert err.value.node_id == "n"


def test_conv_preserves_dtype_and_needs_no_padding_copy():
    x = np.ones((1, 2, 4, 4), dtype=np.float32)
    w = np.ones((3, 2, 3, 3), dtype=np.float32)
    out, cache = conv_forward(x, w, np.zeros(3, np.float32), (1, 1), ((0, 0), (0, 0)), (1, 1))
    assert out.dtype == np.float32 and np.all(out == 18)
    dx, dw, db = conv_backward(np.ones_like(out), cache)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    # each input pixel is read by as many windows as cover it: corners 1, centre 4 (times 3 filters)
    np.testing.assert_array_equal(dx[0, 0], 3 * np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]))
    assert dw.shape == (3, 2, 3, 3) and np.all(dw == 4)
