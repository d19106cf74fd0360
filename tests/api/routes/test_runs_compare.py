"""GET /api/runs/{run}/compare/{other}/nodes/{node}.json | .png | .npy (issue 13: two inputs side by side in the
explorer): on the shipped digit models and samples, every number against NumPy on the two runs' own .npy files, the
signed PNG decoded (no difference is grey 128 exactly; each tile's extremes 0 and 255), and the refusals."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import get_model_store
from app.core.config import LOOPBACK_HOSTS, Settings
from app.errors import ApiError
from app.main import create_app
from app.services.compare import runs_to_compare
from app.services.models import ModelStore, builtin_loaders
from tests.api.conftest import TEST_HOST, npy_load

SAMPLES = Path(__file__).resolve().parents[3] / "static" / "samples"
MODEL = "digits_classic"
NODES = ["input", "conv1", "relu1", "pool2", "fc"]  # the picture, maps before and after ReLU, a pool, the scores


@pytest.fixture(scope="module")
def real_client(tmp_path_factory) -> Iterator[TestClient]:
    """The app on the shipped digit models (one per module: two runs serve every test)."""
    data_dir = tmp_path_factory.mktemp("compare") / "data"
    settings = Settings(data_dir=data_dir, preload=False, compute_slots=2, compute_wait_s=30,
                        allowed_hosts=[*LOOPBACK_HOSTS, TEST_HOST])
    loaders = builtin_loaders(data_dir / "cache")
    digits = {k: v for k, v in loaders.items() if k in (MODEL, "digits_resnet")}
    if MODEL not in digits:
        pytest.skip("the digit models are not registered yet")
    app = create_app(settings)
    store = ModelStore(data_dir, builtins=digits)
    app.dependency_overrides[get_model_store] = lambda: store
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def run_of(client: TestClient, sample: str, model: str = MODEL) -> str:
    image = (SAMPLES / sample).read_bytes()
    response = client.post(f"/api/models/{model}/activations", files={"image": (sample, image, "image/png")})
    assert response.status_code == 200, response.text
    return response.json()["run_id"]


@pytest.fixture(scope="module")
def runs(real_client) -> tuple[str, str]:
    """Run A (a shipped 2) and run B (a shipped 7) of the classic digit CNN."""
    return run_of(real_client, "digit-2.png"), run_of(real_client, "digit-7.png")


def npy(client: TestClient, url: str) -> np.ndarray:
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    return npy_load(response.content)


def tiles_of(x: np.ndarray) -> np.ndarray:
    """One sample's activation as the PNG's tiles (C, H, W), worked out here: a vector (F,) is one 1 × F tile."""
    return x.reshape(1, 1, -1) if x.ndim == 1 else x


def decoded(response) -> tuple[np.ndarray, dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "L"
    return np.asarray(image), json.loads(response.headers["x-tile-layout"])


def tile(image: np.ndarray, layout: dict, c: int) -> np.ndarray:
    row, column = divmod(c, layout["columns"])
    top = row * (layout["tile_height"] + layout["gap"])
    left = column * (layout["tile_width"] + layout["gap"])
    return image[top:top + layout["tile_height"], left:left + layout["tile_width"]]


def expected_grey(d: np.ndarray, m: float) -> np.ndarray:
    """The grey levels of a tile of ``d`` on [−m, m], the API's float32 steps: trunc((d + m) / 2m · 255 + 0.5)."""
    m32 = np.float32(m)
    return (((d.astype(np.float32) + m32) / (m32 - -m32)) * np.float32(255) + np.float32(0.5)).astype(np.uint8)


