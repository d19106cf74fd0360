"""POST /api/models/{id}/activations and GET /api/runs/{run_id}/nodes/{node_id}.png | .npy | .json."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from engine.graph import Graph
from engine.models.bundle import ModelBundle, Preprocessing
from tests.api.conftest import npy_bytes, npy_load, png_bytes, tiny_bundle

NPY = {"content-type": "application/x-npy"}


def make_run(client, seed: int = 0):
    x = np.random.default_rng(seed).standard_normal((1, 1, 12, 12)).astype(np.float32)
    response = client.post("/api/models/tiny/activations", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    return x, response.json()


def test_activations_list_every_node_with_true_statistics(client):
    x, data = make_run(client)
    bundle = tiny_bundle()
    trace = bundle.graph.forward(x, bundle.params)
    assert len(data["run_id"]) == 32 and data["model_id"] == "tiny" and data["cached"] is False
    nodes = {n["id"]: n for n in data["nodes"]}
    assert list(nodes) == ["input", "conv1", "relu1", "pool1", "conv2", "relu2", "flatten", "fc"]
    for node_id, node in nodes.items():
        act = trace.activations[node_id][0]
        assert node["shape"] == list(act.shape)
        np.testing.assert_allclose([node["min"], node["max"], node["mean"], node["std"]],
                                   [act.min(), act.max(), act.mean(), act.std()], rtol=1e-5, atol=1e-6)
        assert node["zero_fraction"] == np.count_nonzero(act == 0) / act.size
        assert node["png_url"] == f"/api/runs/{data['run_id']}/nodes/{node_id}.png"
    assert nodes["relu1"]["zero_fraction"] > 0.2  # ReLU of a random conv: many zeros
    assert nodes["conv1"]["layout"]["tiles"] == 4 and nodes["conv1"]["layout"]["tile_width"] == 12
    assert len(data["classes"]) == 3


def test_same_input_same_run_id_and_cached(client):
    _, first = make_run(client, seed=1)
    _, second = make_run(client, seed=1)
    _, other = make_run(client, seed=2)
    assert first["run_id"] == second["run_id"] != other["run_id"]
    assert second["cached"] is True


def test_npy_is_the_raw_activation(client):
    x, data = make_run(client)
    bundle = tiny_bundle()
    expected = bundle.graph.forward(x, bundle.params).activations["conv1"]
    response = client.get(f"/api/runs/{data['run_id']}/nodes/conv1.npy")
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-npy"
    got = npy_load(response.content)
    assert got.dtype == np.float32 and got.shape == (1, 4, 12, 12)
    np.testing.assert_array_equal(got, expected)


def test_png_tiles_every_channel_at_the_layout_position(client):
    x, data = make_run(client)
    bundle = tiny_bundle()
    act = bundle.graph.forward(x, bundle.params).activations["conv1"][0]
    response = client.get(f"/api/runs/{data['run_id']}/nodes/conv1.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    layout = json.loads(response.headers["x-tile-layout"])
    image = np.asarray(Image.open(io.BytesIO(response.content)))
    assert image.shape == (layout["height"], layout["width"])
    assert layout["columns"] * layout["rows"] >= 4
    meta = client.get(f"/api/runs/{data['run_id']}/nodes/conv1.json").json()
    for c in range(4):
        row, col = divmod(c, layout["columns"])
        top, left = row * (layout["tile_height"] + layout["gap"]), col * (layout["tile_width"] + layout["gap"])
        tile = image[top:top + 12, left:left + 12].astype(np.float64)
        low, high = meta["layout"]["ranges"][c]
        assert (low, high) == (float(act[c].min()), float(act[c].max()))
        np.testing.assert_allclose(low + tile / 255 * (high - low), act[c], atol=(high - low) / 255 + 1e-6)


def test_run_is_recomputed_by_a_worker_that_never_saw_it(client, settings):
    x, data = make_run(client, seed=7)
    client.app.state.services.runs._runs.clear()
    response = client.get(f"/api/runs/{data['run_id']}/nodes/relu2.npy")
    assert response.status_code == 200
    bundle = tiny_bundle()
    expected = bundle.graph.forward(x, bundle.params).activations["relu2"]
    np.testing.assert_array_equal(npy_load(response.content), expected)


def test_cache_stays_bounded(client, settings):
    for seed in range(settings.run_cache_size + 3):
        make_run(client, seed=100 + seed)
    store = client.app.state.services.runs
    assert store.cached_count() <= settings.run_cache_size


def test_image_input_and_layer_scale(client):
    response = client.post("/api/models/tiny/activations", files={"image": ("a.png", png_bytes(), "image/png")})
    assert response.status_code == 200
    run_id = response.json()["run_id"]
    layer = client.get(f"/api/runs/{run_id}/nodes/conv2.json?scale=layer").json()
    assert len({tuple(r) for r in layer["layout"]["ranges"]}) == 1
    assert client.get(f"/api/runs/{run_id}/nodes/fc.png").status_code == 200  # a vector: one 1 x 3 tile
    assert client.get(f"/api/runs/{run_id}/nodes/input.png").status_code == 200


def test_unknown_run_and_node(client):
    _, data = make_run(client)
    unknown_node = client.get(f"/api/runs/{data['run_id']}/nodes/conv9.png")
    assert unknown_node.status_code == 404 and "conv1" in unknown_node.json()["detail"]
    assert client.get("/api/runs/0123456789abcdef0123456789abcdef/nodes/conv1.png").status_code == 404
    assert client.get("/api/runs/not-a-run/nodes/conv1.npy").status_code == 404
    assert client.get(f"/api/runs/{data['run_id']}/nodes/conv1.png?scale=log").status_code == 422


def test_unit_explanations_are_the_engines_numbers(client):
    x, data = make_run(client)
    bundle = tiny_bundle()
    trace = bundle.graph.forward(x, bundle.params)
    base = f"/api/runs/{data['run_id']}/nodes"
    conv = client.get(f"{base}/conv1/units/2,0,11").json()
    assert conv["kind"] == "conv2d" and conv["index"] == [2, 0, 11] and conv["input"] == "input"
    assert conv["rows"] == [-1, 0, 1] and conv["row_in_padding"] == [True, False, False]
    assert conv["cols"] == [10, 11, 12] and conv["col_in_padding"] == [False, False, True]
    (channel,) = conv["channels"]
    window = np.zeros((3, 3))
    window[1:, :2] = x[0, 0, 0:2, 10:12]
    np.testing.assert_allclose(channel["values"], window, rtol=1e-6)
    np.testing.assert_allclose(channel["kernel"], bundle.params["conv1.weight"][2, 0], rtol=1e-6)
    np.testing.assert_allclose(channel["products"], window * bundle.params["conv1.weight"][2, 0], rtol=1e-5)
    assert conv["bias"] == pytest.approx(float(bundle.params["conv1.bias"][2]))
    engine = float(trace.activations["conv1"][0, 2, 0, 11])
    assert conv["engine_value"] == engine and conv["result"] == pytest.approx(engine, rel=1e-5, abs=1e-6)
    assert [s["op"] for s in conv["chain"]] == ["relu"] and conv["chain"][0]["result"] == max(0, engine)
    assert "argmax" not in conv  # fields of other kinds are left out

    pool = client.get(f"{base}/pool1/units/1,2,3").json()
    assert pool["result"] == pool["engine_value"] == float(trace.activations["pool1"][0, 1, 2, 3])
    i, j = pool["argmax"]
    assert pool["values"][i][j] == pool["result"]
    fc = client.get(f"{base}/fc/units/2").json()
    assert fc["in_features"] == 96 and fc["omitted"]["count"] == 96 - len(fc["terms"])
    assert fc["result"] == pytest.approx(float(trace.activations["fc"][0, 2]), rel=1e-5, abs=1e-6)
    relu = client.get(f"{base}/relu2/units/0,1,1").json()
    assert relu["input_value"] == float(trace.activations["conv2"][0, 0, 1, 1])
    assert relu["result"] == relu["engine_value"] == float(trace.activations["relu2"][0, 0, 1, 1])
    # the prediction's softmax, over the output scores
    scores = trace.activations["fc"][0].astype(np.float64)
    softmax = client.get(f"{base}/fc/units/1?softmax=true").json()
    assert softmax["kind"] == "softmax" and softmax["exp_sum"] == pytest.approx(np.exp(scores - scores.max()).sum())
    assert softmax["result"] == pytest.approx(np.exp(scores[1]) / np.exp(scores).sum())
    assert [e["index"] for e in softmax["entries"]] == list(np.argsort(-scores))
    assert client.get(f"{base}/conv2/units/0,1,1?softmax=true").status_code == 422  # not a vector of scores


def test_unit_explanation_errors(client):
    _, data = make_run(client)
    base = f"/api/runs/{data['run_id']}/nodes"
    unknown = client.get(f"{base}/conv9/units/0,0,0")
    assert unknown.status_code == 404 and "conv1" in unknown.json()["detail"]
    outside = client.get(f"{base}/conv1/units/4,0,0")
    assert outside.status_code == 422 and "outside node 'conv1' of shape [4, 12, 12]" in outside.json()["detail"]
    assert client.get(f"{base}/conv1/units/0,0").status_code == 422
    words = client.get(f"{base}/conv1/units/a,b,c")
    assert words.status_code == 422 and "e.g. 5,4,4" in words.json()["detail"]
    flatten = client.get(f"{base}/flatten/units/3")
    assert flatten.status_code == 422 and "conv2d" in flatten.json()["detail"]
    assert client.get(f"{base}/input/units/0,0,0").status_code == 422
    assert client.get("/api/runs/0123456789abcdef0123456789abcdef/nodes/conv1/units/0,0,0").status_code == 404


PAD_UP_SPEC = {"input_shape": [2, 3, 4], "nodes": [
    {"id": "mirror", "op": "pad", "padding": [[2, 1], [1, 2]], "mode": "reflect"},
    {"id": "edge", "op": "pad", "padding": 1, "mode": "replicate", "inputs": ["input"]},
    {"id": "border", "op": "pad", "padding": 1, "value": 0.5, "inputs": ["input"]},
    {"id": "up", "op": "upsample", "scale_factor": [2, 3], "inputs": ["mirror"]},
    {"id": "act", "op": "relu"},
    {"id": "smooth", "op": "upsample", "scale_factor": 2, "mode": "bilinear", "inputs": ["input"]}]}


def pad_up_bundle() -> ModelBundle:
    graph = Graph(PAD_UP_SPEC)
    return ModelBundle(id="padup", name="pads and an upsample", task="test", graph=graph, params={}, labels=None,
                       preprocessing=Preprocessing(resize=4, crop=4, mean=(0.0,), std=(1.0,), grayscale=False),
                       source="no weights, for tests")


def test_pad_and_upsample_units_are_explained_with_the_engines_numbers(client, store):
    store.builtins["padup"] = pad_up_bundle
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) - 10  # channel 1: 2 .. 13
    response = client.post("/api/models/padup/activations", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    base = f"/api/runs/{response.json()['run_id']}/nodes"
    # reflect: output (0, 5) sits on input (−2, 4): mirrored to (2, 2): channel 1 holds 12 + 10 − 10 = 12
    mirror = client.get(f"{base}/mirror/units/1,0,5").json()
    assert mirror["kind"] == "pad" and mirror["mode"] == "reflect" and mirror["in_border"] is True
    assert [a["rule"] for a in mirror["axes"]] == ["row −2 → 2 (mirror at 0)", "column 4 → 2 (mirror at 3)"]
    assert mirror["source"] == [2, 2] and mirror["input_value"] == 12 == mirror["result"] == mirror["engine_value"]
    assert mirror["padding"] == [[2, 1], [1, 2]] and mirror["spatial_shape"] == [3, 4]
    hood = mirror["neighbourhood"]
    assert hood["rows"] == [0, 1, 2] and hood["values"][hood["source"][0]][hood["source"][1]] == 12
    edge = client.get(f"{base}/edge/units/0,4,0").json()  # input (3, −1) clamped to (2, 0): 8 − 10
    assert edge["source"] == [2, 0] and edge["result"] == -2 == edge["engine_value"]
    assert edge["axes"][1]["rule"] == "column −1 → 0 (clamped to 0)"
    border = client.get(f"{base}/border/units/0,0,2").json()  # the top border: the constant, no input read
    assert border["value"] == 0.5 == border["result"] == border["engine_value"]
    assert "source" not in border and "input_value" not in border and "source" not in border["axes"][0]
    assert "source" not in border["neighbourhood"]
    # nearest upsample: output (5, 7) reads the padded map at (⌊5 / 2⌋, ⌊7 / 3⌋) = (2, 2), the input's (0, 1)
    up = client.get(f"{base}/up/units/0,5,7").json()
    assert up["kind"] == "upsample" and up["mode"] == "nearest" and up["scale_factor"] == [2, 3]
    assert [a["rule"] for a in up["axes"]] == ["row 5 → ⌊5 / 2⌋ = 2", "column 7 → ⌊7 / 3⌋ = 2"]
    assert [a["block"] for a in up["axes"]] == [[4, 5], [6, 8]]
    assert up["input"] == "mirror" and up["source"] == [2, 2] and up["input_value"] == -9 == up["engine_value"]
    assert up["chain"] == [{"node": "act", "op": "relu", "title": "ReLU", "input_value": -9, "engine_value": 0,
                            "result": 0}]
    # bilinear: output (3, 4) samples the input at (1.25, 1.75): x = 4·row + column − 10 there, 6.75 − 10
    smooth = client.get(f"{base}/smooth/units/0,3,4").json()
    assert smooth["mode"] == "bilinear" and smooth["align_corners"] is False
    assert [a["coordinate"] for a in smooth["axes"]] == [1.25, 1.75]
    assert [a["weights"] for a in smooth["axes"]] == [[0.75, 0.25], [0.25, 0.75]]
    assert [(s["row"], s["col"], s["value"]) for s in smooth["samples"]] == [(1, 1, -5), (1, 2, -4), (2, 1, -1),
                                                                               (2, 2, 0)]
    assert smooth["result"] == -3.25 == smooth["engine_value"] and "source" not in smooth
    activations = {node["id"]: node for node in response.json()["nodes"]}
    for node, unit in (("mirror", (1, 5, 6)), ("edge", (1, 0, 5)), ("border", (0, 2, 2)), ("up", (1, 11, 20)),
                       ("smooth", (1, 5, 0))):
        assert node in activations
        answer = client.get(f"{base}/{node}/units/{','.join(map(str, unit))}").json()
        engine = float(npy_load(client.get(activations[node]["npy_url"]).content)[(0, *unit)])
        assert answer["engine_value"] == engine and answer["result"] == pytest.approx(engine, rel=1e-6), node


DECONV_SPEC = {"input_shape": [2, 3, 3], "nodes": [
    {"id": "deconv", "op": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1,
     "output_padding": 1},
    {"id": "act", "op": "relu"}]}


def deconv_bundle() -> ModelBundle:
    graph = Graph(DECONV_SPEC)
    params = {"deconv.weight": (np.arange(36, dtype=np.float32).reshape(2, 2, 3, 3) - 18) / 4,  # w = (n − 18) / 4
              "deconv.bias": np.array([0.5, -1.0], dtype=np.float32)}
    return ModelBundle(id="deconv", name="a transposed convolution", task="test", graph=graph, params=params,
                       labels=None,
                       preprocessing=Preprocessing(resize=3, crop=3, mean=(0.0,), std=(1.0,), grayscale=False),
                       source="fixed weights, for tests")


def test_transposed_convolution_units_are_explained_with_the_engines_numbers(client, store):
    store.builtins["deconv"] = deconv_bundle
    x = np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3)  # x[c, i, j] = 9c + 3i + j
    response = client.post("/api/models/deconv/activations", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    base = f"/api/runs/{response.json()['run_id']}/nodes"
    # output (1, 3, 2) of 6 x 6: rows 3 = 2i − 1 + a: (1, 2), (2, 0); columns 2 = 2j − 1 + b: (1, 1)
    e = client.get(f"{base}/deconv/units/1,3,2").json()
    assert e["kind"] == "conv_transpose2d" and e["reached"] is True and e["output_padding"] == [1, 1]
    assert [a["rule"] for a in e["axes"]] == [
        "output row 3 = input row i · 2 − 1 + kernel row a: (i, a) ∈ {(1, 2), (2, 0)}",
        "output column 2 = input column j · 2 − 1 + kernel column b: (j, b) ∈ {(1, 1)}"]
    # w[c, 1, a, b] = (18c + 9 + 3a + b − 18) / 4
    assert [[(t["row"], t["col"], t["kernel_row"], t["kernel_col"], t["input"], t["weight"]) for t in c["terms"]]
            for c in e["channel_terms"]] == [[(1, 1, 2, 1, 4, -0.5), (2, 1, 0, 1, 7, -2)],
                                             [(1, 1, 2, 1, 13, 4), (2, 1, 0, 1, 16, 2.5)]]
    assert [c["sum"] for c in e["channel_terms"]] == [-16, 92] and e["total"] == 76 and e["bias"] == -1
    assert e["result"] == 75 == e["engine_value"]
    assert e["chain"] == [{"node": "act", "op": "relu", "title": "ReLU", "input_value": 75, "engine_value": 75,
                           "result": 75}]
    assert "channels" not in e and "values" not in e  # conv2d's fields are left out
    # other units, against the activation the run serves
    activations = {node["id"]: node for node in response.json()["nodes"]}
    engine = npy_load(client.get(activations["deconv"]["npy_url"]).content)
    assert engine.shape == (1, 2, 6, 6)
    for unit in ((0, 0, 0), (1, 5, 5), (0, 2, 4), (1, 4, 1)):
        answer = client.get(f"{base}/deconv/units/{','.join(map(str, unit))}").json()
        assert answer["engine_value"] == float(engine[(0, *unit)]), unit
        assert answer["result"] == pytest.approx(answer["engine_value"], rel=1e-6, abs=1e-6), unit
