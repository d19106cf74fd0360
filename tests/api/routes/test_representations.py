"""Representations: GET /api/models/{id}/representations, the projections (PCA, t-SNE) and probes as analysis jobs
(202 the first time, 200 from the cache), the nearest sample photos, the digits' sprite sheet, and every refusal.

The jobs run on a small random digit CNN, with t-SNE and the probes shortened (their settings are part of the cache
key, so nothing here is mistaken for the real answers); the numbers are checked against the engine."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import get_model_store
from app.core.config import LOOPBACK_HOSTS, Settings
from app.main import create_app
from app.services import representations as service
from app.services.models import ModelStore
from app.web.pages import samples_dir
from engine.datasets import mnist
from engine.graph import Graph
from engine.learned.features import extract_features
from engine.learned.neighbours import cosine_similarities
from engine.learned.probes import train_probe
from engine.learned.projection import TSNEConfig, pca
from engine.models import digits
from engine.models.bundle import ModelBundle, Preprocessing
from tests.api.conftest import TEST_HOST, npy_bytes, npy_load, png_bytes, tiny_bundle

DIGIT_SPEC = {
    "input_shape": [1, 28, 28],
    "nodes": [
        {"id": "conv1", "op": "conv2d", "out_channels": 3, "kernel_size": 5, "padding": 2},
        {"id": "relu1", "op": "relu"},
        {"id": "pool1", "op": "max_pool2d", "kernel_size": 4, "stride": 4},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 10},
    ],
}
VECTOR_SPEC = {"input_shape": [6], "nodes": [{"id": "fc", "op": "linear", "out_features": 3}]}
SHORT_TSNE = TSNEConfig(iterations=60)
SHORT_PROBES = 40


def digit_bundle() -> ModelBundle:
    graph = Graph(DIGIT_SPEC)
    return ModelBundle(id="digits_tiny", name="Tiny digit CNN", task="digit classification", graph=graph,
                       params=graph.init_params(seed=5), labels=[str(d) for d in range(10)],
                       preprocessing=digits.PREPROCESSING, source="random weights (seed 5), for tests")


def vector_bundle() -> ModelBundle:
    graph = Graph(VECTOR_SPEC)
    return ModelBundle(id="vector", name="Vector model", task="test", graph=graph, params=graph.init_params(seed=1),
                       labels=["a", "b", "c"], preprocessing=Preprocessing(1, 1, (0.0,), (1.0,)),
                       source="random weights, for tests")


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    """One app for the module: each job is computed once, as in use (t-SNE and probes shortened)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(service, "TSNE", SHORT_TSNE)
    patch.setattr(service, "PROBE_MAX_ITER", SHORT_PROBES)
    data = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, preload=False, compute_slots=2, compute_wait_s=30,
                        allowed_hosts=[*LOOPBACK_HOSTS, TEST_HOST])
    store = ModelStore(data, builtins={"tiny": tiny_bundle, "digits_tiny": digit_bundle, "vector": vector_bundle})
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: store
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    patch.undo()


