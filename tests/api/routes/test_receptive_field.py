"""POST /api/models/{id}/receptive-field: box, centre and effective receptive field of one unit."""

from __future__ import annotations

import numpy as np

from tests.api.conftest import npy_bytes, tiny_bundle

NPY = {"content-type": "application/x-npy"}


def test_box_of_a_conv2_unit(client):
    response = client.post("/api/models/tiny/receptive-field", json={"node": "conv2", "index": [2, 3],
                                                                      "effective": False})
    assert response.status_code == 200, response.text
    data = response.json()
    # conv2 (4 x 4 positions): r = 8, S = 2, P = 1. Row 2: start 2*2 - 1 = 3, end 3 + 7 = 10, centre 6.5.
    # Column 3: start 5, end 12 -> past the 12-pixel input by 1 (clipped to 5..11).
    rows, cols = data["box"]
    assert (rows["start"], rows["end"], rows["centre"], rows["padding_after"]) == (3, 10, 6.5, 0)
    assert (cols["start"], cols["end"], cols["clipped_end"], cols["padding_after"]) == (5, 12, 11, 1)
    assert "padding" in data["note"]
    assert data["effective"] is None
    # on every earlier layer: pool1 (r 4, S 2, P 1) rows ceil((3+1)/2)=2 .. floor((10-4+1+1)/2)=4, i.e. conv2's
    # own 3x3 window; conv1 and relu1 (r 3, S 1, P 1) the 2x2 pooling windows behind it: rows 4..9, cols 6..11
    assert data["layers"] == {"input": [[3, 10], [5, 11]], "conv1": [[4, 9], [6, 11]], "relu1": [[4, 9], [6, 11]],
                              "pool1": [[2, 4], [3, 5]], "conv2": [[2, 2], [3, 3]]}


def test_effective_field_is_the_input_gradient(client):
    x = np.random.default_rng(11).standard_normal((1, 1, 12, 12)).astype(np.float32)
    run_id = client.post("/api/models/tiny/activations", content=npy_bytes(x), headers=NPY).json()["run_id"]
    body = {"node": "conv2", "index": [1, 2, 3], "run_id": run_id}
    data = client.post("/api/models/tiny/receptive-field", json=body).json()
    effective = data["effective"]
    assert effective["input"] == f"run {run_id}" and effective["shape"] == [12, 12]
    assert effective["png"].startswith("data:image/png;base64,")
    got = np.array(effective["values"])
    # independent check: central differences of the unit in float64, pixel by pixel
    bundle = tiny_bundle()
    params = {k: v.astype(np.float64) for k, v in bundle.params.items()}
    base = x.astype(np.float64)

    def unit(z):
        return bundle.graph.forward(z, params, keep_caches=False, stop_at="conv2").activations["conv2"][0, 1, 2, 3]

    numeric = np.zeros((12, 12))
    eps = 1e-5
    for i in range(12):
        for j in range(12):
            plus, minus = base.copy(), base.copy()
            plus[0, 0, i, j] += eps
            minus[0, 0, i, j] -= eps
            numeric[i, j] = abs(unit(plus) - unit(minus)) / (2 * eps)
    np.testing.assert_allclose(got, numeric, atol=1e-4, rtol=1e-3)
    # the gradient lives inside the theoretical box (rows 3..10, columns 5..11)
    rows, cols = data["box"]
    (r0, r1), (c0, c1) = effective["nonzero_box"]
    assert rows["clipped_start"] <= r0 <= r1 <= rows["clipped_end"]
    assert cols["clipped_start"] <= c0 <= c1 <= cols["clipped_end"]


def test_zero_input_and_global_node(client):
    data = client.post("/api/models/tiny/receptive-field", json={"node": "fc", "index": [0]}).json()
    assert data["receptive_field"]["status"] == "global"
    assert [(b["start"], b["end"]) for b in data["box"]] == [(0, 11), (0, 11)]
    assert data["effective"]["input"] == "zeros"


def test_bad_units_and_nodes(client):
    outside = client.post("/api/models/tiny/receptive-field", json={"node": "conv2", "index": [0, 40, 0]})
    assert outside.status_code == 422 and "outside" in outside.json()["detail"]
    unknown = client.post("/api/models/tiny/receptive-field", json={"node": "conv7", "index": [0, 0]})
    assert unknown.status_code == 404 and "conv2" in unknown.json()["detail"]
    wrong_arity = client.post("/api/models/tiny/receptive-field", json={"node": "conv2", "index": [1]})
    assert wrong_arity.status_code == 422
    bad_run = client.post("/api/models/tiny/receptive-field",
                          json={"node": "conv2", "index": [0, 0], "run_id": "f" * 32})
    assert bad_run.status_code == 404
    unknown_model = client.post("/api/models/none/receptive-field", json={"node": "conv2", "index": [0, 0]})
    assert unknown_model.status_code == 404
