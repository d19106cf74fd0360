"""pad: hand-worked 3x3 examples, float64 gradient checks (with negative controls) for every mode and
1D/2D/3D, random sweeps against PyTorch's F.pad, and the op inside a Graph (shapes, errors, lean pass)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.pad import pad_backward, pad_forward
from engine.ops.base import AxisGeometry
from engine.receptive_field import receptive_fields

MODES = ("constant", "reflect", "replicate")
X33 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]


# --- by hand --------------------------------------------------------------------------------------
def test_reflect_3x3_by_hand():
    out, _ = pad_forward(X33, [(1, 2), (2, 1)], "reflect")
    expected = [[6, 5, 4, 5, 6, 5],    # row -1 mirrors row 1
                [3, 2, 1, 2, 3, 2],
                [6, 5, 4, 5, 6, 5],
                [9, 8, 7, 8, 9, 8],
                [6, 5, 4, 5, 6, 5],    # rows 3 and 4 mirror rows 1 and 0
                [3, 2, 1, 2, 3, 2]]
    np.testing.assert_array_equal(out[0, 0], expected)


def test_replicate_3x3_by_hand():
    out, _ = pad_forward(X33, [(1, 2), (2, 1)], "replicate")
    expected = [[1, 1, 1, 2, 3, 3],
                [1, 1, 1, 2, 3, 3],
                [4, 4, 4, 5, 6, 6],
                [7, 7, 7, 8, 9, 9],
                [7, 7, 7, 8, 9, 9],
                [7, 7, 7, 8, 9, 9]]
    np.testing.assert_array_equal(out[0, 0], expected)


def test_constant_3x3_by_hand():
    out, _ = pad_forward(X33, [(1, 0), (0, 1)], "constant", value=-1.5)
    np.testing.assert_array_equal(out[0, 0], [[-1.5, -1.5, -1.5, -1.5],
                                              [1, 2, 3, -1.5],
                                              [4, 5, 6, -1.5],
                                              [7, 8, 9, -1.5]])


def test_backward_by_hand():
    """A gradient of ones: each input position collects one per output position that copies it."""
    ones = np.ones((1, 1, 5, 5))
    _, cache = pad_forward(X33, [(1, 1), (1, 1)], "replicate")
    np.testing.assert_array_equal(pad_backward(ones, cache)[0, 0], [[4, 2, 4], [2, 1, 2], [4, 2, 4]])
    _, cache = pad_forward(X33, [(1, 1), (1, 1)], "reflect")  # the middle row/column is read 3 times per axis
    np.testing.assert_array_equal(pad_backward(ones, cache)[0, 0], [[1, 3, 1], [3, 9, 3], [1, 3, 1]])
    _, cache = pad_forward(X33, [(1, 1), (1, 1)], "constant")
    np.testing.assert_array_equal(pad_backward(ones, cache)[0, 0], np.ones((3, 3)))


def test_dtype_is_kept():
    x = X33.astype(np.float32)
    for mode in MODES:
        out, cache = pad_forward(x, [(1, 1), (1, 1)], mode)
        assert out.dtype == np.float32 and pad_backward(out, cache).dtype == np.float32


# --- gradient checks ----------------------------------------------------------------------------
PADS = {1: [(2, 1)], 2: [(1, 2), (2, 0)], 3: [(1, 0), (0, 2), (1, 1)]}
SHAPES = {1: (2, 2, 5), 2: (2, 2, 4, 5), 3: (1, 2, 3, 4, 3)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_gradient_check(mode, nd, rng):
    x = rng.standard_normal(SHAPES[nd])
    pads = PADS[nd]

    def forward(a):
        return pad_forward(a, pads, mode, 0.5 if mode == "constant" else 0.0)[0]

    def analytic(dout):
        return (pad_backward(dout, pad_forward(x, pads, mode)[1]),)

    (error,) = check_function(forward, analytic, [x])
    assert error < 1e-8, f"{mode} {nd}D: relative error {error:.3g}"


@pytest.mark.parametrize("mode", MODES)
def test_gradient_check_fails_for_a_wrong_gradient(mode, rng):
    """Negative control: the constant-mode gradient (a plain crop) is wrong for reflect/replicate, and a
    gradient that forgets one position is wrong for all three."""
    x = rng.standard_normal(SHAPES[2])
    pads = PADS[2]

    def forward(a):
        return pad_forward(a, pads, mode)[0]

    def dropped_corner(dout):
        dx = pad_backward(dout, pad_forward(x, pads, mode)[1]).copy()
        dx[0, 0, 0, 0] = 0.0
        return (dx,)

    def cropped(dout):
        return (pad_backward(dout, pad_forward(x, pads, "constant")[1]),)

    assert check_function(forward, dropped_corner, [x])[0] > 1e-3
    if mode != "constant":
        assert check_function(forward, cropped, [x])[0] > 1e-3


# --- PyTorch ----------------------------------------------------------------------------------
def _torch_pad_tuple(pads):
    """Our per-axis pairs as F.pad's flat tuple, last axis first."""
    return tuple(v for b, a in reversed(pads) for v in (b, a))


