"""slice: Python's slicing rules by hand and against PyTorch, gradients by central differences (with a negative
control), the op's shapes, errors and geometry, a spatial crop's receptive field against the gradient of one
unit, and ShuffleNet's channel split (two slices and a concat) in a graph, recording and lean."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.slice import slice_backward, slice_forward
from engine.ops.base import IDENTITY, AxisGeometry
from engine.receptive_field import AxisRF, footprints, receptive_fields, unit_box
from tests.engine.graphcheck import graph_gradient_errors


def _op(input_shape, **attrs):
    return Graph({"input_shape": list(input_shape), "nodes": [{"id": "cut", "op": "slice", **attrs}]}).nodes[0].op


# --- the layer ------------------------------------------------------------------------------------


def test_channel_slice_by_hand():
    x = np.arange(2 * 5 * 1 * 2, dtype=np.float64).reshape(2, 5, 1, 2)
    out, cache = slice_forward(x, 1, 1, 5, 2)  # channels 1 and 3
    assert out.shape == (2, 2, 1, 2) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[0, :, 0], [[2, 3], [6, 7]])
    np.testing.assert_array_equal(out[1, :, 0], [[12, 13], [16, 17]])
    dx = slice_backward(np.ones_like(out), cache)
    # positions the slice read get 1, the others 0
    np.testing.assert_array_equal(dx[0, :, 0, 0], [0, 1, 0, 1, 0])
    assert dx.shape == x.shape and dx.sum() == out.size


def test_op_resolves_python_style_start_end():
    # (start, end, step) on an axis of 7 -> positions kept, as Python's list slicing gives
    for start, end, step in [(0, None, 1), (2, -1, 1), (-3, None, 1), (-100, 3, 2), (5, 100, 1), (1, 7, 3),
                             (-7, -1, 2)]:
        op = _op((7, 2), dim=1, start=start, end=end, step=step)
        kept = list(range(7))[start:end:step]
        assert op.output_shape == (len(kept), 2), (start, end, step)
        x = np.arange(14.0).reshape(1, 7, 2)
        out, _ = op.forward([x], {}, None)
        np.testing.assert_array_equal(out[0, :, 0], np.array(kept) * 2)


@pytest.mark.parametrize("axis, start, end, step", [(1, 1, 3, 1), (2, 1, 7, 2), (3, 0, 4, 3), (2, 6, 7, 1)])
def test_gradient_central_differences(rng, axis, start, end, step):
    x = rng.standard_normal((2, 3, 7, 5))
    errors = check_function(lambda a: slice_forward(a, axis, start, end, step)[0],
                            lambda d: [slice_backward(d, slice_forward(x, axis, start, end, step)[1])], [x])
    assert errors[0] < 1e-9, errors


def test_gradient_check_negative_control(rng):
    x = rng.standard_normal((2, 3, 7, 5))

    # negative control: scattering back one position off is caught
    def shifted(d):
        shape, axis, start, end, step = slice_forward(x, 2, 1, 7, 2)[1]
        return [slice_backward(d, (shape, axis, start - 1, end - 1, step))]

    assert check_function(lambda a: slice_forward(a, 2, 1, 7, 2)[0], shifted, [x])[0] > 0.5


def test_matches_pytorch_forward_and_backward(torch_or_skip, rng):
    torch = torch_or_skip
    x = rng.standard_normal((2, 6, 5, 4))
    for dim, start, end, step in [(1, 0, 3, 1), (1, 3, None, 1), (1, -4, -1, 2), (2, 1, 100, 2), (3, -2, None, 1),
                                  (-1, 0, 3, 2), (-3, -100, 4, 3)]:
        op = _op((6, 5, 4), dim=dim, start=start, end=end, step=step)
        out, cache = op.forward([x], {}, None)
        t = torch.tensor(x, requires_grad=True)
        index = [slice(None)] * 4
        index[dim % 4] = slice(start, end, step)
        ref = t[tuple(index)]
        np.testing.assert_array_equal(out, ref.detach().numpy(), err_msg=f"mine vs torch, {dim, start, end, step}")
        dout = rng.standard_normal(out.shape)
        ref.backward(torch.tensor(dout))
        (dx,), _ = op.backward(dout, cache)
        np.testing.assert_array_equal(dx, t.grad.numpy(), err_msg=f"gradient mine vs torch, {dim, start, end, step}")


def test_float32_in_float32_out():
    out, cache = slice_forward(np.ones((1, 4, 3), np.float32), 2, 0, 2, 1)
    assert out.dtype == np.float32 and slice_backward(out, cache).dtype == np.float32


# --- the op ---------------------------------------------------------------------------------------


def test_op_shapes_describe_and_geometry():
    op = _op((8, 6, 5), dim=1, start=4)
    assert op.output_shape == (4, 6, 5) and op.geometry() == IDENTITY and op.macs() == 0
    assert op.describe() == {"dim": 1, "start": 4, "end": 8, "step": 1}
    crop = _op((8, 6, 5), dim=-2, start=-5, end=-1, step=2)  # rows 1, 3
    assert crop.output_shape == (8, 2, 5)
    assert crop.describe() == {"dim": 2, "start": 1, "end": 5, "step": 2}
    assert crop.geometry() == [AxisGeometry(1, 2, -1), AxisGeometry(1, 1, 0)]
    assert _op((8, 6, 5), dim=3, start=2).geometry() == [AxisGeometry(1, 1, 0), AxisGeometry(1, 1, -2)]


@pytest.mark.parametrize("attrs, message", [
    ({"dim": 0}, "batch axis"),
    ({"dim": 4}, "dim must be an int from 1 to 3"),
    ({"dim": 1, "step": 0}, "step must be an int of 1 or more"),
    ({"dim": 1, "step": -1}, "step must be an int of 1 or more"),
    ({"dim": 1, "start": 1.5}, "start must be an int"),
    ({"dim": 1, "end": "3"}, "end must be an int"),
    ({"dim": 1, "start": 3, "end": 3}, "keep nothing of dim 1, which has 4 positions"),
    ({"dim": 2, "start": 9}, "keep nothing"),
    ({"start": 1}, "needs dim"),
    ({"dim": 1, "axis": 1}, "does not take axis"),
])
def test_spec_errors_name_the_node(attrs, message):
    with pytest.raises(SpecError, match=message) as caught:
        _op((4, 5, 6), **attrs)
    assert caught.value.node_id == "cut"


# --- receptive field of a crop --------------------------------------------------------------------


def test_crop_receptive_field_by_hand_and_against_the_gradient():
    """conv 3x3 pad 1 -> crop rows 2::2 and columns 1:-1 -> conv 3x3: the boxes are where the gradient of one unit
    lands on the input (all-positive weights and input: no cancellation)."""
    graph = Graph({"input_shape": [1, 11, 9], "nodes": [
        {"id": "c1", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "crop_h", "op": "slice", "dim": 2, "start": 2, "step": 2},      # rows 2, 4, 6, 8, 10
        {"id": "crop_w", "op": "slice", "dim": 3, "start": 1, "end": -1},      # columns 1..7
        {"id": "c2", "op": "conv2d", "out_channels": 1, "kernel_size": 3}]})
    rfs = receptive_fields(graph)
    # H: c1 r 3, S 1, P 1; crop (k 1, s 2, p -2): r 3, S 2, P 1 - 2 = -1; c2 k3: r 3 + 2*2 = 7, S 2, P -1
    # W: c1 r 3, S 1, P 1; crop (k 1, s 1, p -1): r 3, S 1, P 0; c2 k3: r 5, S 1, P 0
    assert rfs["crop_h"].axes == (AxisRF(3, 2, -1), AxisRF(3, 1, 1))
    assert rfs["c2"].axes == (AxisRF(7, 2, -1), AxisRF(5, 1, 0))
    assert rfs["c2"].spatial_shape == (3, 5)
    params = {k: np.abs(v) + 0.1 for k, v in graph.init_params(0).items()}
    trace = graph.forward(np.ones((1, 1, 11, 9)), params)
    for node, index in [("crop_h", (0, 0)), ("crop_h", (4, 8)), ("c2", (0, 0)), ("c2", (2, 4)), ("c2", (1, 2))]:
        grads = graph.backward(trace, graph.unit_seed(trace, node, (0, *index)))
        rows, cols = np.nonzero(grads.input[0, 0])
        h, w = unit_box(rfs[node], index).axes
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (
            h.clipped_start, h.clipped_end, w.clipped_start, w.clipped_end), (node, index)
    # unit (1, 2) of c2 reads rows 1..3, columns 2..4 of crop_w, i.e. columns 3..5 of crop_h and of c1, whose rows
    # 2 + 2*1 .. 2 + 2*3 = 4..8 crop_h holds
    found = footprints(graph, rfs, "c2", (1, 2))
    assert found["crop_w"] == [(1, 3), (2, 4)] and found["crop_h"] == [(1, 3), (3, 5)]
    assert found["c1"] == [(4, 8), (3, 5)]
    # negative control: the crop read as a plain identity (P not moved by -start) gives other boxes
    wrong = unit_box(rfs["c1"], (4, 1)).axes[0]
    right = unit_box(rfs["crop_h"], (2, 1)).axes[0]
    assert (wrong.start, wrong.end) != (right.start, right.end)


# --- in a graph: the channel split ----------------------------------------------------------------


def _split_spec():
    """ShuffleNetV2's basic unit without the shuffle: x.chunk(2, dim=1), a branch on the second half, concat."""
    return {"input_shape": [4, 5, 5], "nodes": [
        {"id": "left", "op": "slice", "dim": 1, "start": 0, "end": 2, "inputs": ["input"]},
        {"id": "right", "op": "slice", "dim": 1, "start": 2, "inputs": ["input"]},
        {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "relu", "op": "relu"},
        {"id": "cat", "op": "concat", "dim": 1, "inputs": ["left", "relu"]}]}


def test_channel_split_in_a_graph_recording_and_lean(rng):
    graph = Graph(_split_spec())
    params = graph.init_params(3)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    trace = graph.forward(x, params)
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(trace.output, lean.output)
    np.testing.assert_array_equal(trace.output[:, :2], x[:, :2])  # the left half passes through
    np.testing.assert_array_equal(trace.activations["right"], x[:, 2:])
    assert trace.output.dtype == np.float32
    assert {n: rf.status for n, rf in receptive_fields(graph).items()}["cat"] == "local"


def test_channel_split_graph_gradients():
    graph = Graph(_split_spec())
    params = {k: v.astype(np.float64) for k, v in graph.init_params(1).items()}
    x = np.random.default_rng(5).standard_normal((2, 4, 5, 5))
    errors = graph_gradient_errors(graph, x, params)
    assert max(errors.values()) < 1e-7, errors
