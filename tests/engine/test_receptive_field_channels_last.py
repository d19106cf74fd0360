"""Receptive fields through channels-last blocks (ConvNeXt): between a transpose to (H, W, C) and one back to
(C, H, W), layer norm over the channels, a matmul contracting them, a per-channel bias and GELU act on each
position separately, so each keeps the field of the conv before it.

Three kinds of evidence, as for the global gates: fields worked out by hand on a ConvNeXt-like graph; the
engine's own gradient of one unit, non-zero exactly inside the predicted box; PyTorch's autograd giving the
same gradient. Negative controls: a matmul that contracts a spatial axis, a layer norm over [W, C], a bias that
varies along the positions, and a conv on a tensor left channels-last must not keep a local field, and their
gradients show why.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from engine.errors import EngineError
from engine.graph import INPUT, Graph
from engine.ops.base import GLOBAL, OP_REGISTRY, AxisGeometry
from engine.receptive_field import AxisRF, NodeRF, footprints, receptive_fields, unit_box

Node = dict[str, Any]


# --- a ConvNeXt-like graph, as both exporters' imports write it --------------------------------------------------

def layer_norm_2d(name: str, x: str, c: int) -> list[Node]:
    """ConvNeXt's LayerNorm2d: to channels-last, normalise each position's channels, back."""
    return [{"id": f"{name}.to_last", "op": "transpose", "perm": [1, 2, 0], "inputs": [x]},
            {"id": f"{name}.norm", "op": "layer_norm", "normalized_shape": [c], "eps": 1e-6},
            {"id": f"{name}.to_first", "op": "transpose", "perm": [2, 0, 1]}]


def cn_block(name: str, x: str, c: int) -> list[Node]:
    """torchvision's CNBlock: depthwise 7x7, channels-last LayerNorm, Linear(C, 4C), GELU, Linear(4C, C), back to
    channels first, layer scale (C, 1, 1), residual. The Linears are a matmul by a constant and a bias add (bias
    first, as the TorchScript exporter writes it, in the first; second, as dynamo does, in the other)."""
    return [
        {"id": f"{name}.dw", "op": "conv2d", "out_channels": c, "kernel_size": 7, "padding": 3, "groups": c,
         "inputs": [x]},
        {"id": f"{name}.to_last", "op": "transpose", "perm": [1, 2, 0]},
        {"id": f"{name}.norm", "op": "layer_norm", "normalized_shape": [c], "eps": 1e-6},
        {"id": f"{name}.w1", "op": "constant", "shape": [c, 4 * c], "inputs": []},
        {"id": f"{name}.fc1", "op": "matmul", "inputs": [f"{name}.norm", f"{name}.w1"]},
        {"id": f"{name}.b1", "op": "constant", "shape": [4 * c], "inputs": []},
        {"id": f"{name}.bias1", "op": "add", "inputs": [f"{name}.b1", f"{name}.fc1"]},
        {"id": f"{name}.gelu", "op": "gelu"},
        {"id": f"{name}.w2", "op": "constant", "shape": [4 * c, c], "inputs": []},
        {"id": f"{name}.fc2", "op": "matmul", "inputs": [f"{name}.gelu", f"{name}.w2"]},
        {"id": f"{name}.b2", "op": "constant", "shape": [c], "inputs": []},
        {"id": f"{name}.bias2", "op": "add", "inputs": [f"{name}.fc2", f"{name}.b2"]},
        {"id": f"{name}.to_first", "op": "transpose", "perm": [2, 0, 1]},
        {"id": f"{name}.gamma", "op": "constant", "shape": [c, 1, 1], "inputs": []},
        {"id": f"{name}.scale", "op": "mul", "inputs": [f"{name}.gamma", f"{name}.to_first"]},
        {"id": f"{name}.add", "op": "add", "inputs": [f"{name}.scale", x]},
    ]


def convnext_like(size: int = 64, c: int = 8) -> dict[str, Any]:
    """Stem (4x4 conv, stride 4, LayerNorm2d), a block, a downsample (LayerNorm2d, 2x2 conv, stride 2), a block
    at twice the channels, and a head (global average pool, linear): 42 nodes, 10 of them constants."""
    return {"input_shape": [3, size, size], "nodes": [
        {"id": "stem", "op": "conv2d", "out_channels": c, "kernel_size": 4, "stride": 4},
        *layer_norm_2d("stem.ln", "stem", c),
        *cn_block("b1", "stem.ln.to_first", c),
        *layer_norm_2d("down.ln", "b1.add", c),
        {"id": "down", "op": "conv2d", "out_channels": 2 * c, "kernel_size": 2, "stride": 2},
        *cn_block("b2", "down", 2 * c),
        {"id": "pool", "op": "global_avg_pool"},
        {"id": "fc", "op": "linear", "out_features": 5},
    ]}


#: by hand: stem r 4, S 4, P 0; a 7x7 depthwise (padding 3) at S adds 6·S to r and 3·S to P; the downsample's 2x2
#: stride 2 adds 1·4 to r and doubles S
FIELDS = {"stem": AxisRF(4, 4, 0), "b1.dw": AxisRF(28, 4, 12), "down": AxisRF(32, 8, 12),
          "b2.dw": AxisRF(80, 8, 36)}
#: what each node takes: the conv before it (the residual add takes the block's, the larger)
FIELD_OF = {**{f"stem.ln.{n}": "stem" for n in ("to_last", "norm", "to_first")},
            **{f"b1.{n}": "b1.dw" for n in ("to_last", "norm", "fc1", "bias1", "gelu", "fc2", "bias2", "to_first",
                                            "scale", "add")},
            **{f"down.ln.{n}": "b1.dw" for n in ("to_last", "norm", "to_first")},
            **{f"b2.{n}": "b2.dw" for n in ("to_last", "norm", "fc1", "bias1", "gelu", "fc2", "bias2", "to_first",
                                            "scale", "add")}}
CHANNELS_LAST = [f"{p}.{n}" for p in ("stem.ln", "down.ln") for n in ("to_last", "norm")] + [
    f"{b}.{n}" for b in ("b1", "b2") for n in ("to_last", "norm", "fc1", "bias1", "gelu", "fc2", "bias2")]


def _old_global(graph: Graph) -> set[str]:
    """What the analysis called "global" before it followed channels-last tensors: a GLOBAL op, or anything
    reading a global node (the first transpose was "undefined", and the layer norm after it GLOBAL)."""
    found: set[str] = set()
    for node in graph.nodes:
        if node.op.geometry() == GLOBAL or any(i in found for i in node.inputs):
            found.add(node.id)
    return found


def test_a_convnext_like_graph_keeps_its_outlines_by_hand():
    graph = Graph(convnext_like())
    rfs = receptive_fields(graph)
    assert len(graph.nodes) == 42
    for node, conv in [*FIELD_OF.items(), *((c, c) for c in FIELDS)]:
        assert rfs[node].status == "local", (node, rfs[node].reason)
        assert rfs[node].axes == (FIELDS[conv],) * 2, (node, rfs[node].axes)
    # the channels-last nodes say where their positions are; the others have them last, as usual
    assert len(CHANNELS_LAST) == 18
    for node in graph.nodes:
        expected = (0, 1) if node.id in CHANNELS_LAST else ()
        assert rfs[node.id].position_axes == expected, node.id
    assert rfs["b1.gelu"].spatial_shape == (16, 16) and rfs["b2.fc1"].spatial_shape == (8, 8)
    assert rfs["b1.gelu"].output_shape == (16, 16, 32) and rfs["b1.to_first"].spatial_shape == (16, 16)
    assert rfs["b1.gelu"].to_dict()["position_axes"] == [0, 1] and rfs["b1.add"].to_dict()["position_axes"] == []
    # counts: before, everything from the stem's layer norm on was global (30 of 32 reading nodes); now the head
    statuses = [rfs[n.id].status for n in graph.nodes]
    assert (statuses.count("constant"), statuses.count("local"), statuses.count("global")) == (10, 30, 2)
    assert len(_old_global(graph)) == 30
    assert {n.id for n in graph.nodes if rfs[n.id].status == "global"} == {"pool", "fc"}


def test_a_unit_of_a_channels_last_node_is_indexed_by_its_own_axes():
    graph = Graph(convnext_like())
    rfs = receptive_fields(graph)
    rf = rfs["b2.gelu"]  # (8, 8, 64): unit (h, w, c)
    full = unit_box(rf, (2, 5, 40))
    assert full.index == (2, 5) and full.axes == unit_box(rf, (2, 5)).axes == unit_box(rfs["b2.add"], (3, 2, 5)).axes
    h, w = full.axes
    assert (h.start, h.end, w.start, w.end) == (2 * 8 - 36, 2 * 8 - 36 + 79, 5 * 8 - 36, 5 * 8 - 36 + 79)
    with pytest.raises(EngineError, match=r"outside node 'b2\.gelu'"):
        unit_box(rf, (8, 0, 0))
    # on earlier layers: ranges per spatial axis (H, W), wherever a layer keeps them
    found = footprints(graph, rfs, "b2.gelu", (2, 5))
    assert found["b2.gelu"] == [(2, 2), (5, 5)] and "b2.to_first" not in found
    assert found["b2.dw"] == found["b2.norm"] == [(2, 2), (5, 5)]
    assert found["down"] == [(0, 5), (2, 7)]  # the 7x7 window around (2, 5) on the 8x8 map
    # before the 2x2 stride-2 conv, on the 16x16 maps: twice as many positions
    assert found["down.ln.norm"] == found["b1.norm"] == found["b1.add"] == [(0, 11), (4, 15)]


# --- the ops' side: aligned_axes, and geometry() unchanged ------------------------------------------------------

def _op(name: str, shapes: list[tuple[int, ...]], **attrs: Any):
    return OP_REGISTRY[name]("n", name, attrs, shapes)


@pytest.mark.parametrize("name, shapes, attrs, aligned", [
    ("transpose", [(8, 5, 6)], {"perm": [1, 2, 0]}, [{0: 1, 1: 2, 2: 0}]),
    ("layer_norm", [(5, 6, 8)], {"normalized_shape": [8]}, [{0: 0, 1: 1}]),
    ("layer_norm", [(5, 6, 8)], {"normalized_shape": [6, 8]}, [{0: 0}]),
    ("layer_norm", [(8,)], {"normalized_shape": 8}, [{}]),
    ("matmul", [(5, 6, 8), (8, 32)], {}, [{0: 0, 1: 1}, {2: 1}]),          # ConvNeXt's per-position linear
    ("matmul", [(8, 5, 6), (6, 6)], {}, [{0: 0, 1: 1}, {2: 1}]),            # contracts W: W is not kept
    ("matmul", [(2, 5, 3), (4, 1, 3, 7)], {}, [{1: 0, 2: 1}, {0: 0, 3: 3}]),
    ("matmul", [(3,), (4, 3, 7)], {}, [{}, {0: 0, 1: 2}]),
    ("matmul", [(4, 5, 3), (3,)], {}, [{0: 0, 1: 1}, {}]),
    ("add", [(32,), (5, 6, 32)], {}, [{2: 0}, {0: 0, 1: 1, 2: 2}]),
    ("mul", [(8, 1, 1), (8, 5, 6)], {}, [{0: 0}, {0: 0, 1: 1, 2: 2}]),
    ("sub", [(5, 6, 8), (5, 6, 1)], {}, [{0: 0, 1: 1, 2: 2}, {0: 0, 1: 1}]),
    ("div", [(5, 1, 8), (5, 6, 8)], {}, [{0: 0, 2: 2}, {0: 0, 1: 1, 2: 2}]),
    ("gelu", [(5, 6, 8)], {}, [{0: 0, 1: 1, 2: 2}]),
    ("sqrt", [(5, 6)], {}, [{0: 0, 1: 1}]),
    ("mean", [(5, 6, 8)], {"dim": [3], "keepdim": True}, [{0: 0, 1: 1}]),
    ("mean", [(5, 6, 8)], {"dim": [1], "keepdim": False}, [{0: 1, 1: 2}]),
    ("sum", [(5, 6, 8)], {"dim": [2, 3]}, [{0: 0}]),
    ("conv2d", [(8, 5, 6)], {"out_channels": 4, "kernel_size": 1}, None),     # not worked out: geometry() only
])
def test_aligned_axes(name, shapes, attrs, aligned):
    assert _op(name, shapes, **attrs).aligned_axes() == aligned


def test_geometry_is_unchanged_for_channels_last_ops():
    """The analysis follows channels-last tensors through aligned_axes(); geometry() says what it said before."""
    assert _op("layer_norm", [(5, 6, 8)], normalized_shape=[8]).geometry() == GLOBAL
    assert _op("matmul", [(5, 6, 8), (8, 32)]).geometry() == GLOBAL
    assert _op("transpose", [(8, 5, 6)], perm=[1, 2, 0]).geometry() == []
    assert _op("transpose", [(2, 4, 5, 6)], perm=[1, 0, 2, 3]).geometry() == [AxisGeometry(1, 1, 0)] * 2
    assert _op("mean", [(5, 6, 8)], dim=[3], keepdim=True).geometry() == GLOBAL


# --- negative controls: what does not keep to one position -------------------------------------------------------

def _tail(c: int = 8, size: int = 16) -> list[Node]:
    """A conv (r 3, S 1, P 1) and a transpose to channels-last (H, W, C) = (size, size, c)."""
    return [{"id": "c", "op": "conv2d", "out_channels": c, "kernel_size": 3, "padding": 1},
            {"id": "last", "op": "transpose", "perm": [1, 2, 0]}]


NEGATIVE = {
    # a matmul by a (W, M) constant on (C, H, W): contracts W, in the usual layout
    "matmul over W": [{"id": "c", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
                      {"id": "k", "op": "constant", "shape": [16, 16], "inputs": []},
                      {"id": "bad", "op": "matmul", "inputs": ["c", "k"]}],
    # channels-last, then W moved last ((H, C, W)) and contracted
    "matmul over W, channels-last": [*_tail(), {"id": "hcw", "op": "transpose", "perm": [0, 2, 1]},
                                     {"id": "k", "op": "constant", "shape": [16, 16], "inputs": []},
                                     {"id": "bad", "op": "matmul", "inputs": ["hcw", "k"]}],
    "layer norm over [W, C]": [*_tail(), {"id": "bad", "op": "layer_norm", "normalized_shape": [16, 8]}],
    "mean over W and C": [*_tail(), {"id": "bad", "op": "mean", "dim": [2, 3], "keepdim": True}],
    # a per-position value broadcast along the channels is fine, but one computed from every position is not
    "a global value added": [*_tail(), {"id": "m", "op": "mean", "dim": [1, 2], "keepdim": True},
                             {"id": "bad", "op": "add", "inputs": ["last", "m"]}],
}


@pytest.mark.parametrize("case", list(NEGATIVE))
def test_what_mixes_positions_of_a_channels_last_tensor_is_global(case):
    graph = Graph({"input_shape": [2, 16, 16], "nodes": NEGATIVE[case]})
    rfs = receptive_fields(graph)
    assert rfs["c"].status == "local"
    assert rfs["bad"].status == "global" and rfs["bad"].axes is None, rfs["bad"]
    # and its units do depend on far more than the conv's 3x3 window: a whole row of the input at least
    trace = graph.forward(np.random.default_rng(0).normal(size=(1, 2, 16, 16)), _random_params(graph))
    grad = graph.backward(trace, graph.unit_seed(trace, "bad", (0,) * len(rfs["bad"].output_shape)),
                          params=False).input[0]
    _, cols = np.nonzero(np.abs(grad).sum(axis=0))
    assert cols.max() - cols.min() + 1 == 16, case


def test_a_conv_on_a_tensor_left_channels_last_is_undefined():
    """The conv would slide over (W, C) as if they were (H, W): no field is claimed, for it or anything after."""
    graph = Graph({"input_shape": [2, 16, 16], "nodes": [
        *_tail(c=16), {"id": "conv", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "act", "op": "relu"}]})
    rfs = receptive_fields(graph)
    assert rfs["last"].status == "local" and rfs["last"].position_axes == (0, 1)
    for node in ["conv", "act"]:
        assert rfs[node].status == "undefined" and rfs[node].axes is None, node
    assert "'conv' (conv2d) is not known to keep positions" in rfs["conv"].reason
    assert "'last' (H, W, C)" in rfs["conv"].reason and "transpose back" in rfs["conv"].reason
    with pytest.raises(EngineError, match="no receptive-field box"):
        unit_box(rfs["act"], (0, 0, 0))
    # the truth: one output unit reads every input row (the conv's "channels" are H), so no box on H is right
    trace = graph.forward(np.random.default_rng(1).normal(size=(1, 2, 16, 16)), _random_params(graph))
    grad = graph.backward(trace, graph.unit_seed(trace, "act", (0, 5, 5)), params=False).input[0]
    rows, _ = np.nonzero(np.abs(grad).sum(axis=0))
    assert rows.min() == 0 and rows.max() == 15


def test_a_transpose_back_the_wrong_way_is_not_the_usual_layout():
    """(H, W, C) -> (C, W, H): H and W swapped. Still followed (W on axis 1, H on axis 2), but not the usual
    layout, so a conv after it is undefined rather than given the field with its axes crossed."""
    graph = Graph({"input_shape": [2, 16, 12], "nodes": [
        *_tail(), {"id": "cwh", "op": "transpose", "perm": [2, 1, 0]},
        {"id": "conv", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}]})
    rfs = receptive_fields(graph)
    assert rfs["cwh"].status == "local" and rfs["cwh"].position_axes == (2, 1)
    assert rfs["cwh"].spatial_shape == (16, 12) and rfs["cwh"].output_shape == (8, 12, 16)
    assert rfs["conv"].status == "undefined"


def test_a_local_value_broadcast_along_the_positions_is_not_paired_with_them():
    """A whole-map conv gives one position (r 18): channels-last (1, 1, C), added to every position of an
    (H, W, C). Each unit then reads the 3x3 window and the whole map: no single box, so undefined, as the usual
    layout's merge says for the same broadcast."""
    graph = Graph({"input_shape": [2, 16, 16], "nodes": [
        *_tail(), {"id": "whole", "op": "conv2d", "out_channels": 8, "kernel_size": 16, "inputs": ["c"]},
        {"id": "whole_last", "op": "transpose", "perm": [1, 2, 0]},
        {"id": "bad", "op": "add", "inputs": ["last", "whole_last"]},
        {"id": "first", "op": "add", "inputs": ["c", "whole"]}]})
    rfs = receptive_fields(graph)
    assert rfs["whole_last"].status == "local" and rfs["whole_last"].spatial_shape == (1, 1)
    assert rfs["first"].status == "undefined" and "broadcasts" in rfs["first"].reason
    assert rfs["bad"].status == "undefined" and "broadcast along H" in rfs["bad"].reason


