"""Big uploads: the file is read from the spooled upload in pieces and imported from a staging file, big imports
take the machine's one import slot, stored weights are mapped (and the compressed ones stored before still load),
the limits are errors in the user's terms, and the defaults let VGG-16 in. The files are small: the limits are
scaled down by the settings."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app.api.routes.models as models_routes
from app.api.deps import get_model_store
from app.core.config import MB, Settings
from app.errors import ApiError
from app.main import MULTIPART_SLACK, create_app
from app.services.models import COPY_PIECE_BYTES, ModelStore, staged_file_name
from app.services.quotas import ModelQuota, check_model_quota
from engine.models.aligned_npz import is_mapped
from tests.api.conftest import npy_bytes, npy_load, tiny_bundle

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tests.api.routes.test_models_upload import small_onnx, upload  # noqa: E402

NPY = {"content-type": "application/x-npy"}
#: VGG-16 as ONNX (float32): 138,357,544 weights and the protobuf around them (scripts/bench_model_upload.py)
VGG16_ONNX_BYTES = 553_433_911


def wide_onnx(outputs: int = 640, seed: int = 0) -> bytes:
    """Flatten -> Gemm of [1, 3, 16, 16]: ``outputs`` x 768 float32 weights (640: 1.9 MiB)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((outputs, 768)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "b")
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


