"""The training lab: start, list, read, stream (server-sent events), cancel jobs, and open a result as a model.

Event stream (``GET /api/training/jobs/{id}/events``, ``text/event-stream``): every message has an ``id``
(send it back as ``Last-Event-ID`` to resume), an ``event`` type and JSON ``data``:

- ``epoch``: loss and accuracy, training and test, after an epoch (epoch 0: before training);
- ``batch``: the running training loss and accuracy within the epoch, the step and the time left (``eta``);
- ``images``: the first-layer filters and one test digit's first-layer feature maps as PNG data URLs
  (``data:image/png;base64,...``), with the digit, its label and the network's probabilities;
- ``end``: the job's final state (status ``done``, ``cancelled`` or ``failed`` with ``error``); the stream ends.

A new stream first replays what happened so far (the latest pictures only), then follows the job live.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from starlette.routing import NoMatchFound

from app.api.deps import ModelStoreDep, SettingsDep
from app.schemas.training import TrainedModel, TrainingJob, TrainingJobList, TrainingSettings
from app.services.training_jobs import JobManager, Message, TrainingJobState, job_manager_for

router = APIRouter(prefix="/training", tags=["training"])

POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 10.0


def get_job_manager(settings: SettingsDep) -> JobManager:
    """The process's training job manager, with the configured limits."""
    return job_manager_for(settings.training_max_jobs, settings.training_max_kept)


JobManagerDep = Annotated[JobManager, Depends(get_job_manager)]


def get_job(job_id: str, manager: JobManagerDep) -> TrainingJobState:
    """The job named in the path (404 listing the known ids)."""
    return manager.get(job_id)


JobDep = Annotated[TrainingJobState, Depends(get_job)]


def format_event(message: Message) -> str:
    """One message in the text/event-stream format."""
    return f"id: {message.seq}\nevent: {message.event}\ndata: {json.dumps(message.data, allow_nan=False)}\n\n"


async def event_stream(job: TrainingJobState, is_disconnected: Callable[[], Awaitable[bool]], after: int = -1,
                       poll: float = POLL_SECONDS, heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[str]:
    """The job's messages after ``after``, then new ones as they come; ends after ``end`` or on disconnect.

    Only reads what the job's thread recorded: no NumPy work here, so the event loop is never blocked."""
    yield "retry: 2000\n\n"
    quiet_since = time.monotonic()
    while True:
        for message in job.messages_after(after):
            after = message.seq
            yield format_event(message)
            quiet_since = time.monotonic()
            if message.event == "end":
                return
        if await is_disconnected():
            return
        if time.monotonic() - quiet_since > heartbeat:
            yield ": keep-alive\n\n"  # a comment: lets proxies and the server notice a vanished client
            quiet_since = time.monotonic()
        await asyncio.sleep(poll)


@router.post("/jobs", response_model=TrainingJob, status_code=201, responses={
    422: {"description": "a setting is out of range or does not fit the network (the message names it)"},
    429: {"description": "as many jobs are running as the server allows: wait or cancel one"},
    503: {"description": "pre-trained weights asked for but not installed"}})
def create_job(settings: TrainingSettings, manager: JobManagerDep) -> TrainingJob:
    """Start training a digit network in the background; follow it at `events_url`."""
    return manager.start(settings).summary()


@router.get("/jobs", response_model=TrainingJobList)
def list_jobs(manager: JobManagerDep) -> TrainingJobList:
    """Every job this server process has kept, newest first (kept until the server restarts)."""
    return TrainingJobList(jobs=[job.summary() for job in manager.jobs()], running=manager.running(),
                           max_running=manager.max_running)


@router.get("/jobs/{job_id}", response_model=TrainingJob)
def read_job(job: JobDep) -> TrainingJob:
    """One job: status, progress, and its curves so far."""
    return job.summary()


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse, responses={200: {
    "content": {"text/event-stream": {"example": 'id: 3\nevent: epoch\ndata: {"epoch": 1, "loss": 0.41, ...}\n\n'}},
    "description": "server-sent events: epoch, batch, images, end (see the module description in the docs)"}})
async def read_job_events(job: JobDep, request: Request,
                          last_event_id: Annotated[int | None, Header(
                              description="resume after this event id (browsers send it when reconnecting)")] = None,
                          ) -> StreamingResponse:
    """The job's progress as server-sent events: curves, filters and feature maps, time left; ends with the job."""
    after = -1 if last_event_id is None else last_event_id
    return StreamingResponse(event_stream(job, request.is_disconnected, after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.delete("/jobs/{job_id}", response_model=TrainingJob, status_code=202)
def delete_job(job_id: str, manager: JobManagerDep) -> TrainingJob:
    """Cancel a running job (it stops before its next batch; its stream ends with status `cancelled`)."""
    return manager.cancel(job_id).summary()


@router.post("/jobs/{job_id}/cancel", response_model=TrainingJob, status_code=202)
def cancel_job(job_id: str, manager: JobManagerDep) -> TrainingJob:
    """The same as DELETE, for clients that cannot send DELETE."""
    return manager.cancel(job_id).summary()


def explorer_url(request: Request, model_id: str) -> str:
    try:
        base = request.app.url_path_for("read_explorer")
    except NoMatchFound:
        base = "/"
    return f"{base}?model={model_id}"


@router.post("/jobs/{job_id}/model", response_model=TrainedModel, responses={
    409: {"description": "the job has not finished training (or was cancelled or failed)"}})
def create_job_model(job: JobDep, manager: JobManagerDep, store: ModelStoreDep, request: Request) -> TrainedModel:
    """Register the trained network as a model the explorer can open, until the server restarts (idempotent)."""
    stored = store.add_temporary(manager.bundle_of(job))
    with job.lock:
        job.model_id = stored.id
    return TrainedModel(model_id=stored.id, explorer_url=explorer_url(request, stored.id))
