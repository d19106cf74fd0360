"""Dependencies shared by the routes, as ``Annotated`` aliases (override them in tests).

The settings and the long-lived parts (``app.services.container.Services``: models, runs, compute slots,
training jobs) live on ``app.state``, built by ``create_app`` and its lifespan; these functions hand them to
the routes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Response

from app.core.config import Settings
from app.errors import ApiError, not_found
from app.services.analysis_jobs import AnalysisJobs
from app.services.attention_jobs import AttentionJobs
from app.services.backprop import GradientStore
from app.services.container import Services
from app.services.inputs import ModelInput, read_model_input
from app.services.models import ModelStore, StoredModel
from app.services.owners import (
    ADMIN_HEADER,
    COOKIE_MAX_AGE,
    OWNER_COOKIE,
    OWNER_HEADER,
    Identity,
    identify,
    may_read,
    new_token,
    valid_token,
)
from app.services.redis_attention_jobs import RedisAttentionJobs
from app.services.runs import RunStore
from app.services.training_jobs import JobManager


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_services(request: Request) -> Services:
    """The app's long-lived parts (built in its lifespan: a TestClient must be used as a context manager)."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise RuntimeError("the app's services are built in its lifespan, which has not run: start the app with "
                           "uvicorn, or use `with TestClient(app) as client:`")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

ComputeSlot = Callable[..., AbstractContextManager[None]]


def get_compute(services: ServicesDep) -> ComputeSlot:
    """``with compute(): ...`` holds one of the machine's heavy compute slots, ``with compute(gmacs=w): ...`` one of
    the lane work ``w`` belongs to (light or heavy; bounds memory and keeps cheap requests fast under load)."""
    return services.compute


ComputeDep = Annotated[ComputeSlot, Depends(get_compute)]


def get_background_compute(services: ServicesDep) -> ComputeSlot:
    """``with compute(): ...`` holds one of the machine's background compute slots (for background jobs)."""
    return services.compute.background


BackgroundComputeDep = Annotated[ComputeSlot, Depends(get_background_compute)]


def get_import_slot(services: ServicesDep) -> ComputeSlot:
    """``with importing(): ...`` holds the machine's one import slot (big ONNX imports, one at a time)."""
    return services.compute.importing


ImportSlotDep = Annotated[ComputeSlot, Depends(get_import_slot)]


def get_model_store(services: ServicesDep) -> ModelStore:
    """The app's models: built-in and uploaded."""
    return services.models


ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]


def get_run_store(services: ServicesDep) -> RunStore:
    """The app's run cache."""
    return services.runs


RunStoreDep = Annotated[RunStore, Depends(get_run_store)]


def get_attention_jobs(services: ServicesDep) -> AttentionJobs | RedisAttentionJobs:
    """The attention maps computed in the background (their state is in the data directory, or in Redis)."""
    return services.attention


AttentionJobsDep = Annotated[AttentionJobs | RedisAttentionJobs, Depends(get_attention_jobs)]


def get_analysis_jobs(services: ServicesDep) -> AnalysisJobs:
    """The long analyses of what a network learned, computed in the background and cached in the data directory."""
    return services.analysis


AnalysisJobsDep = Annotated[AnalysisJobs, Depends(get_analysis_jobs)]


def get_gradient_store(services: ServicesDep) -> GradientStore:
    """Backpropagation's recent gradients (per worker, computed from runs)."""
    return services.gradients


GradientStoreDep = Annotated[GradientStore, Depends(get_gradient_store)]


def get_job_manager(services: ServicesDep) -> JobManager:
    """The app's training jobs."""
    return services.training


JobManagerDep = Annotated[JobManager, Depends(get_job_manager)]

def get_identity(
    request: Request, settings: SettingsDep,
    owner_token: Annotated[str | None, Header(
        alias=OWNER_HEADER, description="your owner token (the owner_token an upload or a training job returned); "
                                        "browsers use the cnn_vis_owner cookie instead",
        examples=["q3Xh0bW6S8yJf2kVtN4cLm9pR1aZ7uEoD5iGwYx_B-0"])] = None,
    admin_token: Annotated[str | None, Header(
        alias=ADMIN_HEADER, description="the lecturer's token (CNN_VIS_ADMIN_TOKEN): see, delete, cancel and "
                                        "share anything", examples=["the-lecturer-secret-from-the-env"])] = None,
) -> Identity:
    """The caller: their owner token (header, else cookie) and whether they are the lecturer (403 for a wrong
    lecturer token)."""
    return identify(owner_token, request.cookies.get(OWNER_COOKIE), admin_token, settings.admin_token)


IdentityDep = Annotated[Identity, Depends(get_identity)]


def remember_owner(request: Request, response: Response, token: str) -> None:
    """Set the owner cookie unless the browser sent a valid one (HttpOnly: page scripts never see it;
    SameSite=Lax: other sites' forms and scripts do not send it; Secure when the request came over https)."""
    if valid_token(request.cookies.get(OWNER_COOKIE)):
        return
    response.set_cookie(OWNER_COOKIE, token, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


def get_owner(identity: IdentityDep, request: Request, response: Response) -> Identity:
    """The caller as the owner of what the request creates: a new token when they have none, kept in the
    browser's cookie when it did not carry one."""
    token = identity.token or new_token()
    remember_owner(request, response, token)
    return dataclasses.replace(identity, token=token)


OwnerDep = Annotated[Identity, Depends(get_owner)]


def visible_ids(store: ModelStore, identity: Identity) -> list[str]:
    """The ids of the models the caller may see."""
    visible = []
    for model_id in store.ids():
        try:
            if may_read(store.access(model_id), identity):
                visible.append(model_id)
        except ApiError:
            continue  # deleted meanwhile
    return visible


@contextmanager
def hiding_others(store: ModelStore, identity: Identity, model_id: str) -> Iterator[None]:
    """A 404 raised inside names only the models the caller may see (never other students' ids)."""
    try:
        yield
    except ApiError as exc:
        if exc.status_code != 404 or not exc.detail.startswith("no model "):
            raise
        raise not_found("model", model_id, visible_ids(store, identity)) from None


ModelIdPath = Annotated[str, Path(description="a model id from GET /api/models", examples=["digits-classic"])]


def get_model(model_id: ModelIdPath, store: ModelStoreDep, identity: IdentityDep) -> StoredModel:
    """The model named in the path when the caller may see it; else 404 as if it did not exist, listing the
    ids they may see (another student's unshared upload is private)."""
    with hiding_others(store, identity, model_id):
        if not may_read(store.access(model_id), identity):
            raise not_found("model", model_id)
        return store.get(model_id)


ModelDep = Annotated[StoredModel, Depends(get_model)]


async def get_model_input(request: Request, settings: SettingsDep, services: ServicesDep) -> ModelInput:
    """The image or .npy tensor in the request body (an image decodes within the machine's decode budget)."""
    return await read_model_input(request, settings.max_upload_bytes, services.compute.decoding)


ModelInputDep = Annotated[ModelInput, Depends(get_model_input)]
