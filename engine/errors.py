"""Errors the engine raises, phrased for the person who wrote the spec or sent the input."""

from __future__ import annotations


class EngineError(ValueError):
    """Base class: something the caller asked for cannot be done; the message says why."""


class SpecError(EngineError):
    """A graph spec that cannot be built. ``node_id`` names the node at fault (None: the spec as a whole)."""

    def __init__(self, node_id: str | None, message: str) -> None:
        self.node_id = node_id
        self.reason = message
        super().__init__(f"node '{node_id}': {message}" if node_id else message)


class ShapeError(EngineError):
    """An input tensor whose shape does not fit the model or the operation."""


class WeightsError(EngineError):
    """Weights whose names or shapes do not match the graph; lists every mismatch."""
