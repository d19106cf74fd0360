"""Receptive fields of squeeze-excite models through the API: the architecture's global_modulation and
modulated_at per node, and one unit's box, note and layers (POST /api/models/{id}/receptive-field)."""

from __future__ import annotations

import numpy as np
import pytest

from app.services.models import ModelStore
from engine.graph import Graph
from engine.models.bundle import ModelBundle, Preprocessing
from tests.api.conftest import npy_bytes, tiny_bundle
from tests.engine.se_graphs import efficientnet_b0_like

SPEC = efficientnet_b0_like(size=32)
NPY = {"content-type": "application/x-npy"}


def se_bundle() -> ModelBundle:
    graph = Graph(SPEC)
    return ModelBundle(id="se", name="EfficientNet-B0-like test CNN", task="test classification", graph=graph,
                       params=graph.init_params(seed=0), labels=[str(i) for i in range(10)],
                       preprocessing=Preprocessing(resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3),
                       source="random weights (seed 0), for tests", cam_layer="head.act")


@pytest.fixture
def store(settings) -> ModelStore:
    return ModelStore(settings.data_dir, builtins={"tiny": tiny_bundle, "se": se_bundle})


def test_the_architecture_marks_nodes_after_a_gate(client):
    response = client.post("/api/architecture/analyze", json=SPEC)
    assert response.status_code == 200, response.text
    fields = {n["id"]: n["receptive_field"] for n in response.json()["nodes"]}
    before = fields["b1.act1"]  # r 7, S 2, P 3 (tests/engine/se_graphs.py)
    assert before["status"] == "local" and before["global_modulation"] is False and before["modulated_at"] == []
    gated = fields["b2.dw"]  # r 7 + 2·2 = 11, S 4, P 3 + 2 = 5
    assert gated["status"] == "local" and gated["global_modulation"] is True
    assert gated["modulated_at"] == ["b1.se.mul"]
    assert [(a["axis"], a["size"], a["stride"], a["padding"]) for a in gated["axes"]] == [("H", 11, 4, 5),
                                                                                         ("W", 11, 4, 5)]
    assert fields["head.act"]["modulated_at"] == ["b1.se.mul", "b2.se.mul", "b3.se.mul"]
    for node in ["b2.se.pool", "b2.se.gate", "head.pool", "classifier"]:
        assert fields[node]["status"] == "global" and fields[node]["global_modulation"] is False, node
        assert fields[node]["modulated_at"] == [], node
    assert sum(f["status"] == "global" for f in fields.values()) == 20  # of 51; 45 before gates were told apart


def test_a_model_reports_the_same_fields(client):
    nodes = {n["id"]: n for n in client.get("/api/models/se").json()["architecture"]["nodes"]}
    assert nodes["b3.add"]["receptive_field"]["modulated_at"] == ["b1.se.mul", "b2.se.mul", "b3.se.mul"]


def test_one_units_box_note_and_layers(client):
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    run_id = client.post("/api/models/se/activations", content=npy_bytes(x), headers=NPY).json()["run_id"]
    response = client.post("/api/models/se/receptive-field", json={"node": "b3.add", "index": [1, 4, 5],
                                                                    "run_id": run_id})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["receptive_field"]["global_modulation"] is True
    # b3.add: r 27, S 4, P 13. Row 4: 16 − 13 = 3 .. 29; column 5: 20 − 13 = 7 .. 33, 2 past the 32-pixel input
    rows, cols = data["box"]
    assert (rows["start"], rows["end"], cols["start"], cols["end"], cols["clipped_end"]) == (3, 29, 7, 33, 31)
    assert "global gate modulates the unit" in data["note"] and "'b3.se.mul', and 2 earlier" in data["note"]
    # boxes on the main path's layers; none on a gate's branch (global: it depends on all of them)
    assert data["layers"]["input"] == [[3, 29], [7, 31]]
    assert "b3.se.mul" in data["layers"] and "b2.act1" in data["layers"]
    assert not any(".se." in layer and not layer.endswith(".mul") for layer in data["layers"])
    # the effective field is the real gradient: through the gates it reaches beyond the box, the whole input
    # (at the all-zero input it would not: the main path is 0 there, and d(x·gate)/d gate = x)
    assert data["effective"]["nonzero_box"] == [[0, 31], [0, 31]]
