"""A graph's per-node analysis (engine/analysis.py) as the API's Architecture model."""

from __future__ import annotations

from app.schemas.models import Architecture
from engine.analysis import analyze
from engine.graph import Graph


def architecture_of(graph: Graph, strict: bool = False) -> Architecture:
    """Per node: op, attributes, inputs, output shape, parameters, MACs and receptive field.

    ``strict``: a misaligned multi-path graph is an error (SpecError naming the node); otherwise
    that node's receptive field is marked "undefined" with the reason.
    """
    return Architecture(**analyze(graph, strict=strict).to_dict())
