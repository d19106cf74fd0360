"""POST /api/models/{id}/adversarial, GET /api/adversarial/tensors/{name}.npy and GET
/api/models/{id}/adversarial/robustness: the tensors behind the links (the perturbation within epsilon, the
adversarial input = original + perturbation), the predictions, pictures and attention maps, and every refusal."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import get_model_store
from app.main import create_app
from app.services.models import ModelStore, builtin_loaders
from engine.datasets.mnist import load_mnist
from engine.graph import Graph
from engine.learned.adversarial import PixelSpace, fgsm, robustness_curve
from engine.models.bundle import ModelBundle, Preprocessing
from engine.models.registry import load_model
from tests.api.attention_jobs import finish_job
from tests.api.conftest import npy_bytes, png_bytes, tiny_bundle

NPY = {"content-type": "application/x-npy"}
URL = "/api/models/{}/adversarial"


def rgb_inverting_bundle() -> ModelBundle:
    """A colour model that inverts its pictures: three channels with their own mean and std."""
    graph = Graph({"input_shape": [3, 10, 10], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "relu", "op": "relu"},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 4},
    ]})
    return ModelBundle(id="tiny_rgb", name="Tiny colour CNN", task="test classification", graph=graph,
                       params=graph.init_params(seed=1), labels=["a", "b", "c", "d"],
                       preprocessing=Preprocessing(resize=10, crop=10, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                                                   invert=True),
                       source="random weights, for tests", cam_layer="relu")


def sequence_bundle() -> ModelBundle:
    graph = Graph({"input_shape": [2, 16], "nodes": [
        {"id": "conv", "op": "conv1d", "out_channels": 3, "kernel_size": 3},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 2},
    ]})
    return ModelBundle(id="tiny_sequence", name="Tiny 1D CNN", task="test classification", graph=graph,
                       params=graph.init_params(seed=2), labels=["x", "y"],
                       preprocessing=Preprocessing(resize=16, crop=16, mean=(0.0,), std=(1.0,)),
                       source="random weights, for tests")


@pytest.fixture
def adv_client(settings) -> Iterator[TestClient]:
    loaders = builtin_loaders(settings.data_dir / "cache")
    builtins = {"tiny": tiny_bundle, "tiny_rgb": rgb_inverting_bundle, "tiny_sequence": sequence_bundle,
                "digits_classic": loaders["digits_classic"], "digits_lstm": loaders["digits_lstm"]}
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: ModelStore(settings.data_dir, builtins=builtins)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def digits():
    """Ten held-out digits, normalised as the digit models read them, and their labels."""
    return load_mnist("test", limit=10)


def decode_png(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def tensor(client: TestClient, url: str) -> np.ndarray:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def attack(client: TestClient, model: str, x: np.ndarray, query: str = "") -> dict:
    response = client.post(URL.format(model) + query, content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    return response.json()


# --- the answer -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query, epsilon", [("?method=fgsm&epsilon=0.2", 0.2),
                                            ("?method=pgd&epsilon=0.1&steps=5", 0.1),
                                            ("?method=pgd&epsilon=0.05&steps=3&random_start=true&seed=4", 0.05)])
def test_the_perturbation_stays_within_epsilon(adv_client, digits, query, epsilon):
    data = attack(adv_client, "digits_classic", digits[0][:1], query)
    original = tensor(adv_client, data["original"]["npy_url"])
    adversarial = tensor(adv_client, data["adversarial"]["npy_url"])
    delta = tensor(adv_client, data["perturbation"]["npy_url"])
    assert original.shape == adversarial.shape == delta.shape == (1, 1, 28, 28)
    assert original.dtype == adversarial.dtype == np.float32 and delta.dtype == np.float64
    assert np.abs(delta).max() <= epsilon  # the promise, from the .npy as served
    assert data["perturbation"]["linf"] == np.abs(delta).max() > 0.5 * epsilon
    space = PixelSpace(data["pixel_space"]["mean"], data["pixel_space"]["std"])
    before, after = space.to_pixels(original), space.to_pixels(adversarial)
    assert after.min() >= -1e-6 and after.max() <= 1 + 1e-6
    np.testing.assert_allclose(after - before, delta, atol=1e-6)  # adversarial = original + δ, in pixels
    np.testing.assert_allclose(original, digits[0][:1], atol=1e-6)


def test_fgsm_answer_matches_the_engine(adv_client, digits):
    x, label = digits[0][:1], int(digits[1][0])
    data = attack(adv_client, "digits_classic", x, "?method=fgsm&epsilon=0.2")
    bundle = load_model("digits_classic")
    space = PixelSpace(bundle.preprocessing.mean, bundle.preprocessing.std)
    assert data["original"]["predictions"][0]["index"] == label == data["attacked_class"]
    expected = fgsm(bundle.graph, bundle.params, space, np.clip(space.to_pixels(x), 0, 1), np.array([label]), 0.2)
    np.testing.assert_array_equal(tensor(adv_client, data["perturbation"]["npy_url"]), expected.perturbation)
    top = data["adversarial"]["predictions"]
    assert len(top) == 5 and top[0]["index"] == int(expected.logits[0].argmax())
    assert abs(sum(p["probability"] for p in top) - 1) < 0.05 and top[0]["probability"] >= top[1]["probability"]
    assert data["fooled"] == (top[0]["index"] != label) and data["reached_target"] is None
    assert data["adversarial"]["loss"] > data["original"]["loss"]
    assert data["steps"] == 1 and data["alpha"] == 0.2 and data["seed"] is None and data["targeted"] is False


def test_pictures_scale_and_attention(adv_client, digits):
    data = attack(adv_client, "digits_classic", digits[0][1:2], "?method=fgsm&epsilon=0.25")
    perturbation = data["perturbation"]
    assert perturbation["scale"] == 0.25 and perturbation["amplification"] == 4.0
    assert perturbation["rgb_png"] is None  # a grey model: one channel, the diverging map
    shown = decode_png(perturbation["png"])
    assert shown.shape == (28, 28, 3)
    delta = tensor(adv_client, perturbation["npy_url"])[0, 0]
    # white where δ = 0, red (+ε) and blue (−ε) at full colour
    assert (shown[delta == 0] == [247, 247, 247]).all()
    assert (shown[delta == 0.25] == [178, 24, 43]).all() and (shown[delta == -0.25] == [33, 102, 172]).all()
    for side in ("original", "adversarial"):
        assert decode_png(data[side]["picture_png"]).shape == (28, 28, 3)
        attention = data[side]["attention"]
        assert attention["method"] == "gradcam" and attention["layer"] == "relu2"
        assert attention["target"] == data[side]["predictions"][0]["index"]
    assert data["attention_method"] == "gradcam" and data["attention_reason"] is None


def test_a_model_without_a_cam_layer_gets_the_gradient_map(adv_client, digits):
    data = attack(adv_client, "digits_lstm", digits[0][2:3], "?method=fgsm&epsilon=0.1")
    assert data["attention_method"] == "saliency"
    assert data["original"]["attention"]["method"] == "saliency"


def test_targeted_attack(adv_client, digits):
    x, label = digits[0][:1], int(digits[1][0])
    target = (label + 1) % 10
    data = attack(adv_client, "digits_classic", x, f"?method=pgd&epsilon=0.3&steps=20&target={target}")
    assert data["targeted"] is True and data["target"] == target and data["attacked_class"] == target
    assert data["target_label"] == str(target)
    assert data["reached_target"] == (data["adversarial"]["predictions"][0]["index"] == target)
    assert data["adversarial"]["loss"] < data["original"]["loss"]  # the target's loss went down
    assert data["reached_target"] is True


def test_image_upload_and_colour_model_with_inversion(adv_client):
    response = adv_client.post(URL.format("tiny_rgb") + "?epsilon=0.1",
                               files={"image": ("a.png", png_bytes(), "image/png")})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["pixel_space"] == {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3], "grayscale": False,
                                   "invert": True}
    delta = tensor(adv_client, data["perturbation"]["npy_url"])
    assert delta.shape == (1, 3, 10, 10) and np.abs(delta).max() <= 0.1
    rgb = decode_png(data["perturbation"]["rgb_png"]).astype(float)
    # the picture is inverted before the normalisation: the picture changes by −δ, drawn as 0.5 − 0.5·δ/ε
    expected = np.clip(0.5 - 0.5 * delta[0].transpose(1, 2, 0) / 0.1, 0, 1) * 255
    np.testing.assert_allclose(rgb, expected, atol=1)
    # the adversarial picture is the original picture changed by −δ (inversion), per channel
    before = decode_png(data["original"]["picture_png"]).astype(float) / 255
    after = decode_png(data["adversarial"]["picture_png"]).astype(float) / 255
    np.testing.assert_allclose(after - before, -delta[0].transpose(1, 2, 0), atol=1.5 / 255)


def test_tensor_links_are_content_addressed(adv_client, digits):
    first = attack(adv_client, "digits_classic", digits[0][:1], "?epsilon=0.1")
    second = attack(adv_client, "digits_classic", digits[0][:1], "?epsilon=0.1")
    assert first["perturbation"]["npy_url"] == second["perturbation"]["npy_url"]
    assert first["original"]["npy_url"] != first["adversarial"]["npy_url"]


# --- refusals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query, status, words", [
    ("?epsilon=0", 422, "epsilon"),
    ("?epsilon=1.5", 422, "epsilon"),
    ("?method=cw", 422, "method"),
    ("?method=pgd&steps=101", 422, "steps"),
    ("?method=pgd&steps=0", 422, "steps"),
    ("?method=pgd&alpha=0", 422, "alpha"),
    ("?method=fgsm&steps=5", 422, "PGD's"),
    ("?method=fgsm&random_start=true", 422, "PGD's"),
    ("?method=pgd&seed=3", 422, "random_start=true"),
    ("?target=10", 422, "use 0 to 9"),
    ("?target=-1", 422, "target"),
])
def test_refusals_of_options(adv_client, digits, query, status, words):
    response = adv_client.post(URL.format("digits_classic") + query, content=npy_bytes(digits[0][:1]), headers=NPY)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_refuses_a_target_the_model_already_predicts(adv_client, digits):
    label = int(digits[1][0])
    response = adv_client.post(URL.format("digits_classic") + f"?target={label}", content=npy_bytes(digits[0][:1]),
                               headers=NPY)
    assert response.status_code == 422 and "already predicts" in response.json()["detail"]


def test_refuses_a_tensor_that_is_not_a_picture(adv_client):
    x = np.full((1, 1, 28, 28), 9.0, dtype=np.float32)  # pixels 9 · 0.3089 + 0.1314 ≈ 2.9
    response = adv_client.post(URL.format("digits_classic"), content=npy_bytes(x), headers=NPY)
    assert response.status_code == 422 and "outside [0, 1]" in response.json()["detail"]


def test_refuses_a_model_without_pixels(adv_client):
    x = np.zeros((1, 2, 16), dtype=np.float32)
    response = adv_client.post(URL.format("tiny_sequence"), content=npy_bytes(x), headers=NPY)
    assert response.status_code == 422 and "image (C, H, W)" in response.json()["detail"]


def test_refuses_a_wrong_shape_unknown_model_and_missing_body(adv_client):
    response = adv_client.post(URL.format("digits_classic"), content=npy_bytes(np.zeros((1, 1, 12, 12))),
                               headers=NPY)
    assert response.status_code == 422 and "[1, 28, 28]" in response.json()["detail"]
    assert adv_client.post(URL.format("nope"), content=npy_bytes(np.zeros((1, 1, 28, 28))),
                           headers=NPY).status_code == 404
    assert adv_client.post(URL.format("digits_classic"), content=b"", headers=NPY).status_code == 422


def test_refuses_work_beyond_the_budget(settings, digits):
    settings.max_attention_gmacs = 0.01  # digits_classic: 0.00036 GMACs a pass, about 27 passes
    app = create_app(settings)
    loaders = builtin_loaders(settings.data_dir / "cache")
    app.dependency_overrides[get_model_store] = lambda: ModelStore(
        settings.data_dir, builtins={"digits_classic": loaders["digits_classic"]})
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(URL.format("digits_classic") + "?method=pgd&steps=100", content=npy_bytes(digits[0][:1]),
                               headers=NPY)
        assert response.status_code == 422, response.text
        assert "use at most" in response.json()["detail"] and "CNN_VIS_MAX_ATTENTION_GMACS" in response.json()["detail"]
        assert client.post(URL.format("digits_classic") + "?method=pgd&steps=3", content=npy_bytes(digits[0][:1]),
                           headers=NPY).status_code == 200


def test_unknown_or_malformed_tensor_names(adv_client):
    response = adv_client.get("/api/adversarial/tensors/" + "0" * 32 + ".npy")
    assert response.status_code == 404 and "expired" in response.json()["detail"]
    assert adv_client.get("/api/adversarial/tensors/..%2Fsecret.npy").status_code == 404
    assert adv_client.get("/api/adversarial/tensors/XYZ.npy").status_code == 404


# --- the robustness curve -------------------------------------------------------------------------------------


def test_robustness_curve_is_a_job_then_cached(adv_client):
    created = adv_client.get(URL.format("digits_classic") + "/robustness?method=fgsm&n=100")
    assert created.status_code == 202, created.text
    assert created.headers["location"] == created.json()["status_url"]
    result = finish_job(adv_client, created.json())
    assert result.status_code == 200, result.text
    data = result.json()
    assert data["epsilons"] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3] and data["n"] == 100 and data["steps"] == 1
    assert data["accuracy"][0] == data["correct"] / 100 >= 0.95
    assert data["flip_rate"][0] == 0 and data["accuracy"][-1] < data["accuracy"][0]
    # against the engine directly, at ε = 0.2
    bundle = load_model("digits_classic")
    pixels, labels = load_mnist("test", normalize=False, limit=100)
    curve = robustness_curve(bundle.graph, bundle.params, PixelSpace(bundle.preprocessing.mean,
                                                                     bundle.preprocessing.std),
                             pixels, labels, [0.2])
    assert data["accuracy"][4] == curve.accuracy[0]
    again = adv_client.get(URL.format("digits_classic") + "/robustness?method=fgsm&n=100")
    assert again.status_code == 200 and again.json() == data


def test_robustness_with_pgd(adv_client):
    created = adv_client.get(URL.format("digits_classic") + "/robustness?method=pgd&n=100&steps=2")
    data = finish_job(adv_client, created.json()).json()
    assert data["method"] == "pgd" and data["steps"] == 2 and "2.5" in data["alpha_rule"]


@pytest.mark.parametrize("model, query, words", [
    ("tiny", "", "digit classifier"),
    ("digits_classic", "?n=50", "n"),
    ("digits_classic", "?n=5000", "n"),
    ("digits_classic", "?method=fgsm&steps=3", "PGD's"),
    ("digits_classic", "?method=pgd&steps=50", "steps"),
])
def test_robustness_refusals(adv_client, model, query, words):
    response = adv_client.get(URL.format(model) + "/robustness" + query)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]

