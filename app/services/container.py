"""The app's long-lived parts, built once from its settings in the lifespan and kept on ``app.state.services``.

Routes reach them through the dependencies in ``app.api.deps`` (tests override those), never through
module-level singletons: two apps with different settings in one process (the tests do this) never share a
store, a run cache or compute slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.core.config import MB, Settings
from app.services.attention_jobs import AttentionJobs
from app.services.compute import ComputeSlots
from app.services.models import ModelStore
from app.services.runs import RunStore
from app.services.training_jobs import JobManager


@dataclass(frozen=True)
class Services:
    """The model registry, the run cache, the compute slots and the training jobs of one app."""

    models: ModelStore
    runs: RunStore
    attention: AttentionJobs  # heavy attention maps computed in the background
    compute: ComputeSlots
    training: JobManager


def run_cache_share(settings: Settings) -> int:
    """The bytes of runs this worker keeps: its share of ``run_cache_mb`` (all the ``workers`` together)."""
    return max(1, settings.run_cache_mb * MB // settings.workers)


def build_services(settings: Settings) -> Services:
    """Every long-lived part, with the limits ``settings`` gives."""
    data_dir = Path(settings.data_dir).resolve()
    compute = ComputeSlots.from_settings(settings)
    models = ModelStore(data_dir)
    return Services(
        models=models,
        runs=RunStore(data_dir / "runs", settings.run_cache_size, run_cache_share(settings), compute=compute),
        attention=AttentionJobs(data_dir, settings.attention_max_jobs, settings.attention_jobs_per_owner,
                                settings.attention_jobs_kept, settings.attention_job_ttl_s, models.reloadable),
        compute=compute,
        training=JobManager(settings.training_max_jobs, settings.training_max_kept, data_dir=data_dir),
    )
