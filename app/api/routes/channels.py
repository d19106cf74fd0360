"""Routes for what the network learned: what each channel detects (see docs/learned.md).

Top examples: the shipped digits that activate a channel most, each cropped to the receptive field of the unit where
the channel peaks. The first request for a model starts one analysis job that computes every node and channel at
once (**202** with the job: follow its ``events_url``, then ask again); afterwards every node and channel answers
**200** at once, from the job's files. The pictures come from ``GET /api/digits/{index}.png``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response

from app.api.deps import AnalysisJobsDep, BackgroundComputeDep, IdentityDep, ModelDep, ModelStoreDep
from app.schemas.channels import ChannelTopExamples, LayerTopExamples, TopExamplesModels
from app.schemas.jobs import AnalysisJobCreated, job_view
from app.services import top_examples as service
from app.services.owners import Identity, may_read
from engine.learned.top_examples import MAX_K

router = APIRouter(tags=["learned"])

K_QUERY = Query(ge=1, le=MAX_K, description=f"examples per channel, 1 to {MAX_K}")
JOB_RESPONSES = {
    202: {"model": AnalysisJobCreated,
          "description": "the model's top examples are being computed (once, for every node and channel): follow "
                         "events_url, then send the request again"},
    404: {"description": "no such model, or no such node (the message lists the model's nodes)"},
    422: {"description": "a model that does not take the shipped digits, a node without channels, a channel or k "
                         "out of range"},
    429: {"description": "as many analysis jobs are running as the server allows: wait, then ask again"},
}


def _created(status: dict, identity: Identity) -> JSONResponse:
    """202 with the job computing the model's top examples."""
    created = AnalysisJobCreated(**job_view(status, identity.owner).model_dump())
    return JSONResponse(created.model_dump(), status_code=202, headers={"Location": created.status_url})


@router.get("/top-examples/models", response_model=TopExamplesModels)
def list_top_examples_models(store: ModelStoreDep, identity: IdentityDep) -> TopExamplesModels:
    """The models whose channels have top examples (those taking the shipped digits as images), with their layers."""
    return TopExamplesModels(models=service.digit_models(
        store, lambda model_id: may_read(store.access(model_id), identity)))


@router.get("/models/{model_id}/nodes/{node}/channels/{channel}/top-examples", response_model=ChannelTopExamples,
            responses=JOB_RESPONSES)
def read_channel_top_examples(
    model: ModelDep, node: str, channel: Annotated[int, Path(description="the channel's index in the node's output")],
    jobs: AnalysisJobsDep, background: BackgroundComputeDep, identity: IdentityDep,
    k: Annotated[int, K_QUERY] = 9,
) -> ChannelTopExamples | JSONResponse:
    """The shipped digits that activate one channel most, with values, positions and receptive-field crops."""
    service.check_digit_model(model)
    found = service.channel_node(model, node)
    service.check_channel(found, channel)
    stored, status = service.find_or_start(model, jobs, background, identity.owner)
    if stored is None:
        return _created(status, identity)
    return service.channel_answer(model, stored, found, channel, k)


@router.get("/models/{model_id}/nodes/{node}/top-examples", response_model=LayerTopExamples, responses=JOB_RESPONSES)
def read_layer_top_examples(
    model: ModelDep, node: str, jobs: AnalysisJobsDep, background: BackgroundComputeDep, identity: IdentityDep,
    k: Annotated[int, K_QUERY] = 4,
) -> LayerTopExamples | JSONResponse:
    """Every channel of a layer with its top examples: the atlas's grid in one request."""
    service.check_digit_model(model)
    found = service.channel_node(model, node)
    stored, status = service.find_or_start(model, jobs, background, identity.owner)
    if stored is None:
        return _created(status, identity)
    return service.layer_answer(model, stored, found, k)


@router.get("/digits/{index}.png", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "the digit (or its crop), upscaled by whole pixels"},
    422: {"description": "an index, box or scale out of range"}})
def read_digit_png(
    index: Annotated[int, Path(description="the digit's index among the 10,000 shipped digits (0-9,999)")],
    crop: Annotated[str | None, Query(max_length=40, examples=["0,5,4,9"],
                                      description="only this box: row0,col0,row1,col1, inclusive")] = None,
    box: Annotated[str | None, Query(max_length=40, examples=["0,5,4,9"],
                                     description="the whole digit with this box outlined in orange: "
                                                 "row0,col0,row1,col1, inclusive")] = None,
    scale: Annotated[int, Query(ge=1, le=service.MAX_SCALE, description="upscaling factor (nearest)")] = 4,
) -> Response:
    """One shipped MNIST digit as a PNG (white on black, as stored): whole, cropped, or with a box drawn."""
    return Response(service.digit_png(index, crop, box, scale), media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})
