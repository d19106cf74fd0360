"""POST /api/playground/{conv,max_pool,avg_pool}: outputs and steps, checked by hand and against the engine."""

from __future__ import annotations

import numpy as np

from engine.layers.conv import conv_forward
from engine.layers.pool import max_pool_forward

X = [[1, 2, 0, 1],
     [0, 1, 3, 1],
     [2, 1, 0, 0],
     [1, 0, 1, 2]]


def test_conv_by_hand(client):
    body = {"input": X, "kernel": [[1, 0], [0, -1]], "bias": 0.5}
    response = client.post("/api/playground/conv", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    # out[0][0] = 1*1 + 2*0 + 0*0 + 1*(-1) + 0.5 = 0.5; out[0][1] = 2 - 3 + 0.5 = -0.5
    assert data["output"][0][:2] == [0.5, -0.5]
    assert len(data["steps"]) == 9 and [s["axis"] for s in data["output_size"]] == ["H", "W"]
    first = data["steps"][0]
    assert first["values"] == [[1, 2], [0, 1]] and first["products"] == [[1, 0], [0, -1]]
    assert (first["sum"], first["bias"], first["result"]) == (0, 0.5, 0.5)


def test_conv_matches_the_engine_with_stride_padding_dilation(client, rng):
    x = rng.standard_normal((2, 7, 6))
    w = rng.standard_normal((2, 3, 2))
    body = {"input": x.tolist(), "kernel": w.tolist(), "bias": 0.25, "stride": [2, 1], "padding": [[1, 0], [0, 1]],
            "dilation": [1, 2]}
    data = client.post("/api/playground/conv", json=body).json()
    expected, _ = conv_forward(x[None], w[None], np.array([0.25]), stride=(2, 1), padding=((1, 0), (0, 1)),
                               dilation=(1, 2))
    np.testing.assert_allclose(np.array(data["output"]), expected[0, 0], rtol=1e-12, atol=1e-12)


def test_max_pool_and_avg_pool(client):
    max_pool = client.post("/api/playground/max_pool", json={"input": X, "kernel_size": 2}).json()
    assert max_pool["output"] == [[2, 3], [2, 2]]
    assert max_pool["steps"][1]["argmax"] == [1, 2]  # the 3 at row 1, column 2
    expected, _ = max_pool_forward(np.array(X, float)[None, None], kernel=(2, 2), stride=(2, 2),
                                   padding=((0, 0), (0, 0)))
    np.testing.assert_array_equal(np.array(max_pool["output"]), expected[0, 0])
    avg = client.post("/api/playground/avg_pool", json={"input": X, "kernel_size": 2}).json()
    assert avg["output"] == [[1.0, 1.25], [1.0, 0.75]] and avg["steps"][0]["divisor"] == 4


def test_playground_refusals(client):
    big = [[0] * 40] * 40
    assert client.post("/api/playground/conv", json={"input": big, "kernel": [[1]]}).status_code == 422
    no_kernel = client.post("/api/playground/conv", json={"input": X})
    assert no_kernel.status_code == 422 and "kernel" in no_kernel.json()["detail"]
    assert client.post("/api/playground/max_pool", json={"input": X}).status_code == 422
    assert client.post("/api/playground/min_pool", json={"input": X, "kernel_size": 2}).status_code == 422
    ragged = client.post("/api/playground/conv", json={"input": [[1, 2], [3]], "kernel": [[1]]})
    assert ragged.status_code == 422
    too_wide = client.post("/api/playground/conv", json={"input": X, "kernel": [[1] * 6] * 6})
    assert too_wide.status_code == 422 and "empty" in too_wide.json()["detail"]
    text = client.post("/api/playground/conv", json={"input": [["a", "b"]], "kernel": [[1]]})
    assert text.status_code == 422
