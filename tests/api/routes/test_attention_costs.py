"""GET /api/attention/methods tells each method's cost (issue 13): the passes one map takes, counted as the work
budget counts them, and whether the method is heavy (a background job). The attention page marks the slow methods
from these numbers, so they must be the server's own."""

from __future__ import annotations

import numpy as np
import pytest

from engine.attention import MANY_PASS, METHODS, applicable_methods
from engine.attention.budget import estimated_macs, graph_macs, plan
from tests.api.attention_jobs import follow_job
from tests.api.conftest import npy_bytes, tiny_bundle

NPY = {"content-type": "application/x-npy"}
X = np.random.default_rng(13).standard_normal((1, 1, 12, 12)).astype(np.float32)
#: cheap explicit steps per heavy method (the tiny model's 12×12 input: windows of 4 every 4 are 3 × 3 = 9)
STEPS = {"scorecam": ({"max_channels": 3}, 3), "smoothgrad": ({"samples": 3}, 3),
         "integrated_gradients": ({"steps": 3}, 3), "occlusion": ({"window": 4, "stride": 4}, 9)}


@pytest.fixture
def costs(client) -> dict[str, dict]:
    return {m["name"]: m["cost"] for m in client.get("/api/attention/methods").json()["methods"]}


def test_every_method_has_a_cost_and_the_heavy_ones_are_the_many_pass_methods(costs):
    assert set(costs) == set(METHODS)
    assert {name for name, cost in costs.items() if cost["heavy"]} == set(MANY_PASS) == set(STEPS)
    for name, cost in costs.items():
        assert cost["units"] >= 1, name
        if cost["heavy"]:
            assert cost["units_per_step"] >= 1 and cost["step"], name
            assert cost["passes"].endswith(f" per {cost['step']}"), name
        else:
            assert cost["units_per_step"] == 0 and cost["step"] is None and cost["option"] is None, name
            assert " per " not in cost["passes"], name
    assert costs["scorecam"]["passes"] == "1 forward pass per channel"
    assert (costs["scorecam"]["option"], costs["scorecam"]["default_steps"]) == ("max_channels", 256)
    assert costs["gradcam"]["passes"] == "1 forward + 1 backward pass to the layer"


def test_the_cost_is_what_the_budget_counts(costs):
    """``(units + units_per_step x steps) x`` one forward pass is the work the server estimates for the request."""
    graph = tiny_bundle().graph
    per_pass = graph_macs(graph)
    for name in applicable_methods(graph):
        cost = costs[name]
        options, steps = STEPS.get(name, ({}, 0))
        expected = (cost["units"] + cost["units_per_step"] * steps) * per_pass
        assert estimated_macs(graph, name, plan(graph, name, options, None)) == expected, name
        if cost["option"] and name != "scorecam":  # the defaults too (Score-CAM's: at most the layer's channels)
            expected = (cost["units"] + cost["units_per_step"] * cost["default_steps"]) * per_pass
            assert estimated_macs(graph, name, plan(graph, name, {}, None)) == expected, name


def test_heavy_methods_and_only_they_become_background_jobs(client, costs):
    graph = tiny_bundle().graph
    for name in applicable_methods(graph):
        params = {"method": name, **STEPS.get(name, ({}, 0))[0]}
        response = client.post("/api/models/tiny/attention", params=params, content=npy_bytes(X), headers=NPY)
        if costs[name]["heavy"]:
            assert follow_job(client, response).status_code == 200, name
        else:
            assert response.status_code == 200, (name, response.text)


def test_the_cost_schema_is_documented(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["MethodCost"]
    for field, node in schema["properties"].items():
        assert node.get("description", "").strip() and node.get("examples"), field
    assert "cost" in client.get("/openapi.json").json()["components"]["schemas"]["MethodInfo"]["required"]