def finish(client: TestClient, created: dict, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(created["status_url"]).json()
        if status["status"] not in ("queued", "running"):
            return status
        assert time.monotonic() < deadline, f"the job did not finish in {timeout} s: {status}"
        time.sleep(0.05)


def answered(client: TestClient, url: str) -> dict:
    """The 200 answer of a job route: 202 the first time, then the job's result equals the route's 200."""
    first = client.get(url)
    assert first.status_code in (200, 202), first.text
    if first.status_code == 202:
        created = first.json()
        assert first.headers["location"] == created["status_url"]
        assert finish(client, created)["status"] == "done"
        result = client.get(created["result_url"])
        assert result.status_code == 200
        again = client.get(url)
        assert again.status_code == 200
        assert again.json() == result.json()
        return again.json()
    return first.json()


def digit_features(node: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    bundle = digit_bundle()
    x, y = mnist.load_mnist(split)
    return extract_features(bundle.graph, bundle.params, x, [node])[node], y


# --- what applies ---------------------------------------------------------------------------------------------------
def test_support_of_a_digit_model(client):
    body = client.get("/api/models/digits_tiny/representations").json()
    assert body["takes_digits"] and body["takes_images"] and body["digits_reason"] is None
    assert body["nodes"] == ["input", "relu1", "pool1", "fc"] and body["default_node"] == "pool1"
    labels = body["sprite"].pop("labels")
    assert body["sprite"] == {"url": "/api/datasets/digits/test-sprite.png", "count": 2000, "columns": 50,
                              "cell": 28, "width": 1400, "height": 1120}
    assert labels == mnist.load_mnist("test")[1].tolist()


def test_support_of_other_models(client):
    body = client.get("/api/models/tiny/representations").json()
    assert not body["takes_digits"] and body["takes_images"] and "[1, 12, 12]" in body["digits_reason"]
    assert body["sprite"] is None
    body = client.get("/api/models/vector/representations").json()
    assert not body["takes_digits"] and not body["takes_images"]


# --- projections ----------------------------------------------------------------------------------------------------
def test_pca_projection_matches_the_engine(client):
    body = answered(client, "/api/models/digits_tiny/projection?node=pool1&method=pca")
    assert body["method"] == "pca" and body["node"] == "pool1" and body["points"] == 2000
    features, labels = digit_features("pool1", "test")
    expected = pca(features, 2)
    np.testing.assert_allclose(body["x"], expected.coords[:, 0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(body["y"], expected.coords[:, 1], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(body["explained_variance_ratio"], expected.explained_variance_ratio, rtol=1e-12)
    assert body["explained_variance_total"] == pytest.approx(sum(body["explained_variance_ratio"]))
    assert body["labels"] == labels.tolist()
    assert body["indices"][0] == 8000 and body["indices"][-1] == 9999
    assert body["features"]["size"] == 3 * 7 * 7 and not body["features"]["pooled"]


def test_pca_of_the_pixels_and_a_pooled_node(client):
    pixels = answered(client, "/api/models/digits_tiny/projection?node=input&method=pca")
    assert pixels["features"]["size"] == 784
    relu = answered(client, "/api/models/digits_tiny/projection?node=relu1")  # pca by default
    assert relu["features"]["pooled"] and relu["features"]["grid"] == [3, 26, 26]
    assert "average-pooled" in relu["features"]["description"]


def test_tsne_projection_previews_and_kl(client):
    url = "/api/models/digits_tiny/projection?node=pool1&method=tsne"
    first = client.get(url)
    assert first.status_code == 202
    created = first.json()
    assert created["kind"] == "projection"
    with client.stream("GET", created["events_url"]) as stream:
        events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    previews = {e["preview_url"] for e in events if e.get("preview_url")}
    assert events[-1]["status"] == "done"
    body = answered(client, url)
    assert body["method"] == "tsne" and body["iterations"] == 60 and body["seed"] == 0
    assert [r["iteration"] for r in body["kl"]] == [0, 10, 20, 30, 40, 50, 60]
    assert body["final_kl"] == body["kl"][-1]["kl"] and body["final_kl"] > 0
    assert body["pca_dims"] == 50 and 0 < body["pca_variance_ratio"] < 1
    final = client.get(f"/api/jobs/{created['id']}/files/embedding-0060.npy")
    assert final.status_code == 200
    embedding = npy_load(final.content)
    assert embedding.shape == (2000, 2)
    np.testing.assert_allclose(embedding[:, 0], body["x"], rtol=1e-6, atol=1e-6)
    assert previews, "progress events carry the embedding so far"


def test_projection_is_cached(client):
    url = "/api/models/digits_tiny/projection?node=fc&method=pca"
    answered(client, url)
    assert client.get(url).status_code == 200


def test_projection_refusals(client):
    unknown = client.get("/api/models/digits_tiny/projection?node=nope")
    assert unknown.status_code == 404
    assert "no node 'nope'" in unknown.json()["detail"] and "input, conv1" in unknown.json()["detail"]
    method = client.get("/api/models/digits_tiny/projection?method=umap")
    assert method.status_code == 422 and "'pca' or 'tsne'" in method.json()["detail"]
    other = client.get("/api/models/tiny/projection?node=input")
    assert other.status_code == 422
    assert "[1, 28, 28]" in other.json()["detail"] and "takes inputs of shape [1, 12, 12]" in other.json()["detail"]
    assert client.get("/api/models/nope/projection").status_code == 404
    assert client.get("/api/models/digits_tiny/projection?node=").status_code == 422
    assert client.get("/api/models/digits_tiny/projection?node=" + "x" * 201).status_code == 422


# --- probes ---------------------------------------------------------------------------------------------------------
def test_probes_match_the_engine(client):
    body = answered(client, "/api/models/digits_tiny/probes")
    assert [p["node"] for p in body["probes"]] == ["input", "relu1", "pool1", "fc"]
    assert body["probes"][0]["op"] == "input" and body["probes"][2]["op"] == "max_pool2d"
    assert body["train_size"] == 8000 and body["test_size"] == 2000 and body["max_iter"] == SHORT_PROBES
    for probe in body["probes"]:
        assert 0 <= probe["test_accuracy"] <= 1 and 0 <= probe["train_accuracy"] <= 1
        assert probe["iterations"] <= SHORT_PROBES
    # the pixels' probe, computed here by the engine: the same numbers (deterministic)
    train, y_train = digit_features("input", "train")
    test, y_test = digit_features("input", "test")
    found = train_probe(train, y_train, test, y_test, classes=10, max_iter=SHORT_PROBES)
    assert body["probes"][0]["test_accuracy"] == found.test_accuracy
    assert body["probes"][0]["train_loss"] == pytest.approx(found.train_loss, rel=1e-9)
    assert found.test_accuracy > 0.8 > body["chance"]  # pixels alone read most digits; chance is about 11%
    assert body["chance"] == pytest.approx(np.mean(y_test == np.bincount(y_train).argmax()))


def test_probes_refusals(client):
    other = client.get("/api/models/vector/probes")
    assert other.status_code == 422 and "takes inputs of shape [6]" in other.json()["detail"]
    assert client.get("/api/models/nope/probes").status_code == 404


# --- neighbours -----------------------------------------------------------------------------------------------------
def photos() -> list[Path]:
    return sorted(p for p in samples_dir().iterdir() if p.suffix == ".jpg")


def test_neighbours_of_a_sample_photo_find_itself_first(client):
    cat = next(p for p in photos() if p.stem == "cat")
    response = client.post("/api/models/tiny/neighbours?node=relu2&k=10", files={"image": ("cat.jpg",
                                                                                            cat.read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gallery"] == len(photos()) and len(body["neighbours"]) == len(photos())
    first = body["neighbours"][0]
    assert first["file"] == "cat.jpg" and first["rank"] == 1 and first["similarity"] == pytest.approx(1.0)
    assert first["url"] == "/static/samples/cat.jpg"
    similarities = [n["similarity"] for n in body["neighbours"]]
    assert similarities == sorted(similarities, reverse=True)


def test_neighbours_similarities_match_the_engine(client):
    image = png_bytes(40, 30, seed=3)
    body = client.post("/api/models/tiny/neighbours?node=input&k=2", files={"image": ("x.png", image)}).json()
    assert len(body["neighbours"]) == 2 and body["features"]["size"] == 144
    from app.imaging import prepare_image

    bundle = tiny_bundle()
    pre = bundle.preprocessing
    query = pre.normalize(prepare_image(image, pre)).ravel()
    gallery = np.stack([pre.normalize(prepare_image(p.read_bytes(), pre)).ravel() for p in photos()])
    expected = cosine_similarities(query, gallery)
    best = int(np.argmax(expected))
    assert body["neighbours"][0]["file"] == photos()[best].name
    assert body["neighbours"][0]["similarity"] == pytest.approx(expected[best], rel=1e-5)


def test_neighbours_take_a_tensor(client):
    x = np.random.default_rng(0).standard_normal((1, 1, 12, 12)).astype(np.float32)
    response = client.post("/api/models/tiny/neighbours?node=fc&k=1", content=npy_bytes(x),
                           headers={"Content-Type": "application/x-npy"})
    assert response.status_code == 200 and len(response.json()["neighbours"]) == 1


def test_neighbours_refusals(client):
    image = {"image": ("x.png", png_bytes())}
    unknown = client.post("/api/models/tiny/neighbours?node=nope", files=image)
    assert unknown.status_code == 404 and "no node 'nope'" in unknown.json()["detail"]
    for k in (0, 17):
        assert client.post(f"/api/models/tiny/neighbours?k={k}", files=image).status_code == 422
    vector = client.post("/api/models/vector/neighbours", content=npy_bytes(np.zeros((1, 6), np.float32)),
                         headers={"Content-Type": "application/x-npy"})
    assert vector.status_code == 422 and "not pictures" in vector.json()["detail"]
    empty = client.post("/api/models/tiny/neighbours", files={"other": ("x.txt", b"hello")})
    assert empty.status_code == 422 and "multipart field 'image'" in empty.json()["detail"]
    wrong = client.post("/api/models/tiny/neighbours", content=b"{}", headers={"Content-Type": "application/json"})
    assert wrong.status_code == 415
    broken = client.post("/api/models/tiny/neighbours", files={"image": ("x.png", b"not an image at all")})
    assert 400 <= broken.status_code < 500
    shape = client.post("/api/models/tiny/neighbours", content=npy_bytes(np.zeros((1, 3, 12, 12), np.float32)),
                        headers={"Content-Type": "application/x-npy"})
    assert shape.status_code == 422 and "[1, 12, 12]" in shape.json()["detail"]
    assert client.post("/api/models/nope/neighbours", files=image).status_code == 404


# --- the sprite sheet -----------------------------------------------------------------------------------------------
def test_sprite_sheet_holds_the_held_out_digits(client):
    response = client.get("/api/datasets/digits/test-sprite.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert "max-age" in response.headers["cache-control"]
    sheet = np.asarray(Image.open(io.BytesIO(response.content)))
    assert sheet.shape == (1120, 1400)
    images, _ = mnist.load_raw()
    for i in (0, 49, 50, 1234, 1999):
        row, column = divmod(i, 50)
        np.testing.assert_array_equal(sheet[row * 28:(row + 1) * 28, column * 28:(column + 1) * 28], images[8000 + i])
