"""How the many-pass attribution methods batch their passes changes no number: one input per batch (the
activation budget at its smallest), odd batch sizes and one batch for everything give the same maps."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Graph
from engine.attention import common, explain

SPEC = {"input_shape": [2, 12, 12], "nodes": [
    {"id": "conv1", "op": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"id": "bn1", "op": "batch_norm"},
    {"id": "relu1", "op": "relu6"},
    {"id": "dw", "op": "conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 6},
    {"id": "relu2", "op": "relu"},
    {"id": "pw", "op": "conv2d", "out_channels": 8, "kernel_size": 1},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}

METHODS = [
    ("integrated_gradients", {"steps": 9}),
    ("smoothgrad", {"samples": 7}),
    ("scorecam", {}),
    ("occlusion", {"window": 4, "stride": 2}),
]


@pytest.mark.parametrize("method, options", METHODS, ids=[m for m, _ in METHODS])
def test_batching_changes_no_number(method, options, monkeypatch):
    graph = Graph(SPEC)
    params = graph.init_params(seed=2)
    x = np.random.default_rng(4).standard_normal((1, 2, 12, 12))
    maps = {}
    for name, budget, batch in (("one batch", 1 << 40, 64), ("batches of 3", 1 << 40, 3), ("budget of one", 1, 16)):
        monkeypatch.setattr(common, "BATCH_BYTES", budget)
        maps[name] = explain(graph, params, x, method, target=1, batch_size=batch, **options).layer_map
    assert np.abs(maps["one batch"]).max() > 0
    for name, m in maps.items():
        np.testing.assert_allclose(m, maps["one batch"], rtol=1e-10, atol=1e-12, err_msg=name)


def test_the_activation_budget_sets_the_batch():
    graph = Graph(SPEC)
    x = np.zeros((1, 2, 12, 12), dtype=np.float32)
    per_input = sum(int(np.prod(n.output_shape)) for n in graph.nodes) * 4
    assert common.effective_batch(graph, x, 16) == min(16, common.BATCH_BYTES // per_input)
    assert common.effective_batch(graph, x, 2) == 2
    assert common.effective_batch(graph, np.zeros((1, 3, 224, 224), np.float32), 16) >= 1


def test_differentiated_passes_count_their_caches_and_gradients(monkeypatch):
    """A batch that is differentiated holds BACKWARD_MEMORY times its activations: fewer inputs per batch."""
    graph = Graph(SPEC)
    x = np.zeros((1, 2, 12, 12), dtype=np.float32)
    per_input = sum(int(np.prod(n.output_shape)) for n in graph.nodes) * 4
    monkeypatch.setattr(common, "BATCH_BYTES", 6 * per_input)
    assert common.effective_batch(graph, x, 16) == 6
    assert common.effective_batch(graph, x, 16, backward=True) == 6 // common.BACKWARD_MEMORY
    monkeypatch.setattr(common, "BATCH_BYTES", per_input)
    assert common.effective_batch(graph, x, 16, backward=True) == 1  # never fewer than one


def test_gradient_batches_use_the_backward_budget(monkeypatch):
    graph = Graph(SPEC)
    params = graph.init_params(seed=2)
    per_input = sum(int(np.prod(n.output_shape)) for n in graph.nodes) * 8  # float64 inputs
    monkeypatch.setattr(common, "BATCH_BYTES", 6 * per_input)
    sizes = []
    forward = Graph.forward

    def counting(self, x, *args, **kwargs):
        sizes.append(len(x))
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(Graph, "forward", counting)
    common.input_gradients(graph, params, np.zeros((7, 2, 12, 12)), target=1)
    assert sizes == [2, 2, 2, 1]
