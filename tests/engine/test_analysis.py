"""Per-node analysis: shapes, parameter counts, MACs and receptive fields of a small graph, by hand
and (parameter counts) against PyTorch."""

from __future__ import annotations

import json

import pytest

from engine.analysis import analyze
from engine.errors import SpecError
from engine.graph import Graph

SPEC = {
    "input_shape": [3, 8, 8],
    "nodes": [
        {"id": "c1", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "bn", "op": "batch_norm"},
        {"id": "r1", "op": "relu"},
        {"id": "p1", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "c2", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "groups": 4, "bias": False},
        {"id": "sum", "op": "add", "inputs": ["p1", "c2"]},
        {"id": "gap", "op": "global_avg_pool"},
        {"id": "fc", "op": "linear", "out_features": 10},
    ],
}


def test_shapes_params_macs_by_hand():
    a = analyze(Graph(SPEC))
    by_id = {n.id: n for n in a.nodes}
    assert [n.id for n in a.nodes] == [n["id"] for n in SPEC["nodes"]]
    assert by_id["c1"].output_shape == (4, 8, 8)
    assert by_id["p1"].output_shape == (4, 4, 4)
    assert by_id["gap"].output_shape == (4,)
    # c1: weight 4*3*3*3 = 108 + bias 4 = 112; MACs: 4*8*8 outputs * 3*3*3 taps = 256 * 27 = 6912
    assert (by_id["c1"].params, by_id["c1"].macs) == (112, 6912)
    # batch norm: weight + bias 4 + 4 trained, running mean + var 4 + 4 kept
    assert (by_id["bn"].params, by_id["bn"].buffers) == (8, 8)
    # depthwise c2 (groups 4, no bias): 4*1*3*3 = 36; MACs 4*4*4 outputs * 1*3*3 = 576
    assert (by_id["c2"].params, by_id["c2"].macs) == (36, 576)
    # fc: 4*10 + 10 = 50; MACs 40
    assert (by_id["fc"].params, by_id["fc"].macs) == (50, 40)
    assert a.total_params == 112 + 8 + 36 + 50
    assert a.total_buffers == 8
    assert a.total_macs == sum(n.macs for n in a.nodes)
    assert a.total_params == Graph(SPEC).param_count()
    assert by_id["c2"].attributes["groups"] == 4
    assert by_id["sum"].inputs == ["p1", "c2"]


def test_receptive_fields_by_hand():
    by_id = {n.id: n.receptive_field for n in analyze(Graph(SPEC)).nodes}
    # c1 k3 p1: r 3, S 1, P 1.  p1 k2 s2: r 3 + 1 = 4, S 2, P 1.  c2 k3 p1: r 4 + 2*2 = 8, S 2, P 1 + 1*2 = 3
    assert [(a.size, a.stride, a.padding) for a in by_id["c1"].axes] == [(3, 1, 1)] * 2
    assert [(a.size, a.stride, a.padding) for a in by_id["p1"].axes] == [(4, 2, 1)] * 2
    # sum: p1 is centred at 2i + (4-1)/2 - 1 = 2i + 0.5, c2 at 2i + (8-1)/2 - 3 = 2i + 0.5: aligned, r = 8
    assert [(a.size, a.stride, a.padding) for a in by_id["sum"].axes] == [(8, 2, 3)] * 2
    assert by_id["gap"].status == by_id["fc"].status == "global"


def test_to_dict_is_json():
    data = analyze(Graph(SPEC)).to_dict()
    text = json.dumps(data)  # no tuples-of-numpy surprises
    assert json.loads(text)["totals"] == {"params": 206, "buffers": 8, "macs": data["totals"]["macs"]}
    node = data["nodes"][0]
    assert node["attributes"]["padding"] == [[1, 1], [1, 1]]
    assert node["receptive_field"]["axes"] == [{"axis": "H", "size": 3, "stride": 1, "padding": 1},
                                               {"axis": "W", "size": 3, "stride": 1, "padding": 1}]
    assert data["nodes"][-1]["receptive_field"]["axes"] is None
    assert data["spatial_axes"] == ["H", "W"]