def test_matches_pytorch_random_sweep(torch_or_skip):
    torch = torch_or_skip
    rng = np.random.default_rng(7)
    for trial in range(60):
        nd = 1 + trial % 3
        mode = MODES[(trial // 3) % 3]
        sizes = [int(rng.integers(2, 6)) for _ in range(nd)]
        limit = [n - 1 if mode == "reflect" else 4 for n in sizes]
        pads = [(int(rng.integers(0, m + 1)), int(rng.integers(0, m + 1))) for m in limit]
        x = rng.standard_normal((2, 3, *sizes))
        value = float(rng.standard_normal()) if mode == "constant" else 0.0
        mine, cache = pad_forward(x, pads, mode, value)
        tx = torch.tensor(x, requires_grad=True)
        theirs = torch.nn.functional.pad(tx, _torch_pad_tuple(pads), mode=mode,
                                         **({"value": value} if mode == "constant" else {}))
        assert mine.shape == tuple(theirs.shape), f"{mode} {pads}: mine {mine.shape} vs theirs {tuple(theirs.shape)}"
        np.testing.assert_array_equal(mine, theirs.detach().numpy(), err_msg=f"{mode} {pads} on {sizes}")
        dout = rng.standard_normal(mine.shape)
        theirs.backward(torch.tensor(dout))
        np.testing.assert_allclose(pad_backward(dout, cache), tx.grad.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=f"gradient, {mode} {pads} on {sizes}")


# --- the op in a graph ---------------------------------------------------------------------------
def _graph(padding, mode="constant", shape=(2, 4, 5), **extra):
    return Graph({"input_shape": list(shape), "nodes": [{"id": "p", "op": "pad", "padding": padding, "mode": mode,
                                                         **extra}]})


def test_padding_forms_and_shapes():
    assert _graph(1).nodes[0].output_shape == (2, 6, 7)
    assert _graph([1, 2]).nodes[0].output_shape == (2, 6, 9)
    assert _graph([[0, 3], [2, 0]]).nodes[0].output_shape == (2, 7, 7)
    assert _graph([[1, 1]], shape=(3, 5)).nodes[0].output_shape == (3, 7)
    assert _graph(1, shape=(1, 2, 3, 4), mode="replicate").nodes[0].output_shape == (1, 4, 5, 6)
    op = _graph([[0, 3], [2, 0]], "reflect").nodes[0].op
    assert op.describe() == {"padding": ((0, 3), (2, 0)), "mode": "reflect", "value": 0.0}
    assert op.geometry() == [AxisGeometry(1, 1, 0), AxisGeometry(1, 1, 2)] and op.macs() == 0


@pytest.mark.parametrize("padding, mode, extra, message", [
    ([[1, 4], [0, 0]], "reflect", {}, r"node 'p': reflect padding \[1, 4\] along the height must be smaller than the "
                                      r"input's 4 pixels"),
    (-1, "constant", {}, "node 'p': padding must not be negative"),
    ("same", "constant", {}, "needs a kernel"),
    (1, "circular", {}, "mode 'circular' is not known: use 'constant', 'reflect' or 'replicate'"),
    (1, "reflect", {"value": 1.0}, "applies to mode 'constant' only"),
    (1, "constant", {"value": "zero"}, "value must be a finite number"),
    (1, "constant", {"value": float("inf")}, "value must be a finite number"),
    (1, "constant", {"value": float("nan")}, "value must be a finite number"),
    ([1, 2, 3], "constant", {}, "does not fit an op with 2 spatial axes"),
    (1, "constant", {"pad": 1}, "does not take pad"),
])
def test_spec_errors_name_the_node(padding, mode, extra, message):
    with pytest.raises(SpecError, match=message):
        _graph(padding, mode, **extra)


def test_refuses_inputs_without_spatial_axes():
    with pytest.raises(SpecError, match=r"node 'p': pad takes inputs with 1 to 3 spatial axes.*shape \[7\]"):
        _graph(1, shape=(7,))


@pytest.mark.parametrize("mode", MODES)
def test_in_a_graph_full_and_lean_pass(mode, rng):
    graph = Graph({"input_shape": [2, 5, 6], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 3, "kernel_size": 3},
        {"id": "relu", "op": "relu"},
        {"id": "pad", "op": "pad", "padding": [[1, 2], [2, 1]], "mode": mode},
        {"id": "out", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
    ]})
    params = graph.init_params(seed=3)
    x = rng.standard_normal((2, 2, 5, 6)).astype(np.float32)
    trace = graph.forward(x, params)
    assert trace.activations["pad"].shape == (2, 3, 6, 7)
    np.testing.assert_array_equal(trace.activations["pad"], pad_forward(trace.activations["relu"],
                                                                         [(1, 2), (2, 1)], mode)[0])
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(lean.output, trace.output)
    assert set(lean.activations) == {"input", "out"}


@pytest.mark.parametrize("mode", MODES)
def test_graph_gradient_check(mode, rng):
    from tests.engine.graphcheck import graph_gradient_errors

    graph = Graph({"input_shape": [2, 4, 4], "nodes": [
        {"id": "pad", "op": "pad", "padding": [[2, 1], [0, 3]], "mode": mode},
        {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
    ]})
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=1).items()}
    errors = graph_gradient_errors(graph, rng.standard_normal((2, 2, 4, 4)), params)
    assert max(errors.values()) < 1e-7, errors


def test_receptive_field_counts_padding_as_a_shift():
    """Padding by 2 before shifts every later unit's window 2 positions back: P grows by 2 (Araujo et al.)."""
    graph = Graph({"input_shape": [1, 8, 8], "nodes": [
        {"id": "pad", "op": "pad", "padding": [[2, 0], [1, 1]], "mode": "reflect"},
        {"id": "conv", "op": "conv2d", "out_channels": 1, "kernel_size": 3, "stride": 2},
    ]})
    rfs = receptive_fields(graph)
    assert [(a.size, a.stride, a.padding) for a in rfs["conv"].axes] == [(3, 2, 2), (3, 2, 1)]
    same = Graph({"input_shape": [1, 8, 8], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 1, "kernel_size": 3, "stride": 2, "padding": [[2, 0], [1, 1]]},
    ]})
    assert receptive_fields(same)["conv"].axes == rfs["conv"].axes
