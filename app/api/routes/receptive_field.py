"""POST /api/models/{model_id}/receptive-field: a unit's box and centre in the input, and its effective field."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from app.api.deps import ComputeDep, ModelDep, ModelStoreDep, RunStoreDep
from app.errors import ApiError
from app.schemas.receptive_field import EffectiveField, ReceptiveFieldRequest, ReceptiveFieldResponse
from app.services.models import StoredModel
from app.services.overlay import png_data_url
from engine.attention.effective_rf import effective_field as effective_field_map
from engine.errors import EngineError
from engine.graph import Graph
from engine.receptive_field import NodeRF, footprints, receptive_fields, unit_box

router = APIRouter(prefix="/models", tags=["receptive fields"])

MAX_VALUES = 4096


def effective_field(model: StoredModel, x: np.ndarray, node_id: str, index: list[int], input_name: str
                    ) -> EffectiveField:
    """|d unit / d input| summed over input channels (the unit, or the sum over channels at a position)."""
    magnitude = effective_field_map(model.graph, model.bundle.params, x, node_id, index)
    top = float(magnitude.max())
    nonzero = np.nonzero(magnitude)
    box = [(int(ax.min()), int(ax.max())) for ax in nonzero] if top > 0 else None
    picture = magnitude if magnitude.ndim == 2 else magnitude.reshape(1, -1)
    grey = (np.clip(picture / top, 0, 1) * 255 + 0.5).astype(np.uint8) if top > 0 else picture.astype(np.uint8)
    values = picture.round(8).tolist() if picture.size <= MAX_VALUES and magnitude.ndim == 2 else None
    return EffectiveField(input=input_name, shape=list(magnitude.shape), max_abs=top, nonzero_box=box,
                          png=png_data_url(grey), values=values)


@router.post("/{model_id}/receptive-field", response_model=ReceptiveFieldResponse)
def read_receptive_field(request: ReceptiveFieldRequest, model: ModelDep, runs: RunStoreDep, models: ModelStoreDep,
                         compute: ComputeDep) -> ReceptiveFieldResponse:
    """The unit's box and centre in the input (Araujo et al., 2019), and its effective receptive field."""
    graph = model.graph
    if request.node not in graph.by_id:
        known = ", ".join(n.id for n in graph.nodes[:40])
        raise ApiError(404, f"model '{model.id}' has no node '{request.node}'; its nodes: {known}")
    fields = receptive_fields(graph, strict=False)
    rf = fields[request.node]
    box = unit_box(rf, request.index)  # EngineError (422) for an index outside the node
    spatial = list(box.index)
    effective = None
    if request.effective:
        shape = graph.by_id[request.node].output_shape
        full = len(request.index) == len(shape)
        if full and any(not 0 <= i < n for i, n in zip(request.index, shape)):
            raise EngineError(f"unit {request.index} is outside node '{request.node}' of shape {list(shape)}")
        if not full and len(shape) < 2:
            raise EngineError(f"node '{request.node}' has shape {list(shape)}: give a full index")
        if request.run_id is not None:
            run = runs.get(request.run_id, models)
            if run.model_id != model.id:
                raise ApiError(422, f"run '{request.run_id}' belongs to model '{run.model_id}', not '{model.id}'")
            x, name = run.input, f"run {request.run_id}"
        else:
            x, name = np.zeros((1, *graph.input_shape), dtype=np.float32), "zeros"
        with compute():
            effective = effective_field(model, x, request.node, list(request.index) if full else spatial, name)
    return ReceptiveFieldResponse(model_id=model.id, node=request.node, index=spatial,
                                  receptive_field=rf.to_dict(), box=[b.__dict__ for b in box.axes], note=box.note,
                                  layers=_layers(graph, fields, request.node, spatial), effective=effective)


def _layers(graph: Graph, fields: dict[str, NodeRF], node_id: str, spatial: list[int]) -> dict[str, list[list[int]]]:
    """Per earlier layer, the positions the unit depends on (none where fields are not local)."""
    try:
        found = footprints(graph, fields, node_id, spatial)
    except EngineError:  # e.g. a node whose own field is undefined: no boxes to draw
        return {}
    return {layer: [list(r) for r in ranges] for layer, ranges in found.items()}
