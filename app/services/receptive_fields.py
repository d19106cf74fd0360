"""One unit's receptive field: its box and centre in the input (Araujo et al., 2019), the positions it depends on in
every earlier layer, and its effective receptive field (the input gradient, one backward pass).

Errors: ``UnknownNodeError`` for a node the model does not have, ``EngineError`` for an index outside the node,
``ForeignRunError`` (app/services/errors.py) for a run of another model.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np

from app.schemas.receptive_field import EffectiveField, ReceptiveFieldRequest, ReceptiveFieldResponse
from app.services.compute import forward_gmacs
from app.services.errors import ForeignRunError
from app.services.models import ModelStore, StoredModel
from app.services.overlay import png_data_url
from app.services.runs import RunStore
from engine.attention.effective_rf import effective_field as effective_field_map
from engine.errors import EngineError
from engine.graph import Graph
from engine.receptive_field import NodeRF, footprints, receptive_fields, unit_box

#: effective fields with at most this many positions also come back as numbers
MAX_VALUES = 4096


def receptive_field_of(model: StoredModel, request: ReceptiveFieldRequest, runs: RunStore, models: ModelStore,
                       compute: Callable[..., AbstractContextManager[None]]) -> ReceptiveFieldResponse:
    """The unit's box, centre and per-layer footprint; with ``request.effective``, its effective field too."""
    graph = model.graph
    node = graph.node(request.node)
    fields = receptive_fields(graph, strict=False)
    rf = fields[node.id]
    box = unit_box(rf, request.index)  # EngineError (422) for an index outside the node
    spatial = list(box.index)
    effective = None
    if request.effective:
        index = effective_index(node.id, node.output_shape, request.index, spatial)
        x, name = effective_input(model, request.run_id, runs, models)
        with compute(gmacs=2 * forward_gmacs(graph)):  # a forward and a backward pass
            effective = effective_field(model, x, node.id, index, name)
    return ReceptiveFieldResponse(model_id=model.id, node=node.id, index=spatial,
                                  receptive_field=rf.to_dict(), box=[b.__dict__ for b in box.axes], note=box.note,
                                  layers=_layers(graph, fields, node.id, spatial), effective=effective)


def effective_index(node_id: str, shape: tuple[int, ...], index: list[int], spatial: list[int]) -> list[int]:
    """The unit to differentiate: the full index (channel and position) or, for a position, the sum over channels."""
    full = len(index) == len(shape)
    if full and any(not 0 <= i < n for i, n in zip(index, shape)):
        raise EngineError(f"unit {index} is outside node '{node_id}' of shape {list(shape)}")
    if not full and len(shape) < 2:
        raise EngineError(f"node '{node_id}' has shape {list(shape)}: give a full index")
    return list(index) if full else spatial


def effective_input(model: StoredModel, run_id: str | None, runs: RunStore, models: ModelStore
                    ) -> tuple[np.ndarray, str]:
    """The input the gradient is taken at, and its name: the run's input, or all zeros (the mean image)."""
    if run_id is None:
        return np.zeros((1, *model.graph.input_shape), dtype=np.float32), "zeros"
    run = runs.get(run_id, models)
    if run.model_id != model.id:
        raise ForeignRunError(run_id, run.model_id, model.id)
    return run.input, f"run {run_id}"


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


def _layers(graph: Graph, fields: dict[str, NodeRF], node_id: str, spatial: list[int]) -> dict[str, list[list[int]]]:
    """Per earlier layer, the positions the unit depends on (none where fields are not local)."""
    try:
        found = footprints(graph, fields, node_id, spatial)
    except EngineError:  # e.g. a node whose own field is undefined: no boxes to draw
        return {}
    return {layer: [list(r) for r in ranges] for layer, ranges in found.items()}
