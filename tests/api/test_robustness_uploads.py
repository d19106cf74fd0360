"""Uploads and deletes under stress: broken ONNX files, damaged images, and deletes racing other requests.

Regression tests for bugs found by hand-crafted inputs (issue 5): each was a 500, or a model accepted
that could only ever answer NaN or be refused.
"""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest
from PIL import Image

import app.services.model_files as model_files_module
import app.services.models as models_module
from tests.api.conftest import npy_bytes, png_bytes

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def conv_onnx(weights: np.ndarray | None = None, input_shape=(1, 1, 8, 8), short: bool = False) -> bytes:
    """x -> Conv 3x3 (pad 1) -> y, one input channel, two output channels."""
    w = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.5, np.float32) if weights is None else weights, "w")
    if short:  # fewer values stored than the shape declares, as a broken exporter might write
        w.raw_data = w.raw_data[:20]
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def upload(client, data: bytes):
    return client.post("/api/models", files={"file": ("m.onnx", data, "application/octet-stream")})


def clear_error(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:500])
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10
    return detail


def test_onnx_with_truncated_initializer_is_a_422(client):
    # was a 500 (ValueError from numpy_helper.to_array)
    detail = clear_error(upload(client, conv_onnx(short=True)), 422)
    assert "initializer 'w'" in detail and "export" in detail


def test_onnx_with_nan_weights_is_refused(client):
    # was accepted: every answer would have been NaN (null in JSON)
    weights = np.full((2, 1, 3, 3), np.nan, np.float32)
    detail = clear_error(upload(client, conv_onnx(weights)), 422)
    assert "NaN or infinity" in detail and "conv" in detail


def test_onnx_whose_input_could_never_be_sent_is_refused(client, settings):
    # was accepted: an input of 10^15 values can never pass the tensor limit
    detail = clear_error(upload(client, conv_onnx(input_shape=(1, 1, 10**5, 10**5))), 422)
    assert "10,000,000,000 values" in detail and f"{settings.max_tensor_elements:,}" in detail
    assert not list((settings.data_dir / "models").glob("onnx-*"))


def test_a_good_onnx_still_uploads(client):
    response = upload(client, conv_onnx())
    assert response.status_code == 201, response.text


# --- deletes racing other requests ----------------------------------------------------------------

def test_delete_racing_another_delete_is_a_404_and_leaves_nothing(client, settings, monkeypatch):
    model_id = upload(client, conv_onnx()).json()["id"]
    real_rename = os.rename

    def rename_after_the_other_delete(source, target):
        real_rename(source, str(target) + "-other")  # the other request's delete wins the race
        return real_rename(source, target)

    monkeypatch.setattr(models_module.os, "rename", rename_after_the_other_delete)
    # was a 500 (FileNotFoundError), leaving a .delete-* directory behind
    assert "no model" in clear_error(client.delete(f"/api/models/{model_id}"), 404)
    monkeypatch.undo()
    leftovers = [p.name for p in (settings.data_dir / "models").iterdir()  # the other request removes its own
                 if p.name.startswith(".delete-") and not p.name.endswith("-other")]
    assert leftovers == []


def test_model_deleted_while_being_loaded_is_a_404(client, store, monkeypatch):
    model_id = upload(client, conv_onnx()).json()["id"]
    store._uploaded_cache.clear()  # another worker process: the model is loaded from disk
    real_read = model_files_module.read_weights

    def read_after_a_delete(path):
        client.delete(f"/api/models/{model_id}")  # another request deletes it meanwhile
        return real_read(path)

    monkeypatch.setattr(model_files_module, "read_weights", read_after_a_delete)
    # was a 500 (FileNotFoundError reading the weights)
    body = npy_bytes(np.zeros((1, 1, 8, 8), np.float32))
    response = client.post(f"/api/models/{model_id}/forward", content=body,
                           headers={"content-type": "application/x-npy"})
    assert "no model" in clear_error(response, 404)


