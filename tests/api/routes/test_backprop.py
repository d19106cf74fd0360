"""Backpropagation made visible over HTTP: the loss and every node's gradient (statistics, signed PNG, .npy, .json),
the chain rule at one unit, one SGD step; the engine's numbers, and a 4xx for every bad request."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import get_model_store
from app.main import create_app
from app.services.backprop import DEFAULT_RATES, MAX_RATES
from app.services.models import ModelStore, builtin_loaders
from engine.graph import Graph
from engine.learned.backprop import backpropagate
from engine.models.bundle import ModelBundle, Preprocessing
from tests.api.conftest import TINY_SPEC, npy_bytes, npy_load, png_bytes, tiny_bundle

SAMPLES = Path(__file__).resolve().parents[3] / "static" / "samples"
X = np.random.default_rng(5).standard_normal((1, 1, 12, 12)).astype(np.float32)
NPY = {"content": npy_bytes(X), "headers": {"Content-Type": "application/x-npy"}}


def other_bundle(model_id: str, nodes: list[dict]) -> ModelBundle:
    graph = Graph({"input_shape": [1, 12, 12], "nodes": nodes})
    return ModelBundle(id=model_id, name=model_id, task="test", graph=graph, params=graph.init_params(seed=1),
                       labels=["zero", "one", "two"],
                       preprocessing=Preprocessing(resize=12, crop=12, mean=(0.5,), std=(0.25,), grayscale=True),
                       source="random weights, for tests")


@pytest.fixture
def store(settings) -> ModelStore:
    """The tiny classifier, the same ending in softmax, and a model whose output is a map (no class scores)."""
    return ModelStore(settings.data_dir, builtins={
        "tiny": tiny_bundle,
        "tiny_softmax": lambda: other_bundle("tiny_softmax", [*TINY_SPEC["nodes"], {"id": "probs", "op": "softmax"}]),
        "maps": lambda: other_bundle("maps", [{"id": "conv", "op": "conv2d", "out_channels": 3, "kernel_size": 3}]),
    })


def engine_result(label: int):
    """The tiny model's backpropagation of ``X``, by the engine."""
    bundle = tiny_bundle()
    return bundle, backpropagate(bundle.graph, bundle.params, X, label)


# --- the loss and every node's gradient -------------------------------------------------------------------------------
def test_backprop_answers_the_engines_loss_and_gradients_in_backward_order(client):
    answer = client.post("/api/models/tiny/backprop?label=2", **NPY)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    _, result = engine_result(2)
    assert body["label"] == 2 and body["label_name"] == "two" and not body["label_is_prediction"]
    assert body["loss"] == pytest.approx(result.loss, rel=1e-12)
    assert body["label_score"]["probability"] == pytest.approx(result.probabilities[2])
    assert [n["id"] for n in body["nodes"]] == result.order == ["fc", "flatten", "relu2", "conv2", "pool1", "relu1",
                                                                 "conv1", "input"]
    for node in body["nodes"]:
        g = result.gradients[node["id"]]
        assert node["shape"] == list(g.shape[1:])
        assert node["min"] == pytest.approx(float(g.min())) and node["max"] == pytest.approx(float(g.max()))
        assert node["mean_abs"] == pytest.approx(float(np.abs(g).mean()), rel=1e-6)
        assert node["filters"] == ({"conv1": 4, "conv2": 6, "fc": 3}.get(node["id"]))
    assert body["nodes"][0]["activation_png_url"] == f"/api/runs/{body['run_id']}/nodes/fc.png"
    again = client.post("/api/models/tiny/backprop?label=2", **NPY).json()
    assert again["cached"] and again["run_id"] == body["run_id"]


def test_the_label_defaults_to_the_prediction(client):
    body = client.post("/api/models/tiny/backprop", **NPY).json()
    assert body["label_is_prediction"] and body["label"] == body["prediction"]["index"]
    assert body["loss"] == pytest.approx(-np.log(body["prediction"]["probability"]), rel=1e-6)