class SpyingStore(ModelStore):
    """A store that records what the upload route hands it and every read of it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.handed: list[type] = []
        self.reads: list[int] = []

    def add_onnx(self, data, *args, **kwargs):
        self.handed.append(type(data))
        if not isinstance(data, bytes):
            real_read = data.read

            def read(size: int = -1) -> bytes:
                piece = real_read(size)
                self.reads.append(len(piece))
                return piece

            data.read = read
        return super().add_onnx(data, *args, **kwargs)


@pytest.fixture
def spying(settings) -> SpyingStore:
    return SpyingStore(settings.data_dir, builtins={"tiny": tiny_bundle})


@pytest.fixture
def spied_client(settings, spying):
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: spying
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_the_upload_is_read_in_pieces_never_whole(spied_client, spying, settings):
    data = wide_onnx(outputs=1200)  # 3.5 MiB: several pieces
    assert len(data) > 3 * COPY_PIECE_BYTES
    response = upload(spied_client, data)
    assert response.status_code == 201, response.text
    assert spying.handed and bytes not in spying.handed  # the spooled file itself, not its bytes
    assert sum(spying.reads) == len(data)
    assert max(spying.reads) <= COPY_PIECE_BYTES, f"one read of {max(spying.reads):,} bytes"
    leftovers = [p.name for p in (settings.data_dir / "models").iterdir() if p.name.startswith(".upload-")]
    assert leftovers == []  # the staging copy is gone


def test_uploaded_weights_are_mapped_and_bit_for_bit(client, store, settings):
    data = wide_onnx(outputs=300, seed=4)
    model_id = upload(client, data).json()["id"]
    reference = {t.name: numpy_helper.to_array(t) for t in onnx.load_model_from_string(data).graph.initializer}
    for source in (store, ModelStore(settings.data_dir, builtins={})):  # this worker, and a fresh one
        params = source.get(model_id).bundle.params
        assert is_mapped(params["fc.weight"]) and not params["fc.weight"].flags.writeable
        assert np.array_equal(params["fc.weight"].view(np.uint32), reference["w"].view(np.uint32))
        assert np.array_equal(params["fc.bias"].view(np.uint32), reference["b"].view(np.uint32))
    fetched = npy_load(client.get(f"/api/models/{model_id}/params/fc.weight.npy").content)
    assert np.array_equal(fetched, reference["w"])


def test_a_model_stored_before_with_compressed_weights_still_answers_the_same(client, store, settings):
    model_id = upload(client, small_onnx(seed=9)).json()["id"]
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    before = npy_load(client.post(f"/api/models/{model_id}/forward", content=npy_bytes(x), headers=NPY).content)
    weights = settings.data_dir / "models" / model_id / "weights.npz"
    params = {name: np.array(value) for name, value in store.get(model_id).bundle.params.items()}
    store._uploaded_cache.clear()  # a restarted worker
    # as every model uploaded before this change is stored; written aside and renamed, never into the mapped file
    np.savez_compressed(weights.with_name("old.npz"), **params)
    os.replace(weights.with_name("old.npz"), weights)
    assert not is_mapped(store.get(model_id).bundle.params["conv.weight"])  # the control: this one is read
    after = npy_load(client.post(f"/api/models/{model_id}/forward", content=npy_bytes(x), headers=NPY).content)
    np.testing.assert_array_equal(after, before)


def test_the_size_limit_is_exact_and_says_the_setting(client, settings):
    limit = settings.max_model_bytes
    over = upload(client, b"\0" * (limit + 1))
    assert over.status_code == 413, over.text
    body = over.json()
    assert f"{limit + 1:,} bytes" in body["detail"] and f"{limit:,} bytes" in body["detail"]
    assert "CNN_VIS_MAX_MODEL_BYTES" in body["detail"] and body["limit_bytes"] == limit
    at_limit = upload(client, b"\0" * limit)  # allowed in, then found not to be ONNX
    assert at_limit.status_code == 422, at_limit.text
    far_over = upload(client, b"\0" * (limit + MULTIPART_SLACK + 1))  # refused while it arrives
    assert far_over.status_code == 413
    empty = upload(client, b"")
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]


def import_slot_client(tmp_path, **overrides) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", preload=False, compute_wait_s=0.3,
                        allowed_hosts=["testserver"], **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_a_big_import_waits_for_the_import_slot(tmp_path, monkeypatch):
    monkeypatch.setattr(models_routes, "IMPORT_SLOT_BYTES", 100)  # small_onnx is 976 bytes: "big" here
    with import_slot_client(tmp_path) as client:
        pool = client.app.state.services.compute.import_pool
        held = pool.take(1, wait_s=1)  # another worker imports a big model
        assert held is not None
        try:
            busy = upload(client, small_onnx(seed=1))
            assert busy.status_code == 503, busy.text
            assert "another big model was being imported" in busy.json()["detail"]
            assert "retry" in busy.json()["detail"]
        finally:
            pool.release(held)
        assert upload(client, small_onnx(seed=1)).status_code == 201
        assert pool.free() == 1  # given back


def test_a_small_import_needs_no_import_slot(tmp_path):
    with import_slot_client(tmp_path) as client:
        pool = client.app.state.services.compute.import_pool
        held = pool.take(1, wait_s=1)
        try:
            assert upload(client, small_onnx(seed=2)).status_code == 201
        finally:
            pool.release(held)


def test_the_openapi_description_states_the_servers_limit(tmp_path):
    for limit in (3 * MB, 700 * MB):
        schema = create_app(Settings(data_dir=tmp_path, preload=False, max_model_bytes=limit)).openapi()
        operation = schema["paths"]["/api/models"]["post"]
        words = f"at most {limit // MB} MiB ({limit:,} bytes"
        assert words in operation["description"], operation["description"]
        body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert words in schema["components"]["schemas"][body]["properties"]["file"]["description"]
        assert "100 MB" not in json.dumps(operation)


def test_the_defaults_let_vgg16_in():
    defaults = Settings(_env_file=None)
    assert defaults.max_model_bytes >= VGG16_ONNX_BYTES
    quota = ModelQuota(defaults.quota_models_per_owner, defaults.quota_model_bytes_per_owner,
                       defaults.quota_models_total, defaults.quota_model_bytes_total)
    check_model_quota([], "alice", False, quota, VGG16_ONNX_BYTES)  # stored, it takes about its file's size
    check_model_quota([("alice", 50 * MB)], "alice", False, quota, VGG16_ONNX_BYTES)
    with pytest.raises(ApiError) as second:  # the control: the quota still bounds one person
        check_model_quota([("alice", VGG16_ONNX_BYTES)], "alice", False, quota, VGG16_ONNX_BYTES)
    assert second.value.status_code == 409 and "delete one of yours" in second.value.detail


@pytest.mark.parametrize(("given", "staged"), [
    ("vgg16.onnx", "vgg16.onnx"), ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\net.onnx", "net.onnx"),
    ("", "model.onnx"), (None, "model.onnx"), ("..", "model.onnx"), ("a\x00b\nc.onnx", "abc.onnx"),
    ("x" * 300, "x" * 120), ("é" * 200, "é" * 60), ("\udcff.onnx", ".onnx")])
def test_the_staged_copy_never_leaves_its_folder(given, staged):
    assert staged_file_name(given) == staged


def test_a_failed_import_leaves_no_staging_copy(client, settings):
    assert upload(client, b"not a model" * 100).status_code == 422
    assert [p.name for p in (settings.data_dir / "models").iterdir() if p.name.startswith(".upload-")] == []


def test_the_store_takes_bytes_or_a_file(client):
    """The route hands over the spooled upload (a file); bytes still work for scripts calling the store."""
    store = ModelStore(client.app.state.settings.data_dir, builtins={})
    model, created = store.add_onnx(small_onnx(seed=12), "a.onnx", None, None)
    again, created_again = store.add_onnx(io.BytesIO(small_onnx(seed=12)), "a.onnx", None, None)
    assert created and not created_again and again.id == model.id


def test_the_upload_page_states_the_servers_limit(client, settings):
    page = client.get("/upload")
    assert page.status_code == 200
    assert f"at most {settings.max_model_bytes // MB} MiB" in page.text and "100 MB" not in page.text
    script = client.get("/static/js/upload.js").text
    assert "100 MB" not in script and "NOTHING_CHOSEN" in script  # the script keeps the page's words
