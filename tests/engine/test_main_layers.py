"""The "main layers" view: a convolution, its batch norm and its activation share one column; skip connections,
pooling and the output keep their own; constants are hidden. Every op has a title and a part in the view."""

from __future__ import annotations

from itertools import pairwise
from typing import get_args

import pytest

from engine.analysis import analyze
from engine.graph import Graph
from engine.main_layers import main_columns
from engine.models import efficientnet_lite
from engine.ops.base import OP_REGISTRY, MainView


def conv(node_id: str, **extra) -> dict:
    return {"id": node_id, "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, **extra}


#: stem conv → bn → relu, a residual block (conv → bn → relu → conv → bn, + the stem), relu, pool, classifier
RESIDUAL = {
    "input_shape": [3, 8, 8],
    "nodes": [
        conv("stem.conv"), {"id": "stem.bn", "op": "batch_norm"}, {"id": "stem.relu", "op": "relu"},
        conv("a.conv"), {"id": "a.bn", "op": "batch_norm"}, {"id": "a.relu", "op": "relu"},
        conv("b.conv"), {"id": "b.bn", "op": "batch_norm"},
        {"id": "skip", "op": "add", "inputs": ["b.bn", "stem.relu"]},
        {"id": "out.relu", "op": "relu"},
        {"id": "pool", "op": "max_pool2d", "kernel_size": 2},
        {"id": "gap", "op": "global_avg_pool"},
        {"id": "drop", "op": "dropout", "p": 0.2},
        {"id": "fc", "op": "linear", "out_features": 10},
    ],
}


def test_a_conv_bn_relu_chain_folds_into_its_relu():
    columns = main_columns(Graph(RESIDUAL))
    assert [columns[i] for i in ("stem.conv", "stem.bn", "stem.relu")] == ["stem.relu"] * 3
    assert [columns[i] for i in ("a.conv", "a.bn", "a.relu")] == ["a.relu"] * 3
    assert list(columns) == [n["id"] for n in RESIDUAL["nodes"]]  # graph order, without the input


def test_a_skip_connection_and_what_follows_it_keep_their_columns():
    columns = main_columns(Graph(RESIDUAL))
    # b ends in a batch norm read by the add, not by an activation: the conv folds into the batch norm only
    assert columns["b.conv"] == columns["b.bn"] == "b.bn"
    assert {i: columns[i] for i in ("skip", "out.relu", "pool", "gap")} == {
        "skip": "skip", "out.relu": "out.relu", "pool": "pool", "gap": "gap"}
    # dropout before a linear layer (not an activation) keeps its column, and the output always has one
    assert columns["drop"] == "drop" and columns["fc"] == "fc"
    shown = [i for i, c in columns.items() if c == i]
    assert shown == ["stem.relu", "a.relu", "b.bn", "skip", "out.relu", "pool", "gap", "drop", "fc"]


@pytest.mark.parametrize(("nodes", "expected"), [
    # a convolution read by two nodes stays: its column is where the branches start
    ([conv("c"), {"id": "r", "op": "relu"}, {"id": "s", "op": "sigmoid", "inputs": ["c"]},
      {"id": "m", "op": "mul", "inputs": ["r", "s"]}],
     {"c": "c", "r": "r", "s": "s", "m": "m"}),
    # a convolution folds into a batch norm or an activation, not into dropout or identity
    ([conv("c"), {"id": "d", "op": "dropout"}, {"id": "r", "op": "relu"}, {"id": "p", "op": "max_pool2d",
                                                                         "kernel_size": 2}],
     {"c": "c", "d": "r", "r": "r", "p": "p"}),
    ([conv("c"), {"id": "i", "op": "identity"}, {"id": "r", "op": "relu6"}, conv("out")],
     {"c": "c", "i": "r", "r": "r", "out": "out"}),
    # batch norm → dropout → identity → activation: one column, under the activation; transposed convs fold too
    ([{"id": "t", "op": "conv_transpose2d", "out_channels": 4, "kernel_size": 2, "stride": 2},
      {"id": "bn", "op": "batch_norm"}, {"id": "d", "op": "dropout"}, {"id": "i", "op": "identity"},
      {"id": "r", "op": "hardswish"}, {"id": "gap", "op": "global_avg_pool"}],
     {"t": "r", "bn": "r", "d": "r", "i": "r", "r": "r", "gap": "gap"}),
    # a convolution before the output folds into it; the output keeps its column (here a batch norm)
    ([conv("c"), {"id": "bn", "op": "batch_norm"}], {"c": "bn", "bn": "bn"}),
    # GELU is not among the activations the view folds into
    ([conv("c"), {"id": "g", "op": "gelu"}, conv("out")], {"c": "c", "g": "g", "out": "out"}),
    # constants are hidden
    ([conv("c"), {"id": "k", "op": "constant", "inputs": [], "shape": [4, 1, 1]},
      {"id": "m", "op": "mul", "inputs": ["c", "k"]}, {"id": "r", "op": "relu"}],
     {"c": "c", "k": None, "m": "m", "r": "r"}),
])
def test_the_rule(nodes, expected):
    assert main_columns(Graph({"input_shape": [4, 8, 8], "nodes": nodes})) == expected


def test_a_folded_column_is_a_chain_ending_at_its_node():
    """Every node sharing a column reads the one before it and is read by it alone (what the explorer lists)."""
    graph = Graph(efficientnet_lite.build_spec())
    columns = main_columns(graph)
    members: dict[str, list[str]] = {}
    for node_id, column in columns.items():
        if column is not None:
            members.setdefault(column, []).append(node_id)
    for column, ids in members.items():
        assert ids[-1] == column
        for before, after in pairwise(ids):
            assert graph.consumers[before] == [after] and graph.node(after).inputs == [before]


def test_efficientnet_lite0_has_61_main_columns():
    """60 columns of graph nodes and the input's: the explorer's 61 main layers (62 steps with the probabilities)."""
    graph = Graph(efficientnet_lite.build_spec())
    columns = main_columns(graph)
    shown = [i for i, c in columns.items() if c == i]
    assert len(shown) + 1 == 61
    assert len(graph.nodes) == 142
    assert columns["stem.conv"] == columns["stem.bn"] == "stem.relu6"
    assert columns["block1.project.conv"] == "block1.project.bn"  # the projection is linear: no activation
    assert "block3.add" in shown and shown[-1] == graph.output_id


def test_the_analysis_sends_each_nodes_title_and_column():
    a = analyze(Graph(RESIDUAL)).to_dict()
    by_id = {n["id"]: n for n in a["nodes"]}
    assert by_id["stem.conv"]["title"] == "Convolution" and by_id["stem.conv"]["main_column"] == "stem.relu"
    assert by_id["stem.bn"]["title"] == "Batch normalisation"
    assert by_id["skip"]["title"] == "Add (skip connection)" and by_id["skip"]["main_column"] == "skip"
    assert by_id["fc"]["title"] == "Fully connected"


@pytest.mark.parametrize("name", sorted(OP_REGISTRY))
def test_every_op_has_a_title_and_a_known_part_in_the_view(name):
    cls = OP_REGISTRY[name]
    assert cls.title and cls.title[0].isupper(), name
    assert cls.main_view is None or cls.main_view in get_args(MainView), (name, cls.main_view)
