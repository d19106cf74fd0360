"""Backpropagation made visible (see docs/learned.md): for one input and a label, the loss and the gradient of every
node's output, node by node from the loss back to the input (POST /api/models/{id}/backprop, the maps at
GET /api/backprop/{run_id}/labels/{label}/nodes/{node}.png|.npy|.json), the chain rule at one unit with the real
numbers and a filter's weight gradient (POST .../backprop/chain-rule), and one SGD step (POST .../sgd-step).

The inputs are taken as everywhere else (an image as multipart field `image` or a raw body, or a `.npy` tensor),
preprocessed and bounded by `prepare_input`; the forward pass is a run (`/api/runs/{run_id}`), and the gradients are
kept per worker like runs (app/services/backprop.py says why they are not inlined).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Response

from app.api.deps import (
    ComputeDep,
    GradientStoreDep,
    ModelDep,
    ModelInputDep,
    ModelStoreDep,
    RunStoreDep,
    SettingsDep,
)
from app.api.routes.runs import parse_index
from app.core.config import Settings
from app.schemas.backprop import (
    BackpropResponse,
    ChainRuleResponse,
    FilterGradient,
    GradientMap,
    SgdStepResponse,
    StepOutcome,
)
from app.services.backprop import (
    GradientStore,
    check_filter_size,
    class_score,
    floats,
    gradient_nodes,
    gradient_of,
    gradient_url,
    outcome_fields,
    parse_rates,
    resolve_label,
    signed_ranges,
    top_scores,
)
from app.services.compute import forward_gmacs
from app.services.inputs import INPUT_OPENAPI, prepare_input
from app.services.models import StoredModel
from app.services.runs import Run, RunStore, node_op
from app.services.tensors import NPY_MEDIA_TYPE, to_npy
from app.services.tiles import as_channels, tile_layout
from engine.graph import INPUT
from engine.learned.backprop import check_label
from engine.learned.chain_rule import chain_rule
from engine.learned.sgd_step import sgd_step, sweep
from engine.learned.weight_gradient import check_filter, filter_gradient, filter_ops

router = APIRouter(tags=["learned"])

LabelQuery = Annotated[int | None, Query(ge=0, description="the class the loss is measured against (default: the "
                                                           "model's prediction)", examples=[3])]
ScaleQuery = Annotated[Literal["layer", "channel"], Query(
    description="the signed scale's ends ±m: m the largest |gradient| of the whole node (layer: channels compare) "
                "or of each channel (channel: each map's own pattern)")]
RunIdPath = Annotated[str, Path(description="from POST /api/models/{model_id}/backprop",
                                examples=["3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"])]
LabelPath = Annotated[int, Path(ge=0, description="the class the loss was measured against", examples=[3])]
NodePath = Annotated[str, Path(description="a node id, or 'input'", examples=["conv2"])]
CACHE_HEADERS = {"Cache-Control": "public, max-age=86400, immutable"}  # run id and label fix the numbers


def gradients_for(model: StoredModel, run: Run, store: GradientStore, label: int | None):
    """The run's gradients against ``label`` (default: the prediction), whether they were kept, and whether the
    label is the prediction."""
    label, is_prediction = resolve_label(model, run, label)
    entry, cached = store.get(model, run, label)
    return entry, cached, is_prediction


def run_of_input(model: StoredModel, model_input, settings: Settings, runs: RunStore) -> Run:
    """The input read, preprocessed and bounded as everywhere else, and its forward pass (a run)."""
    prepared = prepare_input(model_input, model, settings.max_upload_bytes, settings.max_image_pixels,
                             settings.max_tensor_elements)
    run, _ = runs.create(model, prepared.x)
    return run


@router.post("/models/{model_id}/backprop", response_model=BackpropResponse, openapi_extra=INPUT_OPENAPI)
def create_backprop(model: ModelDep, model_input: ModelInputDep, settings: SettingsDep, runs: RunStoreDep,
                    store: GradientStoreDep, label: LabelQuery = None,
                    top_k: Annotated[int, Query(ge=1, le=20, description="classes listed")] = 5) -> BackpropResponse:
    """The loss of an input against a label and, per node from the logits back to the input, its gradient's shape,
    statistics and map URLs."""
    run = run_of_input(model, model_input, settings, runs)
    entry, cached, is_prediction = gradients_for(model, run, store, label)
    predicted = int(np.argmax(entry.probabilities))
    return BackpropResponse(model_id=model.id, run_id=run.run_id, label=entry.label,
                            label_name=class_score(model, entry, entry.label).label,
                            label_is_prediction=is_prediction, loss=entry.loss, logits_node=entry.logits_node,
                            prediction=class_score(model, entry, predicted),
                            label_score=class_score(model, entry, entry.label),
                            classes=top_scores(model, entry, top_k), input_shape=list(run.input.shape),
                            nodes=gradient_nodes(model, run, entry), elapsed_ms=entry.elapsed_ms, cached=cached)


def stored_gradient(run_id: str, label: int, node_id: str, runs: RunStore, models, store: GradientStore):
    """The run, its model, its gradients against ``label`` and the node's gradient (404 for an unknown run or a
    node without a gradient, 422 for a label outside the model's classes)."""
    run = runs.get(run_id, models)
    model = models.get(run.model_id)
    model.graph.check_node_or_input(node_id)  # the one 404 for a node the model does not have
    entry, _ = store.get(model, run, check_label(model.graph, label))
    return run, model, entry, gradient_of(entry, node_id)


