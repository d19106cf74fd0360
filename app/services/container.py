"""The app's long-lived parts, built once from its settings in the lifespan and kept on ``app.state.services``.

Routes reach them through the dependencies in ``app.api.deps`` (tests override those), never through
module-level singletons: two apps with different settings in one process (the tests do this) never share a
store, a run cache or compute slots.

The one place that picks where shared state lives: with ``Settings.redis_url``, training jobs and heavy attention
jobs are kept in Redis and run by RQ workers (``cnn-visualiser worker``, which builds the same services), and the
stored models' catalogue is Redis; without it, all of it is in the data directory, jobs run in threads (or child
processes) of the web worker that took the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.core.config import MB, Settings
from app.services.analysis_jobs import AnalysisJobs
from app.services.attention_jobs import AttentionJobs
from app.services.backprop import GradientStore
from app.services.compute import ComputeSlots
from app.services.models import ModelStore
from app.services.redis_attention_jobs import RedisAttentionJobs
from app.services.redis_client import connect
from app.services.redis_models import RedisModelCatalogue
from app.services.runs import RunStore
from app.services.shared_runs import SharedRuns
from app.services.training_jobs import JobManager
from app.services.training_queue import QueuedJobManager


@dataclass(frozen=True)
class Services:
    """The model registry, the run cache, the compute slots and the training jobs of one app."""

    models: ModelStore
    runs: RunStore
    attention: AttentionJobs | RedisAttentionJobs  # heavy attention maps computed in the background
    compute: ComputeSlots
    training: JobManager
    analysis: AnalysisJobs  # top examples, feature visualisation, projections, probes: cached in the data directory
    gradients: GradientStore  # backpropagation's recent gradients, in half this worker's share of the run cache


def run_cache_share(settings: Settings) -> int:
    """The bytes of runs this worker keeps: its share of ``run_cache_mb`` (all the ``workers`` together)."""
    return max(1, settings.run_cache_mb * MB // settings.workers)


def shared_runs(settings: Settings, data_dir: Path) -> SharedRuns | None:
    """With several workers, runs are shared through files they all map (``app.services.shared_runs``), within
    the machine's ``run_cache_mb``; one worker keeps them in its memory."""
    return SharedRuns.for_data_dir(data_dir, settings.run_cache_mb * MB) if settings.workers > 1 else None


def build_services(settings: Settings) -> Services:
    """Every long-lived part, with the limits ``settings`` gives."""
    data_dir = Path(settings.data_dir).resolve()
    compute = ComputeSlots.from_settings(settings)
    attention: AttentionJobs | RedisAttentionJobs
    catalogue = None  # Redis down: the app starts, and what needs Redis answers 503
    if settings.redis_url:
        catalogue = RedisModelCatalogue(connect(settings.redis_url, check=False), settings.redis_url)
    models = ModelStore(data_dir, catalogue=catalogue)
    if catalogue is not None:
        client = catalogue.client
        attention = RedisAttentionJobs(client, catalogue.url, settings.attention_max_jobs,
                                       settings.attention_jobs_per_owner, settings.attention_jobs_kept,
                                       settings.attention_job_ttl_s, settings.job_stale_s)
        training: JobManager = QueuedJobManager(client, catalogue.url, settings.training_max_jobs,
                                                settings.training_max_kept, data_dir, settings.job_stale_s)
    else:
        attention = AttentionJobs(data_dir, settings.attention_max_jobs, settings.attention_jobs_per_owner,
                                  settings.attention_jobs_kept, settings.attention_job_ttl_s, models.reloadable)
        training = JobManager(settings.training_max_jobs, settings.training_max_kept, data_dir=data_dir)
    return Services(
        models=models,
        runs=RunStore(data_dir / "runs", settings.run_cache_size, run_cache_share(settings), compute=compute,
                      shared=shared_runs(settings, data_dir)),
        attention=attention,
        compute=compute,
        training=training,
        analysis=AnalysisJobs(data_dir, settings.analysis_max_jobs, settings.analysis_jobs_kept,
                              settings.analysis_job_ttl_s),
        gradients=GradientStore(settings.run_cache_size, max(1, run_cache_share(settings) // 2), compute),
    )
