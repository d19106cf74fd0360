"""Training jobs in Redis (``Settings.redis_url``): the same interface as the SQLite ``JobStore``
(``app.services.job_store``), for web replicas and RQ workers on several machines.

Keys (``cnn-vis:training:`` first):

- ``job:<id>``: a hash, one field per ``JobRow`` field (text and numbers as text; ``settings``, ``progress`` and
  ``pretrained_params`` as JSON; a missing field is None), plus ``images_seq``, the id of the latest ``images``
  event;
- ``events:<id>``: a Redis Stream of the job's server-sent events, each entry ``{event, data}`` with the explicit
  id ``<seq>-1``, so ``Last-Event-ID: 7`` resumes exactly after the entry ``7-1`` (``XRANGE (7-1 +``) and a
  blocking ``XREAD`` from it waits for the next one. Only the latest ``images`` entry is kept (``XDEL``);
- ``weights:<id>``: the trained weights as ``.npz`` bytes (float32 arrays; read with ``allow_pickle=False``);
- ``jobs``: every job id, scored by its creation time (listing and pruning); ``running``: the ids of running jobs
  (counting under the limits).

Atomicity: admitting a job under the deployment-wide limits, appending an event, raising the cancel flag, the
heartbeat and claiming a queued job are Lua scripts (one step for Redis: two replicas can never both take the last
slot); finishing a job is a ``WATCH``/``MULTI`` transaction, because its ``end`` event is computed from the row in
Python. Every write that touches a running job is conditional on it still running, as in SQLite. The scripts
name keys they compute from ``cnn-vis:training:``, so they need a single Redis server (not Redis Cluster).

Queued jobs (RQ, ``app.services.training_queue``): a job admitted but not yet taken by a worker has ``worker``
``"queued"``. It counts against the limits, and it reads as alive (its heartbeat is "now") while ``queued_alive``
(RQ's view: still queued or started) says so; once RQ has lost or failed it, its heartbeat is its admission time
and it goes stale like a job whose worker died.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import redis

from app.services.job_store import JobIdTakenError, JobRow, Message, Refusal, dumps, now_iso

PREFIX = "cnn-vis:training:"
QUEUED = "queued"  # the ``worker`` of a job waiting in the queue for a worker
JSON_FIELDS = ("settings", "progress", "pretrained_params")
OPTIONAL_FIELDS = ("owner", "error", "model_id", "finished_at")
INT_FIELDS = ("param_count", "last_seq")
FLOAT_FIELDS = ("heartbeat", "created")

ADMIT = """
-- KEYS: running set, jobs zset, the new job's hash. ARGV: job key prefix, max_running, max_per_owner (-1: none),
-- alive_since, owner ('' none), id, created, then the hash's field/value pairs
if redis.call('EXISTS', KEYS[3]) == 1 then return {-1, 0} end
local running, mine = 0, 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'status', 'heartbeat', 'owner', 'worker')
  if f[1] ~= 'running' then
    redis.call('SREM', KEYS[1], id)
  elseif f[4] == 'queued' or tonumber(f[2]) >= tonumber(ARGV[4]) then
    running = running + 1
    if ARGV[5] ~= '' and f[3] == ARGV[5] then mine = mine + 1 end
  end
end
if running >= tonumber(ARGV[2]) then return {1, running} end
if tonumber(ARGV[3]) >= 0 and ARGV[5] ~= '' and mine >= tonumber(ARGV[3]) then return {2, mine} end
redis.call('HSET', KEYS[3], unpack(ARGV, 8))
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
redis.call('SADD', KEYS[1], ARGV[6])
return {0, 0}
"""

POST = """
-- KEYS: the job's hash, its stream. ARGV: event, data JSON, progress JSON ('' leaves it)
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return false end
local seq = tonumber(redis.call('HGET', KEYS[1], 'last_seq')) + 1
if ARGV[1] == 'images' then
  local previous = redis.call('HGET', KEYS[1], 'images_seq')
  if previous then redis.call('XDEL', KEYS[2], previous .. '-1') end
  redis.call('HSET', KEYS[1], 'images_seq', seq)
