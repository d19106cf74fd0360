"""GET /api/attention/methods and POST /api/models/{id}/attention."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from engine.attention.budget import graph_macs
from tests.api.attention_jobs import follow_job
from tests.api.conftest import npy_bytes, png_bytes, tiny_bundle

NPY = {"content-type": "application/x-npy"}


def decode_png(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_methods_are_listed(client):
    methods = {m["name"]: m for m in client.get("/api/attention/methods").json()["methods"]}
    assert {"gradcam", "saliency", "occlusion"} <= set(methods)
    assert methods["gradcam"]["uses_layer"] is True and methods["saliency"]["uses_layer"] is False


def test_gradcam_by_hand(client):
    x = np.random.default_rng(21).standard_normal((1, 1, 12, 12)).astype(np.float32)
    response = client.post("/api/models/tiny/attention?method=gradcam&target=2", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["layer"] == "relu2" and data["target"] == 2 and data["target_label"] == "two"
    # Grad-CAM: alpha_k = mean over positions of d logit_2 / d A_k; map = sum_k alpha_k A_k (ReLU only when normalised)
    bundle = tiny_bundle()
    params = {k: v.astype(np.float64) for k, v in bundle.params.items()}
    trace = bundle.graph.forward(x.astype(np.float64), params)
    seed = np.zeros((1, 3))
    seed[0, 2] = 1
    grads = bundle.graph.backward(trace, {"fc": seed}).activations["relu2"][0]
    expected = np.tensordot(grads.mean(axis=(1, 2)), trace.activations["relu2"][0], axes=1)
    np.testing.assert_allclose(np.array(data["layer_map"]), expected, rtol=1e-4, atol=1e-5)
    assert data["layer_shape"] == [4, 4] and data["input_shape"] == [12, 12]
    normalized = np.array(data["layer_map_normalized"])
    assert normalized.min() >= 0 and normalized.max() <= 1
    assert decode_png(data["overlay_png"]).shape == (12, 12, 3)
    assert decode_png(data["input_map_png"]).shape == (12, 12, 3)


def test_image_input_and_gradient_method(client):
    response = client.post("/api/models/tiny/attention?method=saliency&include_input_map=true",
                           files={"image": ("a.png", png_bytes(), "image/png")})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["layer"] == "input" and np.array(data["input_map"]).shape == (12, 12)
    assert data["target"] is not None


def test_attention_refusals(client):
    x = npy_bytes(np.zeros((1, 12, 12), np.float32))
    unknown_method = client.post("/api/models/tiny/attention?method=magic", content=x, headers=NPY)
    assert unknown_method.status_code == 422 and "gradcam" in unknown_method.json()["detail"]
    unknown_layer = client.post("/api/models/tiny/attention?layer=conv9", content=x, headers=NPY)
    assert unknown_layer.status_code == 404
    flat_layer = client.post("/api/models/tiny/attention?layer=fc", content=x, headers=NPY)
    assert flat_layer.status_code == 422
    bad_target = client.post("/api/models/tiny/attention?target=3", content=x, headers=NPY)
    assert bad_target.status_code == 422 and "0 to 2" in bad_target.json()["detail"]
    no_attention = client.post("/api/models/tiny/attention?method=learned_attention", content=x, headers=NPY)
    assert no_attention.status_code == 422
    greedy = client.post("/api/models/tiny/attention?method=smoothgrad&samples=100000", content=x, headers=NPY)
    assert greedy.status_code == 422


def test_many_pass_methods_stay_within_the_work_budget(client, settings):
    per_pass = graph_macs(tiny_bundle().graph)
    settings.max_attention_gmacs = 20 * per_pass / 1e9  # room for 20 passes of the tiny model
    x = npy_bytes(np.zeros((1, 12, 12), np.float32))
    # Integrated Gradients costs 2 + 3 * steps passes: the default shrinks to 6 steps
    fitted = follow_job(client, client.post("/api/models/tiny/attention?method=integrated_gradients", content=x,
                                            headers=NPY))  # a many-pass method: a background job
    assert fitted.status_code == 200, fitted.text
    assert fitted.json()["extras"]["steps"] == 6
    too_many = client.post("/api/models/tiny/attention?method=integrated_gradients&steps=32", content=x, headers=NPY)
    assert too_many.status_code == 422 and "use steps <= 6" in too_many.json()["detail"]


def test_options_sent_as_form_fields_are_refused_not_ignored(client):
    response = client.post("/api/models/tiny/attention", files={"image": ("a.png", png_bytes(), "image/png")},
                           data={"method": "saliency"})
    assert response.status_code == 422
    assert "'method'" in response.json()["detail"] and "query string" in response.json()["detail"]
