"""Feature visualisation: POST /api/models/{id}/feature-visualisation starts an analysis job (202), or answers 200
from the cache; its result links a PNG and the model's input as .npy. Every refusal is a 4xx that says why."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import get_model_store
from app.core.config import LOOPBACK_HOSTS, Settings
from app.main import create_app
from app.services.models import ModelStore
from engine.graph import Graph
from engine.learned.feature_vis import objective_values
from engine.learned.objectives import Objective
from engine.models import digits, sequence_digits
from engine.models.bundle import ModelBundle, Preprocessing
from engine.models.efficientnet_lite import PREPROCESSING as PHOTO_PREPROCESSING
from tests.api.conftest import TEST_HOST, npy_load, tiny_bundle

URL = "/api/models/{}/feature-visualisation"


def photo_bundle() -> ModelBundle:
    """A small random RGB network ending in global pooling (so it takes smaller pictures), photo preprocessing."""
    graph = Graph({"input_shape": [3, 32, 32], "nodes": [
        {"id": "conv1", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
        {"id": "relu1", "op": "relu6"},
        {"id": "pool", "op": "global_avg_pool"},
        {"id": "fc", "op": "linear", "out_features": 2}]})
    return ModelBundle(id="photo_tiny", name="Tiny photo CNN", task="test", graph=graph, params=graph.init_params(3),
                       labels=["a", "b"], preprocessing=PHOTO_PREPROCESSING, source="random weights, for tests")


def vector_bundle() -> ModelBundle:
    graph = Graph({"input_shape": [50], "nodes": [{"id": "fc", "op": "linear", "out_features": 2}]})
    return ModelBundle(id="vector", name="Not an image model", task="test", graph=graph, params=graph.init_params(0),
                       labels=["a", "b"], preprocessing=Preprocessing(0, 0, (0.0,), (1.0,)), source="test")


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    data = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, preload=False, compute_slots=2, compute_wait_s=30,
                        allowed_hosts=[*LOOPBACK_HOSTS, TEST_HOST])
    store = ModelStore(data, builtins={"tiny": tiny_bundle, "digits_classic": digits.load_classic,
                                       "digits_lstm": sequence_digits.load_lstm, "photo_tiny": photo_bundle,
                                       "vector": vector_bundle})
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: store
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def finish(client: TestClient, created: dict, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(created["status_url"]).json()
        if status["status"] not in ("queued", "running"):
            return status
        assert time.monotonic() < deadline, f"the job did not finish in {timeout} s: {status}"
        time.sleep(0.05)


def run(client: TestClient, model_id: str, body: dict) -> dict:
    """The finished result, following the job when the POST answers 202."""
    response = client.post(URL.format(model_id), json=body)
    if response.status_code == 200:
        return response.json()
    assert response.status_code == 202, response.text
    status = finish(client, response.json())
    assert status["status"] == "done", status
    result = client.get(status["result_url"])
    assert result.status_code == 200, result.text
    return result.json()


def _refused(client: TestClient, model_id: str, body: dict, status: int, *fragments: str) -> None:
    response = client.post(URL.format(model_id), json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for fragment in fragments:
        assert fragment in detail, detail


# --- a job that finishes ---------------------------------------------------------------------------------------

def test_a_digit_channel_job_finishes_with_its_picture_input_and_reference(client):
    body = {"node": "relu2", "channel": 8, "steps": 24, "seed": 1}
    response = client.post(URL.format("digits_classic"), json=body)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["kind"] == "feature-visualisation" and response.headers["location"] == created["status_url"]
    status = finish(client, created)
    assert status["status"] == "done" and status["done"] == status["total"] == 25
    assert status["preview_url"].endswith("/files/preview.png")
    preview = client.get(status["preview_url"])
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"

    result = client.get(status["result_url"]).json()
    assert result["objective"] == {"kind": "channel", "node": "relu2", "channel": 8, "unit": None,
                                   "class_index": None, "label": None,
                                   "description": "the mean activation of channel 8 of 'relu2'"}
    assert result["steps"] == 24 and result["seed"] == 1 and len(result["history"]) == 24
    assert result["input_shape"] == [1, 28, 28] and result["resized"] is False
    assert result["learning_rate"] == pytest.approx(0.05 * 128 / 28)
    assert result["end"] > result["start"]
    reference = result["reference"]
    assert reference["source"] == "digits" and reference["count"] == 2000
    assert result["ratio"] == pytest.approx(result["end"] / reference["mean"])
    assert result["ratio_to_best"] == pytest.approx(result["end"] / reference["max"])

    picture = Image.open(io.BytesIO(client.get(result["image_url"]).content))
    assert picture.size == (28, 28) and picture.mode == "L"
    x = npy_load(client.get(result["input_npy_url"]).content)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    # the .npy is the model's input the end value was measured on
    bundle = digits.load_classic()
    end = objective_values(bundle.graph, bundle.params, Objective("relu2", "channel", (8,)), x)[0]
    assert end == pytest.approx(result["end"], rel=1e-6)
    # and the PNG is its picture: pixels = input * std + mean, rounded to 0-255
    pixels = x[0, 0] * digits.PREPROCESSING.std[0] + digits.PREPROCESSING.mean[0]
    assert np.abs(np.asarray(picture, dtype=np.float64) - pixels * 255).max() <= 0.51

    again = client.post(URL.format("digits_classic"), json=body)
    assert again.status_code == 200 and again.json() == result  # the cache
    other_seed = client.post(URL.format("digits_classic"), json={**body, "seed": 2})
    assert other_seed.status_code == 202
    finish(client, other_seed.json())


def test_a_class_logit_names_its_class(client):
    result = run(client, "digits_classic", {"class_index": 7, "steps": 16})
    assert result["objective"]["node"] == "fc" and result["objective"]["label"] == "7"
    assert result["end"] > max(result["start"], result["reference"]["mean"])


def test_a_unit(client):
    result = run(client, "digits_classic", {"node": "conv2", "unit": [5, 4, 6], "steps": 8})
    assert result["objective"]["unit"] == [5, 4, 6] and result["end"] > result["start"]


def test_a_photo_model_at_a_smaller_size_is_compared_with_the_sample_photos(client):
    result = run(client, "photo_tiny", {"node": "relu1", "channel": 1, "steps": 8, "size": 16})
    assert result["input_shape"] == [3, 16, 16] and result["resized"] is True
    assert result["reference"]["source"] == "photos" and result["reference"]["count"] == 4
    assert "16 × 16" in result["reference"]["description"]
    picture = Image.open(io.BytesIO(client.get(result["image_url"]).content))
    assert picture.size == (16, 16) and picture.mode == "RGB"


def test_a_non_positive_reference_mean_has_no_ratio(client):
    result = run(client, "photo_tiny", {"class_index": 0, "steps": 4})
    mean = result["reference"]["mean"]
    assert (result["ratio"] is None) == (mean <= 0)


# --- refusals ----------------------------------------------------------------------------------------------------

def test_unknown_model_and_node_are_404(client):
    _refused(client, "nope", {"node": "relu2", "channel": 0}, 404)
    _refused(client, "digits_classic", {"node": "relu9", "channel": 0}, 404, "relu9", "conv1, relu1, pool1")


def test_channel_out_of_range_says_the_range(client):
    _refused(client, "digits_classic", {"node": "relu2", "channel": 16}, 422, "16 channels (0 to 15)")


def test_unit_and_class_out_of_range(client):
    _refused(client, "digits_classic", {"node": "conv2", "unit": [0, 10, 0]}, 422, "0..15, 0..9, 0..9")
    _refused(client, "digits_classic", {"class_index": 10}, 422, "10 classes")


@pytest.mark.parametrize("body,fragment", [
    ({"node": "relu2"}, "exactly one of channel, unit or class_index"),
    ({"node": "relu2", "channel": 1, "class_index": 2}, "got channel, class_index"),
    ({"channel": 1}, "channel needs a node"),
    ({"node": "relu2", "channel": 1, "steps": 0}, "steps"),
    ({"node": "relu2", "channel": 1, "steps": 513}, "steps"),
    ({"node": "relu2", "channel": -1}, "channel"),
    ({"node": "relu2", "channel": 1, "learning_rate": 0}, "learning_rate"),
    ({"node": "relu2", "channel": 1, "chanel": 2}, "chanel"),
])
def test_malformed_requests_are_422(client, body, fragment):
    _refused(client, "digits_classic", body, 422, fragment)


def test_class_index_with_another_node(client):
    _refused(client, "digits_classic", {"node": "relu2", "class_index": 1}, 422, "logits node 'fc'")


def test_a_model_whose_input_is_not_a_picture(client):
    _refused(client, "vector", {"node": "fc", "channel": 0}, 422, "not a picture")


def test_a_sequence_node_has_no_channels(client):
    _refused(client, "digits_lstm", {"node": "rows", "channel": 0}, 422, "sequence of 28 steps")


def test_sizes_the_model_cannot_take(client):
    _refused(client, "photo_tiny", {"node": "relu1", "channel": 0, "size": 64}, 422, "larger than the model's own")
    _refused(client, "digits_classic", {"node": "relu2", "channel": 0, "size": 20}, 422, "reads the shipped digits")
    _refused(client, "tiny", {"node": "relu2", "channel": 0, "size": 10}, 422, "'fc' would need weights")
    _refused(client, "tiny", {"node": "relu2", "channel": 0, "size": 4}, 422)
