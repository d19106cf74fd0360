"""GET /api/runs/{run_id}/nodes/{node_id}.png | .npy | .json: one node's feature maps from a run;
.../units/{index}: how one unit's number was made; .../steps: a recurrent or attention node's every time step;
GET /api/runs/{run_id}/input.png: the model's input as the picture it sees."""

from __future__ import annotations

import io
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Response
from PIL import Image

from app.api.deps import ComputeDep, ModelStoreDep, RunStoreDep
from app.errors import ApiError
from app.schemas.explanations import UnitExplanation
from app.schemas.runs import NodeActivation, TileLayout
from app.schemas.steps import NodeSteps
from app.services.models import takes_images
from app.services.runs import activation_of, node_op
from app.services.steps import node_steps, sequence_fields
from app.services.tensors import NPY_MEDIA_TYPE, to_npy
from app.services.tiles import as_channels, tile_layout, tile_ranges
from engine.errors import ShapeError
from engine.explain import UNIT_AXES, explain_softmax_of_scores, explain_unit, explainable_ops, unit_shape
from engine.explain.recurrent import EXPLAINERS as RECURRENT_OPS
from engine.explain.recurrent import unit_of_activation
from engine.graph import INPUT, Trace

router = APIRouter(prefix="/runs", tags=["runs"])

RunId = Annotated[str, Path(description="from POST /api/models/{model_id}/activations",
                            examples=["3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"])]
NodeId = Annotated[str, Path(description="a node id, or 'input'", examples=["conv1"])]
ScaleQuery = Annotated[Literal["channel", "layer"], Query(
    description="grey levels scaled per channel (each map uses its full range) or over the whole layer")]
UnitIndex = Annotated[str, Path(description="the unit without the batch axis, comma-separated: channel,y,x for a "
                                         "feature map, one number for a vector; t,j (step, unit) for an rnn, lstm "
                                         "or gru node, whatever it outputs", examples=["5,4,4"])]
SoftmaxQuery = Annotated[bool, Query(
    description="explain the softmax of this node's class scores (the prediction's probabilities) instead of the "
                "node's own op; the node must give a vector of scores")]
PositionQuery = Annotated[bool, Query(
    description="the index is a position in the node's activation, as the explorer's maps show it (a (T, F) "
                "sequence is one map, so a leading 0 is accepted); for an rnn, lstm or gru node it is turned into "
                "the (step, unit) whose hidden state sits there")]
CACHE_HEADERS = {"Cache-Control": "public, max-age=86400, immutable"}  # a run id is a content hash


@router.get("/{run_id}/nodes/{node_id}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}},
                             "description": "every channel tiled into one greyscale PNG; X-Tile-Layout header "
                                            "holds the grid (see the .json)"}})
def read_node_png(run_id: RunId, node_id: NodeId, runs: RunStoreDep, models: ModelStoreDep,
                  scale: ScaleQuery = "channel") -> Response:
    """Every channel of the node's activation, tiled into one greyscale PNG (encoded once per run)."""
    run = runs.get(run_id, models)
    activation_of(run, node_id)  # 404 for an unknown node
    png, layout = runs.node_png(run, node_id, scale)
    return Response(png, media_type="image/png", headers={**CACHE_HEADERS, "X-Tile-Layout": layout})


@router.get("/{run_id}/nodes/{node_id}.npy", response_class=Response,
            responses={200: {"content": {NPY_MEDIA_TYPE: {}}, "description": "raw float32, shape [1, *node shape]"}})
def read_node_npy(run_id: RunId, node_id: NodeId, runs: RunStoreDep, models: ModelStoreDep) -> Response:
    """The node's activation as a float32 .npy file, batch axis included."""
    activation = activation_of(runs.get(run_id, models), node_id)
    return Response(to_npy(activation), media_type=NPY_MEDIA_TYPE,
                    headers={**CACHE_HEADERS, "Content-Disposition": f'attachment; filename="{node_id}.npy"'})


@router.get("/{run_id}/input.png", response_class=Response, responses={
    200: {"content": {"image/png": {}},
          "description": "the model's input, its normalisation undone: RGB (3 channels) or grey (1), at the input's "
                         "own size (an image model's centre crop, e.g. 224 × 224)"},
    422: {"description": "the model does not read pictures (its input is not 1 or 3 channels of a square)"}})
