"""Bad input of every kind gets a documented 4xx with a clear message, never a 500 or a hang (issue 5).

Each test here is a regression test for a bug the fuzzer (scripts/fuzz_api.py) or a hand-crafted nasty
input found; they are small and fast.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import npy_bytes, npy_load

ERROR_REF = "#/components/schemas/ErrorResponse"


def assert_clear_error(response, status: int) -> dict:
    """``response`` is the JSON error ``status`` with a sentence in ``detail``."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert isinstance(body.get("detail"), str) and len(body["detail"]) > 10, body
    return body


# --- the OpenAPI schema documents the errors the API really answers with -------------------------

def test_openapi_documents_error_body_as_a_sentence(client):
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    detail = schema["components"]["schemas"]["ErrorResponse"]["properties"]["detail"]
    assert detail["type"] == "string"
    for path, methods in schema["paths"].items():
        if not path.startswith("/api"):
            continue
        for method, operation in methods.items():
            codes = operation["responses"]
            assert "422" in codes, f"{method} {path}"
            if "{" in path:
                assert "404" in codes, f"{method} {path} has path parameters but no documented 404"
            for code, response in codes.items():
                if code.startswith("4"):
                    assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (path, code)


@pytest.mark.parametrize("path, status", [
    ("/api/models/no-such-model", 404),
    ("/api/runs/0123/nodes/conv1.png", 404),
])
def test_errors_answered_are_documented(client, path, status):
    response = client.get(path)
    assert_clear_error(response, status)
    schema = client.get("/openapi.json").json()
    template = "/api/models/{model_id}" if path.startswith("/api/models") else "/api/runs/{run_id}/nodes/{node_id}.png"
    assert str(status) in schema["paths"][template]["get"]["responses"]


# --- work per request is bounded: astronomically large numbers answer fast ------------------------

def timed(call):
    start = time.perf_counter()
    response = call()
    return response, time.perf_counter() - start


def test_playground_huge_stride_answers_fast(client):
    # hung: the output-size suggestions scanned 2 × stride paddings
    response, seconds = timed(lambda: client.post("/api/playground/conv", json={
        "input": [[1, 2, 3], [4, 5, 6], [7, 8, 9]], "kernel": [[1, 1]], "stride": 10**30}))
    assert seconds < 2
    assert response.status_code == 200, response.text
    assert response.json()["output"] == [[3.0]]  # one window on each axis: 1 + 2


def test_architecture_huge_stride_and_padding_answer_fast(client):
    spec = {"input_shape": [3, 32, 32], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "stride": 10**30}]}
    response, seconds = timed(lambda: client.post("/api/architecture/analyze", json=spec))
    assert seconds < 2 and response.status_code == 200, response.text
    assert response.json()["nodes"][0]["output_shape"] == [3, 1, 1]
    spec["nodes"][0].update(stride=3, padding=10**30)
    response, seconds = timed(lambda: client.post("/api/architecture/analyze", json=spec))
    assert seconds < 2
    body = assert_clear_error(response, 422)
    assert body["node"] == "c" and "output values" in body["detail"]


@pytest.mark.parametrize("node, what", [
    ({"id": "wide", "op": "conv2d", "out_channels": 10**15, "kernel_size": 3}, "output values"),
    ({"id": "wide", "op": "linear", "out_features": 10**12}, "parameters"),
])
def test_architecture_astronomical_counts_are_a_clear_422(client, node, what):
    shape = [3, 32, 32] if node["op"] == "conv2d" else [10**8]
    response = client.post("/api/architecture/analyze", json={"input_shape": shape, "nodes": [node]})
    body = assert_clear_error(response, 422)
    assert body["node"] == "wide" and what in body["detail"] and "2^53" in body["detail"]


def test_architecture_large_but_real_network_is_fine(client):
    spec = {"input_shape": [3, 224, 224], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 2048, "kernel_size": 7, "padding": 3}]}
    response = client.post("/api/architecture/analyze", json=spec)
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["macs"] == 2048 * 3 * 49 * 224 * 224


def test_conv_on_a_vector_suggests_something_that_exists(client):
    spec = {"input_shape": [3, 8, 8], "nodes": [{"id": "f", "op": "flatten"},
                                                {"id": "c", "op": "conv2d", "out_channels": 3, "kernel_size": 3}]}
    body = assert_clear_error(client.post("/api/architecture/analyze", json=spec), 422)
    assert "conv0d" not in body["detail"] and "linear" in body["detail"]


