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


class UnknownNodeError(EngineError, KeyError):
    """A node id the graph does not have. ``node_id`` is what was asked for, ``known`` the graph's node ids.

    Also a ``KeyError``, as a lookup of a missing key is. One message for every place that looks a node up.
    """

    def __init__(self, node_id: str, known: list[str]) -> None:
        self.node_id = node_id
        self.known = list(known)
        listed = ", ".join(self.known[:30]) + (", ..." if len(self.known) > 30 else "")
        shown = node_id if len(node_id) <= 80 else f"{node_id[:79]}… ({len(node_id):,} characters)"
        super().__init__(f"no node '{shown}' in this model; its nodes: {listed}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
