"""Attention maps: GET /api/attention/methods, POST /api/models/{model_id}/attention, and the background jobs that
heavy requests become (GET/DELETE /api/attention/jobs/{job_id}, its events and its result).

A request for Score-CAM, SmoothGrad, Integrated Gradients or occlusion, or any request whose work is estimated at
``attention_job_gmacs`` or more, is checked and its input read at once (every refusal is still a 4xx on the POST),
then answers **202** with a job (``AttentionJobCreated``) and runs in the background. Cheap methods answer 200 with
the map, as before.

Event stream (``GET /api/attention/jobs/{job_id}/events``, ``text/event-stream``): ``progress`` events
(``{"status", "done", "total"}``: passes through the network so far and in all), then one ``end`` event
(``{"status", "error", "error_status", "result_url"}``), and the stream closes. Each event's ``id`` is the job's
state counter: a client resuming with ``Last-Event-ID`` gets only newer states, and one resuming at or past the
end gets a stream that closes at once. The stream polls the job's files, so any worker can serve it (with
``CNN_VIS_REDIS_URL``, the job's state in Redis, so any replica on any machine can).

Result (``GET .../result``): 200 with the synchronous route's answer once the job is done; **409** while it is
queued or running (the body says how far it is) and once it was cancelled; a failed job answers the status and
message the synchronous request would have answered (422, 503, ...).

Owners: whoever starts a job owns it (the ``cnn_vis_owner`` cookie, or the returned ``owner_token`` as
``X-Owner-Token``); only the owner and the lecturer may cancel it. Reading a job by its id is open, like a training
job's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.api.deps import (
    AttentionJobsDep,
    BackgroundComputeDep,
    ComputeDep,
    IdentityDep,
    ModelDep,
    ModelInputDep,
    SettingsDep,
    remember_owner,
)
from app.api.job_stream import job_event_stream
from app.errors import ApiError
from app.schemas.attention import (
    AnyAttentionResponse,
    AttentionJob,
    AttentionJobCreated,
    AttentionSupport,
    ColourScales,
    ColourStop,
    MethodCost,
    MethodInfo,
    MethodList,
)
from app.services.attention import AttentionRequest, compute_attention, prepare_attention, runs_as_job
from app.services.attention_support import attention_support
from app.services.inputs import INPUT_OPENAPI
from app.services.overlay import colour_stops
from app.services.owners import Access, Identity, check_may_change, new_token
from engine.attention import MANY_PASS, METHODS
from engine.attention.budget import method_cost

router = APIRouter(tags=["attention"])

JOBS = "/api/attention/jobs"


@router.get("/attention/methods", response_model=MethodList)
def list_methods() -> MethodList:
    """Every attribution method: name, family, paper, whether it takes a layer or a target, and its cost (the
    passes one map takes; heavy methods run as background jobs); and the colour scales of the map PNGs."""
    scales = {name: [ColourStop(value=value, rgb=list(rgb)) for value, rgb in colour_stops(signed)]
              for name, signed in (("unsigned", False), ("signed", True))}
    methods = [MethodInfo(**m.__dict__, cost=MethodCost(heavy=m.name in MANY_PASS, **method_cost(m.name)))
               for m in METHODS.values()]
    return MethodList(methods=methods, scales=ColourScales(**scales))


@router.get("/models/{model_id}/attention", response_model=AttentionSupport)
def read_attention_support(model: ModelDep) -> AttentionSupport:
    """What can explain this model, before any input: the input's kind and the shape to send, the output (class
    scores, or a map of them explained over a `region`), and per method whether it applies or why not."""
    return attention_support(model)


def job_view(status: dict[str, Any], identity: Identity) -> AttentionJob:
    """The job's summary as the caller sees it."""
    fields = {name: status.get(name) for name in AttentionJob.model_fields if name in status}
    job_id = status["id"]
    return AttentionJob(**fields, owned=identity.owns(status.get("owner")), status_url=f"{JOBS}/{job_id}",
                        events_url=f"{JOBS}/{job_id}/events", result_url=f"{JOBS}/{job_id}/result")


def parse_region(region: str | None) -> list[int] | None:
    """``"y0,x0,y1,x1"`` (brackets and spaces allowed) as ints; 422 for anything else."""
    if region is None:
        return None
    parts = [p.strip() for p in region.strip().strip("[]").split(",")]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ApiError(422, f"region must be integers separated by commas, such as region=8,8,24,24 ([y0, x0, y1, "
                            f"x1] for an output map (K, H, W)), got '{region}'") from None


@router.post("/models/{model_id}/attention", response_model=AnyAttentionResponse, openapi_extra=INPUT_OPENAPI,
             responses={202: {"model": AttentionJobCreated,
                              "description": "a heavy request (Score-CAM, SmoothGrad, Integrated Gradients, "
                                             "occlusion, or estimated at attention_job_gmacs or more) became a "
                                             "background job: follow events_url, then GET result_url"},
                        429: {"description": "as many attention jobs are running as the server allows, or as you "
                                             "may run at once: wait for one to finish"}})
