"""The effective receptive field (Luo et al., 2016): how strongly each input pixel moves one unit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.errors import ShapeError
from engine.graph import Graph


def effective_field(graph: Graph, params: dict[str, np.ndarray], x: np.ndarray, node_id: str,
                    index: Sequence[int]) -> np.ndarray:
    """``|∂y/∂x|`` for ``x: (1, *input_shape)``, summed over input channels, in float64: ``(*input_spatial)``.

    ``index`` is a full index into the node's shape (channel first: one unit ``y``), or a spatial position
    (``y`` is then the sum of every channel there). Only input gradients are computed.
    """
    trace = graph.forward(x, params, stop_at=node_id)
    act = trace.activations[node_id]
    index = tuple(int(i) for i in index)
    if len(index) == act.ndim - 1:
        seed = graph.unit_seed(trace, node_id, index)[node_id]
    else:
        spatial = act.shape[2:]
        if len(index) != len(spatial) or any(not 0 <= i < n for i, n in zip(index, spatial)):
            raise ShapeError(f"position {list(index)} is outside node '{node_id}' of shape {list(act.shape[1:])}")
        seed = np.zeros_like(act)
        seed[(0, slice(None), *index)] = 1
    grad = np.abs(graph.backward(trace, {node_id: seed}, params=False).input[0].astype(np.float64))
    return grad.sum(axis=0) if grad.ndim > 1 else grad
