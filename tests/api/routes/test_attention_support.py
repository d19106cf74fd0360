"""GET /api/models/{id}/attention (what can explain a model, before any input) and the colour scales of
GET /api/attention/methods, on uploaded Conv1d, Conv3d, segmentation and fully connected models. Each method's
availability must be the POST's own verdict: a method called unavailable is refused by the POST with the same
reason, and one called available is answered."""

from __future__ import annotations

import numpy as np
import pytest

from tests.api.routes.test_attention import decode_png

onnx = pytest.importorskip("onnx")
from tests.api.routes.test_attention_kinds import attention, conv_classifier, segmenter, upload  # noqa: E402
from tests.app.onnx_models import Builder  # noqa: E402


def support(client, model_id: str) -> dict:
    response = client.get(f"/api/models/{model_id}/attention")
    assert response.status_code == 200, response.text
    return response.json()


def by_name(answer: dict) -> dict[str, dict]:
    return {m["name"]: m for m in answer["methods"]}


def interpolate(stops: list[dict], values: np.ndarray) -> np.ndarray:
    """The scale's colours at ``values``, as the legend draws them: linear between the stops."""
    positions = [s["value"] for s in stops]
    return np.stack([np.interp(values, positions, [s["rgb"][i] for s in stops]) for i in range(3)], axis=-1)


def test_a_conv1d_model_is_a_sequence_with_class_scores(client):
    builder = conv_classifier([32])
    model_id, _ = upload(client, builder)
    answer = support(client, model_id)
    assert answer["input_kind"] == "sequence" and answer["input_shape"] == [2, 32]
    assert answer["input_axes"] == "(C, L)" and answer["takes_images"] is False and answer["explainable"] is True
    assert answer["expected_input"] == ("a .npy file holding a float array of shape [2, 32] (C, L: 2 channels, "
                                        "32 positions), or [1, 2, 32]")
    assert answer["output_kind"] == "classes" and answer["output_shape"] == [3]
    assert answer["region_axes"] is None and answer["region_shape"] is None
    methods = by_name(answer)
    assert [m["name"] for m in answer["methods"]] == [
        m["name"] for m in client.get("/api/attention/methods").json()["methods"]]
    unavailable = {name for name, m in methods.items() if not m["available"]}
    assert unavailable == {"learned_attention"}, unavailable
    assert "no attention layer" in methods["learned_attention"]["reason"]
    assert methods["gradcam"]["reason"] is None
    # layers with the input's one spatial axis; the default feeds the global pooling, as the POST's default
    nodes = {n["id"]: n["output_shape"] for n in client.get(f"/api/models/{model_id}").json()["architecture"]["nodes"]}
    assert answer["layers"] and all(len(nodes[n]) == 2 for n in answer["layers"])
    assert answer["default_layer"] == "act" == attention(client, model_id, builder.sample(1)).json()["layer"]


def test_a_sequence_answer_carries_the_signal_the_model_saw(client):
    builder = conv_classifier([32])
    model_id, _ = upload(client, builder)
    x = builder.sample(1)
    data = attention(client, model_id, x, "method=saliency&include_input_map=true").json()
    assert data["kind"] == "sequence"
    np.testing.assert_allclose(data["input_values"], x[0], rtol=1e-5, atol=1e-6)
    # the legend's scale is the strip's: every pixel is the scale's colour at the map's value
    scales = client.get("/api/attention/methods").json()["scales"]
    strip = decode_png(data["input_map_png"])[0].astype(float)
    expected = interpolate(scales["unsigned"], np.array(data["input_map"]))
    assert np.abs(strip - expected).max() <= 1, "the strip's colours are not the unsigned scale's"
    # negative control: read with the signed scale, the colours differ
    assert np.abs(strip - interpolate(scales["signed"], np.array(data["input_map"]))).max() > 20


def test_the_signed_scale_runs_from_minus_one_to_one(client):
    scales = client.get("/api/attention/methods").json()["scales"]
    assert [s["value"] for s in scales["signed"]] == [-1.0, 0.0, 1.0]
    assert scales["signed"][1]["rgb"] == [247, 247, 247]  # zero is white
    assert scales["unsigned"][0]["value"] == 0.0 and scales["unsigned"][-1]["value"] == 1.0


def test_a_conv3d_model_is_a_volume(client):
    model_id, _ = upload(client, conv_classifier([4, 8, 8], seed=1))
    answer = support(client, model_id)
    assert answer["input_kind"] == "volume" and answer["input_axes"] == "(C, D, H, W)"
    assert "[2, 4, 8, 8] (C, D, H, W: 2 channels, 4 slices of 8 × 8), or [1, 2, 4, 8, 8]" in answer["expected_input"]


def test_a_segmentation_model_offers_a_region_and_says_why_cam_does_not_apply(client):
    model_id, _ = upload(client, segmenter())
    answer = support(client, model_id)
    assert answer["input_kind"] == "image" and answer["takes_images"] is False
    assert answer["output_kind"] == "map" and answer["output_shape"] == [3, 8, 8]
    assert answer["region_axes"] == ["y", "x"] and answer["region_shape"] == [8, 8]
    methods = by_name(answer)
    x = segmenter().sample(1)
    # every verdict is the POST's: an unavailable method is refused with this reason, an available one answered
    for name in ("cam", "learned_attention", "gradcam", "saliency"):
        response = attention(client, model_id, x, f"method={name}")
        if methods[name]["available"]:
            assert response.status_code == 200, (name, response.text)
        else:
            assert response.status_code == 422, (name, response.text)
            assert response.json()["detail"] == methods[name]["reason"], name
    assert not methods["cam"]["available"] and methods["gradcam"]["available"]


def test_a_model_without_spatial_axes_cannot_be_explained(client):
    b = Builder([1, 6], seed=4)
    b.output = b.node("Gemm", ["x", b.weight((3, 6)), b.weight((3,))], transB=1)
    model_id, _ = upload(client, b)
    answer = support(client, model_id)
    assert answer["explainable"] is False and answer["input_kind"] is None and answer["input_axes"] is None
    assert "no spatial axis" in answer["reason"]
    assert answer["expected_input"] == "a .npy file holding a float array of shape [6], or [1, 6]"
    assert not any(m["available"] for m in answer["methods"])
    assert answer["layers"] == [] and answer["default_layer"] is None


def test_an_image_model_takes_images(client):
    answer = support(client, "tiny")
    assert answer["input_kind"] == "image" and answer["takes_images"] is True
    assert answer["expected_input"].startswith("an image, or a .npy file holding a float array of shape [1, 12, 12]")
    assert answer["default_layer"] == "relu2" and "relu2" in answer["layers"] and "fc" not in answer["layers"]


def test_an_unknown_model_is_404(client):
    assert client.get("/api/models/nope/attention").status_code == 404
