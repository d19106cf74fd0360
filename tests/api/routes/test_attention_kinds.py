"""POST /api/models/{id}/attention for uploaded ONNX models beyond images: a Conv1d network on sequences (C, L),
a Conv3d network on clips (C, D, H, W), and a segmentation network whose output is a map of class scores (K, H, W)
explained over a region. Every refusal is a 4xx naming what works, never a 500."""

from __future__ import annotations

import numpy as np
import pytest

from engine.attention.budget import graph_macs
from tests.api.attention_jobs import follow_job
from tests.api.conftest import npy_bytes
from tests.api.routes.test_attention import decode_png

onnx = pytest.importorskip("onnx")
from tests.app.onnx_models import Builder, run_onnxruntime  # noqa: E402

NPY = {"content-type": "application/x-npy"}


def conv_classifier(spatial: list[int], seed: int = 0) -> Builder:
    """Conv (k 3, pad 1) -> Relu -> MaxPool 2 -> Conv (k 3, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm
    (3 classes), for an input [1, 2, *spatial]: Conv1d for one spatial axis, Conv3d for three."""
    nd = len(spatial)
    b = Builder([1, 2, *spatial], seed=seed)
    h = b.node("Conv", ["x", b.weight((4, 2, *[3] * nd)), b.weight((4,))], kernel_shape=[3] * nd, pads=[1] * 2 * nd)
    h = b.node("Relu", [h])
    h = b.node("MaxPool", [h], kernel_shape=[2] * nd, strides=[2] * nd)
    h = b.node("Conv", [h, b.weight((5, 4, *[3] * nd)), b.weight((5,))], kernel_shape=[3] * nd, pads=[1] * 2 * nd)
    h = b.node("Relu", [h], name="act")
    h = b.node("GlobalAveragePool", [h])
    h = b.node("Flatten", [h], axis=1)
    b.output = b.node("Gemm", [h, b.weight((3, 5)), b.weight((3,))], transB=1)
    return b


