"""Pooling: hand-worked examples, gradient checks (with a negative control), fast vs naive loops,
PyTorch comparisons over random sweeps (ceil_mode, count_include_pad, dilation), and the graph ops."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Graph, SpecError
from engine.gradcheck import check_function
from engine.layers.naive import avg_pool_naive, max_pool_naive
from engine.layers.pool import (
    avg_pool_backward,
    avg_pool_forward,
    global_avg_pool_backward,
    global_avg_pool_forward,
    max_pool_backward,
    max_pool_forward,
    pool_output_size,
)
from engine.ops.base import GLOBAL, AxisGeometry

TOL = 1e-6
NO_PAD2 = ((0, 0), (0, 0))


def _same(a: np.ndarray, b: np.ndarray, what: str, atol: float = 1e-12) -> None:
    assert a.shape == b.shape, f"{what}: shape mine {a.shape} vs theirs {b.shape}"
    err = float(np.max(np.abs(a - b), initial=0.0))
    assert err <= atol * max(1.0, float(np.max(np.abs(b), initial=0.0))), f"{what}: max |mine - theirs| = {err:.3g}"


# --- hand-worked examples -------------------------------------------------------------------------
X44 = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)  # x[i, j] = 4 i + j


def test_max_and_avg_pool_hand_worked():
    out, _ = max_pool_forward(X44, (2, 2))  # stride defaults to the kernel, as in PyTorch
    np.testing.assert_array_equal(out[0, 0], [[5, 7], [13, 15]])
    out, _ = avg_pool_forward(X44, (2, 2))
    np.testing.assert_array_equal(out[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    # 3x3 windows, stride 1: max is the bottom-right corner, mean the centre
    out, _ = max_pool_forward(X44, (3, 3), (1, 1), NO_PAD2)
    np.testing.assert_array_equal(out[0, 0], [[10, 11], [14, 15]])
    out, _ = avg_pool_forward(X44, (3, 3), (1, 1), NO_PAD2)
    np.testing.assert_array_equal(out[0, 0], [[5, 6], [9, 10]])
    # dilation 2, kernel 2: reads (i, j), (i, j+2), (i+2, j), (i+2, j+2)
    out, _ = max_pool_forward(X44, (2, 2), (1, 1), NO_PAD2, (2, 2))
    np.testing.assert_array_equal(out[0, 0], [[10, 11], [14, 15]])


def test_avg_pool_divisors_with_padding_and_ceil_mode_hand_worked():
    ones = np.ones((1, 1, 4, 4))
    # kernel 3, stride 2, padding 1, ceil_mode: (4 + 2 - 3) / 2 = 1.5 -> 2, + 1 = 3 windows per axis starting at
    # -1, 1, 3. The last one (3..5) reaches past the padding (which ends at 4): its divisor is clipped to 2.
    out, _ = avg_pool_forward(ones, (3, 3), (2, 2), ((1, 1), (1, 1)), ceil_mode=True, count_include_pad=True)
    np.testing.assert_allclose(out[0, 0], [[4 / 9, 6 / 9, 2 / 6], [6 / 9, 9 / 9, 3 / 6], [2 / 6, 3 / 6, 1 / 4]])
    out, _ = avg_pool_forward(ones, (3, 3), (2, 2), ((1, 1), (1, 1)), ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(out[0, 0], np.ones((3, 3)))
    out, _ = avg_pool_forward(ones, (3, 3), (2, 2), ((1, 1), (1, 1)), ceil_mode=False)
    assert out.shape == (1, 1, 2, 2)


def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding():
    x = np.arange(5, dtype=np.float64).reshape(1, 1, 5)
    # kernel 2, stride 2, padding 1: floor((5 + 2 - 2) / 2) + 1 = 3 windows; ceil would give 4, but the 4th would
    # start at 4 * 2 - 1 - ... = position 5, past the input: dropped, as in PyTorch
    out, _ = max_pool_forward(x, (2,), (2,), ((1, 1),), ceil_mode=True)
    np.testing.assert_array_equal(out[0, 0], [0, 2, 4])
    # without padding, kernel 2 stride 2 on 5: ceil adds the window [4, 5) that starts inside the input
    out, _ = max_pool_forward(x, (2,), (2,), ((0, 0),), ceil_mode=True)
    np.testing.assert_array_equal(out[0, 0], [1, 3, 4])
    out, _ = avg_pool_forward(x, (2,), (2,), ((0, 0),), ceil_mode=True)
    np.testing.assert_array_equal(out[0, 0], [0.5, 2.5, 4.0])  # the clipped window averages one cell


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties():
    x = np.array([[3.0, 3.0, 1.0, 2.0], [3.0, 0.0, 2.0, 2.0]]).reshape(1, 1, 2, 4)
    out, cache = max_pool_forward(x, (2, 2), (2, 2), NO_PAD2)
    np.testing.assert_array_equal(out[0, 0], [[3, 2]])
    dx = max_pool_backward(np.array([[[[10.0, 20.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[10, 0, 0, 20], [0, 0, 0, 0]])
    # overlapping windows add up on a shared maximum
    out, cache = max_pool_forward(np.array([[[1.0, 5.0, 2.0]]]), (2,), (1,), ((0, 0),))
    np.testing.assert_array_equal(max_pool_backward(np.ones((1, 1, 2)), cache)[0, 0], [0, 2, 0])


def test_global_avg_pool_hand_worked():
    out, cache = global_avg_pool_forward(X44)
    assert out.shape == (1, 1) and out[0, 0] == 7.5
    np.testing.assert_array_equal(global_avg_pool_backward(np.array([[16.0]]), cache), np.ones((1, 1, 4, 4)))


# --- gradient checks -------------------------------------------------------------------------------
MAX_CASES = [
    # (x shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 2, 7), (3,), (2,), ((1, 1),), (1,), True),
    ((1, 2, 6, 7), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1), True),
    ((2, 1, 7, 6), (3, 2), (2, 1), ((1, 0), (0, 1)), (2, 1), False),
    ((1, 2, 6, 6), (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), True),
    ((1, 2, 4, 5, 5), (2, 3, 2), (2, 2, 1), ((1, 0), (1, 1), (0, 1)), (1, 1, 2), True),
]


@pytest.mark.parametrize("case", MAX_CASES, ids=lambda c: f"x{c[0]}-k{c[1]}")
def test_max_pool_gradient_matches_central_differences(case):
    x_shape, kernel, stride, padding, dilation, ceil_mode = case
    x = np.random.default_rng(11).permutation(np.prod(x_shape)).reshape(x_shape) / 7.0  # distinct values: no ties
    args = (kernel, stride, padding, dilation, ceil_mode)
    errors = check_function(lambda x: max_pool_forward(x, *args)[0],
                            lambda dout: (max_pool_backward(dout, max_pool_forward(x, *args)[1]),), [x])
    assert errors[0] < TOL


AVG_CASES = [
    # (x shape, kernel, stride, padding, ceil_mode, count_include_pad)
    ((2, 2, 7), (3,), (2,), ((1, 1),), True, True),
    ((1, 2, 6, 7), (3, 2), (2, 2), ((1, 1), (1, 0)), True, False),
    ((2, 1, 5, 6), (2, 3), (1, 2), ((0, 1), (1, 1)), False, True),
    ((1, 2, 4, 5, 5), (2, 3, 2), (2, 2, 1), ((1, 0), (1, 1), (0, 1)), True, True),
]


@pytest.mark.parametrize("case", AVG_CASES, ids=lambda c: f"x{c[0]}-k{c[1]}")
def test_avg_pool_gradient_matches_central_differences(case):
    x_shape, kernel, stride, padding, ceil_mode, include = case
    x = np.random.default_rng(12).standard_normal(x_shape)
    args = (kernel, stride, padding, ceil_mode, include)
    errors = check_function(lambda x: avg_pool_forward(x, *args)[0],
                            lambda dout: (avg_pool_backward(dout, avg_pool_forward(x, *args)[1]),), [x])
    assert errors[0] < TOL


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 2, 3, 4), (1, 2, 2, 3, 2)])
def test_global_avg_pool_gradient_matches_central_differences(shape):
    x = np.random.default_rng(13).standard_normal(shape)
    errors = check_function(lambda x: global_avg_pool_forward(x)[0],
                            lambda dout: (global_avg_pool_backward(dout, global_avg_pool_forward(x)[1]),), [x])
    assert errors[0] < TOL


def test_negative_control_wrong_pool_gradients_fail_the_check():
    x = np.random.default_rng(14).permutation(36).reshape(1, 1, 6, 6) / 5.0
    args = ((3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), True)

    def check(corrupt) -> float:
        return check_function(lambda x: max_pool_forward(x, *args)[0],
                              lambda dout: (corrupt(max_pool_backward(dout, max_pool_forward(x, *args)[1])),), [x])[0]

    assert check(lambda dx: dx) < TOL
    assert check(lambda dx: dx * 1.01) > 1e-3
    assert check(lambda dx: dx[:, :, ::-1, :]) > 1e-2  # gradient sent to the mirrored position
    # average pooling with the divisor of count_include_pad=True where False was asked
    avg = ((3, 3), (2, 2), ((1, 1), (1, 1)), False, False)
    wrong = check_function(
        lambda x: avg_pool_forward(x, *avg)[0],
        lambda dout: (avg_pool_backward(dout, avg_pool_forward(x, (3, 3), (2, 2), ((1, 1), (1, 1)), False, True)[1]),),
        [x])[0]
    assert wrong > 1e-2


# --- fast vs naive loops ---------------------------------------------------------------------------
def _windows_read_input(cfg: dict) -> bool:
    """Whether there are windows and each reads an input cell (PyTorch crashes in backward where one does not)."""
    for n, k, s, pads, d in zip(cfg["x"][2:], cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"]):
        outs = pool_output_size(n, k, s, pads, d, cfg["ceil_mode"])
        if outs < 1:
            return False
        for o in range(outs):
            if not any(0 <= o * s - pads[0] + j * d < n for j in range(k)):
                return False
    return True


def _random_pool_config(rng: np.random.Generator, spatial: int, dilated: bool, max_size: int) -> dict:
    """A random pooling configuration, drawn again until every window reads some input."""
    while not _windows_read_input(cfg := _draw_pool_config(rng, spatial, dilated, max_size)):
        pass
    return cfg


def _draw_pool_config(rng: np.random.Generator, spatial: int, dilated: bool, max_size: int) -> dict:
    kernel = tuple(int(k) for k in rng.integers(1, 4, spatial))
    dilation = tuple(int(d) for d in rng.integers(1, 3, spatial)) if dilated else (1,) * spatial
    half = [(d * (k - 1) + 1) // 2 for k, d in zip(kernel, dilation)]  # PyTorch: padding <= half the window
    padding = tuple((int(rng.integers(0, h + 1)), int(rng.integers(0, h + 1))) for h in half)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    sizes = tuple(int(rng.integers(max(1, s - p[0] - p[1]), max_size + 1)) for s, p in zip(span, padding))
    return {
        "x": (int(rng.integers(1, 3)), int(rng.integers(1, 3)), *sizes),
        "kernel": kernel,
        "stride": tuple(int(s) for s in rng.integers(1, 4, spatial)),
        "padding": padding,
        "dilation": dilation,
        "ceil_mode": bool(rng.random() < 0.5),
        "count_include_pad": bool(rng.random() < 0.5),
    }


@pytest.mark.parametrize("spatial", [1, 2, 3])
def test_pools_fast_match_naive_loops_on_random_sweeps(spatial):
    rng = np.random.default_rng(400 + spatial)
    for trial in range(15):
        cfg = _random_pool_config(rng, spatial, dilated=True, max_size=8 if spatial < 3 else 5)
        x = rng.permutation(np.prod(cfg["x"])).reshape(cfg["x"]).astype(np.float64)
        args = (cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["ceil_mode"])
        mine, cache = max_pool_forward(x, *args)
        theirs, routed = max_pool_naive(x, cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                                        cfg["ceil_mode"])
        _same(mine, theirs, f"max pool trial {trial} {cfg}")
        _same(max_pool_backward(np.ones_like(mine), cache), routed, f"max pool backward trial {trial} {cfg}")

        cfg = _random_pool_config(rng, spatial, dilated=False, max_size=8 if spatial < 3 else 5)
        x = rng.standard_normal(cfg["x"])
        args = (cfg["kernel"], cfg["stride"], cfg["padding"], cfg["ceil_mode"], cfg["count_include_pad"])
        _same(avg_pool_forward(x, *args)[0], avg_pool_naive(x, *args), f"avg pool trial {trial} {cfg}")


# --- PyTorch ----------------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("spatial", [1, 2, 3])
def test_pools_match_pytorch_forward_and_backward(torch_or_skip, spatial):
    """PyTorch pads symmetrically, so the sweep uses before == after; per-side padding is checked against
    the naive loops above and against F.pad below."""
    torch = torch_or_skip
    F = torch.nn.functional
    max_pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[spatial]
    avg_pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
    rng = np.random.default_rng(500 + spatial)
    for trial in range(25 if spatial < 3 else 12):
        for kind in ("max", "avg"):
            cfg = _random_pool_config(rng, spatial, dilated=kind == "max", max_size=9 if spatial < 3 else 6)
            # symmetric, and at most half the undilated kernel (max_pool2d's own check, stricter than 1D/3D's)
            cfg["padding"] = tuple((min(b, k // 2),) * 2 for (b, _), k in zip(cfg["padding"], cfg["kernel"]))
            # avg_pool3d also refuses inputs smaller than the kernel before padding
            small = any(n < d * (k - 1) + 1 for n, k, d in zip(cfg["x"][2:], cfg["kernel"], cfg["dilation"]))
            if small or not _windows_read_input(cfg):
                continue
            sym = [b for b, _ in cfg["padding"]]
            x = rng.permutation(np.prod(cfg["x"])).reshape(cfg["x"]) / 3.0 - 5.0
            tx = torch.tensor(x, requires_grad=True)
            if kind == "max":
                mine, cache = max_pool_forward(x, cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                                               cfg["ceil_mode"])
                theirs = max_pool(tx, cfg["kernel"], cfg["stride"], sym, cfg["dilation"], cfg["ceil_mode"])
                backward = max_pool_backward
            else:
                mine, cache = avg_pool_forward(x, cfg["kernel"], cfg["stride"], cfg["padding"], cfg["ceil_mode"],
                                               cfg["count_include_pad"])
                theirs = avg_pool(tx, cfg["kernel"], cfg["stride"], sym, cfg["ceil_mode"], cfg["count_include_pad"])
                backward = avg_pool_backward
            what = f"{kind}_pool{spatial}d trial {trial} {cfg}"
            _same(mine, theirs.detach().numpy(), f"{what} forward")
            dout = rng.standard_normal(mine.shape)
            theirs.backward(torch.tensor(dout))
            _same(backward(dout, cache), tx.grad.numpy(), f"{what} dx")


@pytest.mark.torch
def test_max_pool_with_asymmetric_padding_matches_pytorch_after_f_pad(torch_or_skip):
    torch = torch_or_skip
    x = np.random.default_rng(15).standard_normal((2, 3, 7, 8))
    tx = torch.tensor(x, requires_grad=True)
    theirs = torch.nn.functional.max_pool2d(torch.nn.functional.pad(tx, (1, 0, 0, 1), value=-np.inf), 3, 2)
    mine, cache = max_pool_forward(x, (3, 3), (2, 2), ((0, 1), (1, 0)))
    _same(mine, theirs.detach().numpy(), "max_pool2d padding ((0, 1), (1, 0)) forward")
    dout = np.random.default_rng(16).standard_normal(mine.shape)
    theirs.backward(torch.tensor(dout))
    _same(max_pool_backward(dout, cache), tx.grad.numpy(), "max_pool2d padding ((0, 1), (1, 0)) dx")


@pytest.mark.torch
def test_global_avg_pool_matches_pytorch(torch_or_skip):
    torch = torch_or_skip
    x = np.random.default_rng(17).standard_normal((2, 3, 5, 4)).astype(np.float32)
    out, _ = global_avg_pool_forward(x)
    assert out.dtype == np.float32
    _same(out, torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), 1).numpy()[:, :, 0, 0], "gap", atol=1e-6)


# --- graph ops --------------------------------------------------------------------------------------
def _node(spec_node: dict, input_shape: list[int]):
    return Graph({"input_shape": input_shape, "nodes": [{"id": "n", **spec_node}]}).by_id["n"].op


def test_pool_ops_output_shapes_geometry_and_describe():
    op = _node({"op": "max_pool2d", "kernel_size": 2}, [8, 9, 10])
    assert op.output_shape == (8, 4, 5)
    assert op.param_shapes() == {} and op.macs() == 0
    assert op.geometry() == [AxisGeometry(2, 2, 0, 1)] * 2
    assert op.describe() == {"kernel_size": (2, 2), "stride": (2, 2), "padding": ((0, 0), (0, 0)),
                             "dilation": (1, 1), "ceil_mode": False}
    assert _node({"op": "max_pool2d", "kernel_size": 2, "ceil_mode": True}, [8, 9, 10]).output_shape == (8, 5, 5)
    op = _node({"op": "max_pool1d", "kernel_size": 3, "stride": 1, "dilation": 2, "padding": [[2, 0]]}, [2, 10])
    assert op.output_shape == (2, 8)
    assert op.geometry() == [AxisGeometry(3, 1, 2, 2)]
    op = _node({"op": "avg_pool3d", "kernel_size": [1, 3, 3], "stride": [1, 2, 2], "padding": [0, 1, 1],
                "count_include_pad": False, "ceil_mode": True}, [4, 3, 8, 8])
    assert op.output_shape == (4, 3, 5, 5)
    assert op.describe()["count_include_pad"] is False
    op = _node({"op": "global_avg_pool"}, [16, 7, 7])
    assert op.output_shape == (16,) and op.geometry() == GLOBAL


def test_pool_ops_forward_and_backward_through_a_graph(rng):
    graph = Graph({"input_shape": [2, 6, 6], "nodes": [
        {"id": "mp", "op": "max_pool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
        {"id": "ap", "op": "avg_pool2d", "kernel_size": 2, "stride": 1},
        {"id": "gap", "op": "global_avg_pool"}]})
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    trace = graph.forward(x, {})
    assert trace.activations["mp"].shape == (3, 2, 4, 4) and trace.output.shape == (3, 2)
    assert trace.output.dtype == np.float32
    grads = graph.backward(trace, {"gap": np.ones((3, 2), np.float32)})
    assert grads.input.shape == x.shape and grads.input.dtype == np.float32
    assert np.isclose(grads.input.sum(), 3 * 2)  # max pooling routes, averaging preserves the total


@pytest.mark.parametrize("node, shape, message", [
    ({"op": "max_pool2d", "kernel_size": 3, "padding": 2}, [1, 8, 8],
     "padding [2, 2] along the height is more than half the window (3 pixels): at most 1"),
    ({"op": "avg_pool1d", "kernel_size": 2, "padding": [[0, 2]]}, [1, 8], "along the length is more than half"),
    ({"op": "max_pool2d", "kernel_size": 5}, [1, 4, 8], "kernel 5 with dilation 1 spans 5 pixels along the height"),
    ({"op": "max_pool3d", "kernel_size": 2}, [1, 8, 8], "takes inputs of shape (C, D, H, W)"),
    ({"op": "avg_pool2d", "kernel_size": 2, "dilation": 2}, [1, 8, 8], "does not take dilation"),
    ({"op": "max_pool2d", "kernel_size": 2, "ceil_mode": 1}, [1, 8, 8], "ceil_mode must be true or false"),
    ({"op": "max_pool2d", "kernel_size": 2, "stride": 0}, [1, 8, 8], "stride must be at least 1"),
    ({"op": "global_avg_pool"}, [16], "takes inputs with spatial axes"),
    ({"op": "max_pool3d", "kernel_size": [2, 1, 1], "dilation": [2, 1, 1], "padding": [1, 0, 0]}, [1, 1, 4, 4],
     "window 0 along the depth reads only padding"),
])
def test_pool_ops_reject_bad_specs_with_clear_errors(node, shape, message):
    with pytest.raises(SpecError) as err:
        _node(node, shape)
    assert message in str(err.value)
