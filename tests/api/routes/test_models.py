"""GET /api/models, GET /api/models/{id}, POST .../predict and .../forward, with bad input of every kind."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
from PIL import Image

from app.imaging import prepare_image
from tests.api.conftest import TINY_LABELS, jpeg_bytes, npy_bytes, npy_load, png_bytes, tiny_bundle

NPY = {"content-type": "application/x-npy"}


def reference_probabilities(x: np.ndarray) -> np.ndarray:
    bundle = tiny_bundle()
    logits = bundle.graph.forward(x, bundle.params).output[0].astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_list_models(client):
    models = client.get("/api/models").json()["models"]
    tiny = next(m for m in models if m["id"] == "tiny")
    assert tiny["input_shape"] == [1, 12, 12] and tiny["num_classes"] == 3 and tiny["builtin"] is True
    assert tiny["takes_images"] is True and tiny["preprocessing"]["grayscale"] is True
    assert tiny["param_count"] == (4 * 9 + 4) + (6 * 4 * 9 + 6) + (6 * 4 * 4 * 3 + 3)


def test_read_model_architecture(client):
    data = client.get("/api/models/tiny").json()
    assert data["labels"] == TINY_LABELS
    nodes = {n["id"]: n for n in data["architecture"]["nodes"]}
    assert list(nodes) == ["conv1", "relu1", "pool1", "conv2", "relu2", "flatten", "fc"]
    conv1 = nodes["conv1"]
    assert conv1["output_shape"] == [4, 12, 12] and conv1["inputs"] == ["input"]
    assert conv1["params"] == 4 * 1 * 3 * 3 + 4
    assert conv1["macs"] == 4 * 12 * 12 * (1 * 3 * 3)
    # conv1 3x3 pad 1: r = 3, S = 1, P = 1; pool 2/2: r = 3 + 1 = 4, S = 2, P = 1; conv2 3x3: r = 4 + 2*2 = 8, S = 2
    rf = nodes["conv2"]["receptive_field"]
    assert rf["status"] == "local"
    assert [(a["axis"], a["size"], a["stride"], a["padding"]) for a in rf["axes"]] == [("H", 8, 2, 1), ("W", 8, 2, 1)]
    assert nodes["fc"]["receptive_field"]["status"] == "global"
    assert data["architecture"]["totals"]["params"] == data["param_count"]


def test_architecture_says_which_nodes_units_can_be_explained(client):
    # the page asks this instead of keeping its own op lists: flatten has no explanation, the rest of tiny has
    nodes = client.get("/api/models/tiny").json()["architecture"]["nodes"]
    assert {n["id"]: n["explainable"] for n in nodes} == {
        "conv1": True, "relu1": True, "pool1": True, "conv2": True, "relu2": True, "flatten": False, "fc": True}
    spec = {"input_shape": [2, 5], "nodes": [{"id": "p", "op": "pad", "padding": 1}, {"id": "r", "op": "relu"}]}
    analysed = client.post("/api/architecture/analyze", json=spec).json()["nodes"]
    assert [n["explainable"] for n in analysed] == [False, True]  # pad: on 2D maps only


def test_architecture_names_each_op_and_its_main_layers_column(client):
    """The explorer's "main layers" view and its titles come from here (issue 13), not from op lists in the page."""
    nodes = client.get("/api/models/tiny").json()["architecture"]["nodes"]
    assert {n["id"]: n["main_column"] for n in nodes} == {
        "conv1": "relu1", "relu1": "relu1", "pool1": "pool1", "conv2": "relu2", "relu2": "relu2",
        "flatten": "flatten", "fc": "fc"}
    assert {n["id"]: n["title"] for n in nodes} == {
        "conv1": "Convolution", "relu1": "ReLU", "pool1": "Max pooling", "conv2": "Convolution", "relu2": "ReLU",
        "flatten": "Flatten", "fc": "Fully connected"}


def test_unknown_model_is_404_listing_known(client):
    for path in ["/api/models/nope", "/api/models/nope/predict"]:
        response = client.get(path) if path.endswith("nope") else client.post(path, files={"image": png_bytes()})
        assert response.status_code == 404
        assert "tiny" in response.json()["detail"]