end
redis.call('XADD', KEYS[2], seq .. '-1', 'event', ARGV[1], 'data', ARGV[2])
redis.call('HSET', KEYS[1], 'last_seq', seq)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end
return seq
"""

CANCEL = """
if redis.call('HGET', KEYS[1], 'status') == 'running' then redis.call('HSET', KEYS[1], 'cancel', '1') end
return 0
"""

BEAT = """
-- KEYS: the jobs' hashes. ARGV: now. Returns the positions (1-based) of the jobs to keep running
local keep = {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'status', 'cancel')
  if f[1] == 'running' then
    redis.call('HSET', key, 'heartbeat', ARGV[1])
    if f[2] ~= '1' then table.insert(keep, i) end
  end
end
return keep
"""

CLAIM = """
-- KEYS: the job's hash. ARGV: worker, now. A queued, running job becomes this worker's
local f = redis.call('HMGET', KEYS[1], 'status', 'worker')
if f[1] ~= 'running' or f[2] ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'worker', ARGV[1], 'heartbeat', ARGV[2])
return 1
"""


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def encode_row(row: JobRow) -> dict[str, str]:
    """``row`` as hash fields (None fields left out)."""
    values: dict[str, str] = {}
    for f in fields(JobRow):
        value = getattr(row, f.name)
        if value is None:
            continue
        if f.name in JSON_FIELDS:
            values[f.name] = dumps(value)
        elif f.name == "cancel":
            values[f.name] = "1" if value else "0"
        elif f.name in FLOAT_FIELDS:
            values[f.name] = repr(float(value))
        else:
            values[f.name] = str(value)
    return values


def decode_row(raw: dict[bytes, bytes]) -> JobRow | None:
    """The row a hash holds (None for a missing hash)."""
    if not raw:
        return None
    values = {text(k): text(v) for k, v in raw.items()}
    row: dict[str, Any] = {}
    for f in fields(JobRow):
        value = values.get(f.name)
        if f.name in OPTIONAL_FIELDS:
            row[f.name] = value
        elif f.name in JSON_FIELDS:
            row[f.name] = json.loads(value) if value is not None else ({} if f.name != "pretrained_params" else [])
        elif f.name == "cancel":
            row[f.name] = value == "1"
        elif f.name in INT_FIELDS:
            row[f.name] = int(value) if value is not None else -1
        elif f.name in FLOAT_FIELDS:
            row[f.name] = float(value) if value is not None else 0.0
        else:
            row[f.name] = value or ""
    return JobRow(**row)


def stream_id(seq: int) -> str:
    """The stream entry id of event ``seq`` (ids must be above ``0-0``, so ``<seq>-1``)."""
    return f"{seq}-1"


def seq_of(entry_id: bytes | str) -> int:
    return int(text(entry_id).partition("-")[0])


def decode_entries(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Message]:
    return [Message(seq_of(entry_id), text(values[b"event"]), json.loads(values[b"data"]))
            for entry_id, values in entries]


class RedisJobStore:
    """The jobs, their events and their trained weights in Redis; safe to use from any thread of any process on
    any machine. ``queued_alive(job_id)``: whether the queue still holds a job no worker has claimed yet (None:
    nothing is ever queued)."""

    def __init__(self, client: redis.Redis, queued_alive: Callable[[str], bool] | None = None,
                 prefix: str = PREFIX) -> None:
        self.client = client
        self.queued_alive = queued_alive
        self.prefix = prefix
        self._admit = client.register_script(ADMIT)
        self._post = client.register_script(POST)
        self._cancel = client.register_script(CANCEL)
        self._beat = client.register_script(BEAT)
        self._claim = client.register_script(CLAIM)

    # --- keys --------------------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def events_key(self, job_id: str) -> str:
        return f"{self.prefix}events:{job_id}"

    def weights_key(self, job_id: str) -> str:
        return f"{self.prefix}weights:{job_id}"

    @property
    def jobs_key(self) -> str:
        return f"{self.prefix}jobs"

    @property
    def running_key(self) -> str:
        return f"{self.prefix}running"

    def close(self) -> None:
        """Nothing to close per thread (the client's pool is shared; its owner closes it)."""

    # --- reading -----------------------------------------------------------------------------------------
    def _row(self, raw: dict[bytes, bytes]) -> JobRow | None:
        """The row, a queued job the queue still holds read as heard from now."""
        row = decode_row(raw)
        if row is not None and row.status == "running" and row.worker == QUEUED and (
                self.queued_alive is None or self.queued_alive(row.id)):
            row.heartbeat = time.time()
        return row

    def _rows(self, job_ids: list[bytes | str]) -> list[JobRow]:
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.job_key(text(job_id)))
        return [row for raw in pipe.execute() if (row := self._row(raw)) is not None]

    def get(self, job_id: str) -> JobRow | None:
        return self._row(self.client.hgetall(self.job_key(job_id)))

    def jobs(self) -> list[JobRow]:
        """Every job, newest first."""
        return self._rows(self.client.zrevrange(self.jobs_key, 0, -1))

    def running(self, alive_since: float = 0.0) -> list[JobRow]:
        """Running jobs whose worker was heard from at or after ``alive_since`` (0: all running jobs)."""
        return [row for row in self._rows(list(self.client.smembers(self.running_key)))
                if row.status == "running" and row.heartbeat >= alive_since]

    def stale(self, alive_since: float) -> list[JobRow]:
        """Running jobs whose worker has not been heard from since ``alive_since``."""
        return [row for row in self._rows(list(self.client.smembers(self.running_key)))
                if row.status == "running" and row.heartbeat < alive_since]

    @staticmethod
    def _start(after: int) -> str:
        return "-" if after < 0 else f"({stream_id(after)}"

    def messages(self, job_id: str, after: int = -1, kinds: tuple[str, ...] | None = None) -> list[Message]:
        """The job's events after ``after`` in order (only the kinds named, when given)."""
        messages = decode_entries(self.client.xrange(self.events_key(job_id), self._start(after), "+"))
        return [m for m in messages if not kinds or m.event in kinds]

    def messages_and_row(self, job_id: str, after: int) -> tuple[list[Message], JobRow | None]:
        """The events after ``after`` and the job's row, read in one transaction (so a finished job's row and its
        ``end`` event agree)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xrange(self.events_key(job_id), self._start(after), "+")
        pipe.hgetall(self.job_key(job_id))
        entries, raw = pipe.execute()
        return decode_entries(entries), self._row(raw)

    def last_event_id(self, job_id: str) -> int:
        """The id of the job's last event (-1: none), as the row says."""
        value = self.client.hget(self.job_key(job_id), "last_seq")
        return int(value) if value is not None else -1

    # --- writing -----------------------------------------------------------------------------------------
    def admit(self, row: JobRow, max_running: int, max_per_owner: int | None, alive_since: float) -> Refusal | None:
        """Insert ``row`` unless ``max_running`` jobs run (or ``max_per_owner`` of its owner's), counting every
        worker's running jobs heard from since ``alive_since`` (and every queued one), atomically. Returns why it
        was refused, or None. Raises JobIdTakenError when the id is taken."""
        pairs = [item for pair in encode_row(row).items() for item in pair]
        code, count = self._admit(
            keys=[self.running_key, self.jobs_key, self.job_key(row.id)],
            args=[f"{self.prefix}job:", max_running, -1 if max_per_owner is None else max_per_owner,
                  repr(float(alive_since)), row.owner or "", row.id, repr(float(row.created)), *pairs])
        if code == -1:
            raise JobIdTakenError(row.id)
        if code == 1:
            return Refusal("server", count, max_running)
        if code == 2:
            assert max_per_owner is not None
            return Refusal("owner", count, max_per_owner)
        return None

    def post(self, job_id: str, event: str, data: dict[str, Any], progress: dict[str, Any] | None = None) -> int | None:
        """Append an event to a running job (dropping its previous ``images`` event) and record its progress;
        returns the event's id, or None when the job no longer runs (cancelled elsewhere, marked interrupted)."""
        seq = self._post(keys=[self.job_key(job_id), self.events_key(job_id)],
                         args=[event, dumps(data), "" if progress is None else dumps(progress)])
        return None if seq is None else int(seq)

    def finish(self, job_id: str, status: str, error: str | None, end_data: Callable[[JobRow], dict[str, Any]],
               progress: dict[str, Any] | None = None, alive_before: float | None = None,
               only_queued: bool = False) -> bool:
        """End a running job: set its status, error, progress and finished time, then append its ``end`` event
        (``end_data(row)`` of the updated row). With ``alive_before``, only if its worker has not been heard
        from since then (marking a dead worker's job); with ``only_queued``, only if no worker has claimed it.
        Returns False when the job was not running (or the condition failed)."""
        key = self.job_key(job_id)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    row = self._row(pipe.hgetall(key))
                    if (row is None or row.finished or (alive_before is not None and row.heartbeat >= alive_before)
                            or (only_queued and row.worker != QUEUED)):
                        pipe.unwatch()
                        return False
                    row.status, row.error, row.finished_at = status, error, now_iso()
                    if progress is not None:
                        row.progress = dict(progress)
                    seq = row.last_seq + 1
                    data = end_data(row)
                    pipe.multi()
                    changes = {"status": status, "finished_at": row.finished_at, "last_seq": str(seq),
                               "progress": dumps(row.progress)}
                    if error is None:
                        pipe.hdel(key, "error")
                    else:
                        changes["error"] = error
                    pipe.hset(key, mapping=changes)
                    pipe.xadd(self.events_key(job_id), {"event": "end", "data": dumps(data)}, id=stream_id(seq))
                    pipe.srem(self.running_key, job_id)
                    pipe.execute()
                    return True
                except redis.WatchError:  # an event or a heartbeat meanwhile: read again
                    continue

    def request_cancel(self, job_id: str) -> None:
        """Raise the job's cancel flag (its worker stops it within a heartbeat); a finished job is left alone."""
        self._cancel(keys=[self.job_key(job_id)])

    def beat(self, job_ids: list[str], now: float | None = None) -> set[str]:
        """Say the worker running ``job_ids`` is alive; returns those of them to stop (cancel flag raised, no
        longer running, or gone)."""
        if not job_ids:
            return set()
        keep = self._beat(keys=[self.job_key(job_id) for job_id in job_ids],
                          args=[repr(time.time() if now is None else now)])
        return set(job_ids) - {job_ids[int(i) - 1] for i in keep}

    def claim(self, job_id: str, worker: str, now: float | None = None) -> bool:
        """A worker takes a queued job: True when it was queued and still running (not cancelled meanwhile)."""
        return bool(self._claim(keys=[self.job_key(job_id)], args=[worker, repr(time.time() if now is None else now)]))

    def set_model(self, job_id: str, model_id: str) -> None:
        key = self.job_key(job_id)
        if self.client.exists(key):
            self.client.hset(key, "model_id", model_id)

    def prune(self, max_kept: int) -> list[str]:
        """Delete the oldest finished jobs (with their events and weights) beyond ``max_kept`` jobs in all;
        returns their ids. A finished job never runs again, so deleting it needs no lock."""
        excess = self.client.zcard(self.jobs_key) - max_kept
        if excess <= 0:
            return []
        ids = [text(job_id) for job_id in self.client.zrange(self.jobs_key, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.job_key(job_id), "status")
        statuses = pipe.execute()
        removed = [job_id for job_id, status in zip(ids, statuses) if status != b"running"][:excess]
        if removed:
            pipe = self.client.pipeline(transaction=True)
            for job_id in removed:
                pipe.delete(self.job_key(job_id), self.events_key(job_id), self.weights_key(job_id))
                pipe.zrem(self.jobs_key, job_id)
                pipe.srem(self.running_key, job_id)
            pipe.execute()
        return removed

    # --- trained weights ---------------------------------------------------------------------------------
    def keep_weights(self, job_id: str, npz: bytes) -> None:
        """Store a finished job's weights (``.npz`` bytes) where every machine reads them."""
        self.client.set(self.weights_key(job_id), npz)

    def weights(self, job_id: str) -> bytes | None:
        """The ``.npz`` bytes a finished job stored (None: none)."""
        return self.client.get(self.weights_key(job_id))