def test_concurrent_deletes_and_uses(client, settings):
    model_id = upload(client, conv_onnx()).json()["id"]
    statuses: list[tuple[str, int, str]] = []
    body = npy_bytes(np.zeros((1, 1, 8, 8), np.float32))

    def delete() -> None:
        statuses.append(("delete", client.delete(f"/api/models/{model_id}").status_code, ""))

    def use() -> None:
        response = client.post(f"/api/models/{model_id}/forward", content=body,
                               headers={"content-type": "application/x-npy"})
        statuses.append(("use", response.status_code, response.text[:300]))

    threads = [threading.Thread(target=delete if i % 2 else use) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [s for kind, s, _ in statuses if kind == "delete"].count(204) == 1
    assert all(status in (200, 204, 404) for _, status, _ in statuses), statuses
    assert client.get("/api/models").status_code == 200
    assert not [p for p in (settings.data_dir / "models").iterdir() if p.name.startswith((".delete-", model_id))]


# --- damaged images ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cut", [30, 300])
def test_truncated_jpeg_header_is_a_422(client, cut):
    # was a 500: Pillow raises OSError ("Truncated File Read") while reading the header
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "red").save(buffer, format="JPEG")
    response = client.post("/api/models/tiny/predict", files={"image": ("cut.jpg", buffer.getvalue()[:cut])})
    assert "damaged or incomplete" in clear_error(response, 422)


def test_png_still_reads(client):
    assert client.post("/api/models/tiny/predict", files={"image": ("a.png", png_bytes())}).status_code == 200


@pytest.mark.parametrize("chunk_type, payload", [(b"zTXt", b"k\x00\x00"), (b"iCCP", b"p\x00\x00")])
def test_png_metadata_bomb_is_a_413(client, chunk_type, payload):
    # was a 500 (ValueError from Pillow's MAX_TEXT_CHUNK guard while reading the header)
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = png_bytes(8, 8)
    bomb = png[:33] + chunk(chunk_type, payload + zlib.compress(b"\0" * 20_000_000, 9)) + png[33:]
    assert len(bomb) < 100_000
    response = client.post("/api/models/tiny/predict", files={"image": ("bomb.png", bomb)})
    assert "metadata" in clear_error(response, 413)


def test_onnx_with_too_many_nodes_is_refused_before_importing(client, monkeypatch):
    # a 2.4 MB file of 100,000 Relus took 7 s to import and 5 s per GET of its architecture
    import app.importers.onnx_import as onnx_import

    monkeypatch.setattr(onnx_import, "MAX_ONNX_NODES", 50)
    names = ["x", *(f"t{i}" for i in range(59)), "y"]
    nodes = [helper.make_node("Relu", [names[i]], [names[i + 1]]) for i in range(60)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    detail = clear_error(upload(client, model.SerializeToString()), 422)
    assert "60 ONNX nodes" in detail and "at most 50" in detail


def overflowing_onnx() -> bytes:
    """Two 3x3 convolutions with weights 1e30: finite weights, but activations beyond float32 (inf, then NaN)."""
    w1 = numpy_helper.from_array(np.full((2, 1, 3, 3), 1e30, np.float32), "w1")
    w2 = numpy_helper.from_array(np.full((2, 2, 3, 3), 1e30, np.float32), "w2")
    fw = numpy_helper.from_array(np.ones((3, 2), np.float32), "fw")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu1"),
             helper.make_node("Conv", ["r", "w2"], ["b"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["b"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, w2, fw])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warning, as in production (not an error)
@pytest.mark.parametrize("request_path, where", [
    ("predict", "in its output"),
    ("activations", "from node 'conv2' on"),
    ("attention?method=gradcam&layer=relu2", "gradcam map"),
    ("attention?method=eigencam&layer=relu2", "eigencam"),  # was a 500 (LinAlgError: SVD of NaN)
    ("attention?method=saliency", "saliency map"),
])
def test_model_whose_activations_overflow_is_a_422_naming_where(client, request_path, where):
    # were 200s whose probabilities, logits, maps and statistics were null
    model_id = upload(client, overflowing_onnx()).json()["id"]
    body = npy_bytes(np.ones((1, 1, 8, 8), np.float32))
    response = client.post(f"/api/models/{model_id}/{request_path}", content=body,
                           headers={"content-type": "application/x-npy"})
    detail = clear_error(response, 422)
    assert "infinity or NaN" in detail and where in detail