def create_attention(
    model: ModelDep,
    model_input: ModelInputDep,
    settings: SettingsDep,
    compute: ComputeDep,
    background: BackgroundComputeDep,
    jobs: AttentionJobsDep,
    identity: IdentityDep,
    request: Request,
    method: Annotated[str, Query(description="an attribution method (GET /api/attention/methods)")] = "gradcam",
    target: Annotated[int | None, Query(ge=0, description="class to explain (default: the top prediction)")] = None,
    layer: Annotated[str | None, Query(description="node id (default: the model's CAM layer)")] = None,
    include_input_map: Annotated[bool, Query(description="also return the upsampled map as numbers")] = False,
    samples: Annotated[int | None, Query(ge=1, le=64, description="SmoothGrad: noisy copies")] = None,
    steps: Annotated[int | None, Query(ge=2, le=128, description="Integrated Gradients: path steps")] = None,
    window: Annotated[int | None, Query(ge=1, le=256, description="occlusion: window length in pixels along "
                                                                  "every spatial axis")] = None,
    stride: Annotated[int | None, Query(ge=1, le=256, description="occlusion: window step in pixels")] = None,
    max_channels: Annotated[int | None, Query(ge=1, le=512, description="Score-CAM: channels used")] = None,
    region: Annotated[str | None, Query(
        max_length=200, examples=["8,8,24,24"],
        description="for a model whose output is a map of class scores (segmentation, (K, H, W)): the box whose "
                    "class-`target` logits are summed into the score, y0,x0,y1,x1 in output pixels, half-open "
                    "(l0,l1 for (K, L); d0,y0,x0,d1,y1,x1 for (K, D, H, W)); default the whole map")] = None,
) -> AnyAttentionResponse | JSONResponse:
    """An attention map for an image or .npy tensor: raw and normalised at the layer, upsampled, and overlaid.
    Sequence (C, L) and volume (C, D, H, W) inputs, sent as .npy, get answers of kind `sequence` and `volume`.
    Heavy requests answer 202 with a background job instead (see the attention section of the docs)."""
    options = {"samples": samples, "steps": steps, "window": window, "stride": stride, "max_channels": max_channels,
               "region": parse_region(region)}
    attention = prepare_attention(model, model_input, AttentionRequest(method, target, layer, include_input_map,
                                                                       options), settings)
    if not runs_as_job(attention, settings):
        return compute_attention(attention, compute)
    token = identity.token or new_token()
    owner = Identity(token, identity.admin)
    status = jobs.start(attention, background, owner.owner, None if owner.admin else settings.attention_jobs_per_owner)
    created = AttentionJobCreated(**job_view(status, owner).model_dump(), owner_token=token)
    response = JSONResponse(created.model_dump(), status_code=202, headers={"Location": created.status_url})
    remember_owner(request, response, token)
    return response


@router.get("/attention/jobs/{job_id}", response_model=AttentionJob)
def read_attention_job(job_id: str, jobs: AttentionJobsDep, identity: IdentityDep) -> AttentionJob:
    """One attention job: its status and progress (any worker answers)."""
    return job_view(jobs.read(job_id), identity)


@router.delete("/attention/jobs/{job_id}", response_model=AttentionJob, status_code=202, responses={
    403: {"description": "someone else's job: only its owner or the lecturer may cancel it"}})
def delete_attention_job(job_id: str, jobs: AttentionJobsDep, identity: IdentityDep) -> AttentionJob:
    """Cancel a job of yours: it stops before its next batch of passes (its stream ends with `cancelled`).
    A finished job is left as it is."""
    check_may_change(Access(jobs.read(job_id).get("owner")), identity, "attention job", "cancel", "started")
    return job_view(jobs.cancel(job_id), identity)


@router.get("/attention/jobs/{job_id}/result", response_model=AnyAttentionResponse, responses={
    409: {"description": "the job is still queued or running (the body says how far it is), or was cancelled"}})
def read_attention_result(job_id: str, jobs: AttentionJobsDep) -> Response:
    """The finished job's attention map: exactly what the synchronous request answers. A failed job answers its
    error (status and message) as the synchronous request would have."""
    return Response(jobs.result(job_id), media_type="application/json")


def describe_attention_job(status: dict[str, Any], finished: bool) -> dict[str, Any]:
    """An event's data: progress, and at the end the outcome with the result's URL."""
    if not finished:
        return {"status": status["status"], "done": status["done"], "total": status.get("total")}
    return {"status": status["status"], "error": status.get("error"), "error_status": status.get("error_status"),
            "done": status["done"], "total": status.get("total"), "result_url": f"{JOBS}/{status['id']}/result"}


@router.get("/attention/jobs/{job_id}/events", response_class=StreamingResponse, responses={200: {
    "content": {"text/event-stream": {"example": 'id: 3\nevent: progress\ndata: {"status": "running", "done": 48, '
                                                 '"total": 257}\n\n'}},
    "description": "server-sent events: progress, then end (see the attention section of the docs)"}})
async def read_attention_job_events(
        job_id: str, jobs: AttentionJobsDep, request: Request,
        last_event_id: Annotated[int | None, Header(
            description="resume after this event id (browsers send it when reconnecting)")] = None,
) -> StreamingResponse:
    """The job's progress as server-sent events; ends with the job (or at once when resumed past its end)."""
    return await job_event_stream(jobs, job_id, request.is_disconnected, describe_attention_job, last_event_id)
