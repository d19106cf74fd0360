"""GET /api/runs/{run_id}/input.png: the model's input as the picture it sees (issue 13: the explorer shows the crop
the model receives, not the uploaded file)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from app.imaging import prepare_image
from engine.graph import Graph
from engine.models.bundle import ModelBundle, Preprocessing
from tests.api.conftest import npy_bytes, png_bytes, tiny_bundle

NPY = {"content-type": "application/x-npy"}
RGB_PRE = Preprocessing(resize=20, crop=16, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def rgb_bundle() -> ModelBundle:
    """A colour model that scales the shorter side to 20 and keeps the centre 16 × 16, each channel its mean and std."""
    graph = Graph({"input_shape": [3, 16, 16], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 2},
    ]})
    return ModelBundle(id="tiny_rgb", name="Tiny colour CNN", task="test classification", graph=graph,
                       params=graph.init_params(seed=3), labels=["a", "b"], preprocessing=RGB_PRE,
                       source="random weights, for tests")


def vector_bundle() -> ModelBundle:
    graph = Graph({"input_shape": [6], "nodes": [{"id": "fc", "op": "linear", "out_features": 2}]})
    return ModelBundle(id="tiny_vector", name="Tiny MLP", task="test", graph=graph, params=graph.init_params(seed=4),
                       labels=["a", "b"], preprocessing=Preprocessing(resize=6, crop=6, mean=(0.0,), std=(1.0,)),
                       source="random weights, for tests")


def run_of(client, model: str, **post) -> str:
    response = client.post(f"/api/models/{model}/activations", **post)
    assert response.status_code == 200, response.text
    return response.json()["run_id"]


def picture(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_a_colour_models_picture_is_the_centre_crop_it_was_given(client, store):
    store.builtins["tiny_rgb"] = rgb_bundle
    upload = png_bytes(width=40, height=30, seed=5)  # shorter side 30 -> 20, then the centre 16 x 16
    run_id = run_of(client, "tiny_rgb", files={"image": ("wide.png", upload, "image/png")})
    image = picture(client.get(f"/api/runs/{run_id}/input.png"))
    assert image.mode == "RGB" and image.size == (16, 16)
    crop = prepare_image(upload, RGB_PRE)
    got = np.asarray(image).astype(int)
    assert np.abs(got - crop.astype(int)).max() <= 1  # the normalisation undone: the crop, to rounding
    # not the uploaded file squeezed to 16 x 16: the crop leaves part of it out
    squeezed = np.asarray(Image.open(io.BytesIO(upload)).convert("RGB").resize((16, 16))).astype(int)
    assert np.abs(got - squeezed).mean() > 10


def test_a_grey_models_picture_is_one_channel(client):
    upload = png_bytes(width=24, height=24, mode="RGB", seed=6)
    run_id = run_of(client, "tiny", files={"image": ("colour.png", upload, "image/png")})
    image = picture(client.get(f"/api/runs/{run_id}/input.png"))
    assert image.mode == "L" and image.size == (12, 12)
    pre = tiny_bundle().preprocessing
    x = pre.normalize(prepare_image(upload, pre))[0, 0]
    expected = np.clip(x * 0.25 + 0.5, 0, 1) * 255  # the luminance the model reads, in grey levels
    assert np.abs(np.asarray(image).astype(float) - expected).max() <= 1


def test_a_tensor_input_is_shown_clipped_to_the_pictures_range(client):
    x = np.full((1, 1, 12, 12), -2.0, dtype=np.float32)  # (0 - 0.5) / 0.25: black
    x[0, 0, :, 6:] = 2.0  # (1 - 0.5) / 0.25: white
    x[0, 0, 0, :] = 9.0  # beyond white: clipped
    run_id = run_of(client, "tiny", content=npy_bytes(x), headers=NPY)
    pixels = np.asarray(picture(client.get(f"/api/runs/{run_id}/input.png")))
    assert pixels[1:, :6].max() == 0 and pixels[1:, 6:].min() == 255 and pixels[0].min() == 255


def test_a_model_without_pictures_and_an_unknown_run_are_refused(client, store):
    store.builtins["tiny_vector"] = vector_bundle
    run_id = run_of(client, "tiny_vector", content=npy_bytes(np.ones((1, 6), np.float32)), headers=NPY)
    refused = client.get(f"/api/runs/{run_id}/input.png")
    assert refused.status_code == 422
    assert "not pictures" in refused.json()["detail"] and f"/api/runs/{run_id}/nodes/input.npy" in refused.text
    assert client.get(f"/api/runs/{'0' * 32}/input.png").status_code == 404
