"""The training lab: start, list, read, stream (server-sent events), cancel jobs, and open a result as a model.

Event stream (``GET /api/training/jobs/{id}/events``, ``text/event-stream``): every message has an ``id``
(send it back as ``Last-Event-ID`` to resume), an ``event`` type and JSON ``data``:

- ``epoch``: loss and accuracy, training and test, after an epoch (epoch 0: before training);
- ``batch``: the running training loss and accuracy within the epoch, the step and the time left (``eta``);
- ``images``: the first-layer filters and one test digit's first-layer feature maps as PNG data URLs
  (``data:image/png;base64,...``), with the digit, its label and the network's probabilities; for a recurrent
  network, its gates' input weights and the digit's states after each row (``layout``, titles and labels say which);
- ``end``: the job's final state (status ``done``, ``cancelled`` or ``failed`` with ``error``); the stream ends.

A new stream first replays what happened so far (the latest pictures only), then follows the job live.
A stream ends once the job has ended and every event after ``Last-Event-ID`` has been sent: resuming a
finished job at or past its last event (a ``Last-Event-ID`` too large) answers **204 No Content** at once,
which also tells a browser's EventSource not to reconnect; resuming a running job past its last event
waits for the job and ends with it (sending nothing it claims to have seen).

Jobs live in the shared store (``app.services.job_store``): any worker answers for any job, and streams
its events by polling the store. With ``CNN_VIS_REDIS_URL`` the store is Redis
(``app.services.redis_job_store``): any replica on any machine answers, and a stream waits for new events with a
blocking ``XREAD`` instead of polling.

Owners (``app.services.owners``): whoever starts a job owns it. The list shows the caller's own jobs (the
lecturer's: everyone's); stopping a job and opening it as a model are for its owner and the lecturer. A job
read by its id (status, curves, events) is open to whoever has the id, so that a link to a run can be
shared: a job holds only its settings and its curves on the shipped digits, nothing a student uploaded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse
from starlette.routing import NoMatchFound

from app.api.deps import IdentityDep, JobManagerDep, ModelStoreDep, OwnerDep, SettingsDep
from app.errors import ApiError, not_found
from app.schemas.training import TrainedModel, TrainingJob, TrainingJobCreated, TrainingJobList, TrainingSettings
from app.services.owners import Access, Identity, check_may_change
from app.services.training_jobs import Message, TrainingJobState

router = APIRouter(prefix="/training", tags=["training"])

POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 10.0


def get_job(job_id: str, manager: JobManagerDep, identity: IdentityDep) -> TrainingJobState:
    """The job named in the path (404 listing the caller's own job ids, never other people's)."""
    try:
        return manager.get(job_id)
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        raise not_found("training job", job_id, [job.id for job in manager.jobs() if identity.owns(job.owner)
                                                  or identity.admin]) from None


JobDep = Annotated[TrainingJobState, Depends(get_job)]


def job_view(job: TrainingJobState, identity: Identity) -> TrainingJob:
    """The job's summary, with ``owned`` as the caller sees it."""
    return job.summary().model_copy(update={"owned": identity.owns(job.owner)})


def check_may_stop(job: TrainingJobState, identity: Identity, action: str) -> None:
    check_may_change(Access(job.owner), identity, "training job", action, "started")


def format_event(message: Message) -> str:
    """One message in the text/event-stream format."""
    return f"id: {message.seq}\nevent: {message.event}\ndata: {json.dumps(message.data, allow_nan=False)}\n\n"


