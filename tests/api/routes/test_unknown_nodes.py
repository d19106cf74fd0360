"""Every route that takes a node id answers an unknown one alike: 404, one message listing the model's nodes.

Before issue 17 the five lookups (attention layer, receptive field, forward node, the run's node pictures and unit
explanations) each phrased their own 404. Now they all raise engine.errors.UnknownNodeError, which
app/errors.py turns into ``{"detail": "no node '<id>' in this model; its nodes: ...", "node": "<id>"}``. Issue 15's
routes (gradients, the chain rule, an SGD step, top examples, projections, neighbours, feature visualisation) too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app.services.models import ModelStore
from engine.graph import Graph
from engine.models import digits
from engine.models.bundle import ModelBundle
from tests.api.conftest import TINY_SPEC, npy_bytes, tiny_bundle

NPY = {"content-type": "application/x-npy"}
UNKNOWN = "conv9"
GRAPH_NODES = [node["id"] for node in TINY_SPEC["nodes"]]
RUN_NODES = ["input", *GRAPH_NODES]  # a run's pictures also show the input
#: the tiny network reading the shipped digits' shape: the routes over the digits dataset take only such models
DIGITS_SPEC = {**TINY_SPEC, "input_shape": [1, 28, 28]}

#: (method, path with {run} and {node}, request body kind, the node ids that exist there); every route taking a node
NODE_ROUTES = [
    ("POST", "/api/models/tiny/attention?layer={node}", "npy", GRAPH_NODES),
    ("POST", "/api/models/tiny/receptive-field", "json", GRAPH_NODES),
    ("POST", "/api/models/tiny/forward?node={node}", "npy", GRAPH_NODES),
    ("GET", "/api/runs/{run}/nodes/{node}.png", None, RUN_NODES),
    ("GET", "/api/runs/{run}/nodes/{node}.npy", None, RUN_NODES),
    ("GET", "/api/runs/{run}/nodes/{node}.json", None, RUN_NODES),
    ("GET", "/api/runs/{run}/nodes/{node}/units/0,0,0", None, RUN_NODES),
    ("GET", "/api/runs/{run}/nodes/{node}/steps", None, RUN_NODES),
    ("GET", "/api/runs/{run}/compare/{run}/nodes/{node}.json", None, RUN_NODES),
    ("GET", "/api/runs/{run}/compare/{run}/nodes/{node}.png", None, RUN_NODES),
    ("GET", "/api/runs/{run}/compare/{run}/nodes/{node}.npy", None, RUN_NODES),
    ("GET", "/api/backprop/{run}/labels/0/nodes/{node}.png", None, RUN_NODES),
    ("GET", "/api/backprop/{run}/labels/0/nodes/{node}.npy", None, RUN_NODES),
    ("GET", "/api/backprop/{run}/labels/0/nodes/{node}.json", None, RUN_NODES),
    ("POST", "/api/models/tiny/backprop/chain-rule?node={node}&unit=0,0,0", "npy", GRAPH_NODES),
    ("POST", "/api/models/tiny/sgd-step?node={node}", "npy", GRAPH_NODES),
    ("POST", "/api/models/tiny/neighbours?node={node}", "npy", RUN_NODES),
    ("POST", "/api/models/tiny/feature-visualisation", "objective", GRAPH_NODES),
    ("GET", "/api/models/digits/nodes/{node}/channels/0/top-examples", None, GRAPH_NODES),
    ("GET", "/api/models/digits/nodes/{node}/top-examples", None, GRAPH_NODES),
    ("GET", "/api/models/digits/projection?node={node}", None, RUN_NODES),
]
#: the same routes as OpenAPI names them, to notice a new route that takes a node id
NODE_OPERATIONS = {
    ("post", "/api/models/{model_id}/attention"),
    ("post", "/api/models/{model_id}/receptive-field"),
    ("post", "/api/models/{model_id}/forward"),
    ("get", "/api/runs/{run_id}/nodes/{node_id}.png"),
    ("get", "/api/runs/{run_id}/nodes/{node_id}.npy"),
    ("get", "/api/runs/{run_id}/nodes/{node_id}.json"),
    ("get", "/api/runs/{run_id}/nodes/{node_id}/units/{index}"),
    ("get", "/api/runs/{run_id}/nodes/{node_id}/steps"),
    ("get", "/api/runs/{run_id}/compare/{other_run_id}/nodes/{node_id}.json"),
    ("get", "/api/runs/{run_id}/compare/{other_run_id}/nodes/{node_id}.png"),
    ("get", "/api/runs/{run_id}/compare/{other_run_id}/nodes/{node_id}.npy"),
    ("get", "/api/backprop/{run_id}/labels/{label}/nodes/{node_id}.png"),
    ("get", "/api/backprop/{run_id}/labels/{label}/nodes/{node_id}.npy"),
    ("get", "/api/backprop/{run_id}/labels/{label}/nodes/{node_id}.json"),
    ("post", "/api/models/{model_id}/backprop/chain-rule"),
    ("post", "/api/models/{model_id}/sgd-step"),
    ("post", "/api/models/{model_id}/neighbours"),
    ("post", "/api/models/{model_id}/feature-visualisation"),
    ("get", "/api/models/{model_id}/nodes/{node}/channels/{channel}/top-examples"),
    ("get", "/api/models/{model_id}/nodes/{node}/top-examples"),
    ("get", "/api/models/{model_id}/projection"),
}
NODE_PARAMETERS = {"node", "node_id", "layer"}


def make_run(client) -> str:
    x = np.random.default_rng(0).standard_normal((1, 1, 12, 12)).astype(np.float32)
    response = client.post("/api/models/tiny/activations", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    return response.json()["run_id"]


def make_gradients(client) -> str:
    """A run whose gradients (against its predicted class) are stored, as POST /backprop leaves it."""
    x = np.random.default_rng(0).standard_normal((1, 1, 12, 12)).astype(np.float32)
    response = client.post("/api/models/tiny/backprop", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    return response.json()["run_id"]


def digits_bundle() -> ModelBundle:
    graph = Graph(DIGITS_SPEC)
    return ModelBundle(id="digits", name="Tiny digit CNN", task="digit classification", graph=graph,
                       params=graph.init_params(seed=0), labels=["zero", "one", "two"],
                       preprocessing=digits.PREPROCESSING, source="random weights (seed 0), for tests")


@pytest.mark.parametrize(("method", "path", "body", "known"), NODE_ROUTES, ids=[r[1] for r in NODE_ROUTES])
def test_an_unknown_node_is_the_same_404_on_every_route(client, method, path, body, known):
    run = (make_gradients(client) if path.startswith("/api/backprop") else make_run(client)) if "{run}" in path else ""
    url = path.format(run=run, node=UNKNOWN)
    if body == "npy":
        response = client.request(method, url, content=npy_bytes(np.zeros((1, 12, 12), np.float32)), headers=NPY)
    elif body == "json":
        response = client.request(method, url, json={"node": UNKNOWN, "index": [0, 0]})
    elif body == "objective":
        response = client.request(method, url, json={"node": UNKNOWN, "channel": 0})
    else:
        response = client.request(method, url)
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"no node '{UNKNOWN}' in this model; its nodes: {', '.join(known)}",
                               "node": UNKNOWN}


def test_every_route_taking_a_node_id_is_checked_above(client):
    schema = client.get("/openapi.json").json()
    taking_nodes = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", [])}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body_fields = schema["components"]["schemas"].get(body.get("$ref", "").rsplit("/", 1)[-1], {})
            if names & NODE_PARAMETERS or "node" in body_fields.get("properties", {}):
                taking_nodes.add((method, path))
    assert taking_nodes == NODE_OPERATIONS


@pytest.fixture
def store(settings) -> ModelStore:
    """The tiny model, a twin of it (to ask one model about the other's run) and a digit-sized copy."""
    return ModelStore(settings.data_dir, builtins={
        "tiny": tiny_bundle, "twin": lambda: dataclasses.replace(tiny_bundle(), id="twin"), "digits": digits_bundle})


def test_a_run_of_another_model_is_a_422_naming_both(client):
    run_id = make_run(client)
    response = client.post("/api/models/twin/receptive-field", json={"node": "conv2", "index": [0, 0],
                                                                     "run_id": run_id})
    assert response.status_code == 422
    assert response.json() == {"detail": f"run '{run_id}' belongs to model 'tiny', not 'twin'"}
