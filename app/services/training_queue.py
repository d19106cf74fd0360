"""Training jobs on several machines (``CNN_VIS_REDIS_URL``): rows, events and weights in Redis
(``app.services.redis_job_store``), training in RQ workers (``app.services.job_queue``, ``cnn-visualiser worker``).

The web replica that gets ``POST /api/training/jobs`` checks the settings and admits the job under the
deployment's limits exactly as ``JobManager`` does (same messages, same 422 and 429), with ``worker`` "queued",
then enqueues its id. A worker claims it (only a queued, still running job: a job cancelled while queued is not
trained), rebuilds the same network from its settings and seed, and runs ``JobManager._run`` in its work horse,
with the heartbeat thread marking it alive and reading its cancel flag. Every replica answers status, the event
stream (a blocking ``XREAD`` on the job's stream), cancel and "open as a model" (the weights are ``.npz`` bytes in
Redis, read with ``allow_pickle=False``).

Failure: a worker that dies stops the heartbeat, and the job reads as failed ("interrupted") ``job_stale_s``
later, on every replica; a job that RQ drops or fails before a worker claims it goes stale the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import redis
import redis.asyncio

from app.errors import ApiError
from app.schemas.training import TrainingSettings
from app.services.job_queue import JobQueue
from app.services.job_store import JobRow
from app.services.redis_client import connect_async, redis_errors
from app.services.redis_job_store import QUEUED, RedisJobStore, stream_id
from app.services.training_jobs import JobManager, LocalRun, TrainingJobState, end_data, worker_id
from engine.models.bundle import ModelBundle

log = logging.getLogger("cnn_visualiser.training")

#: a stream waits this long for a new event before it checks the client and the job's liveness again
BLOCK_SECONDS = 1.0
KIND = "training"


class QueuedJobManager(JobManager):
    """``JobManager`` whose store is Redis and whose jobs run in RQ workers; see the module docstring."""

    def __init__(self, client: redis.Redis, url: str, max_running: int, max_kept: int, data_dir: Path,
                 stale_seconds: float, **options: Any) -> None:
        self.client = client
        self.url = url
        self.queue = JobQueue(client)
        store = RedisJobStore(client, queued_alive=lambda job_id: self.queue.holds(KIND, job_id))
        self._async: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None
        super().__init__(max_running, max_kept, data_dir=data_dir, stale_seconds=stale_seconds, store=store,
                         **options)

    @property
    def redis_store(self) -> RedisJobStore:
        store = self.store
        assert isinstance(store, RedisJobStore)
        return store

    # --- the web replica's side -------------------------------------------------------------------------
    def _new_row_worker(self) -> str:
        return QUEUED

    def _launch(self, row: JobRow, run: LocalRun) -> LocalRun | None:
        """Enqueue the admitted job for a worker; a job that cannot be enqueued is ended as failed at once."""
        try:
            with redis_errors(self.url, "queueing the training job"):
                self.queue.enqueue_training(row.id)
        except Exception:
            with contextlib.suppress(Exception):
                self.redis_store.finish(row.id, "failed", "it could not be queued for a worker: start it again",
                                        end_data)
            raise
        return None

    def cancel(self, job_id: str) -> TrainingJobState:
        """Stop a job: one still queued ends as cancelled at once (and leaves the queue); one a worker trains
        stops before its next batch (the worker reads the flag within a heartbeat)."""
        job = self.get(job_id)
        if job.row.worker == QUEUED and not job.finished and self.redis_store.finish(
                job_id, "cancelled", None, end_data, only_queued=True):
            self.queue.cancel(KIND, job_id)
            return self.get(job_id)
        return super().cancel(job_id)

    async def wait_for_events(self, job_id: str, after: int, poll: float) -> None:
        """Wait for an event after ``after`` with a blocking ``XREAD`` (at most ``BLOCK_SECONDS``), without
        holding a thread; on a Redis error, wait ``poll`` (the next read reports it)."""
        try:
            client = self._async_client()
            await client.xread({self.redis_store.events_key(job_id): stream_id(after) if after >= 0 else "0-0"},
                               count=1, block=int(max(poll, BLOCK_SECONDS) * 1000))
        except (redis.exceptions.RedisError, OSError):
            await asyncio.sleep(poll)

    def _async_client(self) -> redis.asyncio.Redis:
        """The asyncio client of the running event loop (one per loop: a client's connections belong to it)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            self._async = (loop, connect_async(self.url))
        return self._async[1]

    # --- weights in Redis --------------------------------------------------------------------------------
    def _keep_weights(self, job_id: str, params: dict[str, np.ndarray]) -> None:
        """The trained weights as a compressed ``.npz`` (float32) in Redis, so any machine opens the model."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{k: np.asarray(v, dtype=np.float32) for k, v in params.items()})
        self.redis_store.keep_weights(job_id, buffer.getvalue())

    def trained_params(self, job_id: str) -> dict[str, np.ndarray] | None:
        """The weights a finished job stored (None when they are missing or unreadable; never unpickled)."""
        with redis_errors(self.url, "reading the trained weights"):
            data = self.redis_store.weights(job_id)
        if data is None:
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                return {k: np.ascontiguousarray(arrays[k], dtype=np.float32) for k in arrays.files}
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError):
            log.warning("the stored weights of training job %s cannot be read", job_id)
            return None

    def bundle_of(self, job: TrainingJobState) -> ModelBundle:
        try:
            return super().bundle_of(job)
        except ApiError as exc:
            if "are gone from the server's data directory" not in exc.detail:
                raise
            raise ApiError(409, f"the trained weights of training job {job.id} are gone from Redis, so it cannot be "
                                "opened as a model: train it again (same settings and seed give the same network)"
                           ) from None

    # --- the worker's side -------------------------------------------------------------------------------
    def execute(self, job_id: str) -> None:
        """In an RQ worker: claim the queued job and train it here, in this thread, until it ends. A job that
        was cancelled (or is gone) before a worker took it is skipped."""
        row = self.redis_store.get(job_id)
        if row is None or row.finished or not self.redis_store.claim(job_id, worker_id()):
            log.info("training job %s is no longer queued: skipped", job_id)
            return
        try:
            settings = TrainingSettings(**row.settings)
            network, graph, params, _ = self._prepare(settings)
        except Exception as exc:  # e.g. pre-trained weights missing on this machine
            detail = exc.detail if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
            self.redis_store.finish(job_id, "failed", f"the worker could not prepare the network: {detail}",
                                    end_data)
            return
        run = LocalRun(settings, network, graph, params, dict(row.progress), thread=threading.current_thread())
        with self._lock:
            self._runs[job_id] = run
        self._ensure_monitor()
        try:
            self._run(job_id, run)
        finally:
            with self._lock:
                self._runs.pop(job_id, None)

    def shutdown(self, timeout: float = 30.0) -> None:
        super().shutdown(timeout)
        self.client.close()
