"""Feature vectors per node: the pooling rule's documented examples, adaptive pooling by hand and against PyTorch,
and extraction equal to a full forward pass whatever the batch size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import Graph
from engine.errors import UnknownNodeError
from engine.learned.features import adaptive_avg_pool, extract_features, layout, pooled_grid


@pytest.mark.parametrize(("shape", "grid"), [
    ((8, 28, 28), (8, 16, 16)),      # 8 k^2 <= 2048: k = 16
    ((16, 28, 28), (16, 11, 11)),    # 16 k^2 <= 2048: k = 11 (121 x 16 = 1936; 12 would give 2304)
    ((32, 112, 112), (32, 8, 8)),
    ((1280, 7, 7), (1280, 1, 1)),    # even 2 x 2 cells are too many: the channel means
    ((3000, 4, 4), (3000, 1, 1)),    # more channels than the bound: still the channel means
    ((16, 10, 10), (16, 10, 10)),    # 1,600 values fit
    ((4096,), (4096,)),              # a vector is never pooled
    ((8, 1000), (8, 256)),           # (C, L): 8 k <= 2048
    ((2, 3, 500), (2, 3, 341)),      # an axis shorter than k keeps its length: 2 x 3 x 341 = 2046
])
def test_pooled_grid_examples(shape, grid):
    assert pooled_grid(shape) == grid
    if grid != shape and len(shape) > 1 and grid[0] <= 2048:
        assert math.prod(grid) <= 2048


def test_pooled_grid_is_the_largest_that_fits():
    for shape in [(8, 28, 28), (16, 28, 28), (5, 37, 13), (3, 224, 224)]:
        grid = pooled_grid(shape, 2048)
        k = max(grid[1:])
        bigger = (shape[0], *(min(s, k + 1) for s in shape[1:]))
        assert math.prod(grid) <= 2048 < math.prod(bigger), (shape, grid)


def test_adaptive_pool_by_hand():
    # length 5 into 3 cells: windows [0, 2), [1, 4), [3, 5) (floor(i L / k), ceil((i + 1) L / k))
    a = np.array([1.0, 2.0, 4.0, 8.0, 16.0]).reshape(1, 1, 5)
    np.testing.assert_allclose(adaptive_avg_pool(a, [3])[0, 0], [1.5, 14 / 3, 12.0])
    # 4 x 4 into 2 x 2: plain 2 x 2 averages
    b = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_allclose(adaptive_avg_pool(b, [2, 2])[0, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.torch
@pytest.mark.parametrize(("size", "cells"), [((28, 28), (16, 16)), ((13, 7), (5, 3)), ((112, 112), (8, 8)),
                                             ((9, 10), (9, 4))])
def test_adaptive_pool_matches_pytorch(torch_or_skip, rng, size, cells):
    torch = torch_or_skip
    a = rng.standard_normal((2, 3, *size))
    mine = adaptive_avg_pool(a, cells)
    theirs = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(a), cells).numpy()
    assert mine.shape == theirs.shape
    np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.torch
def test_adaptive_pool_1d_and_3d_match_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    a = rng.standard_normal((2, 3, 50))
    np.testing.assert_allclose(adaptive_avg_pool(a, [7]),
                               torch.nn.functional.adaptive_avg_pool1d(torch.tensor(a), 7).numpy(), atol=1e-12)
    v = rng.standard_normal((1, 2, 9, 10, 11))
    np.testing.assert_allclose(adaptive_avg_pool(v, [4, 3, 5]),
                               torch.nn.functional.adaptive_avg_pool3d(torch.tensor(v), (4, 3, 5)).numpy(),
                               atol=1e-12)


SPEC = {"input_shape": [1, 12, 12], "nodes": [
    {"id": "conv", "op": "conv2d", "out_channels": 20, "kernel_size": 3, "padding": 1},
    {"id": "relu", "op": "relu"},
    {"id": "pool", "op": "max_pool2d", "kernel_size": 2},
    {"id": "flat", "op": "flatten"},
    {"id": "fc", "op": "linear", "out_features": 4},
]}


def test_extract_features_equals_a_full_forward_pass(rng):
    graph = Graph(SPEC)
    params = graph.init_params(seed=3)
    x = rng.standard_normal((23, 1, 12, 12)).astype(np.float32)
    nodes = ["input", "relu", "pool", "fc"]
    full = graph.forward(x, params).activations
    calls = []
    found = extract_features(graph, params, x, nodes, batch_size=10, max_features=1000,
                             progress=lambda done, total: calls.append((done, total)))
    assert calls == [(10, 23), (20, 23), (23, 23)]
    # relu: 20 x 12 x 12 = 2,880 > 1,000 -> 20 k^2 <= 1000: k = 7, windows of 12 into 7
    assert layout(graph, "relu", 1000).grid == (20, 7, 7)
    # batches of 10 against one of 23: BLAS may sum in another order, so float32 rounding differs by a few ulps
    # (relative to the layer's largest number: a value near 0 after cancellation keeps its absolute error)
    def close(mine, theirs):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6 * float(np.abs(theirs).max()))

    close(found["relu"], adaptive_avg_pool(full["relu"], [7, 7]).reshape(23, -1))
    close(found["pool"], full["pool"].reshape(23, -1))  # 720 values: kept
    close(found["fc"], full["fc"])
    np.testing.assert_array_equal(found["input"], x.reshape(23, -1))
    assert all(f.dtype == np.float32 for f in found.values())
    again = extract_features(graph, params, x, nodes, batch_size=23, max_features=1000)
    for node in nodes:
        np.testing.assert_allclose(again[node], found[node], rtol=1e-6, atol=1e-6)


def test_extract_features_refuses_unknown_nodes(rng):
    graph = Graph(SPEC)
    with pytest.raises(UnknownNodeError, match="no node 'nope'"):
        extract_features(graph, graph.init_params(), np.zeros((2, 1, 12, 12), np.float32), ["nope"])
    with pytest.raises(ValueError, match="at least one node"):
        extract_features(graph, graph.init_params(), np.zeros((2, 1, 12, 12), np.float32), [])


def test_layout_describes_what_it_did():
    graph = Graph(SPEC)
    assert "flattened: 720 features" in layout(graph, "pool").describe()
    text = layout(graph, "relu", 1000).describe()
    assert "20 x 12 x 12" in text and "20 x 7 x 7" in text and "980 features" in text