@router.get("/backprop/{run_id}/labels/{label}/nodes/{node_id}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}},
                             "description": "every channel of dL/d(node) tiled into one greyscale PNG: grey 0, 128 "
                                            "and 255 stand for −m, 0 and +m; X-Tile-Layout header holds the grid"}})
def read_gradient_png(run_id: RunIdPath, label: LabelPath, node_id: NodePath, runs: RunStoreDep,
                      models: ModelStoreDep, store: GradientStoreDep, scale: ScaleQuery = "layer") -> Response:
    """A node's gradient as a signed tiled PNG (the explorer's feature-map conventions, centred on zero)."""
    run, _, entry, _ = stored_gradient(run_id, label, node_id, runs, models, store)
    png, layout = store.png(entry, node_id, scale, run.time_axes.get(node_id))
    return Response(png, media_type="image/png", headers={**CACHE_HEADERS, "X-Tile-Layout": layout})


@router.get("/backprop/{run_id}/labels/{label}/nodes/{node_id}.npy", response_class=Response,
            responses={200: {"content": {NPY_MEDIA_TYPE: {}}, "description": "float32, shape [1, *node shape]"}})
def read_gradient_npy(run_id: RunIdPath, label: LabelPath, node_id: NodePath, runs: RunStoreDep,
                      models: ModelStoreDep, store: GradientStoreDep) -> Response:
    """A node's gradient dL/d(output) as a float32 .npy file, batch axis included."""
    _, _, _, gradient = stored_gradient(run_id, label, node_id, runs, models, store)
    return Response(to_npy(gradient), media_type=NPY_MEDIA_TYPE,
                    headers={**CACHE_HEADERS, "Content-Disposition": f'attachment; filename="d{node_id}.npy"'})


@router.get("/backprop/{run_id}/labels/{label}/nodes/{node_id}.json", response_model=GradientMap)
def read_gradient_json(run_id: RunIdPath, label: LabelPath, node_id: NodePath, runs: RunStoreDep,
                       models: ModelStoreDep, store: GradientStoreDep, scale: ScaleQuery = "layer") -> GradientMap:
    """A node's gradient: shape, statistics, and its PNG's layout with each tile's signed range [−m, +m]."""
    run, model, entry, gradient = stored_gradient(run_id, label, node_id, runs, models, store)
    time_axis = run.time_axes.get(node_id)
    m = signed_ranges(as_channels(gradient[0].astype(np.float32), time_axis), scale)
    base = gradient_url(run_id, entry.label, node_id)
    op = node_op(model.graph, node_id)
    return GradientMap(id=node_id, op=op, shape=list(gradient.shape[1:]), label=entry.label,
                       **entry.summary(node_id), png_url=f"{base}.png?scale={scale}", npy_url=f"{base}.npy",
                       layout=tile_layout(tuple(gradient.shape[1:]), np.stack([-m, m], axis=1).tolist(), scale,
                                          time_axis))


def filter_answer(fields: dict) -> FilterGradient:
    """The engine's filter gradient (arrays) as the API answers it (flat lists, C order)."""
    example = fields["example"]
    return FilterGradient(**{**fields, "weight": floats(fields["weight"]), "gradient": floats(fields["gradient"]),
                             "engine_gradient": floats(fields["engine_gradient"]), "example": example})