def test_an_image_is_read_as_everywhere_else(client):
    answer = client.post("/api/models/tiny/backprop?label=0", files={"image": ("d.png", png_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["input_shape"] == [1, 1, 12, 12]


def test_a_final_softmax_is_part_of_the_loss(client):
    body = client.post("/api/models/tiny_softmax/backprop?label=1", **NPY).json()
    assert body["logits_node"] == "fc" and body["nodes"][0]["id"] == "fc"
    assert [n["id"] for n in body["nodes"]] == engine_result(1)[1].order  # the tiny model's nodes: no "probs"
    bundle = other_bundle("tiny_softmax", [*TINY_SPEC["nodes"], {"id": "probs", "op": "softmax"}])
    logits = bundle.graph.forward(X, bundle.params).activations["fc"][0].astype(np.float64)
    assert body["loss"] == pytest.approx(np.log(np.exp(logits).sum()) - logits[1], rel=1e-6)


def signed_grey(g: np.ndarray, m: float) -> np.ndarray:
    """What tiles.py writes for a value g with the range [−m, m]: truncated ((g + m) / 2m · 255 + 0.5)."""
    return np.floor((g.astype(np.float32) + np.float32(m)) / np.float32(2 * m) * np.float32(255) + np.float32(0.5))


@pytest.mark.parametrize("scale", ["layer", "channel"])
def test_gradient_png_is_signed_and_centred_on_zero(client, scale):
    body = client.post("/api/models/tiny/backprop?label=2", **NPY).json()
    conv2 = next(n for n in body["nodes"] if n["id"] == "conv2")
    png = client.get(f"{conv2['png_url']}?scale={scale}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    layout = json.loads(png.headers["X-Tile-Layout"])
    meta = client.get(f"{conv2['json_url']}?scale={scale}").json()
    assert meta["layout"]["scale"] == scale and meta["max_abs"] == conv2["max_abs"]
    pixels = np.asarray(Image.open(io.BytesIO(png.content)))
    gradient = npy_load(client.get(conv2["npy_url"]).content)[0]
    _, result = engine_result(2)
    np.testing.assert_array_equal(gradient, result.gradients["conv2"][0])
    for c, (low, high) in enumerate(meta["layout"]["ranges"]):
        assert low == -high
        expected_m = conv2["max_abs"] if scale == "layer" else float(np.abs(gradient[c]).max()) or 1.0
        assert high == pytest.approx(expected_m, rel=1e-6)
        row, column = divmod(c, layout["columns"])
        y, x = row * (layout["tile_height"] + layout["gap"]), column * (layout["tile_width"] + layout["gap"])
        tile = pixels[y:y + layout["tile_height"], x:x + layout["tile_width"]]
        np.testing.assert_array_equal(tile, signed_grey(gradient[c], high))
        assert np.all(tile[gradient[c] == 0] == 128)  # zero is the middle grey: white on the blue–red scale


def test_a_node_with_no_gradient_is_404_and_an_unknown_run_404(client):
    body = client.post("/api/models/tiny_softmax/backprop?label=1", **NPY).json()
    answer = client.get(f"/api/backprop/{body['run_id']}/labels/1/nodes/probs.png")
    assert answer.status_code == 404 and "no gradient for node 'probs'" in answer.json()["detail"]
    unknown = client.get(f"/api/backprop/{'0' * 32}/labels/1/nodes/fc.png")
    assert unknown.status_code == 404 and "unknown or has expired" in unknown.json()["detail"]


def test_gradient_maps_with_a_label_outside_the_classes_are_422(client):
    run_id = client.post("/api/models/tiny/backprop?label=1", **NPY).json()["run_id"]
    answer = client.get(f"/api/backprop/{run_id}/labels/7/nodes/fc.json")
    assert answer.status_code == 422 and "from 0 to 2" in answer.json()["detail"]


# --- the chain rule at one unit ---------------------------------------------------------------------------------------
def test_chain_rule_sums_to_the_engines_gradient_with_a_filter_gradient(client):
    answer = client.post("/api/models/tiny/backprop/chain-rule?label=2&node=conv2&unit=3,1,2", **NPY)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    bundle, result = engine_result(2)
    assert body["gradient"] == pytest.approx(float(result.gradients["conv2"][0, 3, 1, 2]))
    assert body["incoming"]["total"] == pytest.approx(body["incoming"]["engine_value"], rel=1e-5, abs=1e-12)
    assert body["incoming"]["sources"][0]["node"] == "relu2"
    outgoing = body["outgoing"]
    assert outgoing["inputs"] == ["pool1"] and outgoing["upstream"] == body["gradient"]
    for term in outgoing["terms"]:  # each input's local derivative is the weight it met
        c, y, x = term["index"]
        assert term["local"] == pytest.approx(float(bundle.params["conv2.weight"][3, c, y - 1, x - 2]))
    f = body["filter"]  # filter 3 by default: the unit's channel
    assert f["filter"] == 3 and f["shape"] == [4, 3, 3]
    np.testing.assert_allclose(f["gradient"], result.param_gradients["conv2.weight"][3].reshape(-1), rtol=1e-5,
                               atol=1e-9)
    assert f["bias_gradient"] == pytest.approx(float(result.param_gradients["conv2.bias"][3]), rel=1e-5)
    assert f["example"]["total"] == pytest.approx(max(f["gradient"], key=abs), rel=1e-5)


def test_chain_rule_at_the_input_and_at_a_relu(client):
    at_input = client.post("/api/models/tiny/backprop/chain-rule?label=0&node=input&unit=0,5,5", **NPY).json()
    assert at_input["outgoing"] is None and at_input["filter"] is None
    assert at_input["incoming"]["total"] == pytest.approx(at_input["incoming"]["engine_value"], rel=1e-5, abs=1e-12)
    chosen = client.post("/api/models/tiny/backprop/chain-rule?label=0&node=fc&unit=1&filter=2", **NPY).json()
    assert chosen["filter"]["filter"] == 2 and chosen["incoming"]["terms"][0]["node"] == "loss"
    relu = client.post("/api/models/tiny/backprop/chain-rule?label=0&node=relu1&unit=1,3,3", **NPY).json()
    assert relu["filter"] is None and "ReLU" in relu["outgoing"]["rule"]


@pytest.mark.parametrize(("query", "status", "words"), [
    ("node=conv2&unit=3,1", 422, "outside node 'conv2' of shape [6, 4, 4]"),
    ("node=conv2&unit=9,0,0", 422, "outside node 'conv2'"),
    ("node=conv2&unit=a,b", 422, "not comma-separated whole numbers"),
    ("node=nope&unit=0", 404, "nope"),
    ("node=relu1&unit=0,0,0&filter=0", 422, "which has no filters"),
    ("node=conv2&unit=0,0,0&filter=6", 422, "has 6 filters"),
    ("node=conv2&unit=0,0,0&label=3", 422, "label 3 is not a class of this model"),
    ("node=conv2", 422, "unit"),
])
def test_chain_rule_refusals(client, query, status, words):
    answer = client.post(f"/api/models/tiny/backprop/chain-rule?{query}", **NPY)
    assert answer.status_code == status, answer.text
    assert words in answer.text


def test_chain_rule_refuses_the_node_after_the_logits(client):
    answer = client.post("/api/models/tiny_softmax/backprop/chain-rule?node=probs&unit=0&label=1", **NPY)
    assert answer.status_code == 422 and "does not depend on node 'probs'" in answer.json()["detail"]


# --- one SGD step -----------------------------------------------------------------------------------------------------
def test_sgd_step_before_gradient_after_and_the_loss_measured_again(client):
    answer = client.post("/api/models/tiny/sgd-step?label=2&node=conv1&filter=1&lr=0.05&lrs=0.001,0.05", **NPY)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    bundle, result = engine_result(2)
    before = np.array(body["weight_before"], dtype=np.float32)
    gradient = np.array(body["gradient"], dtype=np.float32)
    np.testing.assert_array_equal(before, bundle.params["conv1.weight"][1].reshape(-1))
    np.testing.assert_allclose(gradient, result.param_gradients["conv1.weight"][1].reshape(-1), rtol=1e-6)
    np.testing.assert_array_equal(np.array(body["weight_after"], dtype=np.float32),
                                  before - np.float32(0.05) * gradient)
    assert body["bias_after"] == pytest.approx(body["bias_before"] - 0.05 * body["bias_gradient"], rel=1e-6)
    assert body["scope"] == "filter" and body["moved"] == 10 and body["shape"] == [1, 3, 3]
    stepped = dict(bundle.params)
    stepped["conv1.weight"] = bundle.params["conv1.weight"].copy()
    stepped["conv1.weight"][1] -= np.float32(0.05) * result.param_gradients["conv1.weight"][1]
    stepped["conv1.bias"] = bundle.params["conv1.bias"].copy()
    stepped["conv1.bias"][1] -= np.float32(0.05) * result.param_gradients["conv1.bias"][1]
    assert body["outcome"]["loss_after"] == pytest.approx(backpropagate(bundle.graph, stepped, X, 2).loss, rel=1e-9)
    assert body["loss_before"] == pytest.approx(result.loss)
    assert [o["lr"] for o in body["sweep"]] == [0.001, 0.05]
    assert body["sweep"][1] == body["outcome"]
    small = body["sweep"][0]
    assert small["loss_change"] < 0 and not small["diverged"]


def test_sgd_step_every_parameter_and_the_default_sweep(client):
    body = client.post("/api/models/tiny/sgd-step?label=1&node=fc&filter=1&scope=all", **NPY).json()
    graph = tiny_bundle().graph
    assert body["scope"] == "all" and body["moved"] == graph.param_count()
    assert [o["lr"] for o in body["sweep"]] == DEFAULT_RATES
    assert body["lr"] == 0.01 and body["outcome"]["lr"] == 0.01


@pytest.mark.parametrize(("query", "status", "words"), [
    ("node=conv1&lr=0", 422, "lr"),
    ("node=conv1&lr=20000", 422, "lr"),
    ("node=conv1&lrs=0.1,fast", 422, "learning rates separated by commas"),
    ("node=conv1&lrs=0.1,-1", 422, "outside (0, 10000]"),
    (f"node=conv1&lrs={','.join(['0.1'] * (MAX_RATES + 1))}", 422, f"from 1 to {MAX_RATES}"),
    ("node=conv1&scope=some", 422, "scope"),
    ("node=pool1", 422, "'pool1' is a max_pool2d, which has no filters"),
    ("node=conv1&filter=4", 422, "has 4 filters"),
    ("node=nope", 404, "nope"),
    ("node=conv1&label=-1", 422, "label"),
    ("node=conv1&label=3", 422, "label 3 is not a class"),
    ("", 422, "node"),
])
def test_sgd_step_refusals(client, query, status, words):
    answer = client.post(f"/api/models/tiny/sgd-step?{query}", **NPY)
    assert answer.status_code == status, answer.text
    assert words in answer.text


# --- what cannot be backpropagated ------------------------------------------------------------------------------------
def test_backprop_refusals(client):
    out_of_range = client.post("/api/models/tiny/backprop?label=3", **NPY)
    assert out_of_range.status_code == 422
    assert "label 3 is not a class of this model: give a class index from 0 to 2" in out_of_range.json()["detail"]
    assert client.post("/api/models/tiny/backprop?label=-1", **NPY).status_code == 422
    maps = client.post("/api/models/maps/backprop", **NPY)
    assert maps.status_code == 422 and "classifiers only" in maps.json()["detail"]
    wrong_shape = client.post("/api/models/tiny/backprop", content=npy_bytes(np.zeros((1, 3, 12, 12), np.float32)),
                              headers={"Content-Type": "application/x-npy"})
    assert wrong_shape.status_code == 422 and "takes [1, 12, 12]" in wrong_shape.json()["detail"]
    batch = client.post("/api/models/tiny/backprop", content=npy_bytes(np.zeros((2, 1, 12, 12), np.float32)),
                        headers={"Content-Type": "application/x-npy"})
    assert batch.status_code == 422 and "one input" in batch.json()["detail"]
    empty = client.post("/api/models/tiny/backprop", content=b"", headers={"Content-Type": "application/x-npy"})
    assert empty.status_code == 422
    assert client.post("/api/models/nope/backprop", **NPY).status_code == 404


# --- on a shipped digit model -----------------------------------------------------------------------------------------
@pytest.fixture
def digits_client(settings):
    loaders = builtin_loaders(settings.data_dir / "cache")
    if "digits_classic" not in loaders:
        pytest.skip("the digit models are not registered")
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: ModelStore(settings.data_dir, builtins={
        "digits_classic": loaders["digits_classic"]})
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_small_rate_lowers_the_loss_and_a_too_large_one_raises_it_on_a_digit(digits_client):
    digit = {"image": ("digit-7.png", (SAMPLES / "digit-7.png").read_bytes(), "image/png")}
    body = digits_client.post("/api/models/digits_classic/sgd-step?label=3&node=conv1&filter=0&lrs=0.001,1000",
                              files=digit).json()
    small, large = body["sweep"]
    assert small["loss_after"] < body["loss_before"] < large["loss_after"]
    assert small["loss_after"] == pytest.approx(small["predicted_loss"], rel=1e-3)  # first order holds
    assert large["loss_after"] > large["predicted_loss"]  # it does not, far out
