"""GET /api/runs/{run_id}/compare/{other_run_id}/nodes/{node_id}.json | .png | .npy: two inputs of one model compared
at one node, a − b (A: run_id, B: other_run_id), its summary, and the difference as a signed PNG or raw numbers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import ModelStoreDep, RunStoreDep
from app.api.routes.runs import CACHE_HEADERS, NodeId, RunId
from app.schemas.compare import NodeDifference
from app.services import compare as service
from app.services.runs import activation_of, node_op
from app.services.tensors import NPY_MEDIA_TYPE, to_npy
from app.services.tiles import Scale
from engine.compare import TOP_K

router = APIRouter(prefix="/runs", tags=["runs"])

OtherRunId = Annotated[str, Path(description="run B, of the same model: another input through "
                                             "POST /api/models/{model_id}/activations",
                                 examples=["9b1e0c7d3a2f4e5d6c7b8a9f0e1d2c3b"])]
DifferenceScale = Annotated[Scale, Query(
    description="each tile's range [−m, +m] from its own largest |a − b| (channel), or one for the whole layer "
                "(layer), so that the same difference is the same grey in every tile")]
TopK = Annotated[int, Query(ge=1, le=100, description="how many of the channels that changed most to list")]
NOT_COMPARABLE = {422: {"description": "the two runs are of different models (or of two versions of one model): "
                                       "run the other input through run A's model"}}


@router.get("/{run_id}/compare/{other_run_id}/nodes/{node_id}.json", response_model=NodeDifference,
            responses=NOT_COMPARABLE)
def read_node_difference(run_id: RunId, other_run_id: OtherRunId, node_id: NodeId, runs: RunStoreDep,
                         models: ModelStoreDep, scale: DifferenceScale = "channel",
                         top_k: TopK = TOP_K) -> NodeDifference:
    """How the node's activation differs between two inputs: max and mean |a − b|, per channel mean and max |a − b|,
    the cosine similarity, the relative change ‖a − b‖ / ‖a‖, the channels that changed most, and the difference
    PNG's layout with each tile's symmetric range [−m, +m]."""
    pair = service.runs_to_compare(run_id, other_run_id, runs, models)
    activation_of(pair.run, node_id)  # UnknownNodeError (404) for an unknown node
    op = node_op(models.get(pair.run.model_id).graph, node_id)
    return service.node_difference(pair, node_id, op, scale, top_k)


@router.get("/{run_id}/compare/{other_run_id}/nodes/{node_id}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}},
                             "description": "every channel of a − b tiled into one greyscale PNG: in each tile grey 0, "
                                            "128 and 255 stand for −m, 0 and +m (the .json's layout.ranges); "
                                            "X-Tile-Layout header holds the grid"}, **NOT_COMPARABLE})
def read_node_difference_png(run_id: RunId, other_run_id: OtherRunId, node_id: NodeId, runs: RunStoreDep,
                             models: ModelStoreDep, scale: DifferenceScale = "channel") -> Response:
    """The difference a − b as a signed tiled PNG, centred on zero: grey 128 is no difference."""
    pair = service.runs_to_compare(run_id, other_run_id, runs, models)
    png, layout = service.difference_png(pair, node_id, scale)
    return Response(png, media_type="image/png", headers={**CACHE_HEADERS, "X-Tile-Layout": layout})


@router.get("/{run_id}/compare/{other_run_id}/nodes/{node_id}.npy", response_class=Response,
            responses={200: {"content": {NPY_MEDIA_TYPE: {}}, "description": "a − b, float32, shape [1, *node shape]"},
                       **NOT_COMPARABLE})
def read_node_difference_npy(run_id: RunId, other_run_id: OtherRunId, node_id: NodeId, runs: RunStoreDep,
                             models: ModelStoreDep) -> Response:
    """The difference a − b as a float32 .npy file, batch axis included."""
    pair = service.runs_to_compare(run_id, other_run_id, runs, models)
    return Response(to_npy(service.difference_of(pair, node_id)), media_type=NPY_MEDIA_TYPE,
                    headers={**CACHE_HEADERS,
                             "Content-Disposition": f'attachment; filename="{node_id}-difference.npy"'})