async def event_stream(job: TrainingJobState, is_disconnected: Callable[[], Awaitable[bool]], after: int = -1,
                       poll: float = POLL_SECONDS, heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[str]:
    """The job's messages after ``after``, then new ones as they come; ends after ``end``, when the job has
    ended with nothing left after ``after`` (a Last-Event-ID past its end), or on disconnect.

    Only reads what the job's thread recorded in the store (in a thread: the event loop never waits on it)."""
    yield "retry: 2000\n\n"
    quiet_since = time.monotonic()
    while True:
        messages, finished = await asyncio.to_thread(job.messages_after, after)
        for message in messages:
            after = message.seq
            yield format_event(message)
            quiet_since = time.monotonic()
            if message.event == "end":
                return
        if finished and not messages:
            return  # the job ended and its end event was at or before the client's Last-Event-ID
        if await is_disconnected():
            return
        if time.monotonic() - quiet_since > heartbeat:
            yield ": keep-alive\n\n"  # a comment: lets proxies and the server notice a vanished client
            quiet_since = time.monotonic()
        await job.manager.wait_for_events(job.id, after, poll)


@router.post("/jobs", response_model=TrainingJobCreated, status_code=201, responses={
    422: {"description": "a setting is out of range or does not fit the network (the message names it)"},
    429: {"description": "as many jobs are running as the server allows, or as you may run at once: wait or stop "
                         "one"},
    503: {"description": "pre-trained weights asked for but not installed"}})
def create_job(settings: TrainingSettings, manager: JobManagerDep, owner: OwnerDep,
               config: SettingsDep) -> TrainingJobCreated:
    """Start training a digit network in the background; follow it at `events_url`. The job is yours: only you
    (this browser's cookie, or the returned `owner_token` as `X-Owner-Token`) and the lecturer may stop it."""
    limit = None if owner.admin else config.quota_running_jobs_per_owner
    job = manager.start(settings, owner.owner, limit)
    assert owner.token is not None
    return TrainingJobCreated(**job_view(job, owner).model_dump(), owner_token=owner.token)


@router.get("/jobs", response_model=TrainingJobList)
def list_jobs(manager: JobManagerDep, identity: IdentityDep) -> TrainingJobList:
    """Your jobs, newest first, whichever worker started them; finished ones are kept across restarts (the
    lecturer: everyone's)."""
    return TrainingJobList(jobs=[job_view(job, identity) for job in manager.jobs()
                                 if identity.admin or identity.owns(job.owner)],
                           running=manager.running(), max_running=manager.max_running)


@router.get("/jobs/{job_id}", response_model=TrainingJob)
def read_job(job: JobDep, identity: IdentityDep) -> TrainingJob:
    """One job: status, progress, and its curves so far."""
    return job_view(job, identity)


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse, responses={
    204: {"description": "the job has ended and Last-Event-ID is at or past its last event: nothing more will "
                         "come (an EventSource stops reconnecting)"},
    200: {
    "content": {"text/event-stream": {"example": 'id: 3\nevent: epoch\ndata: {"epoch": 1, "loss": 0.41, ...}\n\n'}},
    "description": "server-sent events: epoch, batch, images, end (see the module description in the docs)"}})
async def read_job_events(job: JobDep, request: Request,
                          last_event_id: Annotated[int | None, Header(
                              description="resume after this event id (browsers send it when reconnecting)")] = None,
                          ) -> Response:
    """The job's progress as server-sent events: curves, filters and feature maps, time left; ends with the job.
    Resuming a finished job at or past its last event (Last-Event-ID) is 204 No Content: there is nothing more."""
    after = -1 if last_event_id is None else last_event_id
    messages, finished = await asyncio.to_thread(job.messages_after, after)
    if finished and not messages:
        return Response(status_code=204, headers={"Cache-Control": "no-cache"})
    return StreamingResponse(event_stream(job, request.is_disconnected, after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


STOP_RESPONSES = {403: {"description": "someone else's job: only its owner or the lecturer may stop it"}}


@router.delete("/jobs/{job_id}", response_model=TrainingJob, status_code=202, responses=STOP_RESPONSES)
def delete_job(job: JobDep, manager: JobManagerDep, identity: IdentityDep) -> TrainingJob:
    """Cancel a running job of yours (it stops before its next batch; its stream ends with status `cancelled`)."""
    check_may_stop(job, identity, "stop")
    return job_view(manager.cancel(job.id), identity)


def explorer_url(request: Request, model_id: str) -> str:
    try:
        base = request.app.url_path_for("read_explorer")
    except NoMatchFound:
        base = "/"
    return f"{base}?model={model_id}"


@router.post("/jobs/{job_id}/model", response_model=TrainedModel, responses={
    403: {"description": "someone else's job: only its owner or the lecturer may open it as a model"},
    409: {"description": "the job has not finished training (or was cancelled or failed), or its weights are gone"},
    503: {"description": "the data directory may not be written to"},
    507: {"description": "the server's disk is full"}})
def create_job_model(job: JobDep, manager: JobManagerDep, store: ModelStoreDep, request: Request,
                     identity: IdentityDep) -> TrainedModel:
    """Register the trained network as a model the explorer can open (idempotent): it is stored in the data
    directory, so every worker serves it and it stays until it is deleted. The model belongs to the job's owner,
    like the job."""
    check_may_stop(job, identity, "open as a model")
    stored = store.add_trained(manager.bundle_of(job), owner=job.owner)
    manager.set_model(job.id, stored.id)
    return TrainedModel(model_id=stored.id, explorer_url=explorer_url(request, stored.id))
