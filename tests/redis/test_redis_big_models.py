"""Big models through the Redis catalogue (a real redis-server): weights over ``PIECE_BYTES`` travel in pieces,
because Redis refuses a value over ``proto-max-bulk-len`` (512 MB by default; VGG-16's weights are 528 MiB), and
arrive bit for bit; the pieces appear all at once and go with the model; entries published before, one field of
compressed ``.npz``, still load. ``PIECE_BYTES`` and the server's limit are scaled down to keep the files small."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import redis

import app.services.redis_models as redis_models
from app.services.models import ModelStore, directory_bytes
from app.services.redis_client import RedisUnavailableError, connect
from app.services.redis_models import RedisModelCatalogue, model_key
from engine.models.aligned_npz import is_mapped
from tests.redis_server import NO_PERSISTENCE, running_redis

onnx = pytest.importorskip("onnx")
from tests.api.routes.test_models_upload_big import wide_onnx  # noqa: E402

ALICE = "alice-token-hash"


def machine(tmp_path, name: str, url: str) -> ModelStore:
    return ModelStore(tmp_path / name, builtins={}, catalogue=RedisModelCatalogue(connect(url), url))


def test_big_weights_travel_in_pieces_and_arrive_bit_for_bit(tmp_path, fresh_redis, monkeypatch):
    monkeypatch.setattr(redis_models, "PIECE_BYTES", 300_000)
    a, b = machine(tmp_path, "a", fresh_redis), machine(tmp_path, "b", fresh_redis)
    stored, _ = a.add_onnx(wide_onnx(), "wide.onnx", None, None, owner=ALICE)
    weights = tmp_path / "a" / "models" / stored.id / "weights.npz"
    client = redis.Redis.from_url(fresh_redis)
    fields = client.hkeys(model_key(stored.id))
    pieces = math.ceil(weights.stat().st_size / 300_000)
    assert pieces > 1 and b"weights.npz" not in fields
    assert int(client.hget(model_key(stored.id), "weights.npz:pieces")) == pieces
    assert sorted(f for f in fields if f.startswith(b"weights.npz:") and f[12:].isdigit()) == sorted(
        f"weights.npz:{i}".encode() for i in range(pieces))
    assert client.keys("cnn-vis:model-staging:*") == []  # renamed into place, nothing left beside it

    served = b.get(stored.id)
    copied = tmp_path / "b" / "models" / stored.id / "weights.npz"
    assert copied.read_bytes() == weights.read_bytes()
    for name, value in stored.bundle.params.items():
        mine = served.bundle.params[name]
        assert np.array_equal(mine.view(np.uint32), value.view(np.uint32)), f"{name}: b's vs a's"
        assert is_mapped(mine)
    assert b.upload_usage() == a.upload_usage() == [(ALICE, directory_bytes(weights.parent))]

    a.delete(stored.id)
    assert client.keys("cnn-vis:model*") == []  # every piece went with it


def test_one_value_over_redis_limit_is_refused_and_pieces_get_through(tmp_path, monkeypatch):
    """The control: a Redis whose limit (proto-max-bulk-len, here 1 MB) is below the weights' size refuses them in
    one value; cut into pieces under it, the same model is stored and served."""
    with running_redis(options=(*NO_PERSISTENCE, "--proto-max-bulk-len", "1mb")) as url:
        monkeypatch.setattr(redis_models, "PIECE_BYTES", 4 * 1024 * 1024)  # the 1.9 MiB weights in one value
        with pytest.raises((RedisUnavailableError, redis.exceptions.RedisError)):
            machine(tmp_path, "a", url).add_onnx(wide_onnx(), "wide.onnx", None, None, owner=ALICE)
        assert machine(tmp_path, "a", url).ids() == []

        monkeypatch.setattr(redis_models, "PIECE_BYTES", 512 * 1024)
        stored, _ = machine(tmp_path, "a", url).add_onnx(wide_onnx(), "wide.onnx", None, None, owner=ALICE)
        served = machine(tmp_path, "b", url).get(stored.id)
        np.testing.assert_array_equal(served.bundle.params["fc.weight"], stored.bundle.params["fc.weight"])


def test_a_model_published_before_as_one_compressed_value_still_loads(tmp_path, fresh_redis):
    """What the catalogue held before pieces and mapping: weights.npz in one field, np.savez_compressed."""
    a = machine(tmp_path, "a", fresh_redis)
    stored, _ = a.add_onnx(wide_onnx(outputs=10), "wide.onnx", None, None, owner=ALICE)
    client = redis.Redis.from_url(fresh_redis)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **stored.bundle.params)
    client.hset(model_key(stored.id), "weights.npz", buffer.getvalue())

    served = machine(tmp_path, "b", fresh_redis).get(stored.id)
    for name, value in stored.bundle.params.items():
        assert np.array_equal(served.bundle.params[name], value), name
        assert not is_mapped(served.bundle.params[name])  # read into memory, as compressed files are
