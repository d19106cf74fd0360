"""POST /api/architecture/analyze: any graph spec, and 422s that name the node at fault."""

from __future__ import annotations

SPEC = {
    "input_shape": [3, 32, 32],
    "nodes": [
        {"id": "conv1", "op": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"id": "relu1", "op": "relu"},
        {"id": "pool1", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "conv2", "op": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 2},
        {"id": "gap", "op": "global_avg_pool"},
        {"id": "fc", "op": "linear", "out_features": 10},
    ],
}


def analyze(client, spec):
    return client.post("/api/architecture/analyze", json=spec)


def test_analyze_reports_shapes_params_macs_and_receptive_fields(client):
    response = analyze(client, SPEC)
    assert response.status_code == 200, response.text
    data = response.json()
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["conv1"]["output_shape"] == [16, 32, 32]
    assert nodes["pool1"]["output_shape"] == [16, 16, 16]
    assert nodes["conv2"]["output_shape"] == [32, 7, 7]  # floor((16 - 3) / 2) + 1 = 7
    assert nodes["conv1"]["params"] == 16 * 3 * 9 + 16
    assert nodes["conv2"]["macs"] == 32 * 7 * 7 * 16 * 9
    assert nodes["fc"]["params"] == 32 * 10 + 10
    # r: conv1 3 (P 1), pool 3 + 1 = 4 (S 2), conv2 4 + 2*2 = 8 (S 4, P 1)
    axes = nodes["conv2"]["receptive_field"]["axes"]
    assert [(a["size"], a["stride"], a["padding"]) for a in axes] == [(8, 4, 1), (8, 4, 1)]
    assert data["totals"]["params"] == sum(n["params"] for n in data["nodes"])


def test_analyze_says_which_main_layers_column_shows_each_node(client):
    """conv → bn → relu share the relu's column; a skip connection's add keeps its own; a constant has none."""
    spec = {"input_shape": [2, 8, 8], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "bn", "op": "batch_norm"},
        {"id": "relu", "op": "relu"},
        {"id": "skip", "op": "add", "inputs": ["relu", "input"]},
        {"id": "scale", "op": "constant", "inputs": [], "shape": [2, 1, 1]},
        {"id": "gate", "op": "mul", "inputs": ["skip", "scale"]},
        {"id": "drop", "op": "dropout"},
        {"id": "act", "op": "sigmoid"},
    ]}
    response = analyze(client, spec)
    assert response.status_code == 200, response.text
    nodes = response.json()["nodes"]
    assert [(n["id"], n["main_column"]) for n in nodes] == [
        ("conv", "relu"), ("bn", "relu"), ("relu", "relu"), ("skip", "skip"), ("scale", None), ("gate", "gate"),
        ("drop", "act"), ("act", "act")]
    assert [n["title"] for n in nodes] == ["Convolution", "Batch normalisation", "ReLU", "Add (skip connection)",
                                           "Constant", "Multiply (gating)", "Dropout", "Sigmoid"]


def test_unknown_op_names_the_node(client):
    spec = {"input_shape": [3, 8, 8], "nodes": [{"id": "fc", "op": "dense", "units": 3}]}
    response = analyze(client, spec)
    assert response.status_code == 422
    body = response.json()
    assert body["node"] == "fc" and "dense" in body["detail"] and "conv2d" in body["detail"]


def test_impossible_shape_names_the_node(client):
    spec = {"input_shape": [1, 4, 4], "nodes": [{"id": "big", "op": "conv2d", "out_channels": 2, "kernel_size": 7}]}
    response = analyze(client, spec)
    assert response.status_code == 422 and response.json()["node"] == "big"


def test_misaligned_branches_name_the_merge(client):
    # a 3x3 conv padded only after (centre shifted by 1) added to the identity path: same shapes, other centres
    spec = {"input_shape": [1, 8, 8], "nodes": [
        {"id": "shifted", "op": "conv2d", "out_channels": 1, "kernel_size": 3, "padding": [[0, 2], [0, 2]]},
        {"id": "sum", "op": "add", "inputs": ["shifted", "input"]},
    ]}
    response = analyze(client, spec)
    assert response.status_code == 422, response.text
    assert response.json()["node"] == "sum" and "aligned" in response.json()["detail"]


def test_malformed_specs_are_422(client):
    for spec in [{}, {"input_shape": [3, 8, 8]}, {"input_shape": [3, 8, 8], "nodes": "conv"},
                 {"input_shape": [3, 8, 8], "nodes": []},
                 {"input_shape": [-1, 8], "nodes": [{"id": "a", "op": "relu"}]},
                 {"input_shape": [3, 8, 8], "nodes": [{"op": "relu"}]},
                 {"input_shape": [3, 8, 8], "nodes": [{"id": "a", "op": "relu", "inputs": ["nowhere"]}]},
                 {"input_shape": [3, 8, 8], "nodes": [{"id": "a", "op": "conv2d", "out_channels": 2, "kernel_size": 3,
                                                       "colour": "red"}]}]:
        response = analyze(client, spec)
        assert response.status_code == 422, spec
        assert isinstance(response.json()["detail"], str)
