"""Top examples of a digit model's channels: GET /api/models/{id}/nodes/{node}/channels/{c}/top-examples, the per-layer
GET .../nodes/{node}/top-examples, the models list and the digit pictures. The first request starts one analysis job
for the whole model (202), afterwards every node and channel answers 200 from its files."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import get_model_store
from app.core.config import LOOPBACK_HOSTS, Settings
from app.main import create_app
from app.services.models import ModelStore
from app.services.top_examples import BOX_COLOUR
from engine.datasets import mnist
from engine.graph import Graph
from engine.learned.top_examples import top_examples
from engine.models import digits, sequence_digits
from engine.models.bundle import ModelBundle
from engine.receptive_field import receptive_fields, unit_box
from tests.api.conftest import TEST_HOST, tiny_bundle

DIGIT_SPEC = {  # a small random CNN taking the shipped digits: padding (clipped boxes), a flatten, a vector head
    "input_shape": [1, 28, 28],
    "nodes": [
        {"id": "conv1", "op": "conv2d", "out_channels": 3, "kernel_size": 5, "padding": 2},
        {"id": "relu1", "op": "relu"},
        {"id": "pool1", "op": "max_pool2d", "kernel_size": 4, "stride": 4},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 4},
    ],
}


def digit_bundle() -> ModelBundle:
    graph = Graph(DIGIT_SPEC)
    params = graph.init_params(seed=5)
    params["conv1.bias"][0] = -1000.0  # channel 0 never fires: after the ReLU, every digit ties at 0
    return ModelBundle(id="digits_tiny", name="Tiny digit CNN", task="digit classification", graph=graph,
                       params=params, labels=["0", "1", "2", "3"],
                       preprocessing=digits.PREPROCESSING, source="random weights (seed 5), for tests")


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    """One app for the module: the top examples are computed once per model, as in use."""
    data = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, preload=False, compute_slots=2, compute_wait_s=30,
                        allowed_hosts=[*LOOPBACK_HOSTS, TEST_HOST])
    store = ModelStore(data, builtins={"tiny": tiny_bundle, "digits_tiny": digit_bundle,
                                       "digits_spare": lambda: replace(digit_bundle(), id="digits_spare"),
                                       "digits_classic": digits.load_classic, "digits_lstm": sequence_digits.load_lstm})
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: store
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def finish(client: TestClient, created: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(created["status_url"]).json()
        if status["status"] not in ("queued", "running"):
            return status
        assert time.monotonic() < deadline, f"the job did not finish in {timeout} s: {status}"
        time.sleep(0.05)


def answered(client: TestClient, url: str) -> dict:
    """The 200 answer of a top-examples route, following the job first if it answers 202."""
    response = client.get(url)
    if response.status_code == 202:
        assert finish(client, response.json())["status"] == "done"
        response = client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


# --- the job, then answers at once --------------------------------------------------------------------------------

def test_first_request_starts_one_job_then_every_node_answers_at_once(client):
    url = "/api/models/digits_tiny/nodes/conv1/channels/1/top-examples?k=5"
    first = client.get(url)
    assert first.status_code == 202, first.text
    created = first.json()
    assert created["kind"] == "top-examples" and created["model_id"] == "digits_tiny"
    assert first.headers["location"] == created["status_url"]
    done = finish(client, created)
    assert done["status"] == "done" and done["done"] == done["total"] == 10_000
    result = client.get(created["result_url"]).json()
    assert result["images"] == 10_000 and [n["node"] for n in result["nodes"]] == ["conv1", "relu1", "pool1", "fc"]
    for again in (url, "/api/models/digits_tiny/nodes/fc/channels/3/top-examples",
                  "/api/models/digits_tiny/nodes/pool1/top-examples?k=2"):
        started = time.perf_counter()
        response = client.get(again)
        assert response.status_code == 200, response.text
        assert response.json()["job_id"] == created["id"]
        assert time.perf_counter() - started < 1.0


def test_answer_is_the_engines_over_the_shipped_digits(client):
    answer = answered(client, "/api/models/digits_tiny/nodes/conv1/channels/2/top-examples?k=9")
    bundle = digit_bundle()
    x, y = mnist.load_mnist("all")
    engine = top_examples(bundle.graph, bundle.params, x, k=9, nodes=["conv1"])["conv1"]
    rf = receptive_fields(bundle.graph)["conv1"]
    assert answer["node"] == "conv1" and answer["channel"] == 2 and answer["output_shape"] == [3, 28, 28]
    assert answer["receptive_field"]["axes"][0] == {"axis": "H", "size": 5, "stride": 1, "padding": 2}
    examples = answer["examples"]
    assert [e["rank"] for e in examples] == list(range(1, 10))
    assert [e["index"] for e in examples] == engine.indices[2].tolist()
    np.testing.assert_allclose([e["value"] for e in examples], engine.values[2], rtol=1e-6)
    for e, position in zip(examples, engine.positions[2].tolist()):
        assert e["position"] == position
        assert e["label"] == y[e["index"]]
        assert e["split"] == ("train" if e["index"] < 8000 else "test")
        box = unit_box(rf, (2, *position))
        assert e["box"]["start"] == [a.start for a in box.axes] and e["box"]["end"] == [a.end for a in box.axes]
        assert e["box"]["clipped_start"] == [a.clipped_start for a in box.axes]
        assert e["box"]["clipped_end"] == [a.clipped_end for a in box.axes]
        assert e["box"]["clipped"] == (e["box"]["start"] != e["box"]["clipped_start"]
                                       or e["box"]["end"] != e["box"]["clipped_end"])
        crop = png(client.get(e["crop_url"]))
        r0, c0 = e["box"]["clipped_start"]
        r1, c1 = e["box"]["clipped_end"]
        raw = mnist.load_raw()[0][e["index"]]
        np.testing.assert_array_equal(crop[::4, ::4], raw[r0:r1 + 1, c0:c1 + 1])  # upscaled 4× by whole pixels


def test_fewer_examples_are_the_first_of_more(client):
    nine = answered(client, "/api/models/digits_tiny/nodes/relu1/channels/1/top-examples?k=9")["examples"]
    three = answered(client, "/api/models/digits_tiny/nodes/relu1/channels/1/top-examples?k=3")["examples"]
    assert three == nine[:3]


def test_a_channel_that_never_fires_is_tied_in_index_order(client):
    layer = answered(client, "/api/models/digits_tiny/nodes/relu1/top-examples?k=5")
    dead, alive = layer["channels"][0], layer["channels"][1]
    assert dead["tied"] and [e["value"] for e in dead["examples"]] == [0.0] * 5
    assert [e["index"] for e in dead["examples"]] == [0, 1, 2, 3, 4]
    assert not alive["tied"] and alive["examples"][0]["value"] > alive["examples"][-1]["value"]
    one = answered(client, "/api/models/digits_tiny/nodes/relu1/channels/0/top-examples?k=1")
    assert not one["tied"]  # one example ties with nothing


def test_layer_answer_has_every_channel_as_the_channel_route_gives_it(client):
    layer = answered(client, "/api/models/digits_tiny/nodes/fc/top-examples?k=4")
    assert layer["k"] == 4 and [c["channel"] for c in layer["channels"]] == [0, 1, 2, 3]
    assert layer["receptive_field"]["status"] == "global" and "whole digit" in layer["note"]
    for c in (0, 3):
        one = answered(client, f"/api/models/digits_tiny/nodes/fc/channels/{c}/top-examples?k=4")
        assert one["examples"] == layer["channels"][c]["examples"]
    example = layer["channels"][0]["examples"][0]
    assert example["position"] == [] and example["box"]["whole"] and not example["box"]["clipped"]
    assert example["box"]["clipped_start"] == [0, 0] and example["box"]["clipped_end"] == [27, 27]


def test_shipped_classic_logits_top_examples_are_their_digits(client):
    layer = answered(client, "/api/models/digits_classic/nodes/fc/top-examples?k=9")
    for channel in layer["channels"]:
        labels = [e["label"] for e in channel["examples"]]
        assert labels == [channel["channel"]] * 9, f"logit {channel['channel']}: labels {labels}"


def test_models_list_has_the_digit_cnns_and_their_layers(client):
    models = {m["id"]: m for m in client.get("/api/top-examples/models").json()["models"]}
    assert set(models) == {"digits_tiny", "digits_spare", "digits_classic"}  # not tiny (12 × 12), not the LSTM
    assert [layer["node"] for layer in models["digits_classic"]["layers"]] == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc"]
    assert models["digits_classic"]["layers"][3] == {"node": "conv2", "op": "conv2d", "output_shape": [16, 10, 10],
                                                     "channels": 16}


# --- errors -------------------------------------------------------------------------------------------------------

def test_unknown_node_is_404_listing_the_nodes(client):
    for url in ("/api/models/digits_tiny/nodes/conv9/channels/0/top-examples",
                "/api/models/digits_tiny/nodes/conv9/top-examples"):
        response = client.get(url)
        assert response.status_code == 404
        assert "conv9" in response.json()["detail"] and "conv1, relu1, pool1, flatten, fc" in response.json()["detail"]


def test_node_without_channels_is_422(client):
    response = client.get("/api/models/digits_tiny/nodes/flatten/top-examples")
    assert response.status_code == 422
    assert "no channels of its own" in response.json()["detail"] and "conv1, relu1, pool1, fc" in response.json()[
        "detail"]


def test_channel_out_of_range_is_422(client):
    response = client.get("/api/models/digits_classic/nodes/conv2/channels/16/top-examples")
    assert response.status_code == 422
    assert response.json()["detail"] == "node 'conv2' has 16 channels: channel must be 0 to 15, got 16"
    assert client.get("/api/models/digits_classic/nodes/conv2/channels/-1/top-examples").status_code == 422


@pytest.mark.parametrize("k", [0, 17, "many"])
def test_k_out_of_range_is_422(client, k):
    for url in (f"/api/models/digits_tiny/nodes/conv1/channels/0/top-examples?k={k}",
                f"/api/models/digits_tiny/nodes/conv1/top-examples?k={k}"):
        response = client.get(url)
        assert response.status_code == 422
        assert "k:" in response.json()["detail"]


def test_model_that_does_not_take_the_digits_is_422(client):
    response = client.get("/api/models/tiny/nodes/conv1/channels/0/top-examples")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "shape [1, 12, 12]" in detail and "digits_classic, digits_resnet" in detail


def test_sequence_model_is_422_saying_why(client):
    response = client.get("/api/models/digits_lstm/nodes/fc/top-examples")
    assert response.status_code == 422
    assert "row by row" in response.json()["detail"]


def test_unknown_model_is_404(client):
    assert client.get("/api/models/nope/nodes/conv1/top-examples").status_code == 404


def test_refused_requests_start_no_job(client):
    """A model nobody asked about yet: requests refused for their channel, node or k leave it without a job."""
    for url in ("/api/models/digits_spare/nodes/conv1/channels/3/top-examples",
                "/api/models/digits_spare/nodes/flatten/top-examples",
                "/api/models/digits_spare/nodes/conv1/top-examples?k=20"):
        assert client.get(url).status_code == 422
    jobs = client.app.state.services.analysis
    models = [json.loads((p / "status.json").read_text())["model_id"] for p in jobs.root.iterdir() if p.is_dir()]
    assert "digits_tiny" in models and "digits_spare" not in models
    control = client.get("/api/models/digits_spare/nodes/conv1/top-examples")
    assert control.status_code == 202
    assert finish(client, control.json())["status"] == "done"


# --- pictures -----------------------------------------------------------------------------------------------------

def test_digit_png_whole_cropped_and_boxed(client):
    raw = mnist.load_raw()[0][42]
    whole = png(client.get("/api/digits/42.png?scale=1"))
    np.testing.assert_array_equal(whole, raw)
    assert png(client.get("/api/digits/42.png")).shape == (112, 112)  # 4× by default
    crop = png(client.get("/api/digits/42.png?crop=3,5,9,8&scale=2"))
    np.testing.assert_array_equal(crop[::2, ::2], raw[3:10, 5:9])
    boxed = png(client.get("/api/digits/42.png?box=3,5,9,8&scale=3"))
    assert boxed.shape == (84, 84, 3)
    assert tuple(boxed[9, 15]) == BOX_COLOUR and tuple(boxed[29, 26]) == BOX_COLOUR  # top-left, bottom-right corners
    assert tuple(boxed[0, 0]) == (raw[0, 0],) * 3  # outside the box: the digit, grey
    assert tuple(boxed[15, 21]) == (raw[5, 7],) * 3  # inside the box, off its edge


@pytest.mark.parametrize("query, words", [
    ("crop=0,0,28,3", "not a box inside the 28 × 28 digit"),
    ("box=5,5,4,9", "not a box inside the 28 × 28 digit"),
    ("crop=1,2,3", "four integers"),
    ("box=a,b,c,d", "four integers"),
    ("crop=0,0,3,3&box=0,0,3,3", "not both"),
    ("scale=17", "scale:"),
])
def test_digit_png_bad_requests_are_422(client, query, words):
    response = client.get(f"/api/digits/7.png?{query}")
    assert response.status_code == 422
    assert words in response.json()["detail"]


def test_digit_index_out_of_range_is_422(client):
    response = client.get("/api/digits/10000.png")
    assert response.status_code == 422
    assert "0 to 9999" in response.json()["detail"]