def segmenter() -> Builder:
    """Conv 3x3 (pad 1) -> Relu -> Conv 1x1 to 3 classes: logits [1, 3, 8, 8] for an input [1, 2, 8, 8]."""
    b = Builder([1, 2, 8, 8], seed=3)
    h = b.node("Conv", ["x", b.weight((4, 2, 3, 3)), b.weight((4,))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.node("Relu", [h], name="act")
    b.output = b.node("Conv", [h, b.weight((3, 4, 1, 1)), b.weight((3,))], kernel_shape=[1, 1])
    return b


def upload(client, builder: Builder) -> tuple[str, bytes]:
    model = builder.build(builder.output)
    response = client.post("/api/models", files={"file": ("net.onnx", model, "application/octet-stream")},
                           data={"labels": "a\nb\nc"})
    assert response.status_code == 201, response.text
    return response.json()["id"], model


def attention(client, model_id: str, x: np.ndarray, query: str = ""):
    return client.post(f"/api/models/{model_id}/attention?{query}", content=npy_bytes(x), headers=NPY)


def test_a_conv1d_model_gets_sequence_maps(client):
    from app.importers import import_onnx
    from engine import Graph
    from engine.attention import explain

    builder = conv_classifier([32])
    model_id, model = upload(client, builder)
    x = builder.sample(1)
    response = attention(client, model_id, x, "method=gradcam&target=2&include_input_map=true")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["kind"] == "sequence" and data["target"] == 2 and data["target_label"] == "c"
    assert data["layer_shape"] == [16] and data["input_shape"] == [32] and data["region"] is None
    spec, params, _ = import_onnx(model)
    expected = explain(Graph(spec), params, x, "gradcam", target=2)
    np.testing.assert_allclose(data["layer_map"], expected.layer_map, rtol=1e-4, atol=1e-6)
    assert len(data["input_map"]) == 32 and min(data["input_map"]) >= 0 and max(data["input_map"]) == 1
    assert decode_png(data["input_map_png"]).shape == (16, 32, 3)
    assert data["score"] == pytest.approx(float(run_onnxruntime(model, x)[0, 2]), rel=1e-4)
    gradients = attention(client, model_id, x, "method=gradient_x_input").json()
    assert gradients["kind"] == "sequence" and gradients["layer"] == "input" and gradients["signed"] is True
    assert len(gradients["layer_map"]) == 32 and gradients["input_map"] is None


def test_a_conv3d_model_gets_volume_maps_slice_by_slice(client):
    builder = conv_classifier([4, 8, 8], seed=1)
    model_id, model = upload(client, builder)
    x = builder.sample(1)
    response = attention(client, model_id, x, "method=gradcam&include_input_map=true")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["kind"] == "volume" and data["layer_shape"] == [2, 4, 4] and data["input_shape"] == [4, 8, 8]
    assert np.array(data["layer_map"]).shape == (2, 4, 4) and np.array(data["input_map"]).shape == (4, 8, 8)
    assert data["target"] == int(np.argmax(run_onnxruntime(model, x)[0]))
    for name in ("input_map_png", "overlay_png", "picture_png"):  # 4 frames of 8 x 8 side by side
        assert decode_png(data[name]).shape == (8, 32, 3), name
    # the third 8-pixel-wide frame of the picture is frame 2 of the clip, min-max scaled over the whole clip (two
    # channels: the first is shown in grey)
    picture = decode_png(data["picture_png"]).astype(int)
    lo, hi = x[0].min(), x[0].max()
    expected = ((x[0, 0, 2] - lo) / (hi - lo) * 255 + 0.5).astype(int)
    assert np.abs(picture[:, 16:24, 0] - expected).max() <= 1


def test_heavy_methods_on_a_volume_run_as_jobs_with_volume_answers(client):
    builder = conv_classifier([4, 8, 8], seed=2)
    model_id, _ = upload(client, builder)
    x = builder.sample(1)
    done = follow_job(client, attention(client, model_id, x, "method=occlusion&window=4&stride=4&target=0"))
    assert done.status_code == 200, done.text
    data = done.json()
    # windows of 4 x 4 x 4 over a 4 x 8 x 8 clip: 1 x 2 x 2
    assert data["kind"] == "volume" and data["extras"]["windows"] == 4
    assert np.array(data["layer_map"]).shape == (4, 8, 8)


def test_a_segmentation_model_explains_a_region(client):
    model_id, model = upload(client, segmenter())
    x = segmenter().sample(1)
    logits = run_onnxruntime(model, x)
    response = attention(client, model_id, x, "method=saliency&target=1&region=2,2,6,5")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["kind"] == "image" and data["region"] == [2, 2, 6, 5] and data["target"] == 1
    assert data["score"] == pytest.approx(float(logits[0, 1, 2:6, 2:5].sum()), rel=1e-4)
    # the region reads input rows 1..6 and columns 1..5 only (one 3x3 convolution, then a 1x1)
    layer_map = np.array(data["layer_map"])
    assert np.all(layer_map[[0, 7], :] == 0) and np.all(layer_map[:, [0, 6, 7]] == 0)
    assert np.all(layer_map[1:7, 1:6] >= 0) and layer_map[1:7, 1:6].max() > 0
    whole = attention(client, model_id, x, "method=gradcam").json()
    assert whole["region"] is None and whole["layer"] == "act"
    assert whole["target"] == int(np.argmax(logits[0].sum(axis=(1, 2))))
    assert whole["score"] == pytest.approx(float(logits[0, whole["target"]].sum()), rel=1e-4)
    bracketed = attention(client, model_id, x, "method=gradcam&region=[0, 0, 8, 8]")
    assert bracketed.status_code == 200 and bracketed.json()["region"] == [0, 0, 8, 8]


def test_a_region_survives_the_background_job(client):
    model_id, model = upload(client, segmenter())
    x = segmenter().sample(1)
    done = follow_job(client, attention(client, model_id, x, "method=occlusion&window=1&stride=1&target=2"
                                                               "&region=0,0,2,2"))
    assert done.status_code == 200, done.text
    data = done.json()
    assert data["region"] == [0, 0, 2, 2]
    assert data["score"] == pytest.approx(float(run_onnxruntime(model, x)[0, 2, :2, :2].sum()), rel=1e-4)
    layer_map = np.array(data["layer_map"])  # the 2 x 2 corner reads input rows and columns 0..2 only
    assert np.all(layer_map[3:] == 0) and np.all(layer_map[:, 3:] == 0) and np.abs(layer_map[:3, :3]).max() > 0


@pytest.mark.parametrize("query, words", [
    ("region=2,2,5,9", "x needs 0 <= x0 < x1 <= 8 (half-open), got x0 = 2, x1 = 9"),
    ("region=2,2,5", "4 integers [y0, x0, y1, x1]"),
    ("region=a,b,c,d", "integers separated by commas"),
    ("method=eigencam&region=0,0,2,2", "takes no region"),
    ("method=cam", "CAM needs"),
    ("target=3", "use 0 to 2"),
])
def test_segmentation_refusals_name_what_works(client, query, words):
    model_id, _ = upload(client, segmenter())
    response = attention(client, model_id, segmenter().sample(1), query)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_a_region_for_a_classifier_is_refused(client):
    builder = conv_classifier([32])
    model_id, _ = upload(client, builder)
    response = attention(client, model_id, builder.sample(1), "region=0,4")
    assert response.status_code == 422 and "leave region out" in response.json()["detail"]


def test_a_model_no_method_explains_is_told_so_before_the_budget(client, settings):
    b = Builder([1, 12])
    b.output = b.node("Gemm", ["x", b.weight((3, 12)), b.weight((3,))], transB=1)
    model_id, _ = upload(client, b)
    settings.max_attention_gmacs = 1e-12  # nothing fits
    response = attention(client, model_id, b.sample(1), "method=gradcam")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "1, 2 or 3 spatial axes" in detail and "allows per request" not in detail


def test_the_budget_refusal_names_another_method_or_the_setting(client, settings):
    builder = conv_classifier([4, 8, 8])
    model_id, _ = upload(client, builder)
    from app.importers import import_onnx
    from engine import Graph

    per_pass = graph_macs(Graph(import_onnx(builder.build(builder.output))[0]))
    x = builder.sample(1)
    settings.max_attention_gmacs = 1.5 * per_pass / 1e9  # one forward pass fits, a backward pass does not
    refused = attention(client, model_id, x, "method=gradcam")
    assert refused.status_code == 422 and "try eigencam" in refused.json()["detail"], refused.text
    assert attention(client, model_id, x, "method=eigencam").status_code == 200
    settings.max_attention_gmacs = 0.5 * per_pass / 1e9
    nothing = attention(client, model_id, x, "method=gradcam")
    assert nothing.status_code == 422 and "raise the server's CNN_VIS_MAX_ATTENTION_GMACS" in nothing.json()["detail"]


def test_every_method_on_a_volume_answers_and_none_fails_with_500(client):
    builder = conv_classifier([4, 8, 8], seed=4)
    model_id, _ = upload(client, builder)
    x = builder.sample(1)
    methods = [m["name"] for m in client.get("/api/attention/methods").json()["methods"]]
    for method in methods:
        response = client.post(f"/api/models/{model_id}/attention", content=npy_bytes(x), headers=NPY,
                               params={"method": method, "samples": 2, "steps": 4, "window": 4, "stride": 4})
        if response.status_code == 202:
            response = follow_job(client, response)
        if method == "learned_attention":
            assert response.status_code == 422 and "no attention layer" in response.json()["detail"]
            continue
        assert response.status_code == 200, f"{method}: {response.text}"
        assert response.json()["kind"] == "volume" and response.json()["input_shape"] == [4, 8, 8]
