"""Dependencies shared by the routes, as ``Annotated`` aliases (override them in tests)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Depends, Path, Request

from app.core.config import Settings, get_settings
from app.services.compute import compute_slot
from app.services.inputs import ModelInput, read_model_input
from app.services.models import ModelStore, StoredModel, model_store_for
from app.services.runs import RunStore, run_store_for

SettingsDep = Annotated[Settings, Depends(get_settings)]

ComputeSlot = Callable[[], AbstractContextManager[None]]


def get_compute(settings: SettingsDep) -> ComputeSlot:
    """``with compute(): ...`` holds one of the worker's compute slots (bounds memory under load)."""
    return lambda: compute_slot(settings.compute_slots, settings.compute_wait_s)


ComputeDep = Annotated[ComputeSlot, Depends(get_compute)]


def get_model_store(settings: SettingsDep) -> ModelStore:
    """The process's model store for the configured data directory."""
    return model_store_for(settings.data_dir)


ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]


def get_run_store(settings: SettingsDep, compute: ComputeDep) -> RunStore:
    """The process's run cache for the configured data directory and limits."""
    return run_store_for(settings.data_dir, settings.run_cache_size, settings.run_cache_mb * 1024 * 1024, compute)


RunStoreDep = Annotated[RunStore, Depends(get_run_store)]

ModelIdPath = Annotated[str, Path(description="a model id from GET /api/models", examples=["digits-classic"])]


def get_model(model_id: ModelIdPath, store: ModelStoreDep) -> StoredModel:
    """The model named in the path (404 listing the known ids)."""
    return store.get(model_id)


ModelDep = Annotated[StoredModel, Depends(get_model)]


async def get_model_input(request: Request, settings: SettingsDep) -> ModelInput:
    """The image or .npy tensor in the request body."""
    return await read_model_input(request, settings.max_upload_bytes)


ModelInputDep = Annotated[ModelInput, Depends(get_model_input)]
