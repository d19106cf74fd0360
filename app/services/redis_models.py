"""Uploaded and trained models shared through Redis (``CNN_VIS_REDIS_URL``), so every machine serves them.

On one machine the data directory is the catalogue: ``<data dir>/models/<id>/`` holds a model's ``meta.json``
(name, labels, owner, shared), ``spec.json`` and ``weights.npz``, and every worker reads it. Machines do not
share a data directory, so with Redis the catalogue is Redis, and each machine's directory becomes a cache:

- ``cnn-vis:model:<id>``: a hash of the three files' bytes, exactly as written to disk (``meta.json`` is read
  afresh for the owner and the shared flag; weights are ``.npz`` read with ``allow_pickle=False``). Weights of up
  to ``PIECE_BYTES`` are one field, ``weights.npz``; larger ones are cut into pieces ``weights.npz:0``,
  ``weights.npz:1``, ... (their count in ``weights.npz:pieces``, their size in ``weights.npz:bytes``): Redis
  refuses a value over 512 MB (``proto-max-bulk-len``) and VGG-16's weights are 528 MiB, and in pieces neither
  side ever holds the whole file as one value;
- ``cnn-vis:models``: a sorted set of the ids, by the time they were stored (the list's order).

A model is stored on disk first (all or nothing, as on one machine), then published here (big weights piece by
piece into a staging key, renamed into place with the rest: readers see all or nothing); a machine that does
not have it writes the files into its own directory the first time it is asked for it (again all or nothing),
and loads it from there. Deleting removes it here, and a machine that still has a copy removes it the next time
the model is asked for. The list, the owners, sharing and the quotas read Redis, so they are the deployment's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from app.services.redis_client import redis_errors

PREFIX = "cnn-vis:"
MODELS = PREFIX + "models"
FILES = ("meta.json", "spec.json", "weights.npz")
WEIGHTS = "weights.npz"
PIECES, WEIGHT_BYTES = f"{WEIGHTS}:pieces", f"{WEIGHTS}:bytes"
#: weights larger than this are stored in pieces of this size (Redis refuses values over 512 MB)
PIECE_BYTES = 64 * 1024 * 1024
#: a staging key that a publisher left half-written (killed meanwhile) expires after this many seconds
STAGING_TTL_S = 3600


def model_key(model_id: str) -> str:
    return f"{PREFIX}model:{model_id}"


def piece_field(index: int) -> str:
    return f"{WEIGHTS}:{index}"


class RedisModelCatalogue:
    """The deployment's stored models, in Redis (see the module docstring). Every Redis failure raises
    ``RedisUnavailableError`` (503) naming what failed."""

    def __init__(self, client: redis.Redis, url: str) -> None:
        self.client = client
        self.url = url

    def ids(self) -> list[str]:
        """Every stored model's id, oldest first."""
        with redis_errors(self.url, "listing the uploaded models"):
            return [raw.decode() for raw in self.client.zrange(MODELS, 0, -1)]

    def has(self, model_id: str) -> bool:
        with redis_errors(self.url, "looking up the model"):
            return bool(self.client.exists(model_key(model_id)))

    def meta(self, model_id: str) -> dict[str, Any] | None:
        """The model's meta.json, or None when there is no such model; ValueError when it is damaged."""
        with redis_errors(self.url, "reading the model's owner"):
            raw = self.client.hget(model_key(model_id), "meta.json")
        return None if raw is None else json.loads(raw)

    def usage(self) -> list[tuple[str, dict[str, Any] | None, int]]:
        """(id, meta.json or None when damaged, bytes of its files) of every stored model, for the quotas."""
        ids = self.ids()
        with redis_errors(self.url, "counting the uploaded models"):
            pipe = self.client.pipeline(transaction=False)
            for model_id in ids:
                pipe.hget(model_key(model_id), "meta.json")
                for name in FILES:
                    pipe.hstrlen(model_key(model_id), name)
                pipe.hget(model_key(model_id), WEIGHT_BYTES)  # weights in pieces: their size
            answers = pipe.execute()
        usage = []
        step = 2 + len(FILES)
        for index in range(len(ids)):
            raw, *sizes, in_pieces = answers[index * step:(index + 1) * step]
            if raw is None:
                continue  # deleted meanwhile
            try:
                meta = json.loads(raw)
            except ValueError:
                meta = None
            usage.append((ids[index], meta, sum(sizes) + int(in_pieces or 0)))
        return usage

    def publish(self, model_id: str, directory: Path) -> None:
        """Store the files of ``directory`` (a model written completely) as model ``model_id``."""
        files = {name: (directory / name).read_bytes() for name in FILES if name != WEIGHTS}
        size = (directory / WEIGHTS).stat().st_size
        with redis_errors(self.url, "storing the model for every machine"):
            if size <= PIECE_BYTES:
                files[WEIGHTS] = (directory / WEIGHTS).read_bytes()
                pipe = self.client.pipeline(transaction=True)
                pipe.hset(model_key(model_id), mapping=files)
                pipe.zadd(MODELS, {model_id: time.time()}, nx=True)
                pipe.execute()
                return
            staging = f"{PREFIX}model-staging:{model_id}:{secrets.token_hex(4)}"
            count = 0
            with open(directory / WEIGHTS, "rb") as weights:
                while piece := weights.read(PIECE_BYTES):  # one piece in memory at a time
                    self.client.hset(staging, piece_field(count), piece)
                    self.client.expire(staging, STAGING_TTL_S)
                    count += 1
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(staging, mapping={**files, PIECES: count, WEIGHT_BYTES: size})
            pipe.rename(staging, model_key(model_id))  # all at once: no reader sees some pieces only
            pipe.persist(model_key(model_id))
            pipe.zadd(MODELS, {model_id: time.time()}, nx=True)
            pipe.execute()

    def fetch(self, model_id: str, models_dir: Path) -> bool:
        """Write model ``model_id``'s files into ``models_dir/<id>`` (staged, then renamed: all or nothing);
        False when Redis has no such model."""
        key = model_key(model_id)
        with redis_errors(self.url, "fetching the model from the shared store"):
            meta, spec, weights, pieces = self.client.hmget(key, "meta.json", "spec.json", WEIGHTS, PIECES)
        if meta is None or spec is None or (weights is None and pieces is None):
            return False
        models_dir.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=".fetch-", dir=models_dir))
        try:
            (staged / "meta.json").write_bytes(meta)
            (staged / "spec.json").write_bytes(spec)
            with open(staged / WEIGHTS, "wb") as out:
                if weights is not None:
                    out.write(weights)
                for index in range(0 if weights is not None else int(pieces)):  # one piece in memory at a time
                    with redis_errors(self.url, "fetching the model from the shared store"):
                        piece = self.client.hget(key, piece_field(index))
                    if piece is None:
                        return False  # deleted meanwhile
                    out.write(piece)
            try:
                os.rename(staged, models_dir / model_id)  # atomic: other workers see all or nothing
            except OSError:
                if not (models_dir / model_id / "meta.json").is_file():
                    raise  # something else is in the way
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return True

    def set_shared(self, model_id: str, shared: bool) -> bool:
        """Set meta.json's ``shared``; False when there is no such model, ValueError when meta.json is damaged."""
        key = model_key(model_id)
        with redis_errors(self.url, "sharing the model"), self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hget(key, "meta.json")
                    if raw is None:
                        return False
                    meta = json.loads(raw)
                    meta["shared"] = shared
                    pipe.multi()
                    pipe.hset(key, "meta.json", json.dumps(meta, default=str))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue  # changed meanwhile (shared, or deleted): read it again

    def remove(self, model_id: str) -> bool:
        """Delete the model; whether there was one."""
        with redis_errors(self.url, "deleting the model"):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(model_key(model_id))
            pipe.zrem(MODELS, model_id)
            deleted, _ = pipe.execute()
        return bool(deleted)
