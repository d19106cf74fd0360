"""A fixed-size feature vector per example at chosen nodes: what projections, probes and neighbours compare.

A node's feature vector for one example is its activation, flattened in C order. When that is longer than
``max_features`` (2,048 by default), the spatial axes are average-pooled onto a smaller grid first
(``pooled_grid``): for an activation ``(C, *S)`` (``(C, L)``, ``(C, H, W)`` or ``(C, D, H, W)``, the first axis
being the channels, as in PyTorch) the grid is ``min(S_i, k)`` cells along each spatial axis, with ``k`` the
largest integer for which ``C * prod(min(S_i, k)) <= max_features``, and each cell is the mean of its window,
cut as PyTorch's ``adaptive_avg_pool`` cuts it: cell ``i`` of ``k`` along an axis of length ``S`` averages
positions ``floor(i * S / k)`` to ``ceil((i + 1) * S / k) - 1``. When even one cell per channel (a global average
pool, ``C`` values) is too many, the ``C`` channel means are kept. A vector ``(F,)`` has no spatial axes and is
never pooled.

Examples with the default bound: ``(8, 28, 28)`` (6,272 values) -> ``k = 16``, ``8 x 16 x 16 = 2,048`` features;
``(16, 28, 28)`` -> ``k = 11``, ``16 x 11 x 11 = 1,936``; ``(32, 112, 112)`` -> ``k = 8``; ``(1280, 7, 7)`` ->
``k = 1``, the 1,280 channel means; ``(16, 10, 10)`` (1,600 values) is kept whole.

``extract_features`` streams a dataset ``x: (N, *input_shape)`` through the graph in batches with a lean forward
pass (``keep_caches=False, keep=nodes``), so memory holds one batch's activations and the growing feature matrices
``(N, D_node)`` (float32) only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.graph import INPUT, Graph

MAX_FEATURES = 2048
BATCH_SIZE = 250

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FeatureLayout:
    """How one node's activation ``shape`` (no batch axis) becomes ``size`` features: ``grid`` is the pooled shape
    ``(C, *cells)`` (the shape itself when nothing is pooled), ``pooled`` whether averaging happened."""

    node: str
    shape: tuple[int, ...]
    grid: tuple[int, ...]
    pooled: bool

    @property
    def size(self) -> int:
        return math.prod(self.grid)

    def describe(self) -> str:
        """In words, for the API's answer: what each feature vector holds."""
        shape = " x ".join(map(str, self.shape))
        if not self.pooled:
            return f"the activation ({shape}) flattened: {self.size:,} features"
        grid = " x ".join(map(str, self.grid))
        return (f"the activation ({shape}, {math.prod(self.shape):,} values) average-pooled over its spatial axes to "
                f"{grid} (adaptive average pooling, as PyTorch cuts the windows), flattened: {self.size:,} features")


def pooled_grid(shape: Sequence[int], max_features: int = MAX_FEATURES) -> tuple[int, ...]:
    """The shape ``(C, *cells)`` an activation of ``shape`` is pooled to (``shape`` itself when it fits or has no
    spatial axes). ``k`` is the largest cell count per axis with ``C * prod(min(S_i, k)) <= max_features``."""
    shape = tuple(int(s) for s in shape)
    if max_features < 1:
        raise ValueError(f"max_features must be at least 1, got {max_features}")
    if math.prod(shape) <= max_features or len(shape) < 2:
        return shape
    channels, spatial = shape[0], shape[1:]
    k = 1
    while k < max(spatial) and channels * math.prod(min(s, k + 1) for s in spatial) <= max_features:
        k += 1
    return (channels, *(min(s, k) for s in spatial))


def layout(graph: Graph, node: str, max_features: int = MAX_FEATURES) -> FeatureLayout:
    """The feature layout of ``node`` (``"input"`` for the raw input) in ``graph``."""
    shape = tuple(graph.input_shape) if node == INPUT else tuple(graph.node(node).output_shape)
    grid = pooled_grid(shape, max_features)
    return FeatureLayout(node=node, shape=shape, grid=grid, pooled=grid != shape)


def _bins(length: int, cells: int) -> list[tuple[int, int]]:
    """Adaptive pooling's windows along one axis: cell ``i`` covers ``[floor(i L / k), ceil((i + 1) L / k))``."""
    return [((i * length) // cells, -((-(i + 1) * length) // cells)) for i in range(cells)]


def adaptive_avg_pool(a: np.ndarray, cells: Sequence[int]) -> np.ndarray:
    """``a: (N, C, *S)`` averaged onto ``(N, C, *cells)``, axis by axis, with adaptive pooling's windows.

    Axis by axis is exact: a mean over a box is the mean over one axis of the means over the others, because every
    window along one axis has the same size whatever the position along the others."""
    out = a
    for offset, count in enumerate(cells):
        axis = 2 + offset
        length = out.shape[axis]
        if count == length:
            continue
        parts = [out.take(range(lo, hi), axis=axis).mean(axis=axis, keepdims=True) for lo, hi in _bins(length, count)]
        out = np.concatenate(parts, axis=axis)
    return out


def features_of(activation: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """``activation: (N, *shape)`` -> ``(N, prod(grid))`` float32: pooled onto ``grid`` if it differs, flattened."""
    n = activation.shape[0]
    if tuple(activation.shape[1:]) != tuple(grid):
        activation = adaptive_avg_pool(activation, grid[1:])
    return np.ascontiguousarray(activation.reshape(n, -1), dtype=np.float32)


def extract_features(
    graph: Graph,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    nodes: Sequence[str],
    batch_size: int = BATCH_SIZE,
    max_features: int = MAX_FEATURES,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Feature matrices of ``x: (N, *input_shape)`` at ``nodes`` (node ids, ``"input"`` for the raw input).

    Returns ``{node: (N, D_node) float32}`` with ``D_node`` from ``layout`` (at most ``max_features``, or the channel
    count). The pass stops at the last node asked for. ``progress(done, total)`` is called after each batch with
    the examples done so far and ``N`` (it may raise to cancel).
    """
    if not nodes:
        raise ValueError("name at least one node to extract features at")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    graph.check_input(x)
    layouts = {node: layout(graph, node, max_features) for node in dict.fromkeys(nodes)}
    inner = [node for node in layouts if node != INPUT]
    order = {item.id: position for position, item in enumerate(graph.nodes)}
    stop_at = max(inner, key=order.__getitem__) if inner else None
    n = x.shape[0]
    out = {node: np.empty((n, item.size), dtype=np.float32) for node, item in layouts.items()}
    for start in range(0, n, batch_size):
        batch = x[start:start + batch_size]
        activations = {INPUT: batch}
        if stop_at is not None:
            activations.update(graph.forward(batch, params, keep_caches=False, keep=inner,
                                             stop_at=stop_at).activations)
        for node, item in layouts.items():
            out[node][start:start + len(batch)] = features_of(activations[node], item.grid)
        if progress is not None:
            progress(min(start + batch_size, n), n)
    return out