def test_predict_image_matches_engine_on_the_same_preprocessing(client):
    image = png_bytes(30, 20)
    response = client.post("/api/models/tiny/predict?top_k=3", files={"image": ("cat.png", image, "image/png")})
    assert response.status_code == 200, response.text
    data = response.json()
    bundle = tiny_bundle()
    x = bundle.preprocessing.normalize(prepare_image(image, bundle.preprocessing))
    expected = reference_probabilities(x)
    got = {c["index"]: c["probability"] for c in data["classes"]}
    assert sorted(got) == [0, 1, 2]
    np.testing.assert_allclose([got[i] for i in range(3)], expected, rtol=1e-5, atol=1e-6)
    assert [c["probability"] for c in data["classes"]] == sorted(got.values(), reverse=True)
    assert data["classes"][0]["label"] == TINY_LABELS[int(np.argmax(expected))]
    assert data["input_shape"] == [1, 1, 12, 12]


def test_predict_accepts_raw_image_body_and_npy(client):
    image = jpeg_bytes()
    raw = client.post("/api/models/tiny/predict", content=image, headers={"content-type": "image/jpeg"})
    multipart = client.post("/api/models/tiny/predict", files={"image": ("x.jpg", image, "image/jpeg")})
    assert raw.status_code == 200 and raw.json()["classes"] == multipart.json()["classes"]
    x = np.random.default_rng(3).standard_normal((1, 12, 12)).astype(np.float32)
    response = client.post("/api/models/tiny/predict?top_k=1", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    top = response.json()["classes"]
    assert len(top) == 1
    expected = reference_probabilities(x[None])
    assert top[0]["index"] == int(np.argmax(expected))
    np.testing.assert_allclose(top[0]["probability"], expected.max(), rtol=1e-5)


def truncated_jpeg() -> bytes:
    return jpeg_bytes(200, 150)[:1500]


def pixel_bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header declares width × height pixels (3.6 billion): a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
            + chunk(b"IEND", b""))