@pytest.mark.parametrize("node", NODES)
def test_the_difference_and_its_summary_are_numpys_on_the_two_runs(real_client, runs, node):
    run, other = runs
    a = npy(real_client, f"/api/runs/{run}/nodes/{node}.npy")
    b = npy(real_client, f"/api/runs/{other}/nodes/{node}.npy")
    base = f"/api/runs/{run}/compare/{other}/nodes/{node}"
    d = npy(real_client, f"{base}.npy")
    assert d.dtype == np.float32 and d.shape == a.shape
    np.testing.assert_array_equal(d, a - b)  # float32 subtraction, exactly
    answer = real_client.get(f"{base}.json")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["model_id"], body["run_id"], body["other_run_id"]) == (node, MODEL, run, other)
    assert body["shape"] == list(a.shape[1:]) and body["npy_url"] == f"{base}.npy" and body["png_url"] == f"{base}.png"
    assert body["run_png_url"] == f"/api/runs/{run}/nodes/{node}.png"
    assert body["other_png_url"] == f"/api/runs/{other}/nodes/{node}.png"
    # the summary, recomputed here in float64 from the two activations
    x, y = a[0].astype(np.float64), b[0].astype(np.float64)
    size = np.abs(d[0].astype(np.float64))
    assert body["max_abs"] == pytest.approx(size.max(), rel=1e-12)
    assert body["mean_abs"] == pytest.approx(size.mean(), rel=1e-9)
    assert body["norm_a"] == pytest.approx(np.sqrt(np.sum(x * x)), rel=1e-9)
    assert body["norm_b"] == pytest.approx(np.sqrt(np.sum(y * y)), rel=1e-9)
    assert body["cosine_similarity"] == pytest.approx(np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y)), rel=1e-9)
    assert body["relative_change"] == pytest.approx(np.sqrt(np.sum(size * size) / np.sum(x * x)), rel=1e-9)
    per_tile = tiles_of(size)
    mean = per_tile.mean(axis=(1, 2))
    np.testing.assert_allclose(body["channel_mean_abs"], mean, rtol=1e-9)
    np.testing.assert_allclose(body["channel_max_abs"], per_tile.max(axis=(1, 2)), rtol=1e-12)
    top = body["top_channels"]
    assert [c["channel"] for c in top] == sorted(range(len(mean)), key=lambda c: (-mean[c], c))[:5]
    for entry in top:
        row, column = entry["largest_at"]
        assert per_tile[entry["channel"], row, column] == per_tile[entry["channel"]].max() == entry["max_abs"]
    # the tile ranges: symmetric around 0, m = the tile's largest |a − b|
    m = per_tile.max(axis=(1, 2))
    assert body["layout"]["ranges"] == [[-v, v] if v > 0 else [-1.0, 1.0] for v in m.astype(np.float32).tolist()]
    assert body["layout"]["tiles"] == len(m) and body["layout"]["scale"] == "channel"


@pytest.mark.parametrize("node", ["conv1", "relu1", "fc"])
def test_the_png_is_centred_on_zero_grey_128_is_no_difference(real_client, runs, node):
    run, other = runs
    base = f"/api/runs/{run}/compare/{other}/nodes/{node}"
    d = tiles_of(npy(real_client, f"{base}.npy")[0])
    image, layout = decoded(real_client.get(f"{base}.png"))
    ranges = real_client.get(f"{base}.json").json()["layout"]["ranges"]
    assert layout == {k: v for k, v in real_client.get(f"{base}.json").json()["layout"].items() if k != "ranges"}
    assert image.shape == (layout["height"], layout["width"])
    zeros = extremes = 0
    for c in range(layout["tiles"]):
        low, high = ranges[c]
        assert low == -high
        grey = tile(image, layout, c)
        np.testing.assert_array_equal(grey, expected_grey(d[c], high))
        assert np.all(grey[d[c] == 0] == 128)  # no difference: the middle grey exactly
        zeros += int(np.count_nonzero(d[c] == 0))
        largest = np.abs(d[c]).max()
        if largest > 0:  # each tile's extremes are the scale's ends
            assert set(grey[np.abs(d[c]) == largest].tolist()) <= {0, 255}
            extremes += 1
            assert np.all(grey[d[c] == largest] == 255) and np.all(grey[d[c] == -largest] == 0)
    assert extremes > 0
    if node == "relu1":
        assert zeros > 0  # ReLU switched off the same neurons for both digits: exact zeros, grey 128


