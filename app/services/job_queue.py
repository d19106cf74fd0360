"""Background jobs through RQ (https://python-rq.org) on the deployment's Redis (``CNN_VIS_REDIS_URL``).

Why RQ, and not Dramatiq or arq: our jobs are synchronous NumPy (a Trainer loop, an attribution method's passes).
RQ runs plain Python functions by their import path, needs nothing but Redis, has a worker command and a worker
class we can start from our own CLI with the app's settings and services (``cnn-visualiser worker``), and keeps
each job's status, meta and a failure registry, with cancel. arq is asyncio-first (a NumPy job would block its
event loop or need a thread around every call); Dramatiq needs a broker and actors declared at import time, and
its middleware for results and retries, for no gain here.

What goes through the queue is only a job's id (a string, serialised as JSON: RQ's ``JSONSerializer``, never
pickle). Everything the job needs is in Redis already, written by the web replica that admitted it
(``app.services.redis_job_store``, ``app.services.redis_attention_jobs``), and everything it produces (events,
progress, results, weights) goes back there; RQ's own result is unused (``result_ttl=0``).

Queues: ``cnn-vis-training`` and ``cnn-vis-attention``. A worker runs one job at a time in a forked work horse
(a crash or an out-of-memory kill ends the horse, not the worker); run as many workers as jobs should run at
once. A job whose worker dies stops sending heartbeats and reads as failed after ``Settings.job_stale_s``.

The task functions below run in the worker process, where :func:`set_worker_services` has installed the services
the worker built from its settings: RQ calls functions by import path, so this module-level handle is how a task
finds them (only ``cnn-visualiser worker`` sets it; the web app never reads it).
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from app.core.cpu import run_in_background

TRAINING_QUEUE = "cnn-vis-training"
ATTENTION_QUEUE = "cnn-vis-attention"
QUEUES = (TRAINING_QUEUE, ATTENTION_QUEUE)
#: RQ's own time limit per job (the horse is killed after it): far above any job our limits allow
TRAINING_TIMEOUT_S = 12 * 3600
ATTENTION_TIMEOUT_S = 3600
FAILURE_TTL_S = 24 * 3600
HELD = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED})

_worker_services: Any = None


class JobQueue:
    """Enqueue job ids for the workers, and ask RQ whether it still holds one (queued or being run)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.queues = {name: Queue(name, connection=client, serializer=JSONSerializer) for name in QUEUES}

    @staticmethod
    def rq_id(kind: str, job_id: str) -> str:
        return f"{kind}-{job_id}"

    def enqueue_training(self, job_id: str) -> None:
        self.queues[TRAINING_QUEUE].enqueue(
            "app.services.job_queue.run_training_job", job_id, job_id=self.rq_id("training", job_id),
            job_timeout=TRAINING_TIMEOUT_S, result_ttl=0, failure_ttl=FAILURE_TTL_S,
            description=f"training job {job_id}")

    def enqueue_attention(self, job_id: str) -> None:
        self.queues[ATTENTION_QUEUE].enqueue(
            "app.services.job_queue.run_attention_job", job_id, job_id=self.rq_id("attention", job_id),
            job_timeout=ATTENTION_TIMEOUT_S, result_ttl=0, failure_ttl=FAILURE_TTL_S,
            description=f"attention job {job_id}")

    def holds(self, kind: str, job_id: str) -> bool:
        """Whether RQ still has the job queued or running (False once it failed, was cancelled or is gone)."""
        try:
            return Job(self.rq_id(kind, job_id), connection=self.client).get_status() in HELD
        except (InvalidJobOperation, NoSuchJobError, ValueError):
            return False

    def cancel(self, kind: str, job_id: str) -> None:
        """Take a job that has not started off its queue (best effort: a worker that took it meanwhile sees the
        job's own cancel state)."""
        with contextlib.suppress(InvalidJobOperation, NoSuchJobError):
            Job.fetch(self.rq_id(kind, job_id), connection=self.client, serializer=JSONSerializer).cancel()


def set_worker_services(services: Any) -> None:
    """In ``cnn-visualiser worker``: the services the task functions use."""
    global _worker_services
    _worker_services = services


def worker_services() -> Any:
    if _worker_services is None:
        raise RuntimeError("cnn-visualiser's jobs run in `cnn-visualiser worker`, which builds the services they use; "
                           "a plain `rq worker` cannot run them")
    return _worker_services


def run_training_job(job_id: str) -> None:
    """RQ task: train job ``job_id`` (admitted by a web replica) in this worker."""
    run_in_background()  # a web replica on the same machine answers its requests first
    worker_services().training.execute(job_id)


def run_attention_job(job_id: str) -> None:
    """RQ task: compute attention job ``job_id`` in this worker."""
    services = worker_services()
    run_in_background()
    services.attention.execute(job_id, services.models, services.compute.background)