def test_arithmetic_padding_is_bounded_by_the_schema(client):
    response = client.post("/api/arithmetic/output-size", json={
        "axes": [{"in_size": 5, "kernel_size": 3, "stride": 3, "padding": 10**30}]})
    body = assert_clear_error(response, 422)
    assert "padding" in body["detail"]


# --- numbers outside float64 ------------------------------------------------------------------------

def test_playground_integer_beyond_float64_is_a_422(client):
    # was a 500 (OverflowError converting the grid)
    body = b'{"input": [[1' + b"0" * 400 + b', 2], [3, 4]], "kernel": [[1]]}'
    response = client.post("/api/playground/conv", content=body, headers={"Content-Type": "application/json"})
    assert "too large" in assert_clear_error(response, 422)["detail"]


def test_playground_products_that_overflow_are_a_422(client):
    # was a 200 whose results were null (inf), against the response schema
    response = client.post("/api/playground/conv", json={"input": [[1e308, 1.0], [3.0, 4.0]], "kernel": [[1e308]]})
    assert "1e+150" in assert_clear_error(response, 422)["detail"]
    response = client.post("/api/playground/avg_pool", json={"input": [[1e300, 1e300], [3.0, 4.0]], "kernel_size": 2})
    assert_clear_error(response, 422)


# --- .npy tensors ------------------------------------------------------------------------------------

NPY = {"Content-Type": "application/x-npy"}


def test_forward_empty_batch_is_a_422(client):
    # was a 500 (ValueError in the forward pass)
    response = client.post("/api/models/tiny/forward", content=npy_bytes(np.zeros((0, 1, 12, 12), np.float32)),
                           headers=NPY)
    assert "empty" in assert_clear_error(response, 422)["detail"]


@pytest.mark.parametrize("endpoint", ["predict", "activations", "attention", "forward"])
def test_values_that_overflow_float32_in_the_network_are_a_422(client, endpoint):
    # were 200s with null scores, maps and statistics (NaN), and a 500 for eigencam (SVD of NaN)
    body = npy_bytes(np.full((1, 1, 12, 12), 3e38, np.float32))
    detail = assert_clear_error(client.post(f"/api/models/tiny/{endpoint}", content=body, headers=NPY), 422)["detail"]
    assert "±1e+06" in detail and "preprocessed" in detail


def test_huge_declared_shape_counts_its_elements_exactly(client):
    # np.prod in int64 wrapped around: 10^20 elements were reported as 7,766,279,631,452,241,920
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000, 100000), }".ljust(117)
    body = b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little") + header + b"\n"
    detail = assert_clear_error(client.post("/api/models/tiny/predict", content=body, headers=NPY), 413)["detail"]
    assert "100,000,000,000,000,000,000 elements" in detail


@pytest.mark.parametrize("array", [
    np.asfortranarray(np.arange(144, dtype=np.float64).reshape(1, 12, 12)),
    np.arange(144, dtype=np.float32).reshape(1, 1, 12, 12).astype(">f4"),
    np.arange(144, dtype=np.int16).reshape(1, 12, 12),
])
def test_layouts_and_byte_orders_give_the_same_answer(client, array):
    reference = client.post("/api/models/tiny/forward", content=npy_bytes(np.arange(144, dtype=np.float32)
                                                                         .reshape(1, 1, 12, 12)), headers=NPY)
    response = client.post("/api/models/tiny/forward", content=npy_bytes(array), headers=NPY)
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(npy_load(response.content), npy_load(reference.content))


@pytest.mark.parametrize("array, words", [
    (np.array(3.0), "shape [1]"),
    (np.zeros((1, 12, 12), dtype=np.complex64), "dtype is complex64"),
    (np.zeros((1, 12, 12), dtype="U2"), "dtype is <U2"),
])
def test_odd_tensors_are_a_clear_422(client, array, words):
    response = client.post("/api/models/tiny/predict", content=npy_bytes(array), headers=NPY)
    assert words in assert_clear_error(response, 422)["detail"]


def test_pickled_object_array_is_refused_without_unpickling(client):
    body = npy_bytes(np.array([{"a": 1}], dtype=object))  # np.save pickles object arrays
    response = client.post("/api/models/tiny/predict", content=body, headers=NPY)
    assert "dtype is object" in assert_clear_error(response, 422)["detail"]


# --- images --------------------------------------------------------------------------------------------