MISALIGNED = {
    "input_shape": [1, 8, 8],
    "nodes": [
        {"id": "even", "op": "conv2d", "out_channels": 1, "kernel_size": 2, "stride": 2},
        {"id": "odd", "op": "conv2d", "inputs": ["input"], "out_channels": 1, "kernel_size": 1, "stride": 2},
        {"id": "join", "op": "add", "inputs": ["even", "odd"]},
        {"id": "after", "op": "relu"},
    ],
}


def test_misaligned_graph_raises_naming_the_node():
    with pytest.raises(SpecError) as info:
        analyze(Graph(MISALIGNED))
    assert info.value.node_id == "join"


def test_misaligned_graph_lenient():
    nodes = {n.id: n for n in analyze(Graph(MISALIGNED), strict=False).nodes}
    assert nodes["even"].receptive_field.status == "local"
    assert nodes["join"].receptive_field.status == "undefined"
    assert "not aligned" in nodes["join"].receptive_field.reason
    assert nodes["after"].receptive_field.status == "undefined"


def test_param_counts_match_torch(torch_or_skip):
    torch = torch_or_skip
    nn = torch.nn
    modules = {"c1": nn.Conv2d(3, 4, 3, padding=1), "bn": nn.BatchNorm2d(4),
               "c2": nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), "fc": nn.Linear(4, 10)}
    by_id = {n.id: n for n in analyze(Graph(SPEC)).nodes}
    for node_id, module in modules.items():
        theirs = sum(p.numel() for p in module.parameters())
        assert by_id[node_id].params == theirs, (node_id, by_id[node_id].params, theirs)
    assert by_id["bn"].buffers == modules["bn"].running_mean.numel() + modules["bn"].running_var.numel()


def test_shape_arithmetic_per_sliding_node():
    by_id = {n.id: n for n in analyze(Graph(SPEC)).nodes}
    c1 = by_id["c1"].shape_arithmetic
    # (8 - 1*(3-1) - 1 + 1 + 1) / 1 + 1 = 8
    assert [a.size for a in c1] == [8, 8]
    assert c1[0].worked == "⌊(8 − 1·(3 − 1) − 1 + 1 + 1) / 1⌋ + 1 = ⌊7 / 1⌋ + 1 = 7 + 1 = 8"
    assert by_id["p1"].shape_arithmetic[1].formula.startswith("⌊(W − ")
    assert by_id["gap"].shape_arithmetic is None and by_id["r1"].shape_arithmetic is None
    data = analyze(Graph(SPEC)).to_dict()["nodes"][3]["shape_arithmetic"]
    assert data[0]["axis"] == "H" and data[0]["size"] == 4


def test_shape_arithmetic_kinds():
    graph = Graph({"input_shape": [1, 9, 9], "nodes": [
        {"id": "p", "op": "max_pool2d", "kernel_size": 2, "ceil_mode": True},   # (9 - 2) / 2 = 3.5 -> ceil 4 + 1 = 5
        {"id": "t", "op": "conv_transpose2d", "out_channels": 1, "kernel_size": 3, "stride": 2, "padding": 1,
         "output_padding": 1}]})                                                  # (5-1)*2 - 2 + 2 + 1 + 1 = 10
    by_id = {n.id: n for n in analyze(graph).nodes}
    assert [a.size for a in by_id["p"].shape_arithmetic] == [5, 5]
    assert not by_id["p"].shape_arithmetic[0].exact
    assert [a.size for a in by_id["t"].shape_arithmetic] == [10, 10]


def test_builtin_specs_agree_with_the_formula():
    from engine.models import digits, efficientnet_lite

    for spec in (digits.classic_spec(), digits.resnet_spec(), digits.lab_spec(), efficientnet_lite.build_spec()):
        analysis = analyze(Graph(spec))
        checked = 0
        for node in analysis.nodes:
            if node.shape_arithmetic is not None:
                n = len(node.shape_arithmetic)
                assert tuple(a.size for a in node.shape_arithmetic) == node.output_shape[-n:], node.id
                checked += 1
            assert node.receptive_field.status in ("local", "global"), node.id
        assert checked >= 2