def read_input_png(run_id: RunId, runs: RunStoreDep, models: ModelStoreDep) -> Response:
    """The picture the model sees: the run's input tensor with the model's normalisation undone, ``x * std + mean``
    per channel, clipped to [0, 1] and scaled to 0-255; for an image, the resized centre crop it was given (a
    model that inverts its pixels is shown them inverted, as it reads them)."""
    run = runs.get(run_id, models)
    model = models.get(run.model_id)
    x = np.asarray(run.input[0], dtype=np.float32)
    pre = model.bundle.preprocessing
    channels = x.shape[0]
    if not takes_images(model.graph) or len(pre.mean) not in (1, channels) or len(pre.std) not in (1, channels):
        raise ApiError(422, f"model '{model.id}' takes {list(x.shape)} tensors, not pictures with a mean and std per "
                            f"channel: its input is at /api/runs/{run_id}/nodes/{INPUT}.npy")
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pre.std, dtype=np.float32).reshape(-1, 1, 1)
    pixels = (np.clip(x * std + mean, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if channels == 1 else np.ascontiguousarray(pixels)).save(
        buffer, format="PNG", compress_level=1)
    return Response(buffer.getvalue(), media_type="image/png", headers=CACHE_HEADERS)


@router.get("/{run_id}/nodes/{node_id}.json", response_model=NodeActivation)
def read_node_json(run_id: RunId, node_id: NodeId, runs: RunStoreDep, models: ModelStoreDep,
                   scale: ScaleQuery = "channel") -> NodeActivation:
    """The node's shape, statistics and PNG layout, with each tile's [low, high] value range."""
    run = runs.get(run_id, models)
    activation = activation_of(run, node_id)
    maps = activation[0]
    time_axis = run.time_axes.get(node_id)
    low, high = tile_ranges(as_channels(maps, time_axis), scale, runs.channel_ranges(run, node_id))  # the PNG's
    layout: TileLayout = tile_layout(tuple(maps.shape), np.stack([low, high], axis=1).tolist(), scale, time_axis)
    graph = models.get(run.model_id).graph
    op = node_op(graph, node_id)
    base = f"/api/runs/{run_id}/nodes/{node_id}"
    return NodeActivation(id=node_id, op=op, shape=list(maps.shape), **runs.stats(run, node_id),
                          png_url=f"{base}.png", npy_url=f"{base}.npy", layout=layout,
                          **sequence_fields(run, graph, node_id, list(maps.shape)))


@router.get("/{run_id}/nodes/{node_id}/steps", response_model=NodeSteps, responses={
    422: {"description": "the node records no steps (it is not an rnn, lstm, gru or sequence_attention node)"}})
def read_node_steps(
    run_id: RunId, node_id: NodeId, runs: RunStoreDep, models: ModelStoreDep, compute: ComputeDep,
    first_unit: Annotated[int, Query(ge=0, description="the first hidden unit listed (recurrent nodes)")] = 0,
    units: Annotated[int | None, Query(ge=1, le=4096, description="how many units to list (default: as many as "
                                                                  "fit the answer's bound)")] = None,
    top_k: Annotated[int, Query(ge=1, le=20, description="classes per step in the predictions")] = 3,
) -> NodeSteps:
    """Every time step of a recurrent node (hidden state, cell state and each gate per layer and direction, and the
    prediction after each step), or of a sequence_attention node (each step's score and weight): the node run again
    on the run's sequence with its recording kept."""
    run = runs.get(run_id, models)
    activation_of(run, node_id)  # UnknownNodeError (404) for an unknown node
    model = models.get(run.model_id)
    node = model.graph.by_id.get(node_id)
    with compute(gmacs=(node.op.macs() if node is not None else 0) / 1e9):  # the node runs again
        return node_steps(run, model, node_id, first_unit, units, top_k)


def _unit_at_position(node, unit: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """A position in the node's activation as the unit index its explanation takes (see ``PositionQuery``)."""
    if len(shape) == 2 and len(unit) == 3 and unit[0] == 0:
        unit = unit[1:]  # a (T, F) activation drawn as one map: (0, row, column)
    if node.op.op not in RECURRENT_OPS:
        return unit
    found = unit_of_activation(node, unit)
    if found is None:
        raise ApiError(422, f"position {list(unit)} of node '{node.id}' (shape {list(shape)}) holds no hidden state "
                            f"h_t: give a position of a '{node.id}' output of hidden states, or address the unit as "
                            "t,j (step, unit) without position=true")
    return found


def parse_index(text: str) -> tuple[int, ...]:
    """'5,4,4' -> (5, 4, 4), or a 422 saying what an index looks like."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ApiError(422, f"unit index '{text[:40]}' is not comma-separated whole numbers: give e.g. 5,4,4 "
                            "(channel, row, column) or 3 (one number of a vector)") from None


@router.get("/{run_id}/nodes/{node_id}/units/{index}", response_model=UnitExplanation,
            response_model_exclude_none=True)
def read_unit_explanation(run_id: RunId, node_id: NodeId, index: UnitIndex, runs: RunStoreDep,
                          models: ModelStoreDep, softmax: SoftmaxQuery = False,
                          position: PositionQuery = False) -> UnitExplanation:
    """How one unit's number was made: its window, weights, products, sums and what follows, from the engine."""
    run = runs.get(run_id, models)
    activation_of(run, node_id)  # UnknownNodeError (404) for an unknown node
    unit = parse_index(index)
    model = models.get(run.model_id)
    graph = model.graph
    if node_id == INPUT:
        raise ApiError(422, "'input' is the image itself: pick a unit of a node that computes something "
                            f"({', '.join(explainable_ops())})")
    op = graph.node(node_id).op.op
    if position and not softmax:
        unit = _unit_at_position(graph.node(node_id), unit, run.activations[node_id].shape[1:])
    # what an index addresses: the activation, or for a recurrent node (step, unit) (unless explaining a softmax)
    shape = list(run.activations[node_id].shape[1:] if softmax else unit_shape(graph.node(node_id)))
    if len(unit) != len(shape) or any(not 0 <= i < n for i, n in zip(unit, shape)):
        what = f" ({UNIT_AXES[op]})" if op in UNIT_AXES and not softmax else ""
        raise ApiError(422, f"unit {list(unit)} is outside node '{node_id}' of shape {shape}{what}: give "
                            f"{len(shape)} comma-separated indices, each from 0 to that size minus 1")
    trace = Trace(run.activations)
    try:
        explanation = (explain_softmax_of_scores(graph, trace, node_id, unit) if softmax else
                       explain_unit(graph, model.bundle.params, trace, node_id, unit))
    except ShapeError as err:
        raise ApiError(422, str(err)) from None
    return UnitExplanation.model_validate(explanation)
