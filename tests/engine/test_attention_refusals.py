"""What is refused, and in which order: a model that cannot be explained at all (its input kind, its output, the
method's missing structure) is told so before any word about the work budget; a method beyond the budget is
refused with another method that fits this model (never itself), or with the limit to raise."""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine import Graph
from engine.attention import METHODS, AttributionError, explain, prepare
from engine.attention.budget import graph_macs, minimum_units

VOLUME = {"input_shape": [2, 4, 6, 6], "nodes": [
    {"id": "conv1", "op": "conv3d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"id": "act", "op": "relu"},
    {"id": "flat", "op": "flatten"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}
POOLED = {"input_shape": [2, 4, 6, 6], "nodes": [
    {"id": "conv1", "op": "conv3d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"id": "act", "op": "relu"},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}
#: a budget far too small for anything
TINY = 1


def budget_words(message: str) -> bool:
    return "allows per request" in message or "GMACs" in message


@pytest.mark.parametrize("shape, words", [
    ([12], r"this model takes \[12\] \(no spatial axis\)"),
    ([1, 2, 2, 2, 2], r"this model takes \[1, 2, 2, 2, 2\] \(4 spatial axes\)"),
])
def test_an_input_no_method_can_explain_is_told_first(shape, words):
    graph = Graph({"input_shape": shape, "nodes": [{"id": "flat", "op": "flatten"},
                                                   {"id": "fc", "op": "linear", "out_features": 2}]})
    x = np.zeros((1, *shape))
    for method in METHODS:
        with pytest.raises(AttributionError) as refused:
            explain(graph, graph.init_params(), x, method, max_macs=TINY)
        message = str(refused.value)
        assert re.search(words, message) and "1, 2 or 3 spatial axes" in message, (method, message)
        assert not budget_words(message), f"{method}: the budget was mentioned before the input kind: {message}"


def test_an_output_that_is_neither_scores_nor_a_map_is_told_before_the_budget():
    graph = Graph({"input_shape": [1, 4, 4], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 1},
        {"id": "shape", "op": "reshape", "shape": [2, 2, 2, 2, 2]}]})
    with pytest.raises(AttributionError, match=r"shape \[2, 2, 2, 2, 2\]: attribution needs class scores") as refused:
        explain(graph, graph.init_params(), np.zeros((1, 1, 4, 4)), "gradcam", max_macs=TINY)
    assert not budget_words(str(refused.value))


@pytest.mark.parametrize("method, options, words", [
    ("cam", {}, "CAM needs 'act' -> global_avg_pool -> linear"),
    ("learned_attention", {}, "no attention layer"),
    ("eigencam", {"region": [0, 0, 1, 1]}, "takes no region"),
    ("saliency", {"region": [0, 0, 1, 1]}, "leave region out"),
    ("occlusion", {"window": 2, "stride": 3}, "stride of 1 up to the window"),
    ("gradcam", {"layer": "flat"}, r"input's 3D spatial extent \(C, D, H, W\)"),
])
def test_what_this_volume_model_lacks_is_told_before_the_budget(method, options, words):
    graph = Graph(VOLUME)
    options = dict(options)
    layer = options.pop("layer", None)
    with pytest.raises(AttributionError, match=re.escape(words) if "(" not in words else words) as refused:
        explain(graph, graph.init_params(), np.zeros((1, 2, 4, 6, 6)), method, layer=layer, max_macs=TINY,
                **options)
    assert not budget_words(str(refused.value)), str(refused.value)


def suggestion(message: str) -> str | None:
    found = re.search(r"try ([\w+]+), which needs", message)
    return None if found is None else found.group(1)


@pytest.mark.parametrize("units", [1, 1.5, 2, 2.5, 3, 4, 6])
def test_a_refusal_suggests_another_method_that_fits_never_itself(units):
    graph = Graph(POOLED)
    params = graph.init_params(seed=0)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 6, 6))
    max_macs = int(units * graph_macs(graph))
    refused = 0
    for method in METHODS:
        if method == "learned_attention":  # no attention layer: refused for that, whatever the budget
            continue
        try:
            explain(graph, params, x, method, max_macs=max_macs)
            assert minimum_units(method) <= units, f"{method} ran with {units} units but needs more"
            continue
        except AttributionError as error:
            message = str(error)
        refused += 1
        assert minimum_units(method) > units, f"{method} was refused at {units} units: {message}"
        other = suggestion(message)
        assert other is not None, f"{method} at {units} units: no method suggested: {message}"
        assert other != method, f"{method} was refused and suggested itself: {message}"
        # the suggestion fits this model and this budget: it runs
        explain(graph, params, x, other, max_macs=max_macs)
        assert minimum_units(other) == min(minimum_units(m) for m in METHODS
                                           if m not in {method, "learned_attention"}), message
    assert refused > 0  # Integrated Gradients needs 8 units at least


def test_gradcam_beyond_the_budget_no_longer_suggests_gradcam():
    graph = Graph(POOLED)
    with pytest.raises(AttributionError) as refused:
        prepare(graph, "gradcam", {}, max_macs=int(1.5 * graph_macs(graph)))
    assert "try gradcam" not in str(refused.value) and suggestion(str(refused.value)) == "eigencam"


def test_when_nothing_fits_the_refusal_says_which_limit_to_raise():
    graph = Graph(POOLED)
    per_pass = graph_macs(graph)
    with pytest.raises(AttributionError, match="no method fits this model") as refused:
        prepare(graph, "gradcam", {}, max_macs=per_pass // 2, limit_name="CNN_VIS_MAX_ATTENTION_GMACS")
    message = str(refused.value)
    assert "raise CNN_VIS_MAX_ATTENTION_GMACS" in message and "the cheapest, eigencam" in message
    assert suggestion(message) is None


def test_a_many_pass_option_beyond_the_budget_names_the_largest_that_fits():
    graph = Graph(POOLED)
    per_pass = graph_macs(graph)
    with pytest.raises(AttributionError, match="use samples <= 3"):
        prepare(graph, "smoothgrad", {"samples": 10}, max_macs=10 * per_pass)  # 1 + 3 per sample
    with pytest.raises(AttributionError, match="try eigencam"):  # not even one step: another method
        prepare(graph, "integrated_gradients", {"steps": 10}, max_macs=7 * per_pass)  # 2 + 3 * 2 = 8 > 7
