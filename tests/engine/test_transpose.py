"""transpose: by hand and against PyTorch's permute, gradients by central differences (with a negative control),
the op's shapes, errors and geometry (a receptive field passes a channel shuffle, is undefined past a moved spatial
axis), and the channel shuffle (reshape -> transpose -> reshape) in a graph, recording and lean."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import INPUT, Graph
from engine.layers.transpose import transpose_backward, transpose_forward
from engine.ops.base import IDENTITY, AxisGeometry
from engine.receptive_field import AxisRF, receptive_fields
from tests.engine.graphcheck import graph_gradient_errors


def _op(input_shape, perm):
    return Graph({"input_shape": list(input_shape), "nodes": [{"id": "swap", "op": "transpose", "perm": perm}]}
                 ).nodes[0].op


# --- the layer ------------------------------------------------------------------------------------


def test_by_hand():
    x = np.arange(6.0).reshape(1, 2, 3)  # [[0 1 2], [3 4 5]]
    out, cache = transpose_forward(x, (1, 0))
    np.testing.assert_array_equal(out[0], [[0, 3], [1, 4], [2, 5]])
    assert out.flags.c_contiguous and not np.shares_memory(out, x)
    np.testing.assert_array_equal(transpose_backward(out, cache), x)


def test_gradient_is_the_inverse_permutation_and_negative_control(rng):
    x = rng.standard_normal((2, 2, 3, 4))
    perm = (1, 2, 0)  # a 3-cycle: its inverse (2, 0, 1) differs from it
    errors = check_function(lambda a: transpose_forward(a, perm)[0],
                            lambda d: [transpose_backward(d, perm)], [x])
    assert errors[0] < 1e-9, errors

    def wrong(d):  # undo with the permutation itself instead of its inverse, reshaped to fit
        return [np.ascontiguousarray(d.transpose(0, *(p + 1 for p in perm))).reshape(x.shape)]

    assert check_function(lambda a: transpose_forward(a, perm)[0], wrong, [x])[0] > 0.5


def test_matches_pytorch_permute_forward_and_backward(torch_or_skip, rng):
    torch = torch_or_skip
    x = rng.standard_normal((2, 3, 4, 5))
    for perm in [(0, 1, 2), (1, 0, 2), (2, 1, 0), (0, 2, 1), (1, 2, 0), (2, 0, 1)]:
        out, cache = _op((3, 4, 5), list(perm)).forward([x], {}, None)
        t = torch.tensor(x, requires_grad=True)
        ref = t.permute(0, *(p + 1 for p in perm))
        np.testing.assert_array_equal(out, ref.detach().numpy(), err_msg=f"mine vs torch, perm {perm}")
        dout = rng.standard_normal(out.shape)
        ref.backward(torch.tensor(dout))
        np.testing.assert_array_equal(transpose_backward(dout, cache), t.grad.numpy(),
                                      err_msg=f"gradient mine vs torch, perm {perm}")


# --- the op ---------------------------------------------------------------------------------------


def test_op_shapes_and_geometry():
    assert _op((2, 3, 4, 5), [1, 0, 2, 3]).output_shape == (3, 2, 4, 5)
    assert _op((2, 3, 4, 5), [1, 0, 2, 3]).geometry() == [AxisGeometry(1, 1, 0)] * 2  # H and W stay
    assert _op((2, 3, 4, 5), [0, 1, 2, 3]).geometry() == IDENTITY
    assert _op((3, 4, 5), [0, 2, 1]).geometry() == []  # W moves: no axis kept in place at the end
    assert _op((3, 4, 5), [1, 0, 2]).geometry() == [AxisGeometry(1, 1, 0)]
    op = _op((3, 4, 5), (2, 0, 1))
    assert op.output_shape == (5, 3, 4) and op.macs() == 0 and op.describe() == {"perm": (2, 0, 1)}


@pytest.mark.parametrize("perm, message", [
    ([0, 2, 1, 3], "looks like PyTorch's or ONNX's perm, which counts the batch axis.*use \\[1, 0, 2\\]"),
    ([0, 1], "not a reordering of the sample's axes 0..2"),
    ([0, 0, 1], "each axis exactly once"),
    ([1, 2, 3], "not a reordering"),
    ("021", "perm must be a list of ints"),
    ([0, 1.0, 2], "perm must be a list of ints"),
])
def test_spec_errors_name_the_node(perm, message):
    with pytest.raises(SpecError, match=message) as caught:
        _op((3, 4, 5), perm)
    assert caught.value.node_id == "swap"


def test_perm_is_required():
    with pytest.raises(SpecError, match="needs perm"):
        Graph({"input_shape": [3], "nodes": [{"id": "t", "op": "transpose"}]})


# --- receptive fields -----------------------------------------------------------------------------


@dataclass
class _Node:
    id: str
    op: Any
    inputs: list[str]
    output_shape: tuple[int, ...]


@dataclass
class _KeepPositions:
    """Stands in for a reshape (C, H, W) -> (G, C/G, H, W) that declared its positions kept."""

    op: str = "reshape"

    def geometry(self):
        return IDENTITY


@dataclass
class _Graph:
    input_shape: tuple[int, ...]
    nodes: list[_Node]


def test_receptive_field_passes_a_shuffle_and_stops_at_a_moved_spatial_axis():
    conv = Graph({"input_shape": [4, 8, 8], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}]}).nodes[0]
    shuffle = _op((2, 2, 4, 4), [1, 0, 2, 3])
    stand_in = _Graph((4, 8, 8), [conv, _Node("groups", _KeepPositions(), ["c"], (2, 2, 4, 4)),
                                  _Node("shuffle", shuffle, ["groups"], shuffle.output_shape)])
    rfs = receptive_fields(stand_in)
    assert rfs["shuffle"].status == "local" and rfs["shuffle"].axes == rfs["c"].axes == (AxisRF(3, 2, 1),) * 2
    # on a real graph, swapping H and C moves a spatial axis: the analysis follows it (H now on axis 0), an
    # elementwise op keeps it, and a conv, which would slide along (C, W) as if they were positions, is undefined
    graph = Graph({"input_shape": [4, 8, 8], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "swap", "op": "transpose", "perm": [1, 0, 2]},
        {"id": "after", "op": "relu"},
        {"id": "conv", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}]})
    rfs = receptive_fields(graph)
    assert rfs["c"].status == "local"
    for node in ["swap", "after"]:
        assert rfs[node].status == "local" and rfs[node].axes == rfs["c"].axes, node
        assert rfs[node].position_axes == (0, 2), node
    assert rfs["conv"].status == "undefined" and "transpose back" in rfs["conv"].reason
    assert rfs[INPUT].status == "local"


# --- in a graph: the channel shuffle --------------------------------------------------------------


def _shuffle_spec(groups=2, channels=6):
    return {"input_shape": [channels, 3, 4], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": channels, "kernel_size": 1},
        {"id": "groups", "op": "reshape", "shape": [groups, channels // groups, 3, 4]},
        {"id": "swap", "op": "transpose", "perm": [1, 0, 2, 3]},
        {"id": "shuffled", "op": "reshape", "shape": [channels, 3, 4]}]}


def test_channel_shuffle_by_hand_recording_and_lean(rng):
    graph = Graph(_shuffle_spec())
    x = rng.standard_normal((2, 6, 3, 4)).astype(np.float32)
    params = graph.init_params(0)
    trace = graph.forward(x, params)
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(trace.output, lean.output)
    # 2 groups of 3 channels [a0 a1 a2 | b0 b1 b2] interleave to [a0 b0 a1 b1 a2 b2]
    conv = trace.activations["conv"]
    np.testing.assert_array_equal(trace.output, conv[:, [0, 3, 1, 4, 2, 5]])
    assert trace.output.dtype == np.float32 and trace.output.flags.c_contiguous


def test_channel_shuffle_matches_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    graph = Graph(_shuffle_spec(groups=3, channels=6))
    x = rng.standard_normal((2, 6, 3, 4))
    params = {k: v.astype(np.float64) for k, v in graph.init_params(0).items()}
    out = graph.forward(x, params).output
    conv = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(params["conv.weight"]),
                                      torch.tensor(params["conv.bias"]))
    ref = conv.reshape(2, 3, 2, 3, 4).transpose(1, 2).reshape(2, 6, 3, 4)  # torchvision's channel_shuffle
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-12, atol=1e-12)


def test_channel_shuffle_graph_gradients():
    graph = Graph(_shuffle_spec())
    params = {k: v.astype(np.float64) for k, v in graph.init_params(2).items()}
    x = np.random.default_rng(4).standard_normal((2, 6, 3, 4))
    errors = graph_gradient_errors(graph, x, params)
    assert max(errors.values()) < 1e-7, errors
