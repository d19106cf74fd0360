"""POST /api/models (ONNX upload) and DELETE /api/models/{id}: stored, survive restarts, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from app.services.models import ModelStore
from tests.api.conftest import npy_bytes, npy_load, png_bytes, tiny_bundle

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

NPY = {"content-type": "application/x-npy"}


def small_onnx(seed: int = 0, classes: int = 4, op: str = "Relu") -> bytes:
    """Conv 3x3 (pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm, input [1, 3, 8, 8]."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((5, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    fw = numpy_helper.from_array(rng.standard_normal((classes, 5)).astype(np.float32), "fw")
    fb = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "fb")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node(op, ["c"], ["r"], name="act"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])], [w, b, fw, fb])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def upload(client, data: bytes, **fields):
    return client.post("/api/models", files={"file": ("small.onnx", data, "application/octet-stream")}, data=fields)


def test_upload_predict_matches_onnxruntime(client):
    ort = pytest.importorskip("onnxruntime")
    data = small_onnx()
    response = upload(client, data, name="Small net", labels="cat\ndog\ncar\ncup")
    assert response.status_code == 201, response.text
    created = response.json()
    model_id = created["id"]
    assert model_id.startswith("onnx-") and created["created"] is True and created["builtin"] is False
    assert created["name"] == "Small net" and created["input_shape"] == [3, 8, 8] and created["num_classes"] == 4
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    out = npy_load(client.post(f"/api/models/{model_id}/forward", content=npy_bytes(x), headers=NPY).content)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for i in range(2):  # the ONNX input has batch 1
        (reference,) = session.run(None, {"x": x[i:i + 1]})
        np.testing.assert_allclose(out[i:i + 1], reference, atol=1e-4)
    top = client.post(f"/api/models/{model_id}/predict?top_k=1", content=npy_bytes(x[:1]), headers=NPY).json()
    (reference,) = session.run(None, {"x": x[:1]})
    assert top["classes"][0]["label"] == ["cat", "dog", "car", "cup"][int(np.argmax(reference))]
    image = client.post(f"/api/models/{model_id}/activations", files={"image": ("a.png", png_bytes(), "image/png")})
    assert image.status_code == 200 and image.json()["input_shape"] == [1, 3, 8, 8]


def test_uploaded_model_is_listed_kept_across_restarts_and_deleted(client, settings):
    data = small_onnx(seed=2)
    model_id = upload(client, data).json()["id"]
    assert model_id in [m["id"] for m in client.get("/api/models").json()["models"]]
    again = upload(client, data)
    assert again.status_code == 200 and again.json()["id"] == model_id and again.json()["created"] is False
    restarted = ModelStore(settings.data_dir, builtins={"tiny": tiny_bundle})  # a new process, same data dir
    assert model_id in restarted.ids()
    assert restarted.get(model_id).graph.input_shape == (3, 8, 8)
    assert client.get(f"/api/models/{model_id}").json()["architecture"]["nodes"][0]["op"] == "conv2d"
    assert client.delete(f"/api/models/{model_id}").status_code == 204
    assert client.get(f"/api/models/{model_id}").status_code == 404
    assert model_id not in restarted.ids()
    assert client.delete(f"/api/models/{model_id}").status_code == 404


def test_builtin_models_cannot_be_deleted(client):
    response = client.delete("/api/models/tiny")
    assert response.status_code == 403 and "built-in" in response.json()["detail"]


def test_bad_uploads(client, settings):
    garbage = upload(client, b"this is not a protobuf at all" * 10)
    assert garbage.status_code == 422, garbage.text
    unsupported = upload(client, small_onnx(op="Celu"))
    assert unsupported.status_code == 422
    assert "Celu" in unsupported.json()["detail"] and unsupported.json()["unsupported"][0]["op_type"] == "Celu"
    labels = upload(client, small_onnx(seed=3), labels='["a", "b"]')
    assert labels.status_code == 422 and "4" in labels.json()["detail"]
    bad_json = upload(client, small_onnx(seed=3), labels='["a", ')
    assert bad_json.status_code == 422
    missing = client.post("/api/models", data={"name": "x"})
    assert missing.status_code == 422 and "file" in missing.json()["detail"]
    preset = upload(client, small_onnx(seed=3), preprocessing="sepia")
    assert preset.status_code == 422
    too_big = upload(client, b"\0" * (settings.max_model_bytes + 10))
    assert too_big.status_code == 413


