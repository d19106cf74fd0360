"""POST /api/architecture/analyze: shapes, parameters, MACs and receptive fields of any graph spec."""

from __future__ import annotations

from fastapi import APIRouter

from app.errors import ApiError
from app.schemas.architecture import GraphSpec
from app.schemas.models import Architecture
from app.services.architecture import architecture_of
from engine.graph import Graph

router = APIRouter(prefix="/architecture", tags=["architecture"])

MAX_INPUT_ELEMENTS = 10**9  # shapes only, nothing is allocated; this keeps the numbers meaningful


@router.post("/analyze", response_model=Architecture)
def analyze_architecture(spec: GraphSpec) -> Architecture:
    """Build a graph spec and return, per node, its output shape, parameters, MACs and receptive field.

    A spec that cannot be built (unknown op, impossible shape, misaligned branches) is a 422 whose
    `node` names the node at fault.
    """
    elements = 1
    for size in spec.input_shape:
        elements *= size
    if elements > MAX_INPUT_ELEMENTS:
        raise ApiError(422, f"input_shape {spec.input_shape} has {elements:,} elements per input: "
                            f"keep it under {MAX_INPUT_ELEMENTS:,}")
    graph = Graph(spec.model_dump())
    return architecture_of(graph, strict=True)
