"""Heavy attention maps on several machines (``CNN_VIS_REDIS_URL``): the same interface and answers as
``app.services.attention_jobs.AttentionJobs``, with the state in Redis and the work in RQ workers
(``app.services.job_queue``, ``cnn-visualiser worker``).

Keys (``cnn-vis:attention:`` first):

- ``job:<id>``: the job's state as JSON (the same fields as ``status.json``: ``status`` queued, running, done,
  failed or cancelled, ``done``/``total`` passes, ``seq`` growing with every write, which the event stream uses as
  event ids, ``error``/``error_status``, the owner's token hash, times; ``worker`` instead of a pid);
- ``spec:<id>`` (the request: method, target, layer, options, work limits) and ``input:<id>`` (the prepared input
  tensor and picture as ``.npz`` bytes, never a pickle): what the worker needs; removed when the job ends;
- ``result:<id>``: the answer the synchronous route gives, as JSON, once done;
- ``beat:<id>``: exists while a worker computes the job (it expires ``stale_s`` after the worker's last beat);
- ``cancel:<id>``: someone asked to stop it; the worker stops before its next batch of passes;
- ``active`` (a set of queued and running ids), ``finished`` (ids by finishing time: the oldest beyond ``kept``
  are removed). A finished job's keys expire ``ttl_s`` after it ended.

Starting a job takes a Redis lock (``lock:admit``) to count the deployment's active jobs under the limits, like the
file version's ``flock``. Liveness: a queued job is alive while RQ holds it, a running one while its ``beat`` key
exists; otherwise it reads as failed (503, "send the request again"), on every replica.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import redis

from app.errors import ApiError, not_found
from app.services.attention import AttentionRequest, PreparedAttention, compute_attention
from app.services.attention_jobs import ACTIVE, JOB_ID, PROGRESS_INTERVAL_S, JobCancelledError, error_of
from app.services.inputs import PreparedInput
from app.services.job_queue import JobQueue
from app.services.redis_client import redis_errors
from app.services.training_jobs import worker_id

log = logging.getLogger("cnn_visualiser.attention_jobs")

PREFIX = "cnn-vis:attention:"
KIND = "attention"
LOCK_TIMEOUT_S = 10.0
DIED = ("the worker computing this job stopped (restarted, killed, or its machine went away) before it finished: "
        "send the request again")
LOST = "the job queue lost this job before a worker took it: send the request again"


def input_bytes(prepared: PreparedInput) -> bytes:
    """The prepared input as ``.npz`` bytes (``x``, and ``picture`` when there is one)."""
    buffer = io.BytesIO()
    arrays = {"x": prepared.x} if prepared.picture is None else {"x": prepared.x, "picture": prepared.picture}
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def input_of(data: bytes) -> PreparedInput:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return PreparedInput(arrays["x"], arrays["picture"] if "picture" in arrays.files else None)


class RedisAttentionJobs:
    """The deployment's attention jobs in Redis: start (enqueue), read, cancel, and :meth:`execute` in a worker."""

    def __init__(self, client: redis.Redis, url: str, max_running: int, per_owner: int, kept: int, ttl_s: float,
                 stale_s: float, prefix: str = PREFIX) -> None:
        self.client = client
        self.url = url
        self.max_running = max_running
        self.per_owner = per_owner
        self.kept = kept
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.prefix = prefix
        self.queue = JobQueue(client)

    def key(self, kind: str, job_id: str = "") -> str:
        return f"{self.prefix}{kind}:{job_id}" if job_id else f"{self.prefix}{kind}"

    # --- reading -------------------------------------------------------------------------------------------

    def read(self, job_id: str) -> dict[str, Any]:
        """The job's state, a job whose worker (or queue entry) is gone read as failed (404: no such job)."""
        if JOB_ID.fullmatch(job_id) is None:
            raise not_found("attention job", job_id)
        with redis_errors(self.url, "reading the attention job"):
            raw = self.client.get(self.key("job", job_id))
            if raw is None:
                raise not_found("attention job", job_id)
            return self._alive_view(json.loads(raw))

    async def read_for_stream(self, job_id: str) -> dict[str, Any]:
        """:meth:`read` for the event stream, off the event loop (it talks to Redis)."""
        return await asyncio.to_thread(self.read, job_id)

    def _alive_view(self, status: dict[str, Any]) -> dict[str, Any]:
        if status["status"] not in ACTIVE:
            return status
        job_id = status["id"]
        if self.client.exists(self.key("beat", job_id)):
            return status
        if status["status"] == "queued" and self.queue.holds(KIND, job_id):
            return status
        raw = self.client.get(self.key("job", job_id))  # claimed or ended since it was read?
        if raw is not None and (fresh := json.loads(raw))["seq"] != status["seq"]:
            return self._alive_view(fresh)
        return {**status, "status": "failed", "error_status": 503, "seq": status.get("seq", 0) + 1,
                "error": DIED if status["status"] == "running" else LOST}

    def result(self, job_id: str) -> bytes:
        """The finished job's answer (the synchronous route's JSON); otherwise the error to answer, as the
        file version does: 409 while it runs or once cancelled, the job's own status and message once failed."""
        status = self.read(job_id)
        if status["status"] == "done":
            with redis_errors(self.url, "reading the attention map"):
                data = self.client.get(self.key("result", job_id))
            if data is None:
                raise not_found("attention job", job_id)
            return data
        if status["status"] == "failed":
            raise ApiError(status.get("error_status") or 500, status.get("error") or "the job failed")
        if status["status"] == "cancelled":
            raise ApiError(409, f"attention job '{job_id}' was cancelled before it finished: send the request "
                                "again for a new job")
        progress = f"{status['done']} of {status['total']} passes" if status.get("total") else "starting"
        raise ApiError(409, f"attention job '{job_id}' is still {status['status']} ({progress}): follow "
                            f"/api/attention/jobs/{job_id}/events, or ask again once it is done",
                       status=status["status"], done=status["done"], total=status.get("total"))

    # --- starting and stopping -----------------------------------------------------------------------------

    def start(self, attention: PreparedAttention, compute: Callable[..., AbstractContextManager[None]],
              owner: str | None, owner_limit: int | None) -> dict[str, Any]:
        """Record a new job and enqueue it for a worker (``compute`` is unused here: the worker's own compute
        slots bound it); 429 when the deployment runs ``max_running`` jobs already, or the owner ``owner_limit``
        (None: the lecturer, not limited)."""
        job_id = secrets.token_hex(8)
        now = time.time()
        request = attention.request
        status: dict[str, Any] = {
            "id": job_id, "status": "queued", "model_id": attention.model.id, "method": request.method,
            "owner": owner, "created_at": now, "started_at": None, "finished_at": None, "done": 0, "total": None,
            "seq": 0, "error": None, "error_status": None, "worker": None,
            "estimated_gmacs": round(attention.estimated_macs / 1e9, 6),
        }
        spec = {"method": request.method, "target": request.target, "layer": request.layer,
                "include_input_map": request.include_input_map, "options": dict(request.options),
                "max_macs": attention.max_macs, "estimated_macs": attention.estimated_macs}
        with redis_errors(self.url, "starting the attention job"):
            with self.client.lock(self.key("lock", "admit"), timeout=LOCK_TIMEOUT_S,
                                  blocking_timeout=LOCK_TIMEOUT_S):
                active = self._clean(now)
                if len(active) >= self.max_running:
                    raise ApiError(429, f"{len(active)} attention jobs are running on this server, as many as it "
                                        "allows at once: wait for one to finish (or stop yours), then send the "
                                        "request again", retry_after_s=5)
                mine = [s for s in active if owner is not None and s.get("owner") == owner]
                if owner_limit is not None and len(mine) >= owner_limit:
                    raise ApiError(429, f"you have {len(mine)} attention jobs running, as many as one person may: "
                                        "wait for one to finish or stop it (DELETE /api/attention/jobs/<id>)",
                                   retry_after_s=5)
                pipe = self.client.pipeline(transaction=True)
                pipe.set(self.key("spec", job_id), json.dumps(spec))
                pipe.set(self.key("input", job_id), input_bytes(attention.prepared))
                pipe.set(self.key("job", job_id), json.dumps(status))
                pipe.sadd(self.key("active"), job_id)
                pipe.execute()
            try:
                self.queue.enqueue_attention(job_id)
            except Exception:
                self._finish(job_id, status="failed", error="it could not be queued for a worker: send the request "
                                                            "again", error_status=503)
                raise
        return status

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the job to stop: a queued one ends as cancelled at once, a running one before its next batch of
        passes (any replica may ask; nothing happens to a finished job). Returns its state."""
        status = self.read(job_id)
        if status["status"] not in ACTIVE:
            return status
        with redis_errors(self.url, "cancelling the attention job"):
            self.client.set(self.key("cancel", job_id), b"1", ex=max(1, int(self.ttl_s)))
            if status["status"] == "queued" and self._update(job_id, lambda s: s["status"] == "queued",
                                                             status="cancelled", finished_at=time.time()):
                self._ended(job_id)
                self.queue.cancel(KIND, job_id)
        return self.read(job_id)

    def _update(self, job_id: str, condition: Callable[[dict[str, Any]], bool], **changes: Any) -> bool:
        """Apply ``changes`` (and a new ``seq``) to the job's state if ``condition(state)``, atomically."""
        key = self.key("job", job_id)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        pipe.unwatch()
                        return False
                    status = json.loads(raw)
                    if not condition(status):
                        pipe.unwatch()
                        return False
                    status.update(changes, seq=status.get("seq", 0) + 1)
                    pipe.multi()
                    pipe.set(key, json.dumps(status, allow_nan=False))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def _finish(self, job_id: str, **changes: Any) -> bool:
        ended = self._update(job_id, lambda s: s["status"] in ACTIVE, finished_at=time.time(), **changes)
        if ended:
            self._ended(job_id)
        return ended

    def _ended(self, job_id: str) -> None:
        """A job just ended: out of the active set, into the finished ones, its keys expiring after ``ttl_s``."""
        ttl = max(1, int(self.ttl_s))
        pipe = self.client.pipeline(transaction=True)
        pipe.srem(self.key("active"), job_id)
        pipe.zadd(self.key("finished"), {job_id: time.time()})
        pipe.delete(self.key("spec", job_id), self.key("input", job_id), self.key("beat", job_id))
        for kind in ("job", "result", "cancel"):
            pipe.expire(self.key(kind, job_id), ttl)
        pipe.execute()

    def _clean(self, now: float) -> list[dict[str, Any]]:
        """The active jobs (a dead one is recorded as failed and leaves the set); removes finished jobs beyond
        ``kept`` or older than ``ttl_s``. Called with the admission lock held."""
        active = []
        for raw_id in self.client.smembers(self.key("active")):
            job_id = raw_id.decode()
            raw = self.client.get(self.key("job", job_id))
            if raw is None:
                self.client.srem(self.key("active"), job_id)
                continue
            status = self._alive_view(json.loads(raw))
            if status["status"] in ACTIVE:
                active.append(status)
            else:
                self._finish(job_id, status="failed", error=status["error"], error_status=status["error_status"])
        finished = self.key("finished")
        old = self.client.zrangebyscore(finished, "-inf", now - self.ttl_s)
        beyond = self.client.zrevrange(finished, self.kept, -1)
        for raw_id in set(old) | set(beyond):
            job_id = raw_id.decode()
            self.client.delete(*(self.key(kind, job_id) for kind in ("job", "result", "cancel")))
            self.client.zrem(finished, job_id)
        return active

    # --- running, in a worker ------------------------------------------------------------------------------

    def execute(self, job_id: str, models: Any, compute: Callable[..., AbstractContextManager[None]]) -> None:
        """In an RQ worker: claim the queued job, compute it with this machine's ``models`` and ``compute``
        slots, recording progress; then the result, or why there is none. A job cancelled (or gone) before a
        worker took it is skipped."""
        beat_key = self.key("beat", job_id)
        stale_ms = max(1, int(self.stale_s * 1000))
        self.client.set(beat_key, b"1", px=stale_ms)  # before the claim: a reader never sees it running and silent
        if not self._update(job_id, lambda s: s["status"] == "queued", status="running", started_at=time.time(),
                            worker=worker_id()):
            self.client.delete(beat_key)
            log.info("attention job %s is no longer queued: skipped", job_id)
            return
        stop = threading.Event()
        beating = threading.Thread(target=self._beat, args=(beat_key, stale_ms, stop), daemon=True,
                                   name=f"attention-beat-{job_id}")
        beating.start()
        try:
            self._compute(job_id, models, compute)
        finally:
            stop.set()
            beating.join(5)

    def _beat(self, key: str, stale_ms: int, stop: threading.Event) -> None:
        while not stop.wait(min(1.0, stale_ms / 4000)):
            try:
                self.client.set(key, b"1", px=stale_ms)
            except redis.exceptions.RedisError as exc:
                log.warning("could not mark an attention job alive: %s", exc)

    def _compute(self, job_id: str, models: Any, compute: Callable[..., AbstractContextManager[None]]) -> None:
        last_write = [0.0]
        cancel_key = self.key("cancel", job_id)

        def running(status: dict[str, Any]) -> bool:
            return status["status"] == "running"

        def progress(done: int, total: int) -> None:
            if self.client.exists(cancel_key):
                raise JobCancelledError
            if done >= total or time.monotonic() - last_write[0] >= PROGRESS_INTERVAL_S:
                self._update(job_id, running, done=done, total=total)
                last_write[0] = time.monotonic()

        try:
            if self.client.exists(cancel_key):
                raise JobCancelledError
            spec = json.loads(self.client.get(self.key("spec", job_id)) or b"null")
            data = self.client.get(self.key("input", job_id))
            if spec is None or data is None:
                raise ApiError(503, "the job's input is gone from Redis (expired or removed): send the request again")
            request = AttentionRequest(spec["method"], spec["target"], spec["layer"], spec["include_input_map"],
                                       spec["options"])
            attention = PreparedAttention(models.get(self.read(job_id)["model_id"]), input_of(data), request,
                                          int(spec["max_macs"]), int(spec["estimated_macs"]))
            answer = compute_attention(attention, compute, progress)
            self.client.set(self.key("result", job_id), answer.model_dump_json())
            status = self.read(job_id)
            total = status.get("total") or 1
            self._finish(job_id, status="done", done=total, total=total)
        except JobCancelledError:
            self._finish(job_id, status="cancelled")
        except Exception as exc:  # every failure is recorded for whoever reads the job
            code, detail = error_of(exc)
            try:
                self._finish(job_id, status="failed", error=detail, error_status=code)
            except redis.exceptions.RedisError:  # readers see the beat expire and report the job failed
                log.warning("could not record the end of attention job %s", job_id, exc_info=True)
