"""Fixtures: a TestClient on a fresh app whose settings point at a tmp data dir, and a tiny built-in model.

The tiny model (random weights, fixed seed) keeps the API tests fast and independent of the shipped
models; a few tests use the real digit models where they exist.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import get_model_store
from app.core.config import LOOPBACK_HOSTS, Settings
from app.main import create_app
from app.services.models import ModelStore
from engine.graph import Graph
from engine.models.bundle import ModelBundle, Preprocessing

TINY_SPEC = {
    "input_shape": [1, 12, 12],
    "nodes": [
        {"id": "conv1", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "relu1", "op": "relu"},
        {"id": "pool1", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "conv2", "op": "conv2d", "out_channels": 6, "kernel_size": 3},
        {"id": "relu2", "op": "relu"},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 3},
    ],
}
TINY_LABELS = ["zero", "one", "two"]
#: the Host header Starlette's TestClient sends: allowed in the tests' settings, never by default
TEST_HOST = "testserver"


def tiny_bundle() -> ModelBundle:
    graph = Graph(TINY_SPEC)
    return ModelBundle(id="tiny", name="Tiny test CNN", task="test classification", graph=graph,
                       params=graph.init_params(seed=0), labels=list(TINY_LABELS),
                       preprocessing=Preprocessing(resize=12, crop=12, mean=(0.5,), std=(0.25,), grayscale=True),
                       source="random weights (seed 0), for tests", cam_layer="relu2")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_upload_bytes=2 * 1024 * 1024, max_model_bytes=4 * 1024 * 1024,
                    max_image_pixels=4_000_000, max_tensor_elements=1_000_000, run_cache_size=4, preload=False,
                    compute_slots=2, compute_wait_s=30, allowed_hosts=[*LOOPBACK_HOSTS, TEST_HOST])


@pytest.fixture
def store(settings) -> ModelStore:
    return ModelStore(settings.data_dir, builtins={"tiny": tiny_bundle})


@pytest.fixture
def client(settings: Settings, store: ModelStore) -> Iterator[TestClient]:
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: store
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def png_bytes(width: int = 20, height: int = 16, mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


@pytest.fixture
def unexpected_error(settings: Settings):
    """The answer to a request whose route raises an unexpected exception (a bug), on an app with ``settings``."""
    app = create_app(settings)

    @app.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        return client.get("/api/boom")
