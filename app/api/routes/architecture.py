"""POST /api/architecture/analyze: shapes, parameters, MACs and receptive fields of any graph spec."""

from __future__ import annotations

from math import prod

from fastapi import APIRouter

from app.errors import ApiError
from app.schemas.architecture import MAX_NODES, GraphSpec
from app.schemas.models import Architecture
from app.services.architecture import architecture_of
from engine.graph import Graph

router = APIRouter(prefix="/architecture", tags=["architecture"])

MAX_INPUT_ELEMENTS = 10**9  # shapes only, nothing is allocated; this keeps the numbers meaningful
#: inputs named over all nodes (the analysis visits every edge: 2000 nodes each adding all the earlier ones
#: took seconds); real networks have one or two per node
MAX_INPUT_REFERENCES = 10 * MAX_NODES
#: output elements, parameters and MACs per node: JSON clients in JavaScript count exactly only up to 2^53
MAX_COUNT = 2**53


def _check_counts(architecture: Architecture) -> None:
    """422 naming the first node whose output size, parameters or MACs are beyond any real network."""
    for node in architecture.nodes:
        counts = {"output values per input": prod(node.output_shape), "parameters": node.params + node.buffers,
                  "multiply-accumulates per input": node.macs}
        for what, value in counts.items():
            if value > MAX_COUNT:
                reason = (f"it would have {float(value):.3g} {what}, more than 2^53 ≈ 9.0e15 (beyond any "
                          "real network, and beyond what JSON clients count exactly)")
                raise ApiError(422, f"node '{node.id}': {reason}: use smaller sizes, channels, kernels or padding",
                               node=node.id, reason=reason)


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
    references = sum(len(node["inputs"]) for node in spec.nodes if isinstance(node.get("inputs"), list))
    if references > MAX_INPUT_REFERENCES:
        raise ApiError(422, f"the nodes list {references:,} inputs in all; at most {MAX_INPUT_REFERENCES:,} are "
                            "analysed (about 10 per node): merge branches with fewer, wider add or concat nodes")
    graph = Graph(spec.model_dump())
    architecture = architecture_of(graph, strict=True)
    _check_counts(architecture)
    return architecture
