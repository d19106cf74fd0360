"""Uploaded models shared through Redis (a real redis-server): two machines (two data directories) with one
catalogue see the same models, owners, sharing and quota usage; a model deleted on one is gone on the other.
Without the catalogue, the second machine would not know the model at all (the control)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import LOOPBACK_HOSTS, Settings
from app.errors import ApiError
from app.main import create_app
from app.services.models import ModelStore
from app.services.redis_client import RedisUnavailableError, connect
from app.services.redis_models import RedisModelCatalogue
from tests.api.conftest import TEST_HOST
from tests.api.routes.test_models_upload import small_onnx, upload
from tests.redis_server import free_port

ALICE = "alice-token-hash"


def machine(tmp_path, name: str, url: str | None) -> ModelStore:
    """A machine's model store: its own data directory, the shared catalogue when ``url`` is given."""
    catalogue = RedisModelCatalogue(connect(url), url) if url else None
    return ModelStore(tmp_path / name, builtins={}, catalogue=catalogue)


def test_a_model_stored_on_one_machine_is_served_by_another(tmp_path, fresh_redis):
    a, b = machine(tmp_path, "a", fresh_redis), machine(tmp_path, "b", fresh_redis)
    stored, new = a.add_onnx(small_onnx(seed=1), "net.onnx", "Net", None, owner=ALICE)
    assert new
    assert b.ids() == [stored.id]
    served = b.get(stored.id)
    assert served.owner == ALICE and served.version == stored.version
    for name, value in stored.bundle.params.items():
        np.testing.assert_array_equal(served.bundle.params[name], value)
    assert (tmp_path / "b" / "models" / stored.id / "weights.npz").is_file()  # copied once, then read locally
    assert b.reloadable(stored.id)  # so a background job on b can reload it in a child process
    again, new = b.add_onnx(small_onnx(seed=1), "net.onnx", "Net", None, owner=ALICE)
    assert not new and again.id == stored.id  # the same bytes from the same owner, on any machine: the same model
    assert b.upload_usage() == a.upload_usage() and b.upload_usage()[0][0] == ALICE  # quotas count the deployment


def test_without_the_catalogue_another_machine_does_not_know_the_model(tmp_path):
    a, b = machine(tmp_path, "a", None), machine(tmp_path, "b", None)
    stored, _ = a.add_onnx(small_onnx(seed=1), "net.onnx", None, None, owner=ALICE)
    assert b.ids() == []
    with pytest.raises(ApiError) as caught:
        b.get(stored.id)
    assert caught.value.status_code == 404


def test_sharing_on_one_machine_is_seen_on_another_even_after_it_loaded_the_model(tmp_path, fresh_redis):
    a, b = machine(tmp_path, "a", fresh_redis), machine(tmp_path, "b", fresh_redis)
    stored, _ = a.add_onnx(small_onnx(seed=2), "net.onnx", None, None, owner=ALICE)
    assert not b.get(stored.id).shared and not b.access(stored.id).shared
    a.set_shared(stored.id, True)
    assert b.access(stored.id).shared and b.get(stored.id).shared
    b.set_shared(stored.id, False)
    assert not a.access(stored.id).shared and not a.get(stored.id).shared


def test_a_model_deleted_on_one_machine_is_gone_on_the_other_with_its_copy(tmp_path, fresh_redis):
    a, b = machine(tmp_path, "a", fresh_redis), machine(tmp_path, "b", fresh_redis)
    stored, _ = a.add_onnx(small_onnx(seed=3), "net.onnx", None, None, owner=ALICE)
    b.get(stored.id)
    a.delete(stored.id)
    assert b.ids() == []
    for call in (b.get, b.access, b.delete):
        with pytest.raises(ApiError) as caught:
            call(stored.id)
        assert caught.value.status_code == 404
    assert not (tmp_path / "b" / "models" / stored.id).exists()  # the stale copy is removed when asked for


def test_with_redis_unreachable_an_upload_is_refused_and_leaves_nothing_behind(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    store = ModelStore(tmp_path / "a", builtins={}, catalogue=RedisModelCatalogue(connect(url, check=False), url))
    with pytest.raises(RedisUnavailableError):
        store.add_onnx(small_onnx(seed=4), "net.onnx", None, None, owner=ALICE)
    models = tmp_path / "a" / "models"
    assert not models.exists() or [p.name for p in models.iterdir() if p.name != ".staging.lock"] == []


class RefusingCatalogue(RedisModelCatalogue):
    """Redis answers, but refuses to store (as when it is out of memory)."""

    def publish(self, model_id, directory):
        raise RedisUnavailableError(self.url, "storing the model for every machine", "it refused the command (OOM)")


def test_a_model_that_cannot_be_published_is_removed_from_the_machine_too(tmp_path, fresh_redis):
    store = ModelStore(tmp_path / "a", builtins={}, catalogue=RefusingCatalogue(connect(fresh_redis), fresh_redis))
    with pytest.raises(RedisUnavailableError):
        store.add_onnx(small_onnx(seed=4), "net.onnx", None, None, owner=ALICE)
    assert [p.name for p in (tmp_path / "a" / "models").iterdir() if p.name != ".staging.lock"] == []  # no copy
    assert store.ids() == []


def redis_app(tmp_path, name: str, url: str) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / name, redis_url=url, preload=False, compute_slots=2,
                        allowed_hosts=[*LOOPBACK_HOSTS, TEST_HOST])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_two_replicas_with_other_data_directories_serve_one_upload(tmp_path, fresh_redis):
    owner = {"X-Owner-Token": "redis-models-owner-0123456789abcdef"}
    for a in redis_app(tmp_path, "a", fresh_redis):
        for b in redis_app(tmp_path, "b", fresh_redis):
            a.headers.update(owner)
            b.headers.update(owner)
            created = upload(a, small_onnx(seed=5), name="Shared net")
            assert created.status_code == 201, created.text
            model_id = created.json()["id"]
            assert model_id in [m["id"] for m in b.get("/api/models").json()["models"]]
            x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
            buffer = io.BytesIO()
            np.save(buffer, x)
            outputs = [client.post(f"/api/models/{model_id}/predict", content=buffer.getvalue(),
                                   headers={"Content-Type": "application/x-npy"}) for client in (a, b)]
            assert [r.status_code for r in outputs] == [200, 200], outputs[1].text
            assert outputs[0].json()["classes"] == outputs[1].json()["classes"]
            assert b.delete(f"/api/models/{model_id}").status_code in (200, 204)
            assert a.get(f"/api/models/{model_id}").status_code == 404


def test_with_redis_down_the_built_in_models_still_answer_and_an_upload_says_why_not(tmp_path):
    for client in redis_app(tmp_path, "a", f"redis://127.0.0.1:{free_port()}/0"):
        listed = client.get("/api/models")
        assert listed.status_code == 200 and listed.json()["models"]  # the built-ins
        refused = upload(client, small_onnx(seed=6))
        assert refused.status_code == 503 and "Redis" in refused.json()["detail"], refused.text
