"""Analysis jobs (``app.services.analysis_jobs``): GET /api/jobs/{job_id}, its events, its result and its files, and
DELETE to cancel. The routes that start them (top examples, feature visualisation, projections, probes) answer
**200** with the result when an identical job is done (the cache), else **202** with the job (``AnalysisJobCreated``,
``Location``: its status URL).

Event stream (``GET /api/jobs/{job_id}/events``, ``text/event-stream``): ``progress`` events (the job's summary:
``status``, ``done``, ``total``, and ``preview_url`` once the job drew a picture of its work so far), then one
``end`` event (the summary, with ``status`` done, failed or cancelled, ``error`` and ``result_url``), and the stream
closes. Each event's ``id`` is the job's state counter: a client resuming with ``Last-Event-ID`` gets only newer
states, and one resuming at or past the end gets a stream that closes at once. Any worker of the machine serves it.

Result (``GET .../result``): 200 once done; **409** while it is queued or running (the body says how far it is) and
once it was cancelled; a failed job answers its own status and message. Files (``GET .../files/{name}``): the PNGs
and ``.npy`` the result links to. Cancelling: the owner (whoever started the job) or the lecturer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response, StreamingResponse

from app.api.deps import AnalysisJobsDep, IdentityDep
from app.api.job_stream import job_event_stream
from app.schemas.jobs import AnalysisJob, job_view
from app.services.analysis_jobs import media_type
from app.services.owners import Access, check_may_change

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=AnalysisJob)
def read_job(job_id: str, jobs: AnalysisJobsDep, identity: IdentityDep) -> AnalysisJob:
    """One analysis job: its status and progress (any worker answers)."""
    return job_view(jobs.read(job_id), identity.owner)


@router.delete("/{job_id}", response_model=AnalysisJob, status_code=202, responses={
    403: {"description": "someone else's job: only whoever started it or the lecturer may cancel it"}})
def delete_job(job_id: str, jobs: AnalysisJobsDep, identity: IdentityDep) -> AnalysisJob:
    """Cancel a job you started: it stops at its next step (its stream ends with `cancelled`). A finished job is
    left as it is."""
    check_may_change(Access(jobs.read(job_id).get("owner")), identity, "analysis job", "cancel", "started")
    return job_view(jobs.cancel(job_id), identity.owner)


@router.get("/{job_id}/result", responses={
    200: {"content": {"application/json": {}}, "description": "the job's result (its shape depends on its kind: see "
                                                              "the route that started it)"},
    409: {"description": "the job is still queued or running (the body says how far it is), or was cancelled"}})
def read_job_result(job_id: str, jobs: AnalysisJobsDep) -> Response:
    """The finished job's result. A failed job answers its error (status and message)."""
    return Response(jobs.result(job_id), media_type="application/json")


@router.get("/{job_id}/files/{name}", response_class=Response, responses={
    200: {"content": {"image/png": {}, "application/octet-stream": {}},
          "description": "a PNG or .npy file the job wrote (its result and events link to them)"}})
def read_job_file(job_id: str, name: str, jobs: AnalysisJobsDep) -> Response:
    """A file the job wrote: a PNG or a `.npy` tensor its result links to."""
    # read whole through one open file: a preview is replaced while the job runs, and a response that took its
    # length from one version and its bytes from the next would break off (ERR_CONTENT_LENGTH_MISMATCH)
    return Response(jobs.file_bytes(job_id, name), media_type=media_type(name), headers={"Cache-Control": "no-cache"})


@router.get("/{job_id}/events", response_class=StreamingResponse, responses={200: {
    "content": {"text/event-stream": {"example": 'id: 3\nevent: progress\ndata: {"id": "5d41402abc4b2a76", "status": '
                                                 '"running", "done": 48, "total": 128}\n\n'}},
    "description": "server-sent events: progress, then end"}})
async def read_job_events(
        job_id: str, jobs: AnalysisJobsDep, request: Request,
        last_event_id: Annotated[int | None, Header(
            description="resume after this event id (browsers send it when reconnecting)")] = None,
) -> StreamingResponse:
    """The job's progress as server-sent events; ends with the job (or at once when resumed past its end)."""
    return await job_event_stream(jobs, job_id, request.is_disconnected, describe_analysis_job, last_event_id)


def describe_analysis_job(status: dict[str, Any], finished: bool) -> dict[str, Any]:
    """An event's data: the job's summary, as GET /api/jobs/{job_id} answers it to someone else."""
    return job_view(status, None).model_dump()