def decoder_onnx(seed: int = 3) -> bytes:
    """Reflect Pad -> Conv 3x3 -> Relu -> Resize nearest x2 -> Conv 3x3 (pad 1), input [1, 2, 6, 6] -> [1, 3, 12, 12]:
    a segmentation-style head whose pad and upsampling become the engine's ``pad`` and ``upsample`` nodes."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((3, 4, 3, 3)).astype(np.float32), "w2")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], name="reflect", mode="reflect"),
        helper.make_node("Conv", ["p", "w1"], ["c"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="act"),
        helper.make_node("Resize", ["r", "", "scales"], ["u"], name="up", mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Conv", ["u", "w2"], ["y"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "decoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [w1, w2, pads, scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_uploaded_model_with_pad_and_upsample_runs_everywhere(client):
    """Upload, every feature map, the receptive field of a unit after the pad, a clear 422 saying why there is
    none after the upsample, and the output against onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    data = decoder_onnx()
    model_id = upload(client, data).json()["id"]
    ops = [node["op"] for node in client.get(f"/api/models/{model_id}").json()["architecture"]["nodes"]]
    assert ops == ["pad", "conv2d", "relu", "upsample", "conv2d"]
    x = np.random.default_rng(4).standard_normal((1, 2, 6, 6)).astype(np.float32)
    out = npy_load(client.post(f"/api/models/{model_id}/forward", content=npy_bytes(x), headers=NPY).content)
    (reference,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(out, reference, atol=1e-4)
    run = client.post(f"/api/models/{model_id}/activations", content=npy_bytes(x), headers=NPY)
    assert run.status_code == 200, run.text
    for node in run.json()["nodes"]:
        assert client.get(node["png_url"]).status_code == 200, node["id"]
    nodes = [node["id"] for node in run.json()["nodes"]][1:]  # after the input
    after_pad = client.post(f"/api/models/{model_id}/receptive-field", json={"node": nodes[1], "index": [0, 0]}).json()
    assert after_pad["receptive_field"]["status"] == "local"
    assert [axis["size"] for axis in after_pad["receptive_field"]["axes"]] == [3, 3]
    after_up = client.post(f"/api/models/{model_id}/receptive-field", json={"node": nodes[3], "index": [0, 0]})
    assert after_up.status_code == 422 and "'up' is an upsample" in after_up.json()["detail"]


def test_a_tiny_file_that_upsamples_to_gigabytes_is_refused(client):
    """A 200-byte model whose Resize makes 3 × 10752 × 10752 values for one input: a clear 422 at upload, before
    any run could allocate them; the same model with a modest factor imports."""
    def resize_model(factor: int) -> bytes:
        scales = numpy_helper.from_array(np.array([1, 1, factor, factor], dtype=np.float32), "scales")
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="nearest",
                                coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])
        graph = helper.make_graph([node], "big", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  [scales])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        return model.SerializeToString()

    refused = upload(client, resize_model(48))
    assert refused.status_code == 422, refused.text
    assert "activation values" in refused.json()["detail"] and "'up'" in refused.json()["detail"]
    assert upload(client, resize_model(2)).status_code == 201


def test_a_malformed_model_is_a_422_not_a_500(client):
    """A Resize scale of infinity (no exporter writes one) is a clear 422 naming the node."""
    from tests.app.test_onnx_malformed import MALFORMED

    data, _ = MALFORMED["an infinite scale"]
    response = upload(client, data)
    assert response.status_code == 422, response.text
    assert "Resize node 'up'" in response.json()["detail"] and "malformed" in response.json()["detail"]