def test_a_channels_last_path_meeting_a_channels_first_one_is_not_paired():
    """On a square (8, 8, 8) a channels-last and a channels-first tensor add up elementwise, pairing H with C:
    undefined, never the field of either."""
    graph = Graph({"input_shape": [8, 8, 8], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"id": "last", "op": "transpose", "perm": [1, 2, 0]},
        {"id": "mixed", "op": "add", "inputs": ["last", "c"]}]})
    rf = receptive_fields(graph)["mixed"]
    assert rf.status == "undefined" and "pairs the positions of its inputs differently" in rf.reason


# --- empirically: the engine's gradient of one unit -------------------------------------------------------

def _random_params(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Every parameter random (float64): constants, layer-norm scales and biases included."""
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=v.shape) for k, v in graph.init_params(seed).items()}


def _support(grad: np.ndarray) -> tuple[int, int, int, int, int]:
    """(first row, last row, first column, last column, count) of the non-zero |gradient| summed over channels."""
    rows, cols = np.nonzero(np.abs(grad).sum(axis=0))
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()), len(rows)


def _box(rf: NodeRF, index: tuple[int, int]) -> tuple[int, int, int, int, int]:
    h, w = unit_box(rf, index).axes
    return (h.clipped_start, h.clipped_end, w.clipped_start, w.clipped_end,
            (h.clipped_end - h.clipped_start + 1) * (w.clipped_end - w.clipped_start + 1))


def _unit(rf: NodeRF, spatial: tuple[int, int], channel: int) -> tuple[int, ...]:
    """The full index of the unit at ``spatial`` and ``channel``, in the node's own axes."""
    index = [channel] * len(rf.output_shape)
    for axis, i in zip(rf.positions(), spatial):
        index[axis] = i
    return tuple(index)


def test_the_gradient_of_a_unit_fills_exactly_its_box():
    graph = Graph(convnext_like())
    rfs = receptive_fields(graph)
    trace = graph.forward(np.random.default_rng(3).normal(size=(1, *graph.input_shape)), _random_params(graph))
    for node in ["stem.ln.norm", "b1.norm", "b1.gelu", "b1.bias2", "b1.to_first", "b1.add", "down.ln.to_last",
                 "down", "b2.fc1", "b2.gelu", "b2.add"]:
        rf = rfs[node]
        h, w = rf.spatial_shape
        for spatial in [(0, 0), (h // 2, w - 1), (h - 1, w // 3)]:
            seed = graph.unit_seed(trace, node, _unit(rf, spatial, channel=1))
            grad = graph.backward(trace, seed, params=False).input[0]
            assert _support(grad) == _box(rf, spatial), (node, spatial, rf.axes)
    # negative control: one less on W, and the box no longer matches the gradient
    rf = rfs["b1.gelu"]
    wrong = replace(rf, axes=(rf.axes[0], AxisRF(rf.axes[1].size - 1, rf.axes[1].stride, rf.axes[1].padding)))
    grad = graph.backward(trace, graph.unit_seed(trace, "b1.gelu", _unit(rf, (8, 8), 0)), params=False).input[0]
    assert _support(grad) == _box(rf, (8, 8)) == (20, 47, 20, 47, 28 * 28) != _box(wrong, (8, 8))
    # and the field the old analysis gave (global) is wrong too: the unit does not read the whole input
    assert _support(grad)[-1] < 64 * 64


# --- the same gradients from PyTorch ----------------------------------------------------------------------------

def _torch_forward(torch: Any, graph: Graph, params: dict[str, np.ndarray], x: Any) -> dict[str, Any]:
    """The graph run by PyTorch's functional ops (the ops of ``convnext_like`` only)."""
    F = torch.nn.functional
    p = {k: torch.from_numpy(v) for k, v in params.items()}
    values = {INPUT: x}
    for node in graph.nodes:
        a = node.op.describe()
        xs = [values[i] for i in node.inputs]
        op = node.op.op
        if op == "conv2d":
            out = F.conv2d(xs[0], p[f"{node.id}.weight"], p.get(f"{node.id}.bias"), stride=a["stride"],
                           padding=[pad[0] for pad in a["padding"]], groups=a["groups"])
        elif op == "constant":
            out = p[f"{node.id}.value"][None]
        elif op == "transpose":
            out = xs[0].permute(0, *(axis + 1 for axis in a["perm"]))
        elif op == "layer_norm":
            out = F.layer_norm(xs[0], a["normalized_shape"], p[f"{node.id}.weight"], p[f"{node.id}.bias"],
                               eps=a["eps"])
        elif op == "matmul":
            out = torch.matmul(*xs)
        elif op == "add":
            out = xs[0] + xs[1]
        elif op == "mul":
            out = xs[0] * xs[1]
        elif op == "gelu":
            out = F.gelu(xs[0])
        elif op == "global_avg_pool":
            out = xs[0].mean(dim=(2, 3))
        elif op == "linear":
            out = F.linear(xs[0], p[f"{node.id}.weight"], p[f"{node.id}.bias"])
        else:
            raise AssertionError(f"no PyTorch form for op {op!r} in this test")
        values[node.id] = out
    return values


@pytest.mark.torch
def test_torch_autograd_fills_the_same_box(torch_or_skip):
    """Seeded sweep: random weights, random units of random local nodes. PyTorch's gradient is non-zero exactly
    in the box, and equals the engine's."""
    torch = torch_or_skip
    graph = Graph(convnext_like(size=48))
    rfs = receptive_fields(graph)
    local = [n.id for n in graph.nodes if rfs[n.id].status == "local"]
    rng = np.random.default_rng(7)
    for seed in range(3):
        params = _random_params(graph, seed)
        x = rng.normal(size=(1, *graph.input_shape))
        trace = graph.forward(x, params)
        tx = torch.tensor(x, requires_grad=True)
        values = _torch_forward(torch, graph, params, tx)
        np.testing.assert_allclose(values[graph.output_id].detach().numpy(), trace.activations[graph.output_id],
                                   rtol=1e-9, atol=1e-12, err_msg="forward: mine vs torch")
        for _ in range(6):
            node = local[int(rng.integers(len(local)))]
            rf = rfs[node]
            spatial = tuple(int(rng.integers(s)) for s in rf.spatial_shape)
            (channels,) = (size for a, size in enumerate(rf.output_shape) if a not in rf.positions())
            unit = _unit(rf, spatial, channel=int(rng.integers(channels)))
            (theirs,) = torch.autograd.grad(values[node][(0, *unit)], tx, retain_graph=True)
            theirs = theirs[0].numpy()
            mine = graph.backward(trace, graph.unit_seed(trace, node, unit), params=False).input[0]
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-13,
                                       err_msg=f"d {node}{list(unit)} / d input: mine vs torch")
            assert _support(theirs) == _box(rf, spatial), (
                f"{node}{list(unit)}: torch's gradient {_support(theirs)} vs my box {_box(rf, spatial)}")