def test_a_run_against_itself_differs_by_nothing(real_client, runs):
    run, _ = runs
    base = f"/api/runs/{run}/compare/{run}/nodes/conv1"
    body = real_client.get(f"{base}.json").json()
    assert body["max_abs"] == body["mean_abs"] == body["relative_change"] == 0.0
    assert body["cosine_similarity"] == 1.0
    assert all(r == [-1.0, 1.0] for r in body["layout"]["ranges"])
    image, layout = decoded(real_client.get(f"{base}.png"))
    for c in range(layout["tiles"]):
        assert np.all(tile(image, layout, c) == 128)


def test_scale_layer_gives_every_tile_the_layers_range(real_client, runs):
    run, other = runs
    base = f"/api/runs/{run}/compare/{other}/nodes/conv1"
    d = npy(real_client, f"{base}.npy")[0]
    body = real_client.get(f"{base}.json?scale=layer").json()
    largest = float(np.abs(d).max())
    assert body["layout"]["scale"] == "layer" and body["png_url"] == f"{base}.png?scale=layer"
    assert body["layout"]["ranges"] == [[-largest, largest]] * d.shape[0]
    image, layout = decoded(real_client.get(f"{base}.png?scale=layer"))
    assert layout["scale"] == "layer"
    for c in range(layout["tiles"]):
        np.testing.assert_array_equal(tile(image, layout, c), expected_grey(d[c], largest))
    # a tile whose own largest |a − b| is below the layer's does not reach the scale's ends
    quiet = int(np.argmin(np.abs(d).max(axis=(1, 2))))
    assert tile(image, layout, quiet).min() > 0 and tile(image, layout, quiet).max() < 255


def test_top_k_lists_that_many_channels(real_client, runs):
    run, other = runs
    body = real_client.get(f"/api/runs/{run}/compare/{other}/nodes/conv1.json?top_k=8").json()
    assert len(body["top_channels"]) == 8  # conv1 has 8 channels: all of them, largest change first
    means = [c["mean_abs"] for c in body["top_channels"]]
    assert means == sorted(means, reverse=True)
    assert real_client.get(f"/api/runs/{run}/compare/{other}/nodes/conv1.json?top_k=0").status_code == 422


def test_runs_of_two_models_are_a_422_saying_how_to_make_one(real_client, runs):
    run, _ = runs
    models = [m["id"] for m in real_client.get("/api/models").json()["models"]]
    if "digits_resnet" not in models:
        pytest.skip("the residual digit model is not registered yet")
    resnet_run = run_of(real_client, "digit-7.png", "digits_resnet")
    for suffix in ("json", "png", "npy"):
        response = real_client.get(f"/api/runs/{run}/compare/{resnet_run}/nodes/input.{suffix}")
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "must be of the same model" in detail and "'digits_resnet'" in detail
        assert f"POST /api/models/{MODEL}/activations" in detail


def test_runs_of_two_versions_of_a_model_are_a_422():
    class Run:
        def __init__(self, run_id, version):
            self.run_id, self.model_id, self.version = run_id, MODEL, version

    class Runs:
        def __init__(self):
            self.found = {"a": Run("a", "v1"), "b": Run("b", "v2")}

        def get(self, run_id, models):
            return self.found[run_id]

    with pytest.raises(ApiError) as refused:
        runs_to_compare("a", "b", Runs(), None)
    assert refused.value.status_code == 422 and "two versions of model 'digits_classic'" in refused.value.detail
    assert runs_to_compare("a", "a", Runs(), None).other.run_id == "a"


@pytest.mark.parametrize("suffix", ["json", "png", "npy"])
def test_unknown_runs_and_nodes_are_404(real_client, runs, suffix):
    run, other = runs
    unknown = "0123456789abcdef0123456789abcdef"
    for path in (f"{unknown}/compare/{other}/nodes/conv1", f"{run}/compare/{unknown}/nodes/conv1",
                 f"{run}/compare/not-a-run/nodes/conv1"):
        response = real_client.get(f"/api/runs/{path}.{suffix}")
        assert response.status_code == 404, response.text
        assert "/activations" in response.json()["detail"]  # how to make a run
    response = real_client.get(f"/api/runs/{run}/compare/{other}/nodes/conv9.{suffix}")
    assert response.status_code == 404
    assert response.json()["node"] == "conv9" and "conv1" in response.json()["detail"]