def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_long_thin_image_is_not_resized_to_billions_of_pixels(client, monkeypatch):
    # a 199-byte 1 × 60,000 PNG took 64 s and 16 GB on EfficientNet's preprocessing (resized to 256 × 15 M first)
    sizes = []
    original = Image.Image.resize

    def recording_resize(self, size, *args, **kwargs):
        sizes.append(size[0] * size[1])
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording_resize)
    data = png_of(Image.new("L", (1, 60000), 200))
    assert len(data) < 1000
    response, seconds = timed(lambda: client.post("/api/models/tiny/predict", files={"image": ("thin.png", data)}))
    assert response.status_code == 200, response.text
    assert seconds < 2 and max(sizes) <= 16 * 12 * 12


def test_long_image_crop_matches_resize_then_crop():
    from app.imaging import resize_and_crop
    from engine.models.bundle import Preprocessing

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 2000, 3), dtype=np.uint8))  # 50:1, the bounded path
    kept = resize_and_crop(image, Preprocessing(resize=28, crop=24, mean=(0.5,), std=(0.5,)))
    full = np.asarray(image.resize((1400, 28), Image.Resampling.BICUBIC))[2:26, 688:712]
    assert kept.shape == (24, 24, 3)
    assert np.abs(kept.astype(int) - full.astype(int)).max() <= 1  # rounding of the box only


# --- messages that say what would work ------------------------------------------------------------

def test_unknown_path_names_it_and_points_to_the_docs(client):
    detail = assert_clear_error(client.get("/api/models/tiny/params/..%2F..%2Fx.npy"), 404)["detail"]
    assert "/docs" in detail and "GET /api/models/tiny/params/../../x.npy" in detail
    static = client.get("/static/no-such-file.js").json()["detail"]
    assert static == "there is no page or file at /static/no-such-file.js"


def test_wrong_method_says_so(client):
    detail = assert_clear_error(client.put("/api/models"), 405)["detail"]
    assert detail.startswith("PUT is not allowed on /api/models") and "/docs" in detail


def test_unencoded_plus_in_method_is_explained(client):
    body = npy_bytes(np.zeros((1, 1, 12, 12), np.float32))
    response = client.post("/api/models/tiny/attention?method=gradcam++", content=body,
                           headers={"Content-Type": "application/x-npy"})
    assert "method=gradcam%2B%2B" in assert_clear_error(response, 422)["detail"]
    response = client.post("/api/models/tiny/attention?method=gradcam%2B%2B", content=body,
                           headers={"Content-Type": "application/x-npy"})
    assert response.status_code == 200, response.text


def test_client_disconnect_mid_body_is_not_logged_as_a_bug(client, caplog):
    # was "unhandled error ... ClientDisconnect" with a traceback, and uvicorn's "Exception in ASGI application"
    import asyncio

    app = client.app
    path = "/api/models/tiny/predict"
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-type", b"image/png"), (b"content-length", b"100")],
             "http_version": "1.1", "scheme": "http", "server": ("testserver", 80), "client": ("c", 1), "root_path": "",
             "app": app}
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    with caplog.at_level("ERROR"):
        asyncio.run(app(scope, receive, send))
    assert not [r for r in caplog.records if "unhandled" in r.getMessage()]
    assert sent and sent[0]["status"] == 422


@pytest.mark.parametrize("path", ["/api/models/" + "a" * 10_000, "/api/runs/" + "b" * 10_000 + "/nodes/conv1.png"])
def test_long_ids_are_not_echoed_whole(client, path):
    detail = assert_clear_error(client.get(path), 404)["detail"]
    assert len(detail) < 500 and "10,000 characters" in detail


def test_architecture_with_quadratically_many_edges_is_refused_fast(client):
    # 1,500 nodes each adding every earlier one (1.1 M edges) took 3.4 s
    nodes = [{"id": "n0", "op": "relu"}, {"id": "n1", "op": "relu"}]
    nodes += [{"id": f"n{i}", "op": "add", "inputs": [f"n{j}" for j in range(i)]} for i in range(2, 300)]
    response, seconds = timed(lambda: client.post("/api/architecture/analyze",
                                                  json={"input_shape": [1, 4, 4], "nodes": nodes}))
    assert seconds < 2
    assert "44,849 inputs" in assert_clear_error(response, 422)["detail"]


def test_activation_stats_of_large_finite_values_are_finite():
    # squares past float32's 3.4e38 made std inf, serialised as null against the schema
    from app.services.runs import activation_stats

    stats = activation_stats(np.array([1e30, -1e30, 0.0], np.float32))
    assert stats["mean"] == 0.0
    assert stats["std"] == pytest.approx(np.sqrt(2 / 3) * 1e30, rel=1e-6)
    ordinary = activation_stats(np.arange(10, dtype=np.float32))
    assert ordinary["std"] == pytest.approx(np.arange(10).std(), rel=1e-6)
