"""GET /api/runs/{run_id}/nodes/{node_id}.png | .npy | .json: one node's feature maps from a run."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import ModelStoreDep, RunStoreDep
from app.errors import ApiError
from app.schemas.runs import NodeActivation, TileLayout
from app.services.runs import Run
from app.services.tensors import NPY_MEDIA_TYPE, to_npy
from app.services.tiles import render_tiles, tile_layout
from engine.graph import INPUT

router = APIRouter(prefix="/runs", tags=["runs"])

RunId = Annotated[str, Path(description="from POST /api/models/{model_id}/activations",
                            examples=["3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"])]
NodeId = Annotated[str, Path(description="a node id, or 'input'", examples=["conv1"])]
ScaleQuery = Annotated[Literal["channel", "layer"], Query(
    description="grey levels scaled per channel (each map uses its full range) or over the whole layer")]
CACHE_HEADERS = {"Cache-Control": "public, max-age=86400, immutable"}  # a run id is a content hash


def activation_of(run: Run, node_id: str):
    if node_id not in run.activations:
        known = [k for k in run.activations]
        listed = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
        raise ApiError(404, f"model '{run.model_id}' has no node '{node_id}'; its nodes are: {listed}")
    return run.activations[node_id]


@router.get("/{run_id}/nodes/{node_id}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}},
                             "description": "every channel tiled into one greyscale PNG; X-Tile-Layout header "
                                            "holds the grid (see the .json)"}})
def read_node_png(run_id: RunId, node_id: NodeId, runs: RunStoreDep, models: ModelStoreDep,
                  scale: ScaleQuery = "channel") -> Response:
    """Every channel of the node's activation, tiled into one greyscale PNG."""
    activation = activation_of(runs.get(run_id, models), node_id)
    png, layout = render_tiles(activation[0], scale)
    header = layout.model_dump(exclude={"ranges"})
    return Response(png, media_type="image/png", headers={**CACHE_HEADERS, "X-Tile-Layout": json.dumps(header)})


@router.get("/{run_id}/nodes/{node_id}.npy", response_class=Response,
            responses={200: {"content": {NPY_MEDIA_TYPE: {}}, "description": "raw float32, shape [1, *node shape]"}})
def read_node_npy(run_id: RunId, node_id: NodeId, runs: RunStoreDep, models: ModelStoreDep) -> Response:
    """The node's activation as a float32 .npy file, batch axis included."""
    activation = activation_of(runs.get(run_id, models), node_id)
    return Response(to_npy(activation), media_type=NPY_MEDIA_TYPE,
                    headers={**CACHE_HEADERS, "Content-Disposition": f'attachment; filename="{node_id}.npy"'})


@router.get("/{run_id}/nodes/{node_id}.json", response_model=NodeActivation)
def read_node_json(run_id: RunId, node_id: NodeId, runs: RunStoreDep, models: ModelStoreDep,
                   scale: ScaleQuery = "channel") -> NodeActivation:
    """The node's shape, statistics and PNG layout, with each tile's [low, high] value range."""
    run = runs.get(run_id, models)
    activation = activation_of(run, node_id)
    maps = activation[0]
    layout: TileLayout = tile_layout(tuple(maps.shape), scale=scale)
    per_tile = maps.reshape(layout.tiles, -1)
    if scale == "layer":
        ranges = [(float(maps.min()), float(maps.max()))] * layout.tiles
    else:
        ranges = [(float(lo), float(hi)) for lo, hi in zip(per_tile.min(axis=1), per_tile.max(axis=1))]
    layout.ranges = ranges
    op = "input" if node_id == INPUT else models.get(run.model_id).graph.by_id[node_id].op.op
    base = f"/api/runs/{run_id}/nodes/{node_id}"
    return NodeActivation(id=node_id, op=op, shape=list(maps.shape), **runs.stats(run, node_id),
                          png_url=f"{base}.png", npy_url=f"{base}.npy", layout=layout)
