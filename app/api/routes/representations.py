"""Routes for what the network learned: representations, from the pixels to the last layer (see docs/learned.md).

- ``GET /api/models/{id}/representations``: what applies to the model (digits, pictures) and the nodes offered.
- ``GET /api/models/{id}/projection?node=...&method=pca|tsne``: the 2,000 held-out digits embedded in 2D at a node.
- ``GET /api/models/{id}/probes``: a linear probe's train and test accuracy per layer, the pixels first.
- ``POST /api/models/{id}/neighbours?node=...&k=...`` with an image: the nearest sample photos at a node.
- ``GET /api/datasets/digits/test-sprite.png``: the held-out digits in one PNG, to draw the digit under the mouse.

Projections and probes are analysis jobs (``app.services.analysis_jobs``): **200** with the answer once computed
(cached by the model's weights, the node and the method), else **202** with the job; follow its ``events_url``, then
GET its ``result_url`` (or ask again). A t-SNE job's progress events carry ``preview_url``: the embedding so far.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import (
    AnalysisJobsDep,
    BackgroundComputeDep,
    ComputeDep,
    IdentityDep,
    ModelDep,
    ModelInputDep,
    SettingsDep,
    remember_owner,
)
from app.schemas.jobs import AnalysisJobCreated, job_view
from app.schemas.representations import NeighboursResponse, ProbesResponse, Projection, RepresentationsSupport
from app.services import representations as service
from app.services.analysis_jobs import AnalysisJobs, AnalysisTask
from app.services.inputs import INPUT_OPENAPI
from app.services.owners import Identity, new_token
from app.web.pages import sample_images, samples_dir

router = APIRouter(tags=["learned"])

NodeQuery = Annotated[str, Query(min_length=1, max_length=200, description="a node id of the model, or 'input' (the "
                                 "normalised pixels); GET /api/models/{id}/representations lists the main ones",
                                 examples=["pool2"])]
JOB_RESPONSES = {
    202: {"model": AnalysisJobCreated, "description": "being computed: follow events_url, then GET result_url (or "
                                                      "send the request again)"},
    404: {"description": "no such model, or no such node (the message lists the model's nodes)"},
    422: {"description": "a model that does not read the shipped digits ([1, 28, 28]), or a method that is not pca "
                         "or tsne"},
    429: {"description": "as many analysis jobs are running as the server allows: wait, then ask again"},
}
CACHE_HEADERS = {"Cache-Control": "public, max-age=86400"}


def _answer_or_job(task: AnalysisTask, jobs: AnalysisJobs, background: BackgroundComputeDep, identity: Identity,
                   request: Request) -> dict | JSONResponse:
    """The cached result of ``task``, else 202 with the job computing it (started now if nobody had asked)."""
    cached = jobs.cached_result(task)
    if cached is not None:
        return cached
    token = identity.token or new_token()
    owner = Identity(token, identity.admin)
    status = jobs.submit(task, background, owner=owner.owner)
    cached = jobs.cached_result(task) if status["status"] == "done" else None  # finished meanwhile
    if cached is not None:
        return cached
    created = AnalysisJobCreated(**job_view(status, owner.owner).model_dump())
    response = JSONResponse(created.model_dump(), status_code=202, headers={"Location": created.status_url})
    remember_owner(request, response, token)
    return response


@router.get("/models/{model_id}/representations", response_model=RepresentationsSupport)
def read_representations_support(model: ModelDep) -> RepresentationsSupport:
    """What the representations view can show for this model: projections and probes (models reading the shipped
    digits), nearest photos (image models), and the nodes it offers."""
    return service.support(model)


@router.get("/models/{model_id}/projection", response_model=Projection, responses=JOB_RESPONSES)
def read_projection(
    model: ModelDep, jobs: AnalysisJobsDep, background: BackgroundComputeDep, identity: IdentityDep, request: Request,
    node: NodeQuery = "input",
    method: Annotated[Literal["pca", "tsne"], Query(description="pca: the two principal axes (linear); tsne: exact "
                                                                "t-SNE, perplexity 30, 1,000 steps, seed 0")] = "pca",
) -> Projection | JSONResponse:
    """The 2,000 held-out digits embedded in 2D at a node, with their labels: 200 when computed before, else 202 with
    the analysis job computing it."""
    answer = _answer_or_job(service.projection_task(model, node, method), jobs, background, identity, request)
    return answer if isinstance(answer, JSONResponse) else service.projection_answer(answer)


@router.get("/models/{model_id}/probes", response_model=ProbesResponse, responses=JOB_RESPONSES)
def read_probes(
    model: ModelDep, jobs: AnalysisJobsDep, background: BackgroundComputeDep, identity: IdentityDep, request: Request,
) -> ProbesResponse | JSONResponse:
    """A linear probe per layer (the pixels first): how well a linear classifier trained on the 8,000 training
    digits' features reads the 2,000 held-out ones. 200 when computed before, else 202 with the analysis job."""
    answer = _answer_or_job(service.probes_task(model), jobs, background, identity, request)
    return answer if isinstance(answer, JSONResponse) else ProbesResponse(**answer)


@router.post("/models/{model_id}/neighbours", response_model=NeighboursResponse, openapi_extra=INPUT_OPENAPI,
             responses={404: {"description": "no such model, or no such node (the message lists the nodes)"},
                        415: {"description": "a picture sent to a model that takes tensors"},
                        422: {"description": "a model that does not read pictures, an input that does not fit, k "
                                             "out of range"}})
def create_neighbours(
    model: ModelDep, model_input: ModelInputDep, settings: SettingsDep, compute: ComputeDep,
    node: NodeQuery = "input",
    k: Annotated[int, Query(ge=1, le=service.MAX_NEIGHBOURS, description="neighbours to return (at most the number "
                                                                         "of sample photos)")] = 3,
) -> NeighboursResponse:
    """The shipped sample photos most similar to an image at a node: cosine similarity of the node's features."""
    if not service.takes_images(model.graph):  # before decoding anything
        raise service.NotImageModelError(model)
    model.graph.check_node_or_input(node)
    photos = service.sample_photos(sample_images(), samples_dir())
    return service.find_neighbours(model, model_input, node, k, photos, settings.max_upload_bytes,
                                   settings.max_image_pixels, settings.max_tensor_elements, compute)


@router.get("/datasets/digits/test-sprite.png", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "grey PNG, 1400 x 1120: held-out digit i at row i // 50, "
                                                       "column i % 50, 28 x 28 pixels each"}})
def read_digits_sprite() -> Response:
    """The 2,000 held-out digits in one PNG (white on black, as stored): the projection's points, by index."""
    return Response(service.sprite_png(), media_type="image/png", headers=CACHE_HEADERS)
