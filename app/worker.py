"""``cnn-visualiser worker``: an RQ worker that runs the training and attention jobs the web replicas enqueue
(``CNN_VIS_REDIS_URL``; see ``app.services.job_queue`` for why RQ).

It builds the same services as the web app from the same settings (the models of its data directory, its compute
slots, the Redis job stores), installs them for the task functions, and works the queues ``cnn-vis-training``
and ``cnn-vis-attention``, one job at a time in a forked work horse. Run one per job that should run at once on
a machine (``training_max_jobs`` and ``attention_max_jobs`` bound them across the deployment). SIGTERM lets the
current job finish (a warm shutdown); a second one stops it.
"""

from __future__ import annotations

import logging

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from app.core.config import Settings
from app.core.cpu import limit_blas_threads
from app.services.container import Services, build_services
from app.services.job_queue import QUEUES, set_worker_services
from app.services.redis_client import RedisUnavailableError, connect

log = logging.getLogger("cnn_visualiser.worker")


def preload(services: Services) -> None:
    """Load the built-in models before the first job, so that every work horse (a fork) starts with them."""
    for model_id in services.models.builtins:
        try:
            services.models.get(model_id)
        except Exception:  # a broken model must not stop the others; its jobs will report the error
            log.exception("could not preload model '%s'", model_id)


def run_worker(settings: Settings, burst: bool = False, log_level: str = "info") -> None:
    """Work the queues until stopped (``burst``: until they are empty). SystemExit with a clear message when
    ``redis_url`` is unset or Redis cannot be reached."""
    if not settings.redis_url:
        raise SystemExit("cnn-visualiser worker runs the jobs queued in Redis: set CNN_VIS_REDIS_URL (e.g. "
                         "redis://redis-host:6379/0) to the Redis server the web replicas use")
    try:
        client = connect(settings.redis_url)
    except RedisUnavailableError as exc:
        raise SystemExit(f"cnn-visualiser worker: {exc.message}") from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    limit_blas_threads(settings.blas_threads)
    services = build_services(settings)
    set_worker_services(services)
    if settings.preload:
        preload(services)
    queues = [Queue(name, connection=client, serializer=JSONSerializer) for name in QUEUES]
    worker = Worker(queues, connection=client, serializer=JSONSerializer)
    try:
        worker.work(burst=burst, logging_level=log_level.upper(), with_scheduler=False)
    finally:
        services.training.shutdown(timeout=5.0)