def big_png(width: int = 2500, height: int = 2000) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_images_are_refused_with_4xx_json(client):
    cases = {
        "truncated jpeg": (("cut.jpg", truncated_jpeg(), "image/jpeg"), 422),
        "text named png": (("notes.png", b"these are my lecture notes, not a picture\n" * 5, "image/png"), 415),
        "pixel bomb": (("bomb.png", pixel_bomb_png(), "image/png"), 413),
        "too many pixels": (("big.png", big_png(), "image/png"), 413),  # 5 MP > the 4 MP test limit
        "empty file": (("empty.png", b"", "image/png"), 422),
    }
    for name, (upload, status) in cases.items():
        response = client.post("/api/models/tiny/predict", files={"image": upload})
        assert response.status_code == status, (name, response.status_code, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and len(detail) > 20, name


def test_bad_requests_are_refused(client):
    wrong_field = client.post("/api/models/tiny/predict", files={"picture": ("a.png", png_bytes(), "image/png")})
    assert wrong_field.status_code == 422 and "'image'" in wrong_field.json()["detail"]
    text = client.post("/api/models/tiny/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert text.status_code == 415 and "application/x-npy" in text.json()["detail"]
    too_big = client.post("/api/models/tiny/predict", content=b"\0" * (3 * 1024 * 1024 + 10),
                          headers={"content-type": "image/png"})
    assert too_big.status_code == 413
    top_k = client.post("/api/models/tiny/predict?top_k=0", files={"image": ("a.png", png_bytes(), "image/png")})
    assert top_k.status_code == 422


def test_bad_tensors_are_refused(client):
    def post(body: bytes):
        return client.post("/api/models/tiny/predict", content=body, headers=NPY)

    wrong_shape = post(npy_bytes(np.zeros((3, 12, 12), np.float32)))
    assert wrong_shape.status_code == 422 and "[1, 12, 12]" in wrong_shape.json()["detail"]
    batch = post(npy_bytes(np.zeros((2, 1, 12, 12), np.float32)))
    assert batch.status_code == 422 and "forward" in batch.json()["detail"]
    objects = post(npy_bytes(np.array([{"a": 1}], dtype=object)))
    assert objects.status_code == 422 and "dtype" in objects.json()["detail"]
    strings = post(npy_bytes(np.array(["x"])))
    assert strings.status_code == 422
    nan = np.zeros((1, 12, 12), np.float32)
    nan[0, 0, 0] = np.nan
    assert post(npy_bytes(nan)).status_code == 422
    truncated = npy_bytes(np.zeros((1, 12, 12), np.float32))[:-20]
    assert post(truncated).status_code == 422 and "truncated" in post(truncated).json()["detail"]
    huge_header = npy_bytes(np.zeros((1,), np.float32)).replace(b"(1,)", b"(99999999999,)".ljust(4))
    assert post(huge_header).status_code in (413, 422)
    assert post(b"not a numpy file").status_code == 415
    int_input = post(npy_bytes(np.ones((1, 1, 12, 12), np.int64)))
    assert int_input.status_code == 200


def test_too_many_elements_is_413_before_loading(client):
    big = npy_bytes(np.zeros((1_100_000,), np.uint8))  # > 1,000,000 elements, < the 2 MB byte limit
    response = client.post("/api/models/tiny/predict", content=big, headers=NPY)
    assert response.status_code == 413 and "elements" in response.json()["detail"]


def test_forward_npy_in_npy_out(client):
    bundle = tiny_bundle()
    x = np.random.default_rng(5).standard_normal((2, 1, 12, 12)).astype(np.float32)
    response = client.post("/api/models/tiny/forward", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    out = npy_load(response.content)
    expected = bundle.graph.forward(x, bundle.params).output
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, expected)
    assert json.loads(response.headers["x-shape"]) == [2, 3]
    node = client.post("/api/models/tiny/forward?node=pool1", content=npy_bytes(x), headers=NPY)
    np.testing.assert_array_equal(npy_load(node.content), bundle.graph.forward(x, bundle.params).activations["pool1"])


def test_forward_refuses_images_and_unknown_nodes(client):
    image = client.post("/api/models/tiny/forward", files={"image": ("a.png", png_bytes(), "image/png")})
    assert image.status_code == 415
    x = npy_bytes(np.zeros((1, 12, 12), np.float32))
    unknown = client.post("/api/models/tiny/forward?node=conv9", content=x, headers=NPY)
    assert unknown.status_code == 404 and "conv9" in unknown.json()["detail"]
    wrong = client.post("/api/models/tiny/forward", content=npy_bytes(np.zeros((1, 2, 12, 12), np.float32)),
                        headers=NPY)
    assert wrong.status_code == 422


def test_params_are_listed_and_served(client):
    bundle = tiny_bundle()
    data = client.get("/api/models/tiny/params").json()
    names = [p["name"] for p in data["params"]]
    assert names == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]
    conv1 = data["params"][0]
    assert conv1["shape"] == [4, 1, 3, 3] and conv1["node"] == "conv1" and conv1["trainable"] is True
    assert conv1["min"] == float(bundle.params["conv1.weight"].min())
    response = client.get(conv1["npy_url"])
    np.testing.assert_array_equal(npy_load(response.content), bundle.params["conv1.weight"])
    missing = client.get("/api/models/tiny/params/conv1.gamma.npy")
    assert missing.status_code == 404 and "params" in missing.json()["detail"]


def test_forward_refuses_a_batch_whose_activations_would_not_fit(settings):
    from fastapi.testclient import TestClient

    from app.api.deps import get_model_store
    from app.main import create_app
    from app.services.models import ModelStore
    from engine.graph import Graph
    from engine.models.bundle import ModelBundle, Preprocessing

    spec = {"input_shape": [1, 12, 12], "nodes": [{"id": "wide", "op": "conv2d", "out_channels": 64, "kernel_size": 1}]}
    graph = Graph(spec)  # 64 activation values per input value: more than the 16 allowed
    bundle = ModelBundle(id="wide", name="wide", task="test", graph=graph, params=graph.init_params(0), labels=[],
                         preprocessing=Preprocessing(12, 12, (0.0,), (1.0,), grayscale=True), source="test")
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: ModelStore(settings.data_dir, builtins={"wide": lambda: bundle})
    batch = 16 * settings.max_tensor_elements // (64 * 144) + 1  # 1,737 samples: 250,128 input values, within limits
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/api/models/wide/forward", content=npy_bytes(np.zeros((batch, 1, 12, 12), np.uint8)),
                               headers=NPY)
        assert response.status_code == 413 and "batches of at most 1736" in response.json()["detail"]
        ok = client.post("/api/models/wide/forward", content=npy_bytes(np.zeros((batch - 1, 1, 12, 12), np.uint8)),
                         headers=NPY)
        assert ok.status_code == 200 and npy_load(ok.content).shape == (batch - 1, 64, 12, 12)


def test_malformed_multipart_is_422(client):
    for content_type in ["multipart/form-data", "multipart/form-data; boundary=xyz"]:
        for path in ["/api/models/tiny/predict", "/api/models"]:
            response = client.post(path, content=b"garbage", headers={"content-type": content_type})
            assert response.status_code == 422, (path, content_type, response.text)
            assert "multipart" in response.json()["detail"]