@router.post("/models/{model_id}/backprop/chain-rule", response_model=ChainRuleResponse, openapi_extra=INPUT_OPENAPI)
def create_chain_rule(
    model: ModelDep, model_input: ModelInputDep, settings: SettingsDep, runs: RunStoreDep, store: GradientStoreDep,
    compute: ComputeDep,
    node: Annotated[str, Query(description="a node id, or 'input' for the image", examples=["conv2"])],
    unit: Annotated[str, Query(max_length=80, description="the unit, no batch axis, comma-separated: channel,y,x for "
                                                          "a map, one number for a vector", examples=["5,3,4"])],
    label: LabelQuery = None,
    filter: Annotated[int | None, Query(ge=0, description="the filter whose weight gradient to show (a convolution "
                                                          "or linear node; default: the unit's channel)")] = None,
) -> ChainRuleResponse:
    """The chain rule at one unit with the real numbers: how dL/du is summed from the units that read it, where
    dL/du goes, and (for a convolution or linear layer) one filter's weight gradient."""
    index = parse_index(unit)
    graph = model.graph
    if node != INPUT:
        graph.node(node)  # 404 listing the nodes, before any work
    has_filters = node in filter_ops(graph)
    if filter is not None:
        check_filter(graph, node, filter)  # 422: no filters, or no such filter
    run = run_of_input(model, model_input, settings, runs)
    entry, _, _ = gradients_for(model, run, store, label)
    result = entry.backprop(run)
    with compute(gmacs=forward_gmacs(graph)):
        explained = chain_rule(graph, model.bundle.params, result, node, index)
        k = filter if filter is not None else index[0] if has_filters else None
        weights = None
        if k is not None:
            check_filter_size(model, node)
            weights = filter_answer(filter_gradient(graph, model.bundle.params, result, node, k))
    return ChainRuleResponse(model_id=model.id, run_id=run.run_id, label=entry.label, loss=entry.loss, **explained,
                             filter=weights)


@router.post("/models/{model_id}/sgd-step", response_model=SgdStepResponse, openapi_extra=INPUT_OPENAPI)
def create_sgd_step(
    model: ModelDep, model_input: ModelInputDep, settings: SettingsDep, runs: RunStoreDep, store: GradientStoreDep,
    compute: ComputeDep,
    node: Annotated[str, Query(description="a convolution or linear node", examples=["conv1"])],
    filter: Annotated[int, Query(ge=0, description="output channel k: the filter shown")] = 0,
    lr: Annotated[float, Query(gt=0, le=1e4, description="the learning rate of the step shown")] = 0.01,
    lrs: Annotated[str | None, Query(max_length=400, description="learning rates to sweep, comma-separated, at most "
                                                                 "25, each in (0, 1e4] (default: half decades from "
                                                                 "1e-4 to 1e3)", examples=["0.001,0.01,0.1,1"])] = None,
    scope: Annotated[Literal["filter", "all"], Query(
        description="filter: move only this filter (its weights and bias); all: every trainable parameter by its "
                    "own gradient (plain SGD on this one input)")] = "filter",
    label: LabelQuery = None,
) -> SgdStepResponse:
    """One SGD step w ← w − lr · dL/dw: the filter before, its gradient, the rate, the filter after, and the loss
    before and after (measured by running the network again), for `lr` and for each rate of `lrs`."""
    rates = parse_rates(lrs)
    graph = model.graph
    check_filter(graph, node, filter)  # 404 for an unknown node, 422 for one without filters or no such filter
    check_filter_size(model, node)
    run = run_of_input(model, model_input, settings, runs)
    entry, _, _ = gradients_for(model, run, store, label)
    result = entry.backprop(run)
    with compute(gmacs=forward_gmacs(graph) * (len(rates) + 1)):
        step = sgd_step(graph, model.bundle.params, run.input, result, node, filter, lr, scope)
        outcomes = sweep(graph, model.bundle.params, run.input, result, node, filter, rates, scope)
    return SgdStepResponse(
        model_id=model.id, run_id=run.run_id, label=entry.label, node=node, op=graph.node(node).op.op,
        filter=filter, scope=scope, moved=step["moved"], shape=list(step["weight_before"].shape), lr=step["lr"],
        weight_before=floats(step["weight_before"]), gradient=floats(step["gradient"]),
        weight_after=floats(step["weight_after"]), bias_before=step["bias_before"],
        bias_gradient=step["bias_gradient"], bias_after=step["bias_after"], loss_before=entry.loss,
        outcome=StepOutcome(**outcome_fields(model, entry.loss, step["outcome"])),
        sweep=[StepOutcome(**outcome_fields(model, entry.loss, o)) for o in outcomes])
