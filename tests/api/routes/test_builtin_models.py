"""The API on the real built-in digit models (skipped until they are registered): the numbers a lecture shows."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import get_model_store
from app.main import create_app
from app.services.models import ModelStore, builtin_loaders
from engine.datasets.mnist import TRAIN_SIZE, load_raw

DIGITS = 40


@pytest.fixture
def real_client(settings) -> Iterator[TestClient]:
    loaders = builtin_loaders(settings.data_dir / "cache")
    digits = {k: v for k, v in loaders.items() if k.startswith("digits_")}
    if "digits_classic" not in digits:
        pytest.skip("the digit models are not registered yet")
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: ModelStore(settings.data_dir, builtins=digits)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def digit_png(index: int) -> tuple[bytes, int]:
    images, labels = load_raw()
    buffer = io.BytesIO()
    Image.fromarray(images[index]).save(buffer, format="PNG")
    return buffer.getvalue(), int(labels[index])


def test_classic_model_reads_held_out_digits_from_png(real_client):
    correct = 0
    for index in range(TRAIN_SIZE, TRAIN_SIZE + DIGITS):
        png, label = digit_png(index)
        top = real_client.post("/api/models/digits_classic/predict?top_k=1",
                               files={"image": ("d.png", png, "image/png")})
        assert top.status_code == 200, top.text
        correct += top.json()["classes"][0]["label"] == str(label)
    assert correct >= DIGITS - 2, f"{correct}/{DIGITS} held-out digits read correctly"


def test_classic_architecture_matches_the_lecture(real_client):
    nodes = {n["id"]: n for n in real_client.get("/api/models/digits_classic").json()["architecture"]["nodes"]}
    # 28x28 -> conv 5x5 pad 2 -> 8x28x28 -> pool -> 8x14x14 -> conv 5x5 -> 16x10x10 -> pool -> 16x5x5 -> 10
    assert nodes["conv1"]["output_shape"] == [8, 28, 28] and nodes["conv1"]["params"] == (5 * 5 * 1 + 1) * 8
    assert nodes["conv2"]["output_shape"] == [16, 10, 10] and nodes["conv2"]["params"] == (5 * 5 * 8 + 1) * 16
    assert nodes["fc"]["output_shape"] == [10] and nodes["fc"]["params"] == 16 * 5 * 5 * 10 + 10
    # r: conv1 5 (P 2); pool 5 + 1 = 6 (S 2); conv2 6 + 4*2 = 14 (S 2, P 2); pool2 14 + 1*2 = 16 (S 4)
    axes = nodes["pool2"]["receptive_field"]["axes"]
    assert [(a["size"], a["stride"], a["padding"]) for a in axes] == [(16, 4, 2), (16, 4, 2)]


def test_learned_attention_of_the_resnet_is_a_distribution(real_client):
    models = [m["id"] for m in real_client.get("/api/models").json()["models"]]
    if "digits_resnet" not in models:
        pytest.skip("the residual digit model is not registered yet")
    png, _ = digit_png(TRAIN_SIZE + 3)
    response = real_client.post("/api/models/digits_resnet/attention?method=learned_attention",
                                files={"image": ("d.png", png, "image/png")})
    assert response.status_code == 200, response.text
    data = response.json()
    weights = np.array(data["layer_map"])
    assert weights.min() >= 0 and abs(weights.sum() - 1) < 1e-4  # a softmax over positions
    assert data["input_shape"] == [28, 28]
