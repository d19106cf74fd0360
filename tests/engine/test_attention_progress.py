"""The many-pass attribution methods report their progress between batches of passes: ``progress(done, total)``
with ``done`` growing to ``total``; reporting changes no number, and a ``progress`` that raises stops the method."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Graph
from engine.attention import MANY_PASS, METHODS, explain
from engine.attention.budget import estimated_macs, graph_macs, plan

SPEC = {"input_shape": [2, 12, 12], "nodes": [
    {"id": "conv1", "op": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"id": "relu1", "op": "relu"},
    {"id": "pool", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
    {"id": "conv2", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
    {"id": "relu2", "op": "relu"},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}

#: method, options, the passes it makes in all
CASES = [
    ("integrated_gradients", {"steps": 9}, 9 + 2),
    ("smoothgrad", {"samples": 10}, 10),
    ("scorecam", {}, 8 + 1),  # one per channel of relu2, then the baseline
    ("occlusion", {"window": 4, "stride": 2}, 5 * 5 + 1),  # the unoccluded input, then one per window
]


@pytest.fixture(scope="module")
def net():
    graph = Graph(SPEC)
    return graph, graph.init_params(seed=3), np.random.default_rng(5).standard_normal((1, 2, 12, 12))


@pytest.mark.parametrize("method, options, total", CASES, ids=[c[0] for c in CASES])
def test_progress_grows_to_the_total_and_changes_no_number(net, method, options, total):
    graph, params, x = net
    calls: list[tuple[int, int]] = []
    reported = explain(graph, params, x, method, target=1, batch_size=4, progress=lambda d, t: calls.append((d, t)),
                       **options)
    quiet = explain(graph, params, x, method, target=1, batch_size=4, **options)
    dones = [d for d, _ in calls]
    assert len(calls) >= 3, calls  # several batches of 4, each reported
    assert {t for _, t in calls} == {total}
    assert dones == sorted(set(dones)) and dones[0] > 0 and dones[-1] == total
    np.testing.assert_array_equal(reported.layer_map, quiet.layer_map)
    assert reported.extras == quiet.extras


def test_single_pass_methods_never_report(net):
    graph, params, x = net
    calls = []
    for method in sorted(set(METHODS) - MANY_PASS - {"learned_attention", "cam"}):
        explain(graph, params, x, method, progress=lambda d, t: calls.append((d, t)))
    assert calls == []


class StopError(Exception):
    pass


@pytest.mark.parametrize("method, options, total", CASES, ids=[c[0] for c in CASES])
def test_a_progress_that_raises_stops_the_method(net, method, options, total):
    graph, params, x = net
    calls = []

    def stop_after_first(done: int, of: int) -> None:
        calls.append(done)
        raise StopError

    with pytest.raises(StopError):
        explain(graph, params, x, method, target=1, batch_size=4, progress=stop_after_first, **options)
    assert calls == [calls[0]] and calls[0] < total


@pytest.mark.parametrize("method, options, total", CASES, ids=[c[0] for c in CASES])
def test_the_estimate_counts_the_units_the_budget_bounds(net, method, options, total):
    graph, _, _ = net
    per_pass = graph_macs(graph)
    planned = plan(graph, method, options, None)
    estimate = estimated_macs(graph, method, planned)
    assert estimate >= total * per_pass  # at least a pass per input (a backward counts twice more)
    # the budget lets exactly this estimate through, and refuses one pass less
    plan(graph, method, planned, estimate)
    if method != "occlusion":
        with pytest.raises(Exception, match=r"GMACs|more work"):
            plan(graph, method, planned, estimate - per_pass)
